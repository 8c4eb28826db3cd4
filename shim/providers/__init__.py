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


def url_strings(value: object) -> tuple[str, ...]:
    """The URL strings of a foreign payload's list (a lone string counts as one; anything else is dropped)."""
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        return tuple(u for u in value if isinstance(u, str) and u)
    return ()
