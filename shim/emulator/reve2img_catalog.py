"""The pure core of the reve2img emulator: model catalog, prices, sizes, prompt markers, request
validation, and the task record with the wire shapes built from it.

Plain data in, plain data out (no clock, no I/O). The upstream reference does not list its models (the
category pages are not in our documents), so the catalog below is our own, chosen to exercise both the
synchronous and the asynchronous paths of the API.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

ErrorName = Literal[
    "INVALID_PROMPT",
    "INVALID_MODEL",
    "INVALID_PARAMETER",
    "CONTENT_POLICY_VIOLATION",
    "INVALID_API_KEY",
    "INSUFFICIENT_CREDITS",
    "TASK_NOT_FOUND",
    "RATE_LIMITED",
    "TOO_MANY_TASKS",
    "GENERATION_FAILED",
    "SERVICE_UNAVAILABLE",
    "TIMEOUT",
]

# The error table of the reference, name -> HTTP status.
ERROR_STATUS: dict[ErrorName, int] = {
    "INVALID_PROMPT": 400,
    "INVALID_MODEL": 400,
    "INVALID_PARAMETER": 400,
    "CONTENT_POLICY_VIOLATION": 400,
    "INVALID_API_KEY": 401,
    "INSUFFICIENT_CREDITS": 402,
    "TASK_NOT_FOUND": 404,
    "RATE_LIMITED": 429,
    "TOO_MANY_TASKS": 429,
    "GENERATION_FAILED": 500,
    "SERVICE_UNAVAILABLE": 503,
    "TIMEOUT": 504,
}

# Human text for errors raised without a more specific detail, and for data.error of FAILED tasks.
ERROR_TEXT: dict[ErrorName, str] = {
    "INVALID_PROMPT": "prompt is missing or empty.",
    "INVALID_MODEL": "Unknown or missing model.",
    "INVALID_PARAMETER": "Invalid JSON, or a parameter is invalid / missing.",
    "CONTENT_POLICY_VIOLATION": "Prompt or output rejected by content moderation.",
    "INVALID_API_KEY": "Missing or invalid API key.",
    "INSUFFICIENT_CREDITS": "Not enough credits for this request.",
    "TASK_NOT_FOUND": "No task with that task_id belongs to your account.",
    "RATE_LIMITED": "Too many requests - slow down.",
    "TOO_MANY_TASKS": "Too many tasks in flight - wait for them to finish.",
    "GENERATION_FAILED": "Internal error. Safe to retry.",
    "SERVICE_UNAVAILABLE": "Upstream model temporarily unavailable.",
    "TIMEOUT": "The task timed out.",
}


class ApiError(Exception):
    """An error answer: HTTP status = `code`, `message` = the table's name, `detail` = human text."""

    def __init__(self, name: ErrorName, detail: str | None = None, *, retry_after: int | None = None) -> None:
        self.name = name
        self.status = ERROR_STATUS[name]
        self.detail = detail or ERROR_TEXT[name]
        self.retry_after = retry_after
        super().__init__(f"{self.status} {name}: {self.detail}")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model of our catalog; `latency` is (min, max) seconds before time_scale, (0, 0) if synchronous."""

    id: str
    price: int
    latency: tuple[float, float]

    @property
    def synchronous(self) -> bool:
        return self.latency == (0.0, 0.0)


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec("reve-2.0", price=12, latency=(0.0, 0.0)),
        ModelSpec("reve-2.0-fast", price=6, latency=(0.0, 0.0)),
        ModelSpec("flux-2", price=20, latency=(10.0, 20.0)),
        ModelSpec("seedream-4.0", price=15, latency=(20.0, 40.0)),
    )
}
# Ours: any "future-<x>" id is a model added after our documents (for tests of a shim that has never heard
# of it): asynchronous, priced and timed as flux-2.
FUTURE = "future-"


def model_of(model_id: object) -> ModelSpec | None:
    """The catalog's model of an id (a future one made on the fly), or None: INVALID_MODEL."""
    if not isinstance(model_id, str):
        return None
    if model_id.startswith(FUTURE) and len(model_id) > len(FUTURE):
        return ModelSpec(model_id, price=MODELS["flux-2"].price, latency=MODELS["flux-2"].latency)
    return MODELS.get(model_id)


IMAGE_URL_PRICE = 2
# Ours: the reference names image_urls but sets no count (the shim sends what the client gave).
MAX_IMAGE_URLS = 4

# Ours: the reference names aspect_ratio but lists no values or pixels. Roughly one megapixel, sides
# multiples of 16; a short list on purpose, so a shim that invents the upstream's ratios is caught.
ASPECT_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1360, 768),
    "9:16": (768, 1360),
    "4:3": (1152, 864),
    "3:4": (864, 1152),
    "3:2": (1248, 832),
    "2:3": (832, 1248),
}
DEFAULT_ASPECT_RATIO = "1:1"

FailCode = Literal["GENERATION_FAILED", "TIMEOUT", "SERVICE_UNAVAILABLE", "CONTENT_POLICY_VIOLATION"]
_FAIL_CODES: tuple[FailCode, ...] = ("GENERATION_FAILED", "TIMEOUT", "SERVICE_UNAVAILABLE")


@dataclass(frozen=True, slots=True)
class Markers:
    """Test switches found in a prompt; see the docstring of `shim.emulator.reve2img`."""

    moderated: bool = False
    fail: FailCode | None = None
    latency: float | None = None
    submit_error: ErrorName | None = None
    poll500: int = 0


