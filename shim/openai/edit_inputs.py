"""The inputs of an OpenAI edit or variation, pure: multipart parts or a JSON body in, `Inputs` out (the
scalar fields, the images and the mask, each an uploaded file's bytes or an image URL passed through).

OpenAI's JSON edits (`images: [{"image_url"}]`, `mask: {"image_url"}`) and reAPI-style `image_urls` /
`mask_url` are both read; `data:` URLs are decoded and treated as uploads (upstreams reject them).
"""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import errors
from .multipart import Part, header_params
from .request import check_public_url

MAX_TEXT_BYTES = 256 << 10
IMAGE_FIELDS = frozenset({"image", "image[]", "images", "images[]", "image_urls", "image_urls[]"})
MASK_FIELDS = frozenset({"mask", "mask_url"})

Input = bytes | str  # an uploaded file, or an image URL passed through


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the client sent: the scalar fields, the images and the mask (bytes or URL)."""

    fields: dict[str, Any]
    images: tuple[Input, ...]
    mask: Input | None
    form: bool


def inputs_from_parts(parts: list[Part]) -> Inputs:
    fields: dict[str, Any] = {}
    images: list[Input] = []
    mask: Input | None = None
    for part in parts:
        if part.name in IMAGE_FIELDS:
            images.append(part.data if part.is_file else _url(text_field(part), "image"))
        elif part.name in MASK_FIELDS:
            mask = part.data if part.is_file else _url(text_field(part), "mask")
        elif part.is_file:
            raise _invalid(f"Unexpected file in field '{part.name}': images go in 'image' or 'image[]'.", part.name)
        else:
            fields[part.name] = text_field(part)
    return Inputs(fields, tuple(images), mask, form=True)


def inputs_from_json(body: object) -> Inputs:
    """OpenAI's JSON edits (`images: [{"image_url"}]`, `mask: {"image_url"}`) or `image_urls` / `mask_url`.

    `data:` URLs are decoded and treated as uploads (the upstream rejects them).
    """
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.", None, "invalid_json")
    fields = dict(body)
    images: list[Input] = []
    for name in ("images", "image_urls", "image"):
        value = fields.pop(name, None)
        entries = value if isinstance(value, list) else [] if value is None else [value]
        images += [json_image(entry, "image") for entry in entries]
    mask_value = fields.pop("mask", None)
    mask_url = fields.pop("mask_url", None)
    mask_value = mask_value if mask_value is not None else mask_url
    mask = None if mask_value is None else json_image(mask_value, "mask")
    return Inputs(fields, tuple(images), mask, form=False)


def json_image(entry: object, param: str) -> Input:
    """One JSON image: a URL string or `{"image_url": ...}`; a `data:` URL is decoded (an upload)."""
    if isinstance(entry, Mapping):
        if entry.get("file_id") is not None and entry.get("image_url") is None:
            raise _invalid("File ids are not supported here: pass 'image_url' (an http(s) or data: URL).", param)
        entry = entry.get("image_url")
    if not isinstance(entry, str):
        raise _invalid(
            f"Invalid '{param}': expected image URL strings or objects with 'image_url'.",
            param,
            "invalid_type",
        )
    if entry.startswith("data:"):
        return _data_url(entry, param)
    return _url(entry, param)


def _data_url(url: str, param: str) -> bytes:
    head, comma, payload = url.partition(",")
    if not comma or not head.endswith(";base64"):
        raise _invalid(f"Invalid '{param}': a data: URL must be base64 (data:image/png;base64,...).", param)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"Invalid '{param}': the data: URL is not valid base64.", param) from None


def _url(text: str, param: str) -> str:
    url = text.strip()
    check_public_url(url, param)
    return url


def text_field(part: Part) -> str:
    """A multipart text field's value: at most MAX_TEXT_BYTES, decoded by its charset (UTF-8 by default)."""
    if len(part.data) > MAX_TEXT_BYTES:
        raise _invalid(f"Field '{part.name}' is longer than {MAX_TEXT_BYTES} bytes.", part.name)
    charset = header_params(part.content_type or "").get("charset", "utf-8")
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return part.data.decode(charset)
    except UnicodeDecodeError:
        raise _invalid(f"Field '{part.name}' is not valid {charset} text.", part.name) from None
