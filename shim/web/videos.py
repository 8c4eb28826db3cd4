"""`/v1/videos`: OpenAI's Videos API (create, retrieve, list, delete, content, remix) over the video jobs of
`jobs.videos`. A create reads multipart (what the SDKs always send) or JSON, checks every field, the model and
the reference image before anything is stored or spent, publishes an uploaded reference through the media
store (as edits do), and answers once the upstream took the submit (a refusal that created nothing is this
request's error). Content is relayed from the upstream's URL, never held whole. Knows no provider."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import errors
from ..jobs.job import credential_id
from ..jobs.videos import Video
from ..media.checks import check_image
from ..media.streams import range_of, relay
from ..openai import videos as wire
from ..state import ShimState, state_of
from ..types import VideoSpec
from . import inbound
from .holding import hold_budget

#: How long a create waits for its submit's answer before it answers `queued` (the job goes on).
SUBMIT_WAIT = 30.0
_ID = re.compile(r"^video_[0-9a-f]{24}$")
_PLACEHOLDER = "https://media.invalid/input_reference"
VARIANT_TYPES = {"video": "video/mp4", "thumbnail": "image/png"}
#: The result each variant is, among what the upstream offers (N: some video models add `last_frame_url`).
VARIANT_RESULTS = {"thumbnail": "last_frame_url"}


async def create(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    owner = credential_id(key)
    fields, reference, form = await _read(request, state, owner)
    placeholder = _PLACEHOLDER if reference is not None else None
    spec = wire.parse_video_request(fields, resolve=state.router.resolve_video, form=form, reference_url=placeholder)
    state.jobs.check(spec)
    state.jobs.refuse_if_rejected(spec.route.provider, owner)  # a rejected key stores no upload
    expires = None
    if isinstance(reference, bytes):
        if not state.media.publishes:
            raise _no_public_url()
        checked = await state.workers.run(
            owner, check_image, reference, wire.REFERENCE, state.settings.max_image_pixels
        )
        reference = await state.media.put(checked.data, checked.content_type, checked.ext, owner=owner)
        expires = state.media.expiry(reference)
        if expires is None:  # (not expected of a URL just handed out) a repeat's has at least half its life
            expires = time.time() + state.settings.media_ttl_seconds / 2
    spec = dataclasses.replace(spec, reference_url=reference)
    return await _start(request, state, spec, key, reference_expires=expires)


async def remix(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    original = _owned(request, state, key)
    fields, reference, form = await _read(request, state, credential_id(key))
    if reference is not None:
        raise errors.InvalidRequest("A remix takes the original's reference: send only 'prompt'.", param=wire.REFERENCE)
    spec = state.videos.remix_spec(original, wire.parse_remix(fields, form=form))
    state.jobs.check(spec)
    return await _start(request, state, spec, key, reference_expires=original.reference_expires)


async def _start(request: Request, state: ShimState, spec: VideoSpec, key: str, **kw: Any) -> Response:
    budget = hold_budget(request)
    video, attached = await state.videos.create(
        spec,
        key,
        idempotency_key=request.headers.get("idempotency-key") or None,
        retry_count=inbound.retry_count(request),
        wait=SUBMIT_WAIT if budget is None else min(budget, SUBMIT_WAIT),
        **kw,
    )
    return _answer(state, video, key, {"x-shim-attached": "true" if attached else "false"})


async def retrieve(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    return _answer(state, _owned(request, state, key), key)


def _answer(state: ShimState, video: Video, key: str, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    view = state.videos.view(video, key)
    after = state.videos.poll_after(video)
    if after is not None:  # openai-python's poll helper waits this long between retrieves
        headers["openai-poll-after-ms"] = str(int(after * 1000))
    return JSONResponse(wire.render_video(view), headers=headers)


async def list_videos(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    after, limit, order = wire.parse_list_query(request.query_params)
    videos = state.videos.list(credential_id(key))
    if order == "desc":
        videos.reverse()
    if after is not None:
        position = next((i for i, v in enumerate(videos) if v.id == after), None)
        if position is None:
            raise errors.InvalidRequest(f"No video '{after}' to list after.", param="after", code="invalid_value")
        videos = videos[position + 1 :]
    page = videos[:limit]
    views = [state.videos.view(v, key) for v in page]
    return JSONResponse(wire.render_list(views, has_more=len(videos) > limit))


async def delete(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    video = _owned(request, state, key)
    unused = state.videos.delete(video)
    await state.media.release(unused, owner=video.credential)
    return JSONResponse(wire.render_deleted(video.id))


async def content(request: Request) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    variant = wire.parse_variant(request.query_params)
    video = _owned(request, state, key)
    settings = state.settings
    urls, extras = await state.videos.results(video, key, timeout=settings.upstream_timeout)
    status = state.videos.view(video, key).status
    if status != "completed":
        raise errors.NotFound(f"Video {video.id} is {status}: its content is there once it is completed.")
    url = urls[0] if variant == "video" and urls else extras.get(VARIANT_RESULTS.get(variant, ""))
    if url is None:
        what = "its video" if variant == "video" else f"a {variant} for this model"
        raise errors.NotFound(f"The upstream offers no {variant} of video {video.id} ({what} is not available).")
    relayed = await relay(
        state.downloader.http,
        url,
        range_header=range_of(request.headers.get("range")),
        media_type=VARIANT_TYPES[variant],
        max_bytes=settings.max_video_bytes if variant == "video" else settings.max_image_bytes,
        timeout=settings.download_timeout,
    )
    return StreamingResponse(relayed.body, status_code=relayed.status, headers=relayed.headers)


def _owned(request: Request, state: ShimState, key: str) -> Video:
    """The video of the path, if this key created it: another key's id is as unknown as a made-up one."""
    video_id = request.path_params["video_id"]
    video = state.videos.get(video_id, credential_id(key)) if _ID.match(video_id) else None
    if video is None:
        raise errors.NotFound(f"No video found with id '{video_id[:100]}'.", param="video_id")
    return video


async def _read(request: Request, state: ShimState, owner: str) -> tuple[dict[str, Any], Any, bool]:
    """(fields, input_reference, form) from multipart or JSON (see `inbound.read_form_or_json`)."""
    expected = "multipart/form-data (with the input_reference file, if any) or application/json"
    parts, parsed = await inbound.read_form_or_json(request, state.settings, owner, state.workers, expected=expected)
    if parts is not None:
        return (*wire.inputs_from_parts(parts), True)
    return (*wire.inputs_from_json(parsed), False)


def _no_public_url() -> errors.InvalidRequest:
    return errors.InvalidRequest(
        "An uploaded input_reference must reach the upstream as a URL, and this shim has no public address: set "
        "SHIM_PUBLIC_URL (or SHIM_S3_BUCKET), or send input_reference as {'image_url': ...}.",
        param=wire.REFERENCE,
        code="media_store_unavailable",
    )
