"""The shared vocabulary: values that cross package boundaries (frozen dataclasses, no behaviour).

A job is one client intent of some media kind: its spec (`ImageSpec`, `VideoSpec`) says what was asked for,
in provider-neutral terms; a provider plans it into `Submission`s (upstream tasks to create), each of which
becomes a `Task` the pacer polls; the finished tasks are the job's `Outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .errors import ShimError

MediaKind = Literal["image", "video"]
TaskStatus = Literal["processing", "completed", "failed"]
Operation = Literal["generate", "edit", "variation"]
ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]


@dataclass(frozen=True, slots=True)
class Task:
    """One upstream task as last seen: provider-neutral.

    `urls` are its results, of the `media` kind it was created for; `extras` are further named results (a
    video's last frame). `error_code` is the upstream's own code as a string ("80002", "TIMEOUT"); `credits`
    is what the upstream says it charged, when it says so.
    """

    id: str
    status: TaskStatus
    urls: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    credits: int | None = None
    media: MediaKind = "image"
    extras: tuple[tuple[str, str], ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status != "processing"


@dataclass(frozen=True, slots=True)
class LatencyPrior:
    """The documented end-to-end latency range of a class of tasks, in seconds: a hint, not a fact."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high or self.high <= 0:
            raise ValueError(f"need 0 <= low <= high and high > 0, got {self.low}, {self.high}")

    def scaled(self, factor: float) -> LatencyPrior:
        return LatencyPrior(self.low * factor, self.high * factor)

    @property
    def median(self) -> float:
        return (self.low + self.high) / 2


@dataclass(frozen=True, slots=True)
class Route:
    """Where a public model name goes: a provider, the upstream model id, default parameters."""

    public_id: str
    provider: str
    upstream_model: str
    defaults: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image intent, validated and provider-neutral (the OpenAI request after parsing).

    `size` and `quality` are the OpenAI-side values as given ("1024x1024", "16:9", "auto"; "hd") or None:
    each provider maps them to what its upstream takes.
    """

    kind: ClassVar[MediaKind] = "image"
    #: Whether uploads stay past the job (a video's reference serves its remixes); an image's are freed at once.
    inputs_outlive_job: ClassVar[bool] = False

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

    @property
    def input_urls(self) -> tuple[str, ...]:
        """Every URL the upstream will fetch for this job (uploads among them)."""
        return (*self.image_urls, *((self.mask_url,) if self.mask_url else ()))


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """One video intent, validated and provider-neutral (OpenAI's `POST /v1/videos` after parsing).

    `seconds` is the clip length asked for; `size` OpenAI's WxH as given (or a ratio); `resolution` an
    upstream tier that overrides the one the size implies; `reference_url` the input_reference as the upstream
    will fetch it (an upload already published); `remixed_from` the id of the video this one remixes.
    """

    kind: ClassVar[MediaKind] = "video"
    inputs_outlive_job: ClassVar[bool] = True

    route: Route
    prompt: str
    seconds: int = 4
    size: str = "720x1280"
    resolution: str | None = None
    reference_url: str | None = None
    remixed_from: str | None = None

    @property
    def input_urls(self) -> tuple[str, ...]:
        """Every URL the upstream will fetch for this job (an upload among them)."""
        return (self.reference_url,) if self.reference_url else ()


#: Every kind of job spec.
Spec = ImageSpec | VideoSpec


@dataclass(frozen=True, slots=True)
class Submission:
    """One upstream task to create: its media kind and wire body, how many results it yields, its latency
    class, and how to describe its results (size, quality, background, a clip's duration as the upstream will
    make them). `fallbacks` are the submissions to try in turn when the upstream refuses this one as invalid
    naming `refit_param` (a validation refusal creates nothing): a video's other durations, nearest first."""

    body: Mapping[str, Any]
    count: int
    latency_class: str
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    media: MediaKind = "image"
    duration: int | None = None
    fallbacks: tuple[Submission, ...] = ()
    refit_param: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished job paid for: the tasks that completed, and the failures of those that did not."""

    tasks: tuple[tuple[Submission, Task], ...]
    failures: tuple[ShimError, ...] = ()


@dataclass(frozen=True, slots=True)
class Image:
    """One delivered image: the upstream URL, and the bytes when they were downloaded."""

    url: str
    b64_json: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a finished image job hands the renderer: every paid image, plus what the upstream reported."""

    images: tuple[Image, ...]
    size: str | None
    quality: str | None
    background: str | None
    output_format: str
    task_ids: tuple[str, ...]
    credits: int | None = None
    created: int = 0


VideoStatus = Literal["queued", "in_progress", "completed", "failed"]


@dataclass(frozen=True, slots=True)
class VideoView:
    """A video resource as a client sees it now (what OpenAI's `video` object says), provider-neutral.

    `prompt` is None when this process was not given it (a video created before a restart); `error` is
    (code, message) of a failed one.
    """

    id: str
    model: str
    status: VideoStatus
    progress: int
    created_at: int
    seconds: int
    size: str
    prompt: str | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    error: tuple[str, str] | None = None
    remixed_from: str | None = None
