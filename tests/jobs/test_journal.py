"""The journal of paid tasks: its records (pure), its file, and restarts that never pay twice (real servers)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from shim import errors
from shim.app import create_app
from shim.app import open_journal as open_state
from shim.config import ConfigurationError, Settings
from shim.jobs.job import credential_id, fingerprint
from shim.jobs.journal import (
    COMPACT_SLACK,
    FILE_NAME,
    Journal,
    Record,
    RecoveredJob,
    Submitted,
    compact,
    decode,
    encode,
    parse,
    recover,
)
from shim.jobs.registry import Jobs
from shim.pacing.pacers import Pacers
from shim.providers.base import ModelSpec
from shim.types import ImageSpec, Route, Submission, Task

from ..conftest import ServedApp, served, shim_settings

HOUR = 3600.0


def rec(kind: str, job: str = "job_a", at: float = 1000.0, **kw: Any) -> Record:
    return Record(kind, job, "cred", "fp", "reapi", at, **kw)  # type: ignore[arg-type]


# --- pure: records ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(rec("submitting", index=0, idempotency="d" * 64), id="submitting"),
        pytest.param(rec("submitted", index=3, task="task_123"), id="submitted"),
        pytest.param(rec("handed_off", at=1234.5), id="handed_off"),
        pytest.param(rec("finished"), id="finished"),
    ],
)
def test_record_round_trips(record: Record) -> None:
    """A record encodes to one JSON line and decodes to the same value."""
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == record


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"v":1,"kind":"submitted","job":"j","credential":"c","finger', id="torn"),
        pytest.param(b"\xff\xfe garbage", id="not-utf8"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(encode(rec("finished")).replace(b'"v":1', b'"v":2'), id="other-version"),
        pytest.param(encode(rec("finished")).replace(b'"finished"', b'"exploded"'), id="unknown-kind"),
        pytest.param(encode(rec("submitted", index=0, task="t")).replace(b'"task":"t"', b'"task":""'), id="no-task"),
        pytest.param(encode(rec("submitting", index=0)).replace(b'"index":0', b'"index":true'), id="bool-index"),
        pytest.param(encode(rec("submitting", index=0)).replace(b',"index":0', b""), id="no-index"),
        pytest.param(encode(rec("finished")).replace(b'"at":1000.0', b'"at":NaN'), id="nan-time"),
        pytest.param(encode(rec("finished")).replace(b'"job":"job_a"', b'"job":""'), id="empty-job"),
    ],
)
def test_unreadable_lines_decode_to_none(line: bytes) -> None:
    """Anything but a well-formed record of this version is skipped, never an exception."""
    assert decode(line) is None


def test_torn_last_line_is_skipped_not_fatal() -> None:
    """A crash mid-write leaves a torn last line: the records before it survive, the torn one is counted."""
    good = [rec("submitting", index=0), rec("submitted", index=0, task="t0")]
    data = b"".join(encode(r) for r in good) + encode(rec("finished"))[:25]
    assert parse(data) == (good, 1)


def test_recover_folds_a_jobs_records() -> None:
    """A task id is kept over a later `submitting`; `submitting` alone is an unknown outcome; finished drops."""
    records = [
        rec("submitting", index=0, at=1.0, idempotency="idem"),
        rec("submitted", index=0, task="t0", at=2.0),
        rec("submitting", index=0, at=3.0),  # a retried submit call after a 429 (nothing was created)
        rec("submitting", index=1, at=4.0),
        rec("handed_off", at=5.0),
        rec("submitting", job="job_b", index=0, at=6.0),
        rec("finished", job="job_b", at=7.0),
    ]
    assert recover(records) == [
        RecoveredJob(
            "job_a",
            "cred",
            "fp",
            "reapi",
            "idem",
            {0: Submitted("t0", 2.0), 1: Submitted(None, 4.0)},
            handed_off=5.0,
            last=5.0,
        )
    ]


def test_compact_drops_finished_and_expired_jobs() -> None:
    """Compaction keeps every record of the open, recent jobs, in order, and nothing else."""
    now = 10 * HOUR
    open_recent = [rec("submitting", job="open", index=0, at=now - 60), rec("submitted", job="open", index=0, task="t")]
    finished = [rec("submitting", job="done", index=0, at=now - 60), rec("finished", job="done", at=now - 30)]
    expired = [rec("submitted", job="old", index=0, task="t", at=now - 2 * HOUR - 1)]
    records = [open_recent[0], *finished, *expired, open_recent[1]]
    assert compact(records, now=now, horizon=2 * HOUR) == open_recent


# --- the file ------------------------------------------------------------------------------------------


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[Journal]]:
    """Journals opened by a test, closed after it."""
    journals: list[Journal] = []
    yield journals
    for journal in journals:
        journal.close()


def open_journal(opened: list[Journal], directory: Path, *, now: float = 10 * HOUR) -> Journal:
    journal = Journal(str(directory), horizon=2 * HOUR, wall=lambda: now)
    opened.append(journal)
    return journal


def test_start_up_compacts_the_file(tmp_path: Path, opened: list[Journal]) -> None:
    """Opening keeps the open jobs' records only, rewrites the file with them, and skips a torn last line."""
    now = 10 * HOUR
    kept = [rec("submitting", job="open", index=0, at=now - 5), rec("submitted", job="open", index=0, task="t")]
    lines = [kept[0], rec("finished", job="gone", at=now - 9), rec("submitted", job="old", index=0, task="x", at=1.0)]
    (tmp_path / FILE_NAME).write_bytes(b"".join(encode(r) for r in [*lines, kept[1]]) + b'{"v":1,"ki')
    journal = open_journal(opened, tmp_path, now=now)
    assert journal.skipped == 1
    assert (tmp_path / FILE_NAME).read_bytes() == b"".join(encode(r) for r in kept)
    assert [j.id for j in journal.recovered()] == ["open"]
    journal.append(rec("finished", job="open", at=now), durable=True)
    assert (tmp_path / FILE_NAME).read_bytes().endswith(encode(rec("finished", job="open", at=now)))


