"""OpenAI's images wire format, pure: request bodies in (validated), response and error bodies out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import errors
from .sizes import size_problem
from .types import ImageJob, JobResult, Operation, Route
from .untrusted import printable

#: OpenAI's longest prompt (gpt-image-1's 32,000 characters); an upstream's own cap is its codec's to apply.
MAX_PROMPT = 32000
MAX_N = 10

QUALITIES = ("auto", "low", "medium", "high", "standard", "hd", "xhigh", "max")
#: OpenAI quality -> the upstream's tier. standard/hd are DALL-E 3's words; xhigh/max ask for the best.
QUALITY_MAP = {"standard": "medium", "hd": "high", "xhigh": "high", "max": "high"}
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


def prompt_too_long(length: int, limit: int, model: str | None = None) -> errors.InvalidRequest:
    """OpenAI's error for a prompt over a limit (the wire's own, or a model's)."""
    where = f" for model '{model}'" if model else ""
    return _fail(
        f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}{where}, "
        f"but got a string with length {length} instead.",
        "prompt",
        "string_above_max_length",
    )


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


def usage() -> dict[str, Any]:
    """OpenAI's `usage` object for GPT image models. Neither upstream reports tokens, so every count is 0
    (the upstream's own cost, where reported, is in `x-upstream-credits`)."""
    return {
        "input_tokens": 0,
        "input_tokens_details": {"text_tokens": 0, "image_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"text_tokens": 0, "image_tokens": 0},
        "total_tokens": 0,
    }


def parse_image_request(
    body: object,
    *,
    operation: Operation,
    resolve: Callable[[str], Route],
    default_model: str,
    response_format_override: str | None = None,
    form: bool = False,
) -> ImageJob:
    """Validate an OpenAI images request body and build the provider-neutral job.

    `resolve` maps a public model id to its Route (raising ModelNotFound). `form=True` for multipart
    bodies, where every value is a string. Raises InvalidRequest with `param` naming the field.
    """
    if not isinstance(body, Mapping):
        raise _fail("The request body must be a JSON object.", None, "invalid_json")
    fields = _Fields(body, form=form)

    model_id = fields.string("model") or default_model
    route = resolve(model_id)
    defaults = dict(route.defaults)

    prompt = fields.string("prompt")
    if prompt is None and operation == "variation":
        prompt = ""
    if prompt is None or (operation != "variation" and not prompt.strip()):
        raise _fail("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if len(prompt) > MAX_PROMPT:
        raise prompt_too_long(len(prompt), MAX_PROMPT)

    n = fields.integer("n", 1, MAX_N) or 1
    size = fields.string("size") or _str(defaults.get("size"))
    if size is not None:
        size = size.strip().lower() if "x" in size.lower() else size.strip()
        problem = size_problem(size)
        if problem:
            raise _fail(problem, "size")
    quality = fields.string("quality", QUALITIES, lower=True) or _str(defaults.get("quality"))
    response_format = fields.string("response_format", RESPONSE_FORMATS) or _str(defaults.get("response_format"))
    if response_format is None and _written_for_gpt_image(fields):
        response_format = "b64_json"
    output_format = fields.string("output_format", None, lower=True) or _str(defaults.get("output_format"))
    if output_format == "jpg":
        output_format = "jpeg"
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise _fail(
            f"Invalid value for 'output_format': {output_format!r}. Supported values are: 'png', 'jpeg', 'webp'.",
            "output_format",
        )
    compression = fields.integer("output_compression", 0, 100)
    background = fields.string("background", BACKGROUNDS, lower=True) or _str(defaults.get("background"))
    moderation = fields.string("moderation", MODERATIONS, lower=True) or _str(defaults.get("moderation"))
    style = fields.string("style", STYLES, lower=True)
    user = fields.string("user")
    fields.string("safety_identifier")
    fields.integer("partial_images", 0, 3)
    fields.string("input_fidelity", ("high", "low"), lower=True)
    stream = bool(fields.boolean("stream"))
    resolution = fields.string("resolution", RESOLUTIONS, lower=True) or _str(defaults.get("resolution"))
    image_urls = fields.url_list("image_urls", 16)
    mask_url = fields.string("mask_url")
    if mask_url is not None:
        check_public_url(mask_url, "mask_url")

    return ImageJob(
        operation=operation,
        route=route,
        prompt=prompt,
        n=n,
        size=size,
        quality=QUALITY_MAP.get(quality, quality) if quality else None,
        response_format=response_format  # type: ignore[arg-type]
        or default_response_format(model_id, response_format_override),
        output_format=output_format or "png",  # type: ignore[arg-type]
        output_compression=compression,
        background=background,
        moderation=moderation,
        style=style,
        user=user,
        image_urls=image_urls,
        mask_url=mask_url,
        resolution=resolution,
        stream=stream,
    )


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


def render_images(job: ImageJob, result: JobResult) -> dict[str, Any]:
    """The OpenAI images response for a finished job."""
    data = []
    for image in result.images:
        if job.response_format == "b64_json":
            data.append({"b64_json": image.b64_json})
        else:
            data.append({"url": image.url})
    body: dict[str, Any] = {"created": result.created or int(time.time()), "data": data}
    for key, value in (
        ("size", result.size),
        ("quality", result.quality),
        ("output_format", result.output_format),
        ("background", result.background),
    ):
        if value is not None:
            body[key] = value
    if is_gpt_image(job.route.public_id):  # clients of these ids read it (Dify: usage.total_tokens)
        body["usage"] = usage()
    return body


def render_error(error: errors.ShimError, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for any ShimError: the one place errors get their OpenAI shape."""
    message = error.message
    if error.upstream_request_id and error.upstream_request_id not in message:
        message = f"{message} (upstream request_id: {error.upstream_request_id})"
    body = {"error": {"message": message, "type": error.type, "param": error.param, "code": error.code}}
    headers = {name: printable(value, 1000) for name, value in error.headers.items()}
    headers["x-request-id"] = request_id
    if error.upstream_request_id:
        headers["x-upstream-request-id"] = printable(error.upstream_request_id, 200)
    if error.should_retry is not None:
        headers["x-should-retry"] = "true" if error.should_retry else "false"
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after)))
        headers["retry-after-ms"] = str(max(1, int(error.retry_after * 1000)))
    return error.status, body, headers
