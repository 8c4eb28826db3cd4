"""What the app's lifespan builds and every endpoint reads: the process's runtime objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from .config import Settings
from .jobs.registry import Jobs
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


def state_of(request: Request) -> ShimState:
    state: ShimState = request.app.state.shim
    return state
