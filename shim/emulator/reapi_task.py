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

TaskStatus = Literal["processing", "completed", "failed"]


class TaskReply(TypedDict):
    id: str
    model: str
    status: TaskStatus
    created_at: int
    output: dict[str, list[str]] | None
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
    spec: ImageSpec
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
    image_urls: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    fetched_inputs: list[dict[str, Any]] = field(default_factory=list)
    inputs_pending: bool = False
    output_ratio: str = "1:1"
    poll500_left: int = 0

    @property
    def hex(self) -> str:
        return self.id.removeprefix("task_")

    @property
    def pixels(self) -> tuple[int, int]:
        return dimensions(self.output_ratio, self.spec.resolution)

    def reply(self) -> TaskReply:
        done = self.status == "completed"
        return {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "created_at": self.created_at,
            "output": {"image_urls": list(self.image_urls)} if done else None,
            "error": dict(self.error) if self.error and self.status == "failed" else None,
        }

    def describe(self) -> dict[str, Any]:
        """The task for `/_emulator/stats`: everything but the raw key."""
        width, height = self.pixels
        return {
            "id": self.id,
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
            "image_urls": list(self.image_urls),
            "error": self.error,
            "fetched_inputs": list(self.fetched_inputs),
            "width": width,
            "height": height,
        }


def fingerprint(key: str) -> str:
    """The first 12 hex chars of sha256(key): how keys appear anywhere outside the process."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]
