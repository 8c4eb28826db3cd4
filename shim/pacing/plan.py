"""When each task of a key should next be polled, and how urgent a due poll is: latency estimate x budget price.

The price (seconds of finished-but-unseen time a poll must be expected to save) grows with the key's load
(tasks + queued calls per budget second) and shrinks, down to a tenth, while the budget runs below its
target use: polls are frequent when the budget is plentiful and go to the likeliest-finished when scarce.
A scout (see `LatencyLearner.enlist`) is also polled on a geometric schedule from early on, SCOUT_RATIO
apart, so that its completion is bracketed whatever the estimate says. Past the estimate's range (a
straggler) polls come a share of the task's age apart, never further apart than the documented cadence.
Nothing here depends on how fast the upstream was said to be. No I/O; the Pacer feeds in the clock readings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .latency import LatencyModel, documented_cadence, next_poll
from .learner import PROBE_QUANTILE, LatencyLearner

if TYPE_CHECKING:
    import asyncio

    from .window import Send

#: Polls get cheaper while less than this share of the budget is in use, down to _MIN_THRIFT x the price.
_TARGET_USE = 0.8
_MIN_THRIFT = 0.1
#: How fast (per second, per unit of use off target) polls get cheaper, and dearer again: dearer is faster.
_THRIFT_RATES = {False: 1.0, True: 10.0}
#: Two polls of one task never come closer than this share of its age (nor than `min_poll_interval`).
_GAP_SHARE = 0.04
#: A straggler is polled as if its completion were expected within this share of its age.
_STRAGGLER_SHARE = 0.25
#: A scout of a class known only from the documented table is first polled this long after submit
#: (seconds); otherwise at its estimate's _SCOUT_QUANTILE over _SCOUT_REACH (to see a speed-up): either
#: times SCOUT_RATIO to the power of the scout's phase. Then each poll SCOUT_RATIO times later than the
#: last, until the estimate's own plan comes sooner.
SCOUT_START = 0.1
SCOUT_RATIO = 1.4
_SCOUT_QUANTILE = 0.02
_SCOUT_REACH = 4.0
#: Below this price (seconds) a key has budget to spare: a trusted class may scout on it.
_IDLE_PRICE = 0.05


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
    scout: float | None = None  # its phase, when polled early too to bracket its completion (see enlist)
    probe: bool = False  # first polled early, to see a speed-up (see LatencyLearner.probe)
    seq: int = -1  # its live heap entry; older entries are stale
    started: int = 0  # its start number in its class (see LatencyLearner.start)
    grant: asyncio.Future[Send] | None = None  # what a queued poll waits on (owned by the SlotQueue)
    live: bool = True


class PollPlanner:
    """Plans polls from the (shared) learner's estimate of each latency class and the key's present price."""

    def __init__(
        self,
        *,
        learner: LatencyLearner,
        min_poll_interval: float,
        price_factor: float,
        per_second: float,
        load: Callable[[], int],
    ) -> None:
        self.learner = learner
        self._min_gap = min_poll_interval
        self._price_factor = price_factor
        self._per_second = per_second
        self._load = load
        self._thrift = 1.0
        self._thrift_at = 0.0

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

    def enlist(self, watch: Watch) -> None:
        """Decide whether a task starting to be watched scouts; `release` it when the watch ends."""
        watch.started = self.learner.start(watch.latency_class)
        watch.scout = self.learner.enlist(watch.latency_class, idle=self.price() < _IDLE_PRICE)
        watch.probe = watch.scout is None and self.learner.probe(watch.latency_class)

    def release(self, watch: Watch) -> None:
        self.learner.finish(watch.latency_class, watch.started)
        if watch.scout is not None:
            watch.scout = None
            self.learner.release(watch.latency_class)

    def plan(self, watch: Watch) -> float:
        """The next poll time of a task (clock time), never past its deadline."""
        model = self.model(watch.latency_class)
        at = next_poll(
            model,
            running_at=watch.running_at,
            first=watch.polls == 0,
            price=self.price(),
            min_gap=self.min_gap(watch.running_at),
            cadence=self.cadence(watch.running_at),
        )
        if watch.scout is not None:
            at = min(at, self._scout_poll(watch, watch.scout, model))
        elif watch.probe and watch.polls == 0:
            at = min(at, model.quantile(PROBE_QUANTILE))
        return min(watch.submitted_at + at, watch.deadline)

    def urgency(self, watch: Watch, now: float) -> float:
        """P(finished by now | running at its last poll), plus one per ten straggler poll gaps it is overdue
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

    def observe(self, watch: Watch, done_by: float) -> None:
        """Learn one completion: between the task's last "processing" poll and `done_by` (s after submit)."""
        self.learner.observe(watch.latency_class, watch.running_at, done_by, watch.started)

    def running(self, watch: Watch, age: float) -> None:
        """A poll sent `age` seconds after submit found the task still running."""
        watch.running_at = age
        self.learner.running(watch.latency_class, watch.started, age)

    def first_poll(self, watch: Watch, age: float, *, done: bool) -> None:
        """The task's first answered poll, sent `age` seconds after submit, found it `done` or not."""
        self.learner.first_poll(watch.latency_class, age, done=done)

    def min_gap(self, age: float) -> float:
        """The closest two polls of a task `age` seconds old may come."""
        return max(self._min_gap, _GAP_SHARE * age)

    def cadence(self, age: float) -> float:
        """A straggler's expected wait for its completion at this age: a share of the age, at most the
        documented gap between polls."""
        return min(documented_cadence(age), max(_STRAGGLER_SHARE * age, self._min_gap))

    def model(self, latency_class: str) -> LatencyModel:
        return self.learner.model(latency_class)

    def _scout_poll(self, watch: Watch, phase: float, model: LatencyModel) -> float:
        start = SCOUT_START
        if self.learner.informed(watch.latency_class):
            start = max(start, model.quantile(_SCOUT_QUANTILE) / _SCOUT_REACH)
        start *= math.pow(SCOUT_RATIO, phase)
        return start if watch.polls == 0 else max(start, watch.running_at * SCOUT_RATIO)
