"""`POST /v1/images/edits` and `/v1/images/variations`: read the inputs (multipart files, or JSON with image
URLs), check the fields, the model's abilities and every file before anything is stored or spent, publish the
files through the media store, then answer exactly as generations do (`images.answer`)."""

from __future__ import annotations

import asyncio
import dataclasses

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..config import Settings
from ..jobs.job import credential_id
from ..media.base import MediaStore, no_public_url
from ..media.checks import Checked, check_inputs
from ..openai.edit_inputs import Inputs, inputs_from_json, inputs_from_parts
from ..state import ShimState, state_of
from ..types import ImageSpec, Operation
from ..workers import FairPool
from . import images, inbound

#: The prompt of every variation (OpenAI's endpoint takes none); the README documents it.
VARIATION_PROMPT = (
    "Create a variation of this image: same subject, composition and style, with natural small differences."
)
VARIATION_MODEL = "dall-e-2"  # OpenAI's default for variations
EDIT_MODEL = "dall-e-2"  # OpenAI's default for edits: classic inpainting, so a masked edit's fallback
MAX_IMAGES = 16
_PLACEHOLDER = "https://media.invalid/{}"


async def edits(request: Request) -> Response:
    return await _respond(request, "edit")


async def variations(request: Request) -> Response:
    return await _respond(request, "variation")


async def _respond(request: Request, operation: Operation) -> Response:
    key = inbound.credential(request)
    state = state_of(request)
    owner = credential_id(key)
    inputs = await read_inputs(request, state.settings, owner, state.workers)
    spec = _checked_spec(request, state, inputs, operation)
    # A key the upstream just rejected stores nothing (its uploads would only fill the store).
    state.jobs.refuse_if_rejected(spec.route.provider, owner)
    max_pixels = state.settings.max_image_pixels
    checked, mask = await state.workers.run(owner, check_inputs, inputs.images, inputs.mask, max_pixels)
    urls = await asyncio.gather(*(_publish(state.media, item, owner) for item in checked))
    mask_url = None if mask is None else await _publish(state.media, mask, owner)
    return await images.answer(request, dataclasses.replace(spec, image_urls=tuple(urls), mask_url=mask_url), key)


def _checked_spec(request: Request, state: ShimState, inputs: Inputs, operation: Operation) -> ImageSpec:
    """The request's spec on placeholder URLs, checked against the model (masks, counts...), or a 400."""
    fields = dict(inputs.fields)
    if operation == "variation":
        if len(inputs.images) > 1:
            raise _invalid("A variation takes exactly one 'image'.", "image")
        if inputs.mask is not None:
            raise _invalid("Variations take no 'mask'.", "mask")
        fields["prompt"] = VARIATION_PROMPT
        fields["model"] = fields.get("model") or VARIATION_MODEL
    if not inputs.images:
        raise _invalid("Missing required parameter: 'image'.", "image", "missing_required_parameter")
    if len(inputs.images) > MAX_IMAGES:
        raise _invalid(f"At most {MAX_IMAGES} images are accepted.", "image")
    uploading = any(isinstance(item, bytes) for item in (*inputs.images, inputs.mask))
    if uploading and not state.media.publishes:
        raise no_public_url()
    fields["image_urls"] = [_PLACEHOLDER.format(i) for i in range(len(inputs.images))]
    fields["mask_url"] = None if inputs.mask is None else _PLACEHOLDER.format("mask")
    masked = inputs.mask is not None
    if masked and not fields.get("model"):
        fields["model"] = _masked_default(state)
    spec = images.parse_spec(request, fields, operation, form=inputs.form, mask=masked)
    state.jobs.check(spec)
    return spec


def _masked_default(state: ShimState) -> str:
    """The model of a masked edit that names none: SHIM_DEFAULT_MODEL when its channel takes masks, else
    OpenAI's default edit model, dall-e-2, whose masked edits go to the channel that does."""
    default = state.settings.default_model
    try:
        route = state.router.resolve(default, mask=True)
    except errors.ModelNotFound:
        return EDIT_MODEL
    model = state.jobs.model_spec(route)
    return default if model is not None and model.mask else EDIT_MODEL


async def _publish(store: MediaStore, item: Checked | str, owner: str) -> str:
    """The URL the upstream fetches: a URL the client gave, or its upload stored in the media store."""
    if isinstance(item, str):
        return item
    return await store.put(item.data, item.content_type, item.ext, owner=owner)


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


async def read_inputs(request: Request, settings: Settings, owner: str, workers: FairPool) -> Inputs:
    """The request's inputs, from multipart or JSON (see `inbound.read_form_or_json`)."""
    expected = "multipart/form-data with the image files, or application/json with image URLs"
    parts, parsed = await inbound.read_form_or_json(request, settings, owner, workers, expected=expected)
    return inputs_from_parts(parts) if parts is not None else inputs_from_json(parsed)
