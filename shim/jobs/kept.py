"""The registry's index of jobs by id: a TLRU cache that reports every job it drops on its own (its time to
use passed, or the cache was full), so that a paid result nobody collected is counted, not silently lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachetools import TLRUCache

from .job import Job


class KeptJobs(TLRUCache[str, Job]):
    """`on_drop(job)` runs for each job the cache expires or evicts; an explicit `pop`/`del` is not a drop."""

    def __init__(self, *args: Any, on_drop: Callable[[Job], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_drop = on_drop

    def expire(self, time: float | None = None) -> list[tuple[str, Job]]:
        expired = list(super().expire(time))
        for _, job in expired:
            self._on_drop(job)
        return expired

    def popitem(self) -> tuple[str, Job]:
        key, job = super().popitem()
        self._on_drop(job)
        return key, job
