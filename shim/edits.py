"""`POST /v1/images/edits` and `/v1/images/variations`: read the inputs (multipart files, or JSON with image
URLs), check every file and the model's abilities before anything is stored or spent, publish the files
through the media store, then answer exactly as generations do (`api.answer`).

Multipart bodies are parsed by `multipart` over the size-capped body (chunked bodies included).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import contextlib
import dataclasses
import io
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from . import api, errors, inbound
from .jobs import credential_id
from .media import MediaStore, no_public_url
from .multipart import Part, header_params, parse_multipart
from .openai_wire import check_public_url
from .types import Operation
from .workers import FairPool

if TYPE_CHECKING:
    from .config import Settings

#: The prompt of every variation (OpenAI's endpoint takes none); the README documents it.
VARIATION_PROMPT = (
    "Create a variation of this image: same subject, composition and style, with natural small differences."
)
VARIATION_MODEL = "dall-e-2"  # OpenAI's default for variations
EDIT_MODEL = "dall-e-2"  # OpenAI's default for edits: classic inpainting, so a masked edit's fallback
MAX_IMAGES = 16
MAX_TEXT_BYTES = 256 << 10
#: Pillow format -> (content type, extension): the formats the upstream accepts.
FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}
IMAGE_FIELDS = frozenset({"image", "image[]", "images", "images[]", "image_urls", "image_urls[]"})
MASK_FIELDS = frozenset({"mask", "mask_url"})
_PLACEHOLDER = "https://media.invalid/{}"

Input = bytes | str  # an uploaded file, or an image URL passed through


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the client sent: the scalar fields, the images and the mask (bytes or URL)."""

    fields: dict[str, Any]
    images: tuple[Input, ...]
    mask: Input | None
    form: bool


@dataclass(frozen=True, slots=True)
class Checked:
    """A file that decoded as an accepted image."""

    data: bytes
    content_type: str
    ext: str
    size: tuple[int, int]


# --- endpoints
async def edits(request: Request) -> Response:
    return await _respond(request, "edit")


async def variations(request: Request) -> Response:
    return await _respond(request, "variation")


async def _respond(request: Request, operation: Operation) -> Response:
    key = inbound.credential(request)
    state = request.app.state.shim
    owner = credential_id(key)
    settings = state.settings
    inputs = await read_inputs(request, settings, owner, state.workers)
    fields = dict(inputs.fields)
    if operation == "variation":
        if len(inputs.images) > 1:
            raise _invalid("A variation takes exactly one 'image'.", "image")
        if inputs.mask is not None:
            raise _invalid("Variations take no 'mask'.", "mask")
        fields["prompt"] = VARIATION_PROMPT
        if not fields.get("model"):
            fields["model"] = VARIATION_MODEL
    if not inputs.images:
        raise _invalid("Missing required parameter: 'image'.", "image", "missing_required_parameter")
    if len(inputs.images) > MAX_IMAGES:
        raise _invalid(f"At most {MAX_IMAGES} images are accepted.", "image")
    store: MediaStore | None = getattr(state, "media", None)
    uploading = any(isinstance(item, bytes) for item in (*inputs.images, inputs.mask))
    if uploading and (store is None or not store.publishes):
        raise no_public_url()

    # Cheap checks first, on placeholder URLs: the fields, then what the model can do (masks...).
    fields["image_urls"] = [_PLACEHOLDER.format(i) for i in range(len(inputs.images))]
    fields["mask_url"] = None if inputs.mask is None else _PLACEHOLDER.format("mask")
    masked = inputs.mask is not None
    if masked and not fields.get("model"):
        fields["model"] = _masked_default(state)
    spec = api.parse_spec(request, fields, operation, form=inputs.form, mask=masked)
    state.providers[spec.route.provider].plan(spec)
    # A key the upstream just rejected stores nothing (its uploads would only fill the store).
    state.jobs.refuse_if_rejected(spec.route.provider, owner)
    images, mask = await state.workers.run(owner, check_inputs, inputs.images, inputs.mask, settings.max_image_pixels)

    async def publish(item: Checked | str) -> str:
        if isinstance(item, str):
            return item
        assert store is not None  # checked above: there are uploads only with a publishing store
        return await store.put(item.data, item.content_type, item.ext, owner=owner)

    urls = await asyncio.gather(*(publish(item) for item in images))
    mask_url = None if mask is None else await publish(mask)
    return await api.answer(request, dataclasses.replace(spec, image_urls=tuple(urls), mask_url=mask_url), key)


def _masked_default(state: Any) -> str:
    """The model of a masked edit that names none: SHIM_DEFAULT_MODEL when its channel takes masks, else
    OpenAI's default edit model, dall-e-2, whose masked edits go to the channel that does."""
    default: str = state.settings.default_model
    try:
        route = state.router.resolve(default, mask=True)
    except errors.ModelNotFound:
        return EDIT_MODEL
    spec = state.providers[route.provider].catalog.get(route.upstream_model)
    return default if spec is not None and spec.mask else EDIT_MODEL


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