def test_file_stays_the_size_of_the_open_jobs(tmp_path: Path, opened: list[Journal]) -> None:
    """Thousands of finished jobs later, the file holds little more than the open job."""
    journal = open_journal(opened, tmp_path)
    journal.append(rec("submitted", job="open", index=0, task="t", at=10 * HOUR), durable=False)
    for i in range(COMPACT_SLACK * 2):
        journal.append(rec("submitted", job=f"j{i}", index=0, task="t", at=10 * HOUR), durable=False)
        journal.append(rec("finished", job=f"j{i}", at=10 * HOUR), durable=False)
    lines = (tmp_path / FILE_NAME).read_bytes().splitlines()
    assert len(lines) <= COMPACT_SLACK + 3
    assert [j.id for j in recover(parse(b"\n".join(lines))[0])] == ["open"]


def test_second_process_is_locked_out(tmp_path: Path, opened: list[Journal]) -> None:
    """Two shims on one state directory would corrupt each other's compaction: the second fails to open."""
    open_journal(opened, tmp_path)
    with pytest.raises(OSError):
        open_journal(opened, tmp_path)


# --- resuming, in-process ----------------------------------------------------------------------------------


class FakeProvider:
    """A synchronous upstream (tasks complete at submit); records every submit and poll."""

    name = "fake"
    rate_limit = 1000.0
    catalog: Mapping[str, ModelSpec] = {"m": ModelSpec("m")}
    priors: Mapping[str, Any] = {}
    max_in_flight = None

    def __init__(self) -> None:
        self.submitted: list[int] = []
        self.polled: list[str] = []

    def check(self, job: ImageSpec) -> None:
        pass

    def plan(self, job: ImageSpec) -> list[Submission]:
        return [Submission({"i": i}, 1, "fake/m") for i in range(job.n)]

    async def submit(self, submission: Submission, key: str) -> Task:
        index = submission.body["i"]
        self.submitted.append(index)
        return Task(f"new{index}", "completed", (f"https://up.test/new{index}.png",))

    async def poll(self, task_id: str, key: str) -> Task:
        self.polled.append(task_id)
        return Task(task_id, "completed", (f"https://up.test/{task_id}.png",))

    def failure(self, task: Task) -> errors.ShimError:
        return errors.TaskFailed("failed", task_id=task.id)


