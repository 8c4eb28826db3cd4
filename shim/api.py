"""The HTTP endpoints: read the request, hand the job to `jobs`, write the answer. Knows no provider."""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import errors, inbound, streaming
from .delivery import build_result
from .jobs import Job, Outcome
from .openai_wire import parse_image_request, render_images
from .types import ImageJob, JobResult, Operation

if TYPE_CHECKING:  # app imports this module
    from .app import ShimState

#: The hold never ends closer than this to the client's own read timeout.
READ_TIMEOUT_MARGIN = 0.25


def _state(request: Request) -> ShimState:
    state: ShimState = request.app.state.shim
    return state


async def generations(request: Request) -> Response:
    key = inbound.credential(request)
    state = _state(request)
    body = inbound.parse_json(await inbound.read_body(request, state.settings.max_body_bytes))
    spec = parse_spec(request, body, "generate", form=False)
    return await answer(request, spec, key)


def parse_spec(request: Request, body: object, operation: Operation, *, form: bool) -> ImageJob:
    state = _state(request)
    settings = state.settings
    deployment = request.path_params.get("deployment")
    if deployment and isinstance(body, dict) and not body.get("model"):
        body = {**body, "model": deployment}  # Azure-style path: the deployment names the model
    return parse_image_request(
        body,
        operation=operation,
        resolve=state.router.resolve,
        default_model=settings.default_model,
        response_format_override=settings.default_response_format,
        form=form,
    )


async def answer(request: Request, spec: ImageJob, key: str) -> Response:
    """Attach to or start the job, hold the request up to its budget, and deliver."""
    state = _state(request)
    job, attached = state.jobs.find_or_start(
        spec,
        key,
        idempotency_key=request.headers.get("idempotency-key") or None,
        retry_count=inbound.retry_count(request),
    )
    headers = {"x-shim-job": job.id, "x-shim-attached": "true" if attached else "false"}
    if spec.stream:
        return streaming.respond(request, spec, job, headers)
    try:
        outcome = await hold(request, job)
        result = await deliver(request, spec, outcome)
    except errors.ShimError as exc:
        error = copy.copy(exc)  # the job's exception is shared by every request attached to it
        error.headers = {**exc.headers, **headers}
        raise error from exc
    headers.update(result_headers(result))
    if outcome.failures:  # a partial failure: every paid image is returned, and the rest is explained
        text = "; ".join(f.message for f in outcome.failures)[:1000]
        headers["x-shim-partial-failure"] = " ".join(text.encode("ascii", "replace").decode().split())
    return JSONResponse(
        render_images(spec, result),
        headers=headers,
        background=BackgroundTask(state.jobs.mark_delivered, job),
    )


def hold_budget(request: Request) -> float | None:
    """How long this request may be held: SHIM_HOLD_SECONDS, lowered by the client's own timeout."""
    budget = _state(request).settings.hold_seconds
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
    state = _state(request)
    watcher = asyncio.ensure_future(_disconnected(request))
    waiter = asyncio.ensure_future(state.jobs.wait(job, hold_budget(request)))
    try:
        await asyncio.wait({watcher, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not waiter.done():
        waiter.cancel()
        raise errors.RetryLater("The client disconnected.")  # nobody reads this answer
    outcome: Outcome | None = waiter.result()
    if outcome is None:
        state.jobs.hand_off(job)
        raise errors.RetryLater(
            f"The image is still being generated (job {job.id}). Retry the same request: it will attach to "
            "this job and will not be charged again.",
            retry_after=0.5,
        )
    return outcome


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def deliver(request: Request, spec: ImageJob, outcome: Outcome) -> JobResult:
    settings = _state(request).settings
    return await build_result(
        spec,
        outcome,
        http=_state(request).http,
        max_bytes=settings.max_image_bytes,
        timeout=settings.download_timeout,
    )


def result_headers(result: JobResult) -> dict[str, str]:
    headers = {"x-upstream-task-ids": ",".join(result.task_ids)}
    if result.credits is not None:
        headers["x-upstream-credits"] = str(result.credits)
    return headers


async def list_models(request: Request) -> Response:
    data = [model_object(model_id, owner) for model_id, owner in _state(request).router.ids()]
    return JSONResponse({"object": "list", "data": data})


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    route = _state(request).router.resolve(model_id)
    return JSONResponse(model_object(model_id, route.provider))


def model_object(model_id: str, owner: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


async def healthz(request: Request) -> Response:
    state = _state(request)
    upstreams: dict[str, dict[str, object]] = {}
    for name, pacers in state.pacers.items():
        live = list(pacers.stats().values())  # per credential; only totals leave the process
        totals: dict[str, object] = {"keys": len(live)}
        for field in ("queued_calls", "watched_tasks", "requests", "rate_limited"):
            totals[field] = sum(int(stats.get(field, 0)) for stats in live)
        totals["latency"] = pacers.latency()  # what was learned per latency class (pooled across keys)
        upstreams[name] = totals
    return JSONResponse({"status": "ok", "jobs_running": state.jobs.live_jobs(), "upstreams": upstreams})
