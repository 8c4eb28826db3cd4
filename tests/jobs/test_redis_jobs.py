"""The job registry replicas share (Redis): only the lease holder records a submission, once, before it is
sent; a dead owner's job is adopted without its "submitting" ones being sent again; a finished job's outcome
(its failures' kinds included) is delivered by any replica; settings fail at start-up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shim import errors
from shim.app import create_app
from shim.config import ConfigurationError, Settings
from shim.jobs.job import Job, credential_id
from shim.jobs.redis_jobs import RedisJobs
from shim.jobs.shared import decode_result, encode_result
from shim.redis_link import RedisLink
from shim.types import ImageSpec, Outcome, Route, Submission, Task

from ..conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SPEC = ImageSpec("generate", Route("m", "fake", "m"), "a secret prompt", n=2)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisJobs, RedisJobs]]:
    """Two replicas' shared registries on one Redis (short leases)."""
    prefix = "test-" + uuid.uuid4().hex[:8]
    made = [RedisJobs(RedisLink(redis_server.url, prefix=prefix), lease_seconds=0.6) for _ in range(2)]
    yield made[0], made[1]
    for shared in made:
        await shared.aclose()
        await shared.link.aclose()


def new_job() -> Job:
    return Job(id="job_" + uuid.uuid4().hex, credential=credential_id("rk_x"), fingerprint="fp", spec=SPEC, created=0)


async def test_only_the_lease_holder_records_a_submission_once(replicas: tuple[RedisJobs, RedisJobs]) -> None:
    """The owner records "submitting" (again, for a retried submit); another replica cannot adopt a job whose
    owner renews its lease. Once the owner is gone and its lease expired, the adopter never records (so never
    sends) the submission the dead owner left "submitting", records the one never started, and the old owner
    can no longer record anything."""
    owner, other = replicas
    job = new_job()
    assert await owner.create(job) is None
    await owner.submitting(job, 0)
    await owner.submitting(job, 0)  # the same submit retried after an upstream 429
    found = await other.load(job.credential, job.id)
    assert found is not None and found.leased and not await other.adopt(job, found)
    await asyncio.sleep(0.8)
    assert (await other.load(job.credential, job.id)).leased  # type: ignore[union-attr]  # renewed meanwhile
    await owner.aclose()  # the owner stops (as a killed process does): nobody renews its lease
    await asyncio.sleep(0.8)
    found = await other.load(job.credential, job.id)
    assert found is not None and not found.leased
    assert found.submissions[0].task is None  # "submitting": its outcome is unknown
    adopted = Job(id=job.id, credential=job.credential, fingerprint="fp", spec=SPEC, created=0)
    assert await other.adopt(adopted, found)
    with pytest.raises(errors.StateUnavailable):
        await other.submitting(adopted, 0)
    await other.submitting(adopted, 1)
    with pytest.raises(errors.StateUnavailable):
        await owner.submitting(job, 1)


async def test_a_finished_job_is_delivered_by_another_replica(replicas: tuple[RedisJobs, RedisJobs]) -> None:
    """The owner's outcome (tasks, result URLs, a partial failure that may have paid) reaches the other replica,
    which is notified; the record no longer has a lease."""
    owner, other = replicas
    job = new_job()
    assert await owner.create(job) is None
    waiting = asyncio.ensure_future(other.changed(job.id, timeout=5))
    await asyncio.sleep(0.2)  # the other replica listens
    unknown = errors.SubmitOutcomeUnknown("The gateway lost the answer of this submit (job x).")
    outcome = Outcome(
        ((Submission({}, 1, "fake/m", size="1024x1024"), Task("t1", "completed", ("https://r/1",))),), (unknown,)
    )
    job.runner = asyncio.ensure_future(asyncio.sleep(0, result=outcome))
    await job.runner
    job.submits = 1
    owner.finished(job, outcome, None)
    await asyncio.wait_for(waiting, 2)
    found = await other.load(job.credential, job.id)
    assert found is not None and found.status == "done" and not found.leased
    delivered = found.outcome()
    assert [(s.size, t.id, t.urls) for s, t in delivered.tasks] == [("1024x1024", "t1", ("https://r/1",))]
    (failure,) = delivered.failures
    assert isinstance(failure, errors.SubmitOutcomeUnknown) and failure.should_retry is False


def test_results_encode_without_the_wire_body() -> None:
    """An outcome's encoding keeps what delivery needs, never a submission's body (it holds the prompt); a
    failure keeps its class, status, code and retry advice."""
    sub = Submission({"prompt": "a secret prompt"}, 2, "reapi/x", quality="high", background="opaque")
    outcome = Outcome(((sub, Task("t", "completed", ("u1", "u2"), credits=3, extras=(("last", "f.png"),))),))
    text = encode_result(outcome, None)
    assert "secret" not in text
    decoded, failure = decode_result(text)
    assert failure is None and decoded is not None
    ((got_sub, got_task),) = decoded.tasks
    assert (got_sub.count, got_sub.quality, got_sub.background, got_sub.body) == (2, "high", "opaque", {})
    assert got_task == outcome.tasks[0][1]
    clip = Submission({"prompt": "p"}, 1, "reapi/kling", size="1280x720", media="video", duration=8)
    clip_outcome, _ = decode_result(encode_result(Outcome(((clip, Task("v", "completed", ("m",))),)), None))
    assert clip_outcome is not None
    ((video_sub, _),) = clip_outcome.tasks
    assert (video_sub.media, video_sub.duration, video_sub.size) == ("video", 8, "1280x720")
    failed = errors.TaskFailed("moderated", status=400, task_id="t9")
    _, error = decode_result(encode_result(None, failed))
    assert isinstance(error, errors.TaskFailed) and (error.status, error.code, error.task_id) == (
        400,
        failed.code,
        "t9",
    )


def test_redis_settings() -> None:
    """SHIM_REDIS_URL must be a Redis URL (never echoed: it may hold a password), and SHIM_STATE_DIR beside it
    is refused at start-up (with Redis, Redis is the journal); the lease and prefix are read."""
    settings = Settings.from_env(
        {"SHIM_REDIS_URL": "redis://:pw@redis:6379/0", "SHIM_REDIS_LEASE_SECONDS": "5", "SHIM_REDIS_PREFIX": "p"}
    )
    assert (settings.redis_url, settings.redis_lease_seconds, settings.redis_prefix) == (
        "redis://:pw@redis:6379/0",
        5,
        "p",
    )
    assert "pw" not in repr(settings)
    with pytest.raises(ConfigurationError, match="SHIM_REDIS_URL") as bad:
        Settings.from_env({"SHIM_REDIS_URL": "http://:secret@redis"})
    assert "secret" not in bad.value.message
    with pytest.raises(ConfigurationError, match="SHIM_STATE_DIR and SHIM_REDIS_URL"):
        create_app(Settings(redis_url="redis://127.0.0.1:1/0", state_dir="/tmp"))
    assert Settings.from_env({}).redis_url is None


def test_without_redis_url_redis_is_never_imported() -> None:
    """A shim without SHIM_REDIS_URL builds its whole runtime (lifespan) without importing the redis package."""
    code = (
        "import asyncio, sys\n"
        "from shim.app import create_app\n"
        "from shim.config import Settings\n"
        "app = create_app(Settings())\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        assert app.state.shim.jobs is not None\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