async def test_resume_waits_for_paid_tasks_and_never_resubmits_unknown_ones(
    tmp_path: Path, opened: list[Journal]
) -> None:
    """Index 0 submitted: polled, not resubmitted; index 1 `submitting` only: SubmitOutcomeUnknown; index 2
    never started: submitted. The job keeps its id, and its delivery closes it in the journal."""
    spec = ImageSpec("generate", Route("m", "fake", "m"), "a secret prompt", n=3)
    key = "rk_secret"
    cred, fp = credential_id(key), fingerprint(spec)
    now = 10 * HOUR
    earlier = [
        Record("submitting", "job_old", cred, fp, "fake", now - 9, index=0),
        Record("submitted", "job_old", cred, fp, "fake", now - 8, index=0, task="old0"),
        Record("submitting", "job_old", cred, fp, "fake", now - 7, index=1),
    ]
    (tmp_path / FILE_NAME).write_bytes(b"".join(encode(r) for r in earlier))
    journal = open_journal(opened, tmp_path, now=now)
    provider = FakeProvider()
    pacers = {"fake": Pacers(rate=1000.0, latency_scale=0.0001)}
    jobs = Jobs(providers={"fake": provider}, pacers=pacers, journal=journal, wall=lambda: now)
    try:
        job, attached = await jobs.find_or_start(spec, key, retry_count=1)
        assert attached and job.id == "job_old"
        outcome = await jobs.wait(job, timeout=5)
        assert outcome is not None
        assert [task.id for _, task in outcome.tasks] == ["old0", "new2"]
        assert [type(f) for f in outcome.failures] == [errors.SubmitOutcomeUnknown]
        assert provider.polled == ["old0"] and provider.submitted == [2]
        again, attached = await jobs.find_or_start(spec, key, retry_count=1)
        assert attached and again is job  # consumed: it is the live job now
        jobs.mark_delivered(job)
        fresh, attached = await jobs.find_or_start(spec, key, retry_count=0)  # a new intent, as without a journal
        assert not attached and fresh.id != job.id
        await jobs.wait(fresh, timeout=5)
    finally:
        await jobs.aclose()
        for pacer_set in pacers.values():
            await pacer_set.aclose()
    data = (tmp_path / FILE_NAME).read_bytes()
    assert b"rk_secret" not in data and b"secret prompt" not in data
    records = parse(data)[0]
    assert [r.job for r in records if r.kind == "finished"] == ["job_old"]
    assert {r.task for r in records if r.job == "job_old" and r.kind == "submitted"} == {"old0", "new2"}


# --- restarts, end to end -----------------------------------------------------------------------------------


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "dall-e-2", "prompt": prompt, **extra}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def post(server: ServedApp, payload: dict[str, Any], headers: dict[str, str], timeout: float = 10) -> httpx.Response:
    return httpx.post(server.url + "/v1/images/generations", json=payload, headers=headers, timeout=timeout)


@pytest.fixture
def settings(reapi_upstream, reve2img_upstream, tmp_path: Path) -> Any:
    return shim_settings(reapi_upstream, reve2img_upstream, state_dir=str(tmp_path))


