"""What the app's lifespan builds and every endpoint reads: the process's runtime objects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from .config import Settings
from .events import Events
from .jobs.registry import Jobs
from .jobs.videos import Videos
from .media.base import MediaStore
from .media.results import Downloader
from .pacing.pacers import Pacers
from .routing import Router
from .workers import FairPool


@dataclass
class ShimState:
    settings: Settings
    router: Router
    pacers: Mapping[str, Pacers]
    jobs: Jobs
    workers: FairPool
    downloader: Downloader
    media: MediaStore
    events: Events
    videos: Videos
    #: name -> a check that says whether that part can take traffic (None: yes; else why not): /readyz.
    readiness: dict[str, Callable[[], Awaitable[str | None]]] = field(default_factory=dict)


def state_of(request: Request) -> ShimState:
    state: ShimState = request.app.state.shim
    return state