# --- reading the request
async def read_inputs(request: Request, settings: Settings, owner: str, workers: FairPool) -> Inputs:
    """The request's inputs, from multipart (SHIM_MAX_UPLOAD_BYTES) or JSON (SHIM_MAX_BODY_BYTES, the cap of
    every JSON body: data: URLs count toward it); 413 beyond."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        body = await inbound.read_body(request, settings.max_upload_bytes, settings.body_timeout)
        return inputs_from_parts(parse_multipart(body, content_type))
    if media_type == "application/json" or media_type.endswith("+json"):
        body = await inbound.read_body(request, settings.max_body_bytes, settings.body_timeout)
        return inputs_from_json(await inbound.parse_json_off_loop(body, owner, workers))
    raise errors.UnsupportedMediaType(
        f"Unsupported Content-Type {media_type or 'none'!r}: send multipart/form-data with the image files, "
        "or application/json with image URLs.",
    )


def inputs_from_parts(parts: list[Part]) -> Inputs:
    fields: dict[str, Any] = {}
    images: list[Input] = []
    mask: Input | None = None
    for part in parts:
        if part.name in IMAGE_FIELDS:
            images.append(part.data if part.is_file else _url(_text(part), "image"))
        elif part.name in MASK_FIELDS:
            mask = part.data if part.is_file else _url(_text(part), "mask")
        elif part.is_file:
            raise _invalid(f"Unexpected file in field '{part.name}': images go in 'image' or 'image[]'.", part.name)
        else:
            fields[part.name] = _text(part)
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
        images += [_json_image(entry, "image") for entry in entries]
    mask_value = fields.pop("mask", None)
    mask_url = fields.pop("mask_url", None)
    mask_value = mask_value if mask_value is not None else mask_url
    mask = None if mask_value is None else _json_image(mask_value, "mask")
    return Inputs(fields, tuple(images), mask, form=False)


def _json_image(entry: object, param: str) -> Input:
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


def _text(part: Part) -> str:
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


# --- checking the files, before anything is spent
def check_inputs(
    images: tuple[Input, ...], mask: Input | None, max_pixels: int
) -> tuple[list[Checked | str], Checked | str | None]:
    """Decode every uploaded file (PNG, JPEG or WEBP, at most `max_pixels`); the mask must be a PNG with
    transparent pixels and the first image's size. URLs pass through unchecked (they are the upstream's to
    fetch). CPU work: run it in the worker pool."""
    checked: list[Checked | str] = [
        check_image(item, "image", max_pixels) if isinstance(item, bytes) else item for item in images
    ]
    if not isinstance(mask, bytes):
        return checked, mask
    with _opened(mask, "mask", max_pixels) as image:
        fmt, size = image.format, image.size
        alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        opaque = alpha and image.convert("RGBA").getchannel("A").getextrema()[0] == 255
    if fmt != "PNG":
        raise _invalid("The mask must be a PNG image with an alpha channel.", "mask")
    if not alpha:
        raise _invalid(
            "The mask has no alpha channel: it must be a PNG whose transparent pixels mark the area to edit.",
            "mask",
        )
    if opaque:
        raise _invalid("The mask is fully opaque: its transparent pixels must mark the area to edit.", "mask")
    first = checked[0]
    if isinstance(first, Checked) and first.size != size:
        raise _invalid(
            f"The mask is {size[0]}x{size[1]} but the first image is {first.size[0]}x{first.size[1]}: "
            "they must have the same dimensions.",
            "mask",
        )
    return checked, Checked(mask, *FORMATS["PNG"], size)


def check_image(data: bytes, param: str, max_pixels: int) -> Checked:
    with _opened(data, param, max_pixels) as image:
        return Checked(data, *FORMATS[str(image.format)], image.size)


@contextlib.contextmanager
def _opened(data: bytes, param: str, max_pixels: int) -> Iterator[Image.Image]:
    """A PNG, JPEG or WEBP image of at most `max_pixels`, verified and fully decoded, or a 400 naming `param`.
    The pixel count is read from the header, so a decompression bomb costs nothing to refuse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:  # reads the header only
                if probe.format not in FORMATS:
                    raise _invalid(
                        f"Invalid '{param}': {probe.format} is not supported; send PNG, JPEG or WEBP.",
                        param,
                    )
                width, height = probe.size
                if width * height > max_pixels:
                    raise _invalid(
                        f"Invalid '{param}': the image is {width}x{height}, more than {max_pixels} pixels.", param
                    )
                probe.verify()  # structure and checksums; the image is unusable afterwards
            image = Image.open(io.BytesIO(data))
            try:
                image.load()  # truncated pixel data shows only when decoding
            except BaseException:
                image.close()
                raise
    except errors.InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _invalid(f"Invalid '{param}': the image has too many pixels.", param) from None
    except Exception:
        raise _invalid(f"Invalid '{param}': the file is not a valid PNG, JPEG or WEBP image.", param) from None
    with image:
        yield image