def dropped_then_restarted(settings: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
    """A client drops at 0.3 s, then the shim stops (its job is cancelled, the upstream task goes on)."""
    first = ServedApp(create_app(settings)).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            post(first, payload, headers, timeout=0.3)
    finally:
        first.stop()


def test_sdk_retry_after_restart_collects_the_paid_task(settings, reapi_state, key, tmp_path) -> None:
    """Restart mid-task; the SDK's retry (x-stainless-retry-count: 1) gets the image; one submit in all.
    The journal never holds the key, the prompt or the Idempotency-Key."""
    payload = body("[latency=1.5] survive a deploy")
    dropped_then_restarted(settings, payload, auth(key, **{"Idempotency-Key": "idem-raw-value"}))
    with served(create_app(settings)) as second:
        response = post(second, payload, auth(key, **{"x-stainless-retry-count": "1"}))
    assert response.status_code == 200, response.text
    assert response.headers["x-shim-attached"] == "true"
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert response.headers["x-upstream-task-ids"] == task.id
    assert reapi_state.counters(key)["submits"] == 1
    data = (tmp_path / FILE_NAME).read_bytes()
    kinds = [json.loads(line)["kind"] for line in data.splitlines()]
    assert kinds == ["submitting", "submitted", "finished"]
    for secret in (key, "survive a deploy", "idem-raw-value"):
        assert secret.encode() not in data


def test_new_intent_after_restart_pays_again(settings, reapi_state, key) -> None:
    """After a restart, the same body without a retry header is a new intent: a second task."""
    payload = body("[latency=0.5] twice on purpose")
    dropped_then_restarted(settings, payload, auth(key))
    with served(create_app(settings)) as second:
        response = post(second, payload, auth(key, **{"x-stainless-retry-count": "0"}))
    assert response.status_code == 200 and response.headers["x-shim-attached"] == "false"
    assert reapi_state.counters(key)["submits"] == 2


def test_idempotency_key_attaches_after_restart(settings, reapi_state, key) -> None:
    """The same Idempotency-Key after a restart collects the earlier task; another body with it is a 400."""
    payload = body("[latency=1.0] idempotent")
    headers = auth(key, **{"Idempotency-Key": "order-7"})
    dropped_then_restarted(settings, payload, headers)
    with served(create_app(settings)) as second:
        other = post(second, body("[latency=1.0] something else"), headers)
        response = post(second, payload, headers)
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert response.status_code == 200 and response.headers["x-shim-attached"] == "true"
    assert reapi_state.counters(key)["submits"] == 1


def test_stop_waits_for_a_submit_in_flight(settings, reapi_state, key) -> None:
    """A stop while a submit awaits its answer waits for the task id, so the retry after it gets the image."""
    payload = body("[submit_slow=1.0] answer arrives during the stop")
    dropped_then_restarted(settings, payload, auth(key))
    with served(create_app(settings)) as second:
        response = post(second, payload, auth(key, **{"x-stainless-retry-count": "1"}))
    assert response.status_code == 200 and response.headers["x-shim-attached"] == "true"
    assert reapi_state.counters(key)["submits"] == 1


def test_restart_during_submit_is_never_resubmitted(settings, reapi_state, key) -> None:
    """A submit still unanswered when the stop gives up on it: the retry is a 502 upstream_submit_unknown."""
    impatient = dataclasses.replace(settings, upstream_timeout=1.0)  # the stop waits at most this long for a submit
    payload = body("[submit_slow=3.0] answer lost in a deploy")
    dropped_then_restarted(impatient, payload, auth(key))
    with served(create_app(impatient)) as second:
        response = post(second, payload, auth(key, **{"x-stainless-retry-count": "1"}))
        again = post(second, payload, auth(key, **{"x-stainless-retry-count": "2"}))
    assert response.status_code == 502 and response.headers["x-should-retry"] == "false"
    assert response.json()["error"]["code"] == "upstream_submit_unknown"
    assert again.status_code == 502 and again.headers["x-shim-attached"] == "true"  # the same answer, not a resubmit
    assert reapi_state.counters(key)["submits"] == 1


def test_plain_client_told_to_retry_attaches_after_restart(settings, reapi_state, key) -> None:
    """The shim said "retry: you will not be charged again" (503); a restart does not break that promise."""
    payload = body("[latency=1.0] held")
    held = dataclasses.replace(settings, hold_seconds=0.2)
    with served(create_app(held)) as first:
        told = post(first, payload, auth(key))
    assert told.status_code == 503 and told.headers["x-should-retry"] == "true"
    with served(create_app(dataclasses.replace(held, hold_seconds=None))) as second:
        response = post(second, payload, auth(key))
    assert response.status_code == 200 and response.headers["x-shim-attached"] == "true"
    assert response.headers["x-shim-job"] == told.headers["x-shim-job"]
    assert reapi_state.counters(key)["submits"] == 1


def test_unusable_state_dir_fails_start_up(tmp_path) -> None:
    """SHIM_STATE_DIR naming a file, or a directory another shim holds: a ConfigurationError at start-up."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="SHIM_STATE_DIR"):
        open_state(Settings(state_dir=str(tmp_path / "file")), time.time)
    held = open_state(Settings(state_dir=str(tmp_path / "dir")), time.time)
    assert held is not None
    try:
        with pytest.raises(ConfigurationError, match="another shim"):
            open_state(Settings(state_dir=str(tmp_path / "dir")), time.time)
    finally:
        held.close()
    assert open_state(Settings(), time.time) is None


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    """After close, an append raises OSError (the caller decides whether that stops a submit)."""
    journal = Journal(str(tmp_path), horizon=HOUR)
    journal.close()
    with pytest.raises(OSError):
        journal.append(rec("finished"), durable=True)


def test_state_dir_setting() -> None:
    """SHIM_STATE_DIR is read stripped; unset or blank leaves the shim without a journal."""
    assert Settings.from_env({"SHIM_STATE_DIR": " /var/lib/shim "}).state_dir == "/var/lib/shim"
    assert Settings.from_env({}).state_dir is None and Settings.from_env({"SHIM_STATE_DIR": " "}).state_dir is None
