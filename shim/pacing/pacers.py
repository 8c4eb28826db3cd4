"""The Pacers of one upstream: one Pacer per credential hash (created on first use, forgotten when idle), and
the one LatencyLearner and the one window Slack they share (latency belongs to the upstream's models and
arrival jitter to the path to it, not to a key)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from .budget import Budget
from .learner import LatencyLearner
from .pacer import Pacer
from .window import Slack, SlidingWindow


class Pacers:
    """See the module docstring. `pacer_kwargs` are every Pacer's; a `learner` among them is shared as is.
    `budget(credential, window)`, when given, is each credential's budget (shared by replicas, say)."""

    def __init__(self, *, budget: Callable[[str, SlidingWindow], Budget] | None = None, **pacer_kwargs: Any) -> None:
        first = Pacer(**pacer_kwargs)  # bad settings fail at start-up, not at the first request
        self._budget = budget
        self.learner: LatencyLearner = first.learner  # the given one, or one built as every Pacer builds it
        pacer_kwargs.pop("learner", None)
        self.slack = Slack()
        self._kwargs = pacer_kwargs
        self._pacers: dict[str, Pacer] = {}
        self._sweep_at = 1024

    def get(self, credential_id: str) -> Pacer:
        """The Pacer of this credential (created on first use). `credential_id` is already a hash."""
        pacer = self._pacers.get(credential_id)
        if pacer is None:
            if len(self._pacers) >= self._sweep_at:
                self._sweep()
            shared = functools.partial(self._budget, credential_id) if self._budget is not None else None
            pacer = Pacer(**self._kwargs, learner=self.learner, slack=self.slack, budget=shared)
            self._pacers[credential_id] = pacer
        return pacer

    def latency(self) -> dict[str, dict[str, float | int | bool]]:
        """What the learner has learned, by latency class (see `LatencyLearner.estimates`)."""
        return self.learner.estimates()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each live Pacer's stats, by credential hash."""
        return {credential: pacer.stats() for credential, pacer in self._pacers.items()}

    def _sweep(self) -> None:
        """Forget idle Pacers (a fresh one behaves the same), so that many passing keys cost no memory."""
        for key in [k for k, pacer in self._pacers.items() if pacer.idle()]:
            del self._pacers[key]
        self._sweep_at = max(1024, 2 * len(self._pacers))

    async def aclose(self) -> None:
        pacers, self._pacers = list(self._pacers.values()), {}
        await asyncio.gather(*(p.aclose() for p in pacers))
