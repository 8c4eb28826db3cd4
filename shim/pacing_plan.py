"""When each task of a key should next be polled, and how urgent a due poll is: latency model x budget price.

The price (seconds of finished-but-unseen time a poll must be expected to save) grows with the key's load
(tasks + queued calls per budget second) and shrinks, down to a tenth, while the budget runs below its
target use: polls are frequent when the budget is plentiful and go to the likeliest-finished when scarce.
Past the estimate's range (a straggler) the model knows nothing: the documented cadence takes over, its
gaps stretched or shrunk by the price.
No I/O; the Pacer feeds in the clock readings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .pacing_latency import (
    LatencyLearner,
    LatencyModel,
    documented_cadence,
    find_prior,
    next_poll,
)
from .types import LatencyPrior

if TYPE_CHECKING:
    import asyncio

#: Polls get cheaper while less than this share of the budget is in use, down to _MIN_THRIFT x the price.
_TARGET_USE = 0.8
_MIN_THRIFT = 0.1
#: How fast (per second, per unit of use off target) polls get cheaper, and dearer again: dearer is faster.
_THRIFT_RATES = {False: 1.0, True: 10.0}
#: Planned polls of a class are re-planned when this quantile of its estimate moves by this fraction.
_REPLAN_QUANTILE = 0.25
_REPLAN_SHIFT = 0.15


@dataclass(eq=False, slots=True)
class Watch:
    """One task being polled (a mutable record, not a value): `running_at` is how many seconds after submit
    it was last seen processing, `due` when it is next to be polled."""

    task_id: str
    latency_class: str
    submitted_at: float
    deadline: float
    running_at: float = 0.0
    polls: int = 0
    due: float = 0.0
    adaptive: bool = True  # due set by the latency model (re-planned when the price moves), not a retry
    seq: int = -1  # its live heap entry; older entries are stale
    grant: asyncio.Future[None] | None = None  # what a queued poll waits on (owned by the SlotQueue)
    live: bool = True


class PollPlanner:
    """Plans polls from the (shared) learner's estimate of each latency class and the key's present price."""

    def __init__(
        self,
        *,
        learner: LatencyLearner,
        priors: Mapping[str, LatencyPrior],
        latency_scale: float,
        min_poll_interval: float,
        price_factor: float,
        per_second: float,
        load: Callable[[], int],
    ) -> None:
        self.learner = learner
        self._priors = dict(priors)
        self._scaled: dict[str, LatencyPrior] = {}
        self._scale = latency_scale
        self._min_gap = min_poll_interval * latency_scale
        self._price_factor = price_factor
        self._per_second = per_second
        self._load = load
        self._thrift = 1.0
        self._thrift_at = 0.0
        self._planned: dict[str, float] = {}  # per class: the early quantile the planned polls assume

    def price(self) -> float:
        """Seconds; never below a quarter of the closest poll gap, where a poll could hardly save more."""
        loaded = self._price_factor * self._thrift * self._load() / self._per_second
        return max(loaded, self._min_gap / 4)

    def adapt(self, now: float, used: float) -> None:
        """Cheapen polls while the budget's used share is below target, and back (up to 1) while above it."""
        elapsed = min(max(now - self._thrift_at, 0.0), 1.0)
        self._thrift_at = now
        gap = used - _TARGET_USE
        self._thrift *= math.exp(elapsed * _THRIFT_RATES[gap > 0] * gap)
        self._thrift = min(max(self._thrift, _MIN_THRIFT), 1.0)

    def plan(self, watch: Watch) -> float:
        """The next poll time of a task (clock time), never past its deadline."""
        model = self.model(watch.latency_class)
        self._planned.setdefault(watch.latency_class, model.quantile(_REPLAN_QUANTILE))
        at = next_poll(
            model,
            running_at=watch.running_at,
            first=watch.polls == 0,
            price=self.price(),
            min_gap=self._min_gap,
            cadence=self.cadence(watch.running_at),
        )
        return min(watch.submitted_at + at, watch.deadline)

    def urgency(self, watch: Watch, now: float) -> float:
        """P(finished by now | running at its last poll), plus one per ten documented poll gaps it is overdue
        (so that a poll long overdue wins whatever its odds)."""
        model = self.model(watch.latency_class)
        elapsed = now - watch.submitted_at
        seen = model.cdf(watch.running_at)
        done = (model.cdf(elapsed) - seen) / (1 - seen) if seen < 1 else 1.0
        return done + (now - watch.due) / (10 * self.cadence(elapsed))

    def overdue(self, watch: Watch, now: float) -> float:
        """How long the task may have sat finished by now (expected), or how late its fixed poll is."""
        late = now - watch.due
        if not watch.adaptive:
            return late
        model = self.model(watch.latency_class)
        return max(late, model.overdue(watch.running_at, now - watch.submitted_at))

    def observe(self, watch: Watch, done_by: float) -> bool:
        """Learn one completion; True when the class's estimate moved enough to re-plan its polls."""
        prior = self.prior(watch.latency_class)
        self.learner.observe(watch.latency_class, prior, watch.running_at, done_by)
        early = self.model(watch.latency_class).quantile(_REPLAN_QUANTILE)
        planned = self._planned.setdefault(watch.latency_class, early)
        if abs(early - planned) <= _REPLAN_SHIFT * planned:
            return False
        self._planned[watch.latency_class] = early
        return True

    def cadence(self, elapsed: float) -> float:
        """The documented gap between polls at this age of a task, scaled."""
        return self._scale * documented_cadence(elapsed / self._scale)

    def prior(self, latency_class: str) -> LatencyPrior:
        prior = self._scaled.get(latency_class)
        if prior is None:
            prior = self._scaled[latency_class] = find_prior(self._priors, latency_class).scaled(self._scale)
        return prior

    def model(self, latency_class: str) -> LatencyModel:
        return self.learner.model(latency_class, self.prior(latency_class))