_MARKER = re.compile(r"\[(moderated_output|moderated|submit500|submit503|fail|latency|poll500)(?:=([^\]]*))?\]")


def parse_markers(prompt: str) -> Markers:
    """Read the `[...]` markers of a prompt; a malformed marker value is an INVALID_PARAMETER."""
    found: dict[str, object] = {}
    for match in _MARKER.finditer(prompt):
        name, value = match.group(1), match.group(2)
        if name == "moderated":
            found["moderated"] = True
        elif name == "moderated_output":
            found["fail"] = "CONTENT_POLICY_VIOLATION"
        elif name in ("submit500", "submit503"):
            found["submit_error"] = "GENERATION_FAILED" if name == "submit500" else "SERVICE_UNAVAILABLE"
        elif name == "fail":
            if value not in _FAIL_CODES:
                raise ApiError("INVALID_PARAMETER", f"marker [fail={value}] wants one of {_FAIL_CODES}")
            found["fail"] = value
        elif name == "latency":
            found["latency"] = _number(name, value, float)
        else:
            found["poll500"] = _number(name, value, int)
    return Markers(**found)  # type: ignore[arg-type]


def _number(name: str, value: str | None, kind: type[float] | type[int]) -> float | int:
    try:
        number = kind(value or "")
    except ValueError:
        number = -1
    if not math.isfinite(number) or number < 0:
        raise ApiError("INVALID_PARAMETER", f"marker [{name}={value}] wants a number >= 0")
    return number


@dataclass(frozen=True, slots=True)
class Generation:
    """A validated POST /api/v1/generate body."""

    model: ModelSpec
    prompt: str
    aspect_ratio: str
    image_urls: tuple[str, ...]
    markers: Markers
    body: dict[str, object]

    @property
    def price(self) -> int:
        return self.model.price + IMAGE_URL_PRICE * len(self.image_urls)

    @property
    def size(self) -> tuple[int, int]:
        return ASPECT_SIZES[self.aspect_ratio]


def parse_generate(raw: bytes) -> Generation:
    """Validate a generate body in the table's order: JSON, model, prompt, other fields, markers.

    Fields we do not know (duration, resolution, ...) are accepted and ignored, as category fields of
    other models would be.
    """
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError("INVALID_PARAMETER", "Body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError("INVALID_PARAMETER", "Body must be a JSON object.")

    model_id = body.get("model")
    if model_id is not None and not isinstance(model_id, str):
        raise ApiError("INVALID_PARAMETER", "model must be a string.")
    model = model_of(model_id)
    if model is None:
        raise ApiError("INVALID_MODEL", f"Unknown or missing model: {model_id!r}.")

    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ApiError("INVALID_PARAMETER", "prompt must be a string.")
    if not prompt or not prompt.strip():  # "prompt is missing or empty"; no length limit is documented
        raise ApiError("INVALID_PROMPT")

    ratio = body.get("aspect_ratio", DEFAULT_ASPECT_RATIO)
    if ratio is None:
        ratio = DEFAULT_ASPECT_RATIO
    if not isinstance(ratio, str) or ratio not in ASPECT_SIZES:
        raise ApiError("INVALID_PARAMETER", f"aspect_ratio {ratio!r} is not one of {', '.join(ASPECT_SIZES)}.")

    return Generation(
        model=model,
        prompt=prompt,
        aspect_ratio=ratio,
        image_urls=_image_urls(body.get("image_urls")),
        markers=parse_markers(prompt),
        body=body,
    )


def _image_urls(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ApiError("INVALID_PARAMETER", "image_urls must be a list of URLs.")
    if len(value) > MAX_IMAGE_URLS:
        raise ApiError("INVALID_PARAMETER", f"image_urls accepts at most {MAX_IMAGE_URLS} URLs.")
    for url in value:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError("INVALID_PARAMETER", f"image_urls entry {url!r} is not an http(s) URL.")
    return tuple(value)


Status = Literal["IN_PROGRESS", "SUCCESS", "FAILED"]


# Mutable on purpose: a task record is the emulator's ledger entry and moves IN_PROGRESS -> SUCCESS/FAILED.
@dataclass(slots=True)
class TaskRecord:
    """One task as the emulator keeps it; `status` follows the clock once the owner settles it."""

    id: str
    key: str
    model: str
    body: dict[str, Any]
    created: float
    ready_at: float
    credits_charged: int
    size: tuple[int, int]
    base_url: str
    fate: FailCode | None = None  # the error the task will end with; None = SUCCESS
    poll500: int = 0
    status: Status = "IN_PROGRESS"
    first_seen_terminal_at: float | None = None
    polls: int = 0
    refunded: bool = False
    result_urls: list[str] = field(default_factory=list)
    error: dict[str, int | str] | None = None


def key_digest(key: str) -> str:
    """How the control endpoints show a key: the first 12 hex of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def task_data(task: TaskRecord) -> dict[str, Any]:
    """The `data` of a status answer for a task."""
    data: dict[str, Any] = {"task_id": task.id, "status": task.status}
    if task.status == "SUCCESS":
        data["consumed_credits"] = task.credits_charged
        data["response"] = {"resultUrls": list(task.result_urls)}
    elif task.status == "FAILED":
        data["error"] = dict(task.error or {})
    return data
