"""`stream: true`: the answer as Server-Sent Events, the way the OpenAI SDKs parse them.

A comment line every KEEPALIVE seconds keeps proxies from cutting an idle connection; the images come as
`image_generation.completed` (or `image_edit.completed`) events carrying b64_json; a failure is an event
with an `error` object. No `id:` lines (after one, the Python SDK chokes on the next blank line).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .. import errors
from ..jobs.job import Job
from ..media.results import build_result
from ..openai.render import render_error, usage
from ..state import state_of
from ..types import ImageSpec

KEEPALIVE = 15.0


def event_prefix(spec: ImageSpec) -> str:
    return "image_edit" if spec.operation in ("edit", "variation") else "image_generation"


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def respond(request: Request, spec: ImageSpec, job: Job, headers: dict[str, str]) -> StreamingResponse:
    state = state_of(request)
    # Streamed images always travel as base64, as OpenAI's completed events do.
    spec_b64 = dataclasses.replace(spec, response_format="b64_json")
    prefix = event_prefix(spec)
    asked = state.jobs.now()

    async def events() -> AsyncIterator[bytes]:
        yield b": waiting for the upstream task\n\n"
        try:
            while True:
                outcome = await state.jobs.wait(job, KEEPALIVE)
                if outcome is not None:
                    break
                yield b": keep-alive\n\n"
            result = await build_result(spec_b64, outcome, downloader=state.downloader, owner=job.credential)
            for image in result.images:
                yield sse(
                    {
                        "type": f"{prefix}.completed",
                        "b64_json": image.b64_json,
                        "created_at": result.created or int(time.time()),
                        "size": result.size,
                        "quality": result.quality,
                        "background": result.background,
                        "output_format": result.output_format,
                        "usage": usage(),
                    },
                    event=f"{prefix}.completed",
                )
            state.jobs.mark_delivered(job, asked_at=asked)
        except errors.ShimError as exc:
            _, body, _ = render_error(exc, request.scope.get("state", {}).get("request_id", ""))
            yield sse({"type": "error", **body}, event="error")

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )
