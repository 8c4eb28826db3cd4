"""OpenAI's images requests, pure: a JSON (or multipart form) body in, a validated `ImageSpec` out, or an
InvalidRequest naming the field. What an upstream can take is its provider's to check."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .. import errors
from ..sizes import size_problem
from ..types import ImageSpec, Operation, OutputFormat, ResponseFormat, Route

#: OpenAI's longest prompt (gpt-image-1's 32,000 characters); an upstream's own cap is its codec's to apply.
MAX_PROMPT = 32000
MAX_N = 10

QUALITIES = ("auto", "low", "medium", "high", "standard", "hd", "xhigh", "max")
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("auto", "opaque", "transparent")
MODERATIONS = ("auto", "low")
STYLES = ("vivid", "natural")
RESOLUTIONS = ("1k", "2k", "4k")


def _fail(message: str, param: str | None, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class _Fields:
    """Typed, named access to a JSON object; every problem is an InvalidRequest naming the field."""

    def __init__(self, body: Mapping[str, Any], *, form: bool) -> None:
        self.body = body
        self.form = form  # multipart: every value arrives as a string

    def _raw(self, name: str) -> Any:
        value = self.body.get(name)
        return None if value is None or (self.form and value == "") else value

    def string(self, name: str, choices: tuple[str, ...] | None = None, *, lower: bool = False) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise _fail(
                f"Invalid type for '{name}': expected a string, but got {_type_name(value)} instead.",
                name,
                "invalid_type",
            )
        if lower:
            value = value.lower()
        if choices is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise _fail(f"Invalid value for '{name}': {value!r}. Supported values are: {allowed}.", name)
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self._raw(name)
        if value is None:
            return None
        if self.form and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _fail(
                    f"Invalid type for '{name}': expected an integer, got {value!r}.", name, "invalid_type"
                ) from None
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(
                f"Invalid type for '{name}': expected an integer, but got {_type_name(value)} instead.",
                name,
                "invalid_type",
            )
        if not low <= value <= high:
            raise _fail(f"Invalid value for '{name}': {value}. Must be between {low} and {high}.", name)
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._raw(name)
        if value is None:
            return None
        if self.form and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise _fail(
                f"Invalid type for '{name}': expected a boolean, but got {_type_name(value)} instead.",
                name,
                "invalid_type",
            )
        return value

    def url_list(self, name: str, limit: int) -> tuple[str, ...]:
        value = self._raw(name)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(f"Invalid type for '{name}': expected an array of URL strings.", name, "invalid_type")
        if len(value) > limit:
            raise _fail(f"Invalid value for '{name}': at most {limit} entries are accepted.", name)
        for url in value:
            check_public_url(url, name)
        return tuple(value)


def check_public_url(url: str, param: str) -> None:
    lowered = url.strip().lower()
    if not lowered.startswith(("http://", "https://")) or len(url) > 4096:
        raise _fail(
            f"Invalid value for '{param}': image URLs must be public http(s) URLs "
            "(the upstream rejects data: URIs; upload the file through /v1/images/edits instead).",
            param,
        )


#: Fields only OpenAI's GPT image models take, and values of shared fields that only they accept ("auto",
#: "low"... qualities; size "auto"). A request carrying one comes from a client written for GPT image
#: models, which read b64_json only, so it is answered b64_json when it names no response_format.
GPT_IMAGE_FIELDS = ("output_format", "output_compression", "background", "moderation")
GPT_IMAGE_VALUES: dict[str, tuple[str, ...]] = {
    "quality": ("auto", "low", "medium", "high", "xhigh", "max"),
    "size": ("auto",),
}


def is_gpt_image(model_id: str) -> bool:
    """OpenAI's GPT image ids (gpt-image-*, chatgpt-image-*), which answer b64_json and report usage."""
    return model_id.startswith(("gpt-image-", "chatgpt-image-"))


def default_response_format(model_id: str, override: str | None) -> str:
    """OpenAI's behaviour: GPT image models answer b64_json, the legacy DALL-E ids answer url."""
    if override:
        return override
    return "b64_json" if is_gpt_image(model_id) else "url"


def parse_image_request(
    body: object,
    *,
    operation: Operation,
    resolve: Callable[[str], Route],
    default_model: str,
    response_format_override: str | None = None,
    form: bool = False,
) -> ImageSpec:
    """Validate an OpenAI images request body and build the provider-neutral spec.

    `resolve` maps a public model id to its Route (raising ModelNotFound). `form=True` for multipart
    bodies, where every value is a string. Raises InvalidRequest with `param` naming the field.
    """
    if not isinstance(body, Mapping):
        raise _fail("The request body must be a JSON object.", None, "invalid_json")
    fields = _Fields(body, form=form)
    model_id = fields.string("model") or default_model
    route = resolve(model_id)
    defaults = dict(route.defaults)

    def chosen(name: str, choices: tuple[str, ...] | None = None) -> str | None:
        """The client's value (validated), else the model's configured default."""
        return fields.string(name, choices, lower=choices is not None) or _str(defaults.get(name))

    for name, choices in (("safety_identifier", None), ("input_fidelity", ("high", "low"))):
        fields.string(name, choices, lower=True)  # validated; no upstream has them
    fields.integer("partial_images", 0, 3)
    mask_url = fields.string("mask_url")
    if mask_url is not None:
        check_public_url(mask_url, "mask_url")
    return ImageSpec(
        operation=operation,
        route=route,
        prompt=_prompt(fields, operation),
        n=fields.integer("n", 1, MAX_N) or 1,
        size=_size(chosen("size")),
        quality=chosen("quality", QUALITIES),
        response_format=_response_format(fields, chosen, model_id, response_format_override),
        output_format=_output_format(chosen("output_format")),
        output_compression=fields.integer("output_compression", 0, 100),
        background=chosen("background", BACKGROUNDS),
        moderation=chosen("moderation", MODERATIONS),
        style=fields.string("style", STYLES, lower=True),
        user=fields.string("user"),
        image_urls=fields.url_list("image_urls", 16),
        mask_url=mask_url,
        resolution=chosen("resolution", RESOLUTIONS),
        stream=bool(fields.boolean("stream")),
    )


def _prompt(fields: _Fields, operation: Operation) -> str:
    prompt = fields.string("prompt")
    if prompt is None and operation == "variation":
        prompt = ""
    if prompt is None or (operation != "variation" and not prompt.strip()):
        raise _fail("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if len(prompt) > MAX_PROMPT:
        raise errors.PromptTooLong(len(prompt), MAX_PROMPT)
    return prompt


def _size(size: str | None) -> str | None:
    if size is None:
        return None
    size = size.strip().lower() if "x" in size.lower() else size.strip()
    problem = size_problem(size)
    if problem:
        raise _fail(problem, "size")
    return size


def _output_format(output_format: str | None) -> OutputFormat:
    output_format = (output_format or "png").lower()
    output_format = "jpeg" if output_format == "jpg" else output_format
    if output_format not in OUTPUT_FORMATS:
        raise _fail(
            f"Invalid value for 'output_format': {output_format!r}. Supported values are: 'png', 'jpeg', 'webp'.",
            "output_format",
        )
    return output_format  # type: ignore[return-value]


def _response_format(
    fields: _Fields, chosen: Callable[[str], str | None], model_id: str, override: str | None
) -> ResponseFormat:
    """The client's, else the model's configured one, else b64_json for a body written for GPT image models,
    else SHIM_DEFAULT_RESPONSE_FORMAT, else OpenAI's per-id default."""
    value = fields.string("response_format", RESPONSE_FORMATS) or chosen("response_format")
    if value is None and _written_for_gpt_image(fields):
        value = "b64_json"
    return value or default_response_format(model_id, override)  # type: ignore[return-value]


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _written_for_gpt_image(fields: _Fields) -> bool:
    """Whether the body itself (not a configured default) uses a GPT-image-only field or value."""
    if any(fields._raw(name) is not None for name in GPT_IMAGE_FIELDS):
        return True
    return any(
        isinstance(value, str) and value.strip().lower() in values
        for value, values in ((fields._raw(name), values) for name, values in GPT_IMAGE_VALUES.items())
    )
