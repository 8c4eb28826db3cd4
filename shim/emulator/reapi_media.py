"""The reAPI emulator's CDN: result PNGs, MP4s and last frames; no auth, cached 7 days, Range-aware.

    GET /media/tasks/{hex}/{i}.png        image i of a completed image task
    GET /media/tasks/{hex}/0.mp4          the video of a completed video task
    GET /media/tasks/{hex}/last_frame.png its last frame (models whose output has `last_frame_url`)

Range (RFC 9110 section 14, ours: the documents say nothing about the CDN): one `bytes=` range answers 206
with `Content-Range`; an unsatisfiable or invalid one 416 with `Content-Range: bytes */length`; several
ranges, an unparsable header, or an `If-Range` other than the current ETag get the whole file (200), as the
RFC allows. Anything not yet completed, or not of that kind, is 404 code 20404.
"""

from __future__ import annotations

import hashlib
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .images import render_png
from .reapi_catalog import ReapiError
from .reapi_state import ReapiEmulator
from .videos import render_last_frame, render_mp4

CACHE_CONTROL = "public, max-age=604800"  # N "Result URLs stay valid for 7 days"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)


class Unsatisfiable(Exception):
    """The requested range selects no byte of the representation."""


def byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte a `Range` header asks for, or None to send the whole file.

    Raises `Unsatisfiable` for a range past the end, an empty suffix, or last < first.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None  # several ranges, another unit, or garbage: ignored
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0 or length == 0:
            raise Unsatisfiable
        return max(0, length - suffix), length - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else length - 1
    if last < first or first >= length:
        raise Unsatisfiable
    return first, min(last, length - 1)


def ranged_response(request: Request, data: bytes, media_type: str) -> Response:
    """`data` whole (200) or the slice the request's `Range` selects (206), with ETag and Accept-Ranges."""
    etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
    headers = {"Accept-Ranges": "bytes", "Cache-Control": CACHE_CONTROL, "ETag": etag}
    if_range = request.headers.get("if-range")
    header = request.headers.get("range") if if_range is None or if_range.strip() == etag else None
    try:
        selected = byte_range(header, len(data))
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{len(data)}"
        return Response(b"", status_code=416, headers=headers)
    if selected is None:
        return Response(data, media_type=media_type, headers=headers)
    first, last = selected
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return Response(data[first : last + 1], status_code=206, media_type=media_type, headers=headers)


def media_routes(emulator: ReapiEmulator) -> list[Route]:
    """The CDN routes over `emulator`'s completed tasks."""

    async def image(request: Request) -> Response:
        cell = emulator.media_cell(request.path_params["hex_id"], request.path_params["index"])
        if cell is None:
            raise _not_found()
        return ranged_response(request, await run_in_threadpool(render_png, *cell), "image/png")

    async def video(request: Request) -> Response:
        cell = emulator.video_cell(request.path_params["hex_id"], request.path_params["index"])
        if cell is None:
            raise _not_found()
        return ranged_response(request, await run_in_threadpool(render_mp4, *cell), "video/mp4")

    async def last_frame(request: Request) -> Response:
        cell = emulator.last_frame_cell(request.path_params["hex_id"])
        if cell is None:
            raise _not_found()
        return ranged_response(request, await run_in_threadpool(render_last_frame, *cell), "image/png")

    return [
        Route("/media/tasks/{hex_id}/{index:int}.png", image, methods=["GET"]),
        Route("/media/tasks/{hex_id}/{index:int}.mp4", video, methods=["GET"]),
        Route("/media/tasks/{hex_id}/last_frame.png", last_frame, methods=["GET"]),
    ]


def _not_found() -> ReapiError:
    return ReapiError(404, 20404, "media not found")
