"""The Provider seam: what every upstream adapter offers, and the registry of adapters by name.

A provider is a pure codec (plan submissions, read tasks, map errors) plus two I/O calls, `submit` and
`poll`. Built-in adapters register in `builtin_providers()` exactly as a later one would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..errors import ShimError
from ..pacing import LatencyPrior
from ..types import ImageJob, Task


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one upstream model accepts."""

    id: str
    max_batch: int = 1
    quality: bool = False
    background: bool = False
    moderation: bool = False
    mask: bool = False
    max_image_urls: int = 16
    synchronous: bool = False


@dataclass(frozen=True, slots=True)
class Submission:
    """One upstream task to create: its wire body, how many images it yields, and how to describe them."""

    body: Mapping[str, Any]
    count: int
    latency_class: str
    size: str | None
    quality: str | None
    background: str | None


class Provider(Protocol):
    name: str
    rate_limit: float

    # Read-only: the gateway never assigns them, so an adapter may hold any Mapping (a plain dict) here.
    @property
    def catalog(self) -> Mapping[str, ModelSpec]: ...

    @property
    def priors(self) -> Mapping[str, LatencyPrior]: ...

    @property
    def max_in_flight(self) -> int | None:
        """How many tasks one key may have running upstream at once; None for no cap."""
        ...

    def plan(self, job: ImageJob) -> list[Submission]:
        """Pure: the upstream submissions for a job (raises InvalidRequest for what the model can't do)."""
        ...

    async def submit(self, body: Mapping[str, Any], key: str) -> Task:
        """Create one task. Raises UpstreamRateLimited when certainly nothing was created."""
        ...

    async def poll(self, task_id: str, key: str) -> Task:
        """Read a task. Raises UpstreamTransient for failures that are safe to repeat."""
        ...

    def failure(self, task: Task) -> ShimError:
        """The client-facing error for a task that ended failed."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What an adapter is built with."""

    http: httpx.AsyncClient
    base_url: str
    timeout: float
    rate_limit: float
    max_in_flight: int | None = None


class ProviderFactory(Protocol):
    """Builds a provider at start-up; its catalog is read before that, to validate the routing config.

    An adapter class is one: the class object carries `catalog` and calling it builds the provider.
    """

    @property
    def catalog(self) -> Mapping[str, ModelSpec]: ...

    def __call__(self, context: ProviderContext, /) -> Provider: ...


def builtin_providers() -> dict[str, ProviderFactory]:
    from .reapi import ReapiProvider

    registry: dict[str, ProviderFactory] = {"reapi": ReapiProvider}
    try:
        from .reve2img import Reve2imgProvider
    except ImportError:  # pragma: no cover - while the second adapter is absent
        return registry
    registry["reve2img"] = Reve2imgProvider
    return registry


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


def task_id_of(value: object) -> str | None:
    """An upstream's task id as we keep it (a string of at most MAX_TASK_ID characters), or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_TASK_ID else None
