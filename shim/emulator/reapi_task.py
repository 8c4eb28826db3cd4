"""One emulated reAPI task: its live record, the poll reply it renders, and the inputs it downloaded.

Also `fingerprint(key)`, the only form in which a key leaves the process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from .images import ImageInfo
from .reapi_catalog import ImageSpec, dimensions
from .reapi_markers import Markers
from .reapi_video_catalog import MODELS as VIDEO_MODELS
from .reapi_video_catalog import VideoSpec, video_pixels

TaskStatus = Literal["processing", "completed", "failed"]
FETCH_FAILED = "provider failed: could not fetch reference image"
MediaKind = Literal["image", "video"]


class TaskReply(TypedDict):
    id: str
    model: str
    status: TaskStatus
    created_at: int
    output: dict[str, Any] | None
    error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class FetchedInput:
    """The outcome of downloading one `image_urls` / `mask_url` entry."""

    url: str
    status: int | None  # HTTP status, None when the connection failed
    sha256: str | None = None
    info: ImageInfo | None = None

    def as_record(self) -> dict[str, Any]:
        info = self.info
        return {
            "url": self.url,
            "status": self.status,
            "sha256": self.sha256,
            "width": info.width if info else None,
            "height": info.height if info else None,
        }


@dataclass(slots=True, eq=False)
class TaskRecord:
    """One emulated task; mutable because it is the task's live state."""

    id: str
    key: str
    model: str
    body: dict[str, Any]
    spec: ImageSpec | VideoSpec
    markers: Markers
    created: float
    created_at: int
    ready_at: float
    base_url: str
    credits_charged: int
    status: TaskStatus = "processing"
    first_seen_terminal_at: float | None = None
    polls: int = 0
    refunded: bool = False
    output: dict[str, Any] | None = None  # filled on completion
    error: dict[str, Any] | None = None
    fetched_inputs: list[dict[str, Any]] = field(default_factory=list)
    inputs_pending: bool = False
    output_ratio: str = "1:1"
    poll500_left: int = 0

    @property
    def hex(self) -> str:
        return self.id.removeprefix("task_")

    @property
    def kind(self) -> MediaKind:
        return "video" if isinstance(self.spec, VideoSpec) else "image"

    @property
    def pixels(self) -> tuple[int, int]:
        if isinstance(self.spec, VideoSpec):
            return video_pixels(self.spec.ratio, self.spec.resolution)
        return dimensions(self.output_ratio, self.spec.resolution)

    @property
    def input_urls(self) -> list[str]:
        """The reference URLs the worker downloads: `image_urls`, then an image task's `mask_url`."""
        mask = self.spec.mask_url if isinstance(self.spec, ImageSpec) else None
        return [*self.spec.image_urls, *([mask] if mask is not None else [])]

    def result(self) -> dict[str, Any]:
        """The `output` of this task once completed: result URLs on this emulator's CDN routes."""
        media = f"{self.base_url}/media/tasks/{self.hex}"
        if isinstance(self.spec, ImageSpec):
            return {"image_urls": [f"{media}/{i}.png" for i in range(self.spec.n)]}
        output: dict[str, Any] = {"video_urls": [f"{media}/0.mp4"]}
        if VIDEO_MODELS[self.spec.model].last_frame:
            output["last_frame_url"] = f"{media}/last_frame.png"
        return output

    def reply(self) -> TaskReply:
        return {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "created_at": self.created_at,
            "output": dict(self.output) if self.status == "completed" and self.output is not None else None,
            "error": dict(self.error) if self.error and self.status == "failed" else None,
        }

    def describe(self) -> dict[str, Any]:
        """The task for `/_emulator/stats`: everything but the raw key."""
        width, height = self.pixels
        return {
            "id": self.id,
            "kind": self.kind,
            "key_fingerprint": fingerprint(self.key),
            "model": self.model,
            "body": self.body,
            "status": self.status,
            "created": self.created,
            "created_at": self.created_at,
            "ready_at": self.ready_at,
            "first_seen_terminal_at": self.first_seen_terminal_at,
            "polls": self.polls,
            "credits_charged": self.credits_charged,
            "refunded": self.refunded,
            "image_urls": list((self.output or {}).get("image_urls", [])),
            "output": self.output,
            "error": self.error,
            "fetched_inputs": list(self.fetched_inputs),
            "width": width,
            "height": height,
        }


def fingerprint(key: str) -> str:
    """The first 12 hex chars of sha256(key): how keys appear anywhere outside the process."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def input_problem(spec: ImageSpec | VideoSpec, fetched: list[FetchedInput]) -> str | None:
    """Why the downloaded references cannot be used, or None.

    The docs say a bad mask is a 400 "from upstream"; the emulator only knows after downloading it, so a bad
    mask ends the task failed with 80003 (refunded) instead.
    """
    if any(item.info is None or item.status is None or not 200 <= item.status < 300 for item in fetched):
        return FETCH_FAILED
    if not isinstance(spec, ImageSpec) or spec.mask_url is None:
        return None
    first, mask = fetched[0].info, fetched[-1].info
    assert first is not None and mask is not None
    if (mask.width, mask.height) != (first.width, first.height):
        return (
            f"provider failed: mask is {mask.width}x{mask.height} but the first image is "
            f"{first.width}x{first.height}; they must share dimensions"
        )
    if not mask.has_alpha:
        return "provider failed: mask has no alpha channel"
    if mask.fully_opaque:
        return "provider failed: mask is fully opaque; it needs transparent pixels where the model paints"
    return None
