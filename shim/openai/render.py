"""OpenAI's images answers, pure: the response body of a finished image job, and the one place every error
gets its OpenAI shape (`render_error`)."""

from __future__ import annotations

import math
import time
from typing import Any

from .. import errors
from ..types import ImageResult, ImageSpec
from ..untrusted import printable
from .request import is_gpt_image


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


def render_images(job: ImageSpec, result: ImageResult) -> dict[str, Any]:
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
