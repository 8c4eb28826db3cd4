"""The provider seam: what every upstream adapter offers the gateway, and what it is built with.

A provider is a pure codec (check and plan a job's submissions, read tasks, map errors) plus two I/O calls,
`submit` and `poll`. Each adapter declares its own door: its default settings (read as SHIM_<NAME>_*), its
model catalog and its aliases (the public ids it answers for), whether it passes ids it does not know to its
upstream, and which capabilities a SHIM_CONFIG declaration may give a model; nothing outside `providers/`
names a provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from ..config import UpstreamSettings
from ..errors import ShimError, SubmitOutcomeUnknown
from ..events import Events
from ..types import LatencyPrior, Spec, Submission, Task


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one upstream model accepts. The defaults are the conservative profile (reAPI's cheap channel): one
    image per task, ratio sizes, up to 16 input images, no quality, background, moderation or mask; an id an
    adapter has no entry for (a pass-through id) is planned with it.

    `pixel_sizes`: a WxH size is sent as given; `synchronous`: the task is usually done at submit (its
    latency prior is near zero); `latency`: a declared end-to-end range (SHIM_CONFIG), None for the
    adapter's own table.
    """

    id: str
    max_batch: int = 1
    quality: bool = False
    background: bool = False
    moderation: bool = False
    mask: bool = False
    max_image_urls: int = 16
    pixel_sizes: bool = False
    synchronous: bool = False
    latency: LatencyPrior | None = None


#: The latency prior of a model declared synchronous: done at submit, or within seconds.
SYNCHRONOUS_PRIOR = LatencyPrior(0.0, 2.0)
#: What a SHIM_CONFIG declaration may set, beyond `latency`: ModelSpec's capability fields.
CAPABILITIES = (
    "max_batch",
    "pixel_sizes",
    "quality",
    "background",
    "moderation",
    "mask",
    "max_image_urls",
    "synchronous",
)


def spec_of(catalog: Mapping[str, ModelSpec], model: str) -> ModelSpec:
    """The catalog's entry of an upstream id, else the conservative profile (a pass-through id: the upstream
    validates it)."""
    return catalog.get(model) or ModelSpec(model)


@dataclass(frozen=True, slots=True)
class Alias:
    """A public id an adapter answers for (an OpenAI model name): the upstream model it means, the default
    parameters it implies, and the model a masked edit of it goes to when its own takes no mask."""

    upstream_model: str
    defaults: tuple[tuple[str, str], ...] = ()
    masked_model: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What an adapter is built with; `events` takes what it wants to report (`upstream_request`...)."""

    http: httpx.AsyncClient
    settings: UpstreamSettings
    timeout: float
    #: Upstream models SHIM_CONFIG declares for this adapter (they join, or replace, its catalog's entries).
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    events: Events = field(default_factory=Events)


class Provider(Protocol):
    name: str

    # Read-only: the gateway never assigns them, so an adapter may hold any Mapping (a plain dict) here.
    @property
    def catalog(self) -> Mapping[str, ModelSpec]: ...

    @property
    def priors(self) -> Mapping[str, LatencyPrior]: ...

    @property
    def rate_limit(self) -> float: ...

    @property
    def max_in_flight(self) -> int | None:
        """How many tasks one key may have running upstream at once; None for no cap."""
        ...

    def check(self, spec: Spec) -> None:
        """Pure and cheap: raise InvalidRequest for what the model cannot do (before anything is stored)."""
        ...

    def plan(self, spec: Spec) -> list[Submission]:
        """Pure: the upstream submissions for a job (checked as `check` does)."""
        ...

    async def submit(self, submission: Submission, key: str) -> Task:
        """Create one task. Raises UpstreamRateLimited when certainly nothing was created."""
        ...

    async def poll(self, task_id: str, key: str) -> Task:
        """Read a task. Raises UpstreamTransient for failures that are safe to repeat."""
        ...

    def failure(self, task: Task) -> ShimError:
        """The client-facing error for a task that ended failed."""
        ...


class ProviderFactory(Protocol):
    """Builds a provider at start-up; what it declares is read before that (settings, routing, SHIM_CONFIG).

    An adapter class is one: the class object carries the declarations and calling it builds the provider.
    """

    @property
    def defaults(self) -> UpstreamSettings: ...

    @property
    def catalog(self) -> Mapping[str, ModelSpec]: ...

    @property
    def aliases(self) -> Mapping[str, Alias]: ...

    @property
    def alias_patterns(self) -> tuple[tuple[re.Pattern[str], Alias], ...]: ...

    @property
    def passthrough(self) -> bool:
        """Whether `<name>/<any id>` may reach the upstream for an id not in the catalog (planned with the
        conservative profile; the upstream validates the id)."""
        ...

    @property
    def declarable(self) -> frozenset[str]:
        """The CAPABILITIES a SHIM_CONFIG declaration may set away from the conservative profile for this
        adapter (those its codec gives an effect); `latency` is always declarable."""
        ...

    # Video models and the public ids for them: an adapter without videos declares none (HttpAdapter's
    # defaults); routing reads them apart from the image ones, so that the two are never confused.
    @property
    def video_catalog(self) -> Mapping[str, ModelSpec]: ...

    @property
    def video_aliases(self) -> Mapping[str, Alias]: ...

    @property
    def video_alias_patterns(self) -> tuple[tuple[re.Pattern[str], Alias], ...]: ...

    def __call__(self, context: ProviderContext, /) -> Provider: ...


#: Result URLs longer than this are not URLs we hand to a client.
MAX_URL_LENGTH = 4096
#: An upstream task id longer than this cannot be ours to poll.
MAX_TASK_ID = 1024


def url_strings(value: object) -> tuple[str, ...]:
    """The usable result URLs of a foreign payload's list (a lone string counts as one): http(s) URLs of
    visible ASCII with a host, at most MAX_URL_LENGTH long. Anything else is dropped: a client must never be
    handed a `javascript:` or `file:` URL, or a header-breaking one, as its image."""
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else []
    return tuple(u for u in items if isinstance(u, str) and _usable_url(u))


def _usable_url(url: str) -> bool:
    if not 0 < len(url) <= MAX_URL_LENGTH or not url.isascii() or not url.isprintable() or " " in url:
        return False
    scheme, sep, rest = url.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https") and bool(rest.split("/", 1)[0])


def submitted_id(value: object) -> str:
    """The task id in a submit's answer, as we keep it (a string of at most MAX_TASK_ID characters). An id we
    cannot keep means we cannot know the task: its outcome is unknown (never resubmitted)."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not 0 < len(text) <= MAX_TASK_ID:
        raise SubmitOutcomeUnknown(
            "The upstream accepted the submit but answered with an unusable task id; a task may have been "
            "created and charged, so the shim does not resubmit it."
        )
    return text
