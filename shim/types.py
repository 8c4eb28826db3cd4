"""The shared vocabulary: values that cross module boundaries (frozen dataclasses, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TaskStatus = Literal["processing", "completed", "failed"]
Operation = Literal["generate", "edit", "variation"]
ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]


@dataclass(frozen=True, slots=True)
class Task:
    """One upstream task as last seen: provider-neutral.

    `error_code` is the upstream's own code as a string ("80002", "TIMEOUT"); `credits` is what the
    upstream says it charged, when it says so.
    """

    id: str
    status: TaskStatus
    image_urls: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    credits: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status != "processing"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a public model name goes: a provider, the upstream model id, default parameters."""

    public_id: str
    provider: str
    upstream_model: str
    defaults: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One client intent, validated and provider-neutral (the OpenAI request after parsing).

    `size` is the OpenAI-side size string as given ("1024x1024", "16:9", "auto") or None.
    `extra` carries provider-native pass-through fields (resolution, ...).
    """

    operation: Operation
    route: Route
    prompt: str
    n: int = 1
    size: str | None = None
    quality: str | None = None
    response_format: ResponseFormat = "b64_json"
    output_format: OutputFormat = "png"
    output_compression: int | None = None
    background: str | None = None
    moderation: str | None = None
    style: str | None = None
    user: str | None = None
    image_urls: tuple[str, ...] = ()
    mask_url: str | None = None
    resolution: str | None = None
    stream: bool = False
    extra: tuple[tuple[str, object], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Image:
    """One delivered image: the upstream URL, and the bytes when they were downloaded."""

    url: str
    b64_json: str | None = None


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a finished job hands the renderer: every paid image, plus what the upstream reported."""

    images: tuple[Image, ...]
    size: str | None
    quality: str | None
    background: str | None
    output_format: str
    task_ids: tuple[str, ...]
    credits: int | None = None
    created: int = 0
