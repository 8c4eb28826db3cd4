"""OpenAI's Videos API wire format, pure: `POST /v1/videos` bodies (multipart, as the SDKs always send, or JSON)
to a `VideoSpec` and its input_reference, the list query, and the `video`, list and deletion objects.

Fields: `prompt` (required), `model` (default sora-2), `seconds` (a string, "4"; an integer in JSON too;
default 4), `size` (WxH, default 720x1280; a ratio such as 16:9 is taken as well), `input_reference` (a file,
`{"image_url": ...}` or its multipart form `input_reference[image_url]`), and reAPI's own `resolution`.
What an upstream can take is its provider's to check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .. import errors
from ..sizes import parse_pixels, parse_ratio
from ..types import Route, VideoSpec, VideoView
from .edit_inputs import Input, json_image, text_field
from .multipart import Part
from .request import _Fields, _prompt

DEFAULT_MODEL = "sora-2"  # OpenAI's default
DEFAULT_SECONDS = 4
DEFAULT_SIZE = "720x1280"
#: OpenAI's longest value: 20 s (an extension); the prompt cap is its image models' (`request.MAX_PROMPT`).
MAX_SECONDS = 20
MAX_SIDE = 4096
VARIANTS = ("video", "thumbnail", "spritesheet")
REFERENCE = "input_reference"
LIST_LIMIT = (1, 100, 20)  # lowest, highest, default


def _fail(message: str, param: str | None, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


def inputs_from_parts(parts: list[Part]) -> tuple[dict[str, Any], Input | None]:
    """A multipart create: its text fields, and the input_reference (a file's bytes, or a URL)."""
    fields: dict[str, Any] = {}
    reference: Input | None = None
    for part in parts:
        if part.name in (REFERENCE, f"{REFERENCE}[image_url]"):
            reference = part.data if part.is_file else json_image(text_field(part), REFERENCE)
        elif part.name == f"{REFERENCE}[file_id]":
            raise _file_id()
        elif part.is_file:
            raise _fail(
                f"Unexpected file in field '{part.name}': the reference image goes in '{REFERENCE}'.", part.name
            )
        else:
            fields[part.name] = text_field(part)
    return fields, reference


def inputs_from_json(body: object) -> tuple[dict[str, Any], Input | None]:
    """A JSON create: its fields, and the input_reference (`{"image_url": ...}` or a URL string)."""
    if not isinstance(body, dict):
        raise _fail("The request body must be a JSON object.", None, "invalid_json")
    fields = dict(body)
    value = fields.pop(REFERENCE, None)
    if isinstance(value, Mapping) and value.get("file_id") is not None and value.get("image_url") is None:
        raise _file_id()
    return fields, None if value is None else json_image(value, REFERENCE)


def _file_id() -> errors.InvalidRequest:
    return _fail("File ids are not supported here: send the image file, or 'image_url'.", REFERENCE)


def parse_video_request(
    body: Mapping[str, Any], *, resolve: Callable[[str], Route], form: bool, reference_url: str | None = None
) -> VideoSpec:
    """Validate the fields of a create; `resolve` maps a video model id to its Route (raising ModelNotFound).
    Raises InvalidRequest naming the field."""
    fields = _Fields(body, form=form)
    prompt = _prompt(fields, "generate")
    route = resolve(fields.string("model") or DEFAULT_MODEL)
    seconds = _seconds(body.get("seconds"), form)
    return VideoSpec(
        route=route,
        prompt=prompt,
        seconds=seconds,
        size=_size(fields.string("size")),
        resolution=fields.string("resolution", lower=True),
        reference_url=reference_url,
    )


def _seconds(value: object, form: bool) -> int:
    """OpenAI's `seconds` is a string ("4"); a JSON integer is taken too."""
    if value is None or (form and value == ""):
        return DEFAULT_SECONDS
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 3:
        number = int(text)
    elif isinstance(text, int) and not isinstance(text, bool):
        number = text
    else:
        raise _fail(
            f"Invalid value for 'seconds': {value!r}. Expected a whole number of seconds, such as '4'.", "seconds"
        )
    if not 1 <= number <= MAX_SECONDS:
        raise _fail(f"Invalid value for 'seconds': {number}. Must be between 1 and {MAX_SECONDS}.", "seconds")
    return number


def _size(size: str | None) -> str:
    if size is None:
        return DEFAULT_SIZE
    size = size.strip().lower()
    pixels = parse_pixels(size)
    if pixels is not None and max(pixels) <= MAX_SIDE and min(pixels) >= 16:
        return size
    ratio = parse_ratio(size)
    if ratio is not None and max(ratio) / min(ratio) <= 4:
        return size
    raise _fail(
        f"Invalid value for 'size': {size!r}. Use width x height (720x1280, 1280x720, 1024x1792, 1792x1024; "
        f"sides up to {MAX_SIDE}) or an aspect ratio such as 16:9.",
        "size",
    )


def parse_remix(body: object, *, form: bool) -> str:
    """The prompt of `POST /v1/videos/{id}/remix`."""
    if not isinstance(body, Mapping):
        raise _fail("The request body must be a JSON object.", None, "invalid_json")
    return _prompt(_Fields(body, form=form), "generate")


def parse_list_query(query: Mapping[str, str]) -> tuple[str | None, int, str]:
    """`after`, `limit` (1-100, default 20) and `order` (asc | desc, default desc) of `GET /v1/videos`."""
    low, high, default = LIST_LIMIT
    raw = query.get("limit", "").strip()
    if not raw:
        limit = default
    elif raw.isascii() and raw.isdigit() and low <= int(raw) <= high:
        limit = int(raw)
    else:
        raise _fail(f"Invalid value for 'limit': {raw!r}. Must be an integer between {low} and {high}.", "limit")
    order = query.get("order", "desc").strip().lower() or "desc"
    if order not in ("asc", "desc"):
        raise _fail(f"Invalid value for 'order': {order!r}. Supported values are: 'asc', 'desc'.", "order")
    return query.get("after") or None, limit, order


def parse_variant(query: Mapping[str, str]) -> str:
    variant = query.get("variant", "video").strip().lower() or "video"
    if variant not in VARIANTS:
        raise _fail(
            f"Invalid value for 'variant': {variant!r}. Supported values are: {', '.join(map(repr, VARIANTS))}.",
            "variant",
        )
    return variant


def render_video(view: VideoView) -> dict[str, Any]:
    """OpenAI's `video` object."""
    return {
        "id": view.id,
        "object": "video",
        "model": view.model,
        "status": view.status,
        "progress": view.progress,
        "created_at": view.created_at,
        "completed_at": view.completed_at,
        "expires_at": view.expires_at,
        "seconds": str(view.seconds),
        "size": view.size,
        "prompt": view.prompt,
        "error": None if view.error is None else {"code": view.error[0], "message": view.error[1]},
        "remixed_from_video_id": view.remixed_from,
    }


def render_list(views: list[VideoView], *, has_more: bool) -> dict[str, Any]:
    """A page of OpenAI's cursor list (the SDKs page on `has_more` and `last_id`)."""
    return {
        "object": "list",
        "data": [render_video(view) for view in views],
        "first_id": views[0].id if views else None,
        "last_id": views[-1].id if views else None,
        "has_more": has_more,
    }


def render_deleted(video_id: str) -> dict[str, Any]:
    return {"id": video_id, "object": "video.deleted", "deleted": True}
