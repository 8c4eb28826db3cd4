"""`GET /v1/images/jobs/{job_id}`: a job started with `Prefer: respond-async` (or handed off by a 503), looked
up by the credential that started it: 202 while it runs, then exactly what the synchronous call would have
answered (its images, or its error), for as long as the result is kept (SHIM_RESULT_TTL_SECONDS). With
replicas, on any of them: another replica's job is followed through its shared record."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..jobs.job import Job
from ..state import state_of
from ..types import ImageSpec, Outcome
from ..untrusted import printable
from . import images, inbound, respond_async

#: How long a look-up waits for the follower of another replica's job to read its record (seconds).
FOLLOWER_GRACE = 0.5


async def retrieve(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    asked = state.jobs.now()
    job_id = request.path_params["job_id"]
    job = await state.jobs.look_up(job_id, key)
    if job is None or not isinstance(job.spec, ImageSpec):  # another key's job is as absent as an unknown one
        raise errors.NotFound(
            f"No image job {printable(job_id, 100)!r} for this API key: it never existed, belongs to another "
            "key, or its result is no longer kept.",
            code="job_not_found",
        )
    headers = {"x-shim-job": job.id}
    if job.following and job.runner is not None and not job.done:
        # Another replica's job: its follower reads the shared record at once (a finished job's answer is in it).
        await asyncio.wait({job.runner}, timeout=FOLLOWER_GRACE)
    if not job.done:
        return respond_async.pending(job, headers)
    try:
        outcome = _outcome(job)
    except errors.ShimError as exc:
        raise images.own_copy(exc, headers) from exc
    return await images.deliver(request, job.spec, job, outcome, key, headers, asked_at=asked)


def _outcome(job: Job) -> Outcome:
    """A finished job's outcome, or its failure raised."""
    assert job.runner is not None and job.runner.done()
    if job.runner.cancelled():
        raise errors.ShuttingDown("The job was cancelled: the gateway was shutting down.")
    return job.runner.result()
