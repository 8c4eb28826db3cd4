"""Holding a request while its job runs: up to a budget (SHIM_HOLD_SECONDS, lowered by the client's own
timeout), then a retryable 503 whose retry attaches to the same job; a client that leaves stops the wait,
never the job."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from .. import errors
from ..jobs.job import Job
from ..state import state_of
from ..types import Outcome
from . import inbound
from .respond_async import job_url

#: The hold never ends closer than this to the client's own read timeout.
READ_TIMEOUT_MARGIN = 0.25


def hold_budget(request: Request) -> float | None:
    """How long this request may be held: SHIM_HOLD_SECONDS, lowered by the client's own timeout."""
    budget = state_of(request).settings.hold_seconds
    timeout = inbound.client_timeout(request)
    if timeout is not None:
        own = max(0.1, min(timeout - READ_TIMEOUT_MARGIN, timeout * 0.8))
        budget = own if budget is None else min(budget, own)
    return budget


async def hold(request: Request, job: Job) -> Outcome:
    """Wait for the job while the client is there and the hold budget lasts.

    Out of budget: a retryable 503 with Retry-After, and the job is handed off so the retry attaches.
    Client gone: stop waiting (the job goes on, its result kept for a retry).
    """
    jobs = state_of(request).jobs
    watcher = asyncio.ensure_future(_disconnected(request))
    waiter = asyncio.ensure_future(jobs.wait(job, hold_budget(request)))
    try:
        await asyncio.wait({watcher, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not waiter.done():
        waiter.cancel()
        raise errors.RetryLater("The client disconnected.")  # nobody reads this answer
    outcome: Outcome | None = waiter.result()
    if outcome is None:
        jobs.hand_off(job)
        jobs.keep_for_lookup(job)  # the answer names the job's URL: keep even a failure for it
        raise errors.RetryLater(
            f"The image is still being generated (job {job.id}). Retry the same request: it will attach to "
            f"this job and will not be charged again. Or GET {job_url(job)} with the same API key: it "
            "answers 202 while the job runs, then the result.",
            retry_after=0.5,
        )
    return outcome


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
