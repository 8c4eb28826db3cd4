"""`POST /v1/images/generations` and the answer every image request shares (`answer`): attach to or start
the job, hold the request, deliver the paid images in OpenAI's shape. Knows no provider."""

from __future__ import annotations

import copy
import functools
import json

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..jobs.job import Job, credential_id
from ..media.results import build_result
from ..openai.render import render_images
from ..openai.request import parse_image_request
from ..state import state_of
from ..types import ImageResult, ImageSpec, Operation, Outcome
from ..untrusted import printable, public
from . import inbound, respond_async, streaming
from .holding import hold


async def generations(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    settings = state.settings
    raw = await inbound.read_body(request, settings.max_body_bytes, settings.body_timeout)
    body = await inbound.parse_json_off_loop(raw, credential_id(key), state.workers)
    spec = parse_spec(request, body, "generate", form=False)
    return await answer(request, spec, key)


def parse_spec(request: Request, body: object, operation: Operation, *, form: bool, mask: bool = False) -> ImageSpec:
    """The request's spec; `mask` when an edit carries a mask (it may route a model elsewhere)."""
    state = state_of(request)
    settings = state.settings
    deployment = request.path_params.get("deployment")
    if deployment and isinstance(body, dict) and not body.get("model"):
        body = {**body, "model": deployment}  # Azure-style path: the deployment names the model
    return parse_image_request(
        body,
        operation=operation,
        resolve=functools.partial(state.router.resolve, mask=mask),
        default_model=settings.default_model,
        response_format_override=settings.default_response_format,
        form=form,
    )


async def answer(request: Request, spec: ImageSpec, key: str) -> Response:
    """Attach to or start the job, hold the request up to its budget (or answer 202 at once when the client
    prefers to look the job up later), and deliver."""
    state = state_of(request)
    asked = state.jobs.now()
    job, attached = await state.jobs.find_or_start(
        spec,
        key,
        idempotency_key=request.headers.get("idempotency-key") or None,
        retry_count=inbound.retry_count(request),
    )
    headers = {"x-shim-job": job.id, "x-shim-attached": "true" if attached else "false"}
    if spec.stream:
        return streaming.respond(request, spec, job, headers)
    if respond_async.prefers_async(request):
        state.jobs.keep_for_lookup(job)
        return respond_async.accepted(job, headers)
    try:
        outcome = await hold(request, job)
    except errors.ShimError as exc:
        raise own_copy(exc, headers) from exc
    return await deliver(request, spec, job, outcome, key, headers, asked_at=asked)


def own_copy(exc: errors.ShimError, headers: dict[str, str]) -> errors.ShimError:
    """The job's error with this answer's headers: the job's exception is shared by every request of it."""
    error = copy.copy(exc)
    error.headers = {**exc.headers, **headers}
    return error


async def deliver(
    request: Request, spec: ImageSpec, job: Job, outcome: Outcome, key: str, headers: dict[str, str], *, asked_at: float
) -> Response:
    """A finished job's answer: its images as the client asked, in OpenAI's shape; the job is marked delivered
    once the answer is sent (`asked_at`: when this request arrived, on the registry's clock)."""
    state = state_of(request)
    try:
        result = await build_result(spec, outcome, downloader=state.downloader, owner=job.credential)
    except errors.ShimError as exc:
        raise own_copy(exc, headers) from exc
    headers = {**headers, **result_headers(result, key)}
    if outcome.failures:  # a partial failure: every paid image is returned, and the rest is explained
        headers["x-shim-partial-failure"] = printable("; ".join(f.message for f in outcome.failures), 1000)
    # Megabytes of base64 are serialised in the worker pool: the event loop keeps the pacer's sends on time.
    body = await state.workers.run(job.credential, json_bytes, render_images(spec, result))
    return Response(
        body,
        media_type="application/json",
        headers=headers,
        background=BackgroundTask(state.jobs.mark_delivered, job, asked_at=asked_at),
    )


def json_bytes(content: object) -> bytes:
    """The compact JSON Starlette's JSONResponse would write (UTF-8, no NaN)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def result_headers(result: ImageResult, key: str) -> dict[str, str]:
    """The upstream's task ids and credits as headers: redacted and printable (they are upstream data)."""
    headers = {"x-upstream-task-ids": ",".join(public(task, key, 100) for task in result.task_ids)}
    if result.credits is not None:
        headers["x-upstream-credits"] = str(result.credits)
    return headers
