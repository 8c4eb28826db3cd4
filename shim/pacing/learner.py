"""How long an upstream's tasks really take, learned online: one completion-time distribution per latency
class, shared by every key of the provider (latency belongs to the upstream and the model, not the key)
and, with Redis, told every replica's completions (`redis_learning`), and which tasks scout (are polled
early so that their completion is bracketed, not just seen late).

The documented table is a hint: it seeds a class never seen, after scaling it by how much faster or slower
than documented its nearest relatives turned out to be (same model and quality at another tier, then the
same model, then the provider), else by `hint` (SHIM_LATENCY_SCALE). The grid does not depend on it.
"""

from __future__ import annotations

import itertools
import math
import time
import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..types import LatencyPrior
from .latency import LatencyModel, find_prior, log_grid

#: The grid's first edge and its resolution (seconds; bins per factor of ten).
GRID_LOW = 0.05
GRID_PER_DECADE = 16
#: A completion's tail chance is the estimate's chance of finishing before it was seen finished, or of
#: still running when it was last seen running, whichever is less. Below SURPRISE it is news (a prior wrong
#: by 10x, an upstream that slowed down or sped up): the older mass keeps only FORGET (beside the ordinary
#: decay) and the class is no longer trusted, so that its next tasks scout. Below DOUBT it is a hint of
#: the same: the older mass keeps DOUBT_KEEP and the evidence halves.
SURPRISE = 0.02
FORGET = 0.5
DOUBT = 0.1
DOUBT_KEEP = 0.8
#: A class is trusted once completions in line with its estimate add up (decayed) to this.
TRUSTED = 3.0
#: How many tasks of a class may scout at once, across keys: while it is not trusted, and once it is; a
#: trusted class sends one scout per SCOUT_EVERY tasks at most.
SCOUTS = {False: 4, True: 1}
SCOUT_EVERY = 8
#: Each task's first poll is a fair test of the estimate, whatever order tasks finish in: it finds the task
#: done with the chance the estimate gives at that age. Against it stand two hypotheses, the upstream now
#: SHIFT_FACTOR times faster (the estimate's chance at SHIFT_FACTOR x the age) and as much slower; a running
#: sum (CUSUM) of each one's log likelihood ratio past its alarm means the upstream changed: the older mass
#: keeps FORGET, both sums start again, and after a speed-up the class is no longer trusted (its next tasks
#: scout, even on busy keys; stragglers already show a slow-down). Only early first polls (the estimate
#: gives them less than EARLY) count towards a speed-up: a late one finds most tasks done either way, and a
#: long run of those says more about a slightly off estimate than about a changed upstream.
SHIFT_FACTOR = 3.0
SHIFT_ALARM = {"faster": math.log(30.0), "slower": math.log(100.0)}
EARLY = 0.25
#: Once a class is trusted, one task in PROBE_EVERY that does not scout is a probe: its first poll comes at
#: the estimate's PROBE_QUANTILE, where it should almost never find the task done. One that does is strong
#: evidence of a speed-up (see SHIFT_ALARM); a probe costs about one poll.
PROBE_EVERY = 10
PROBE_QUANTILE = 0.02
#: A task still running counts as a completion past its age, shaped as the completions are there, and as
#: much as this share of them just past it (what we know of a task older than most: it finishes soon).
NEAR = 0.05
#: How many of a class's latest completions keep their time (to weigh completions heard from other replicas).
_LEARNED_AT = 256
#: Successive scouts' phases step by the golden ratio: any number of them spread evenly over [0, 1).
_GOLDEN = (math.sqrt(5) - 1) / 2
#: A class's planned polls are re-planned when this quantile of its estimate moves by this fraction.
REPLAN_QUANTILE = 0.25
REPLAN_SHIFT = 0.15


@dataclass(eq=False, slots=True)
class _Class:
    """What the learner keeps about one latency class (a mutable record, not a value)."""

    documented: LatencyPrior
    counts: list[float]
    model: LatencyModel
    planned: float  # the early quantile when its polls were last re-planned
    evidence: float = 0.0
    observations: int = 0
    scouts: int = 0
    scouted: int = 0  # scouts enlisted so far
    since_scout: int = 0  # tasks started since the last scout
    since_probe: int = 0  # tasks started since the last probe
    informed: bool = False  # seeded from relatives, or has completions: more than the documented table
    faster: float = 0.0  # the CUSUMs of first polls (see SHIFT_ALARM)
    slower: float = 0.0
    started: int = 0  # tasks started so far (their start numbers)
    #: start number -> (completions learned before it started, the age it was last seen running)
    running: dict[int, tuple[int, float]] = field(default_factory=dict)
    #: (clock time, completions learned by then) after each of the latest completions
    learned_at: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=_LEARNED_AT))


class LatencyLearner:
    """Per latency class, a completion-time distribution learned from censored completions.

    A completion known to lie in (after, before) adds one unit of mass over that interval, shaped by the
    current estimate (one online EM step, which keeps a well-placed estimate sharp). When the estimate gave
    that interval less than even odds, a share of the unit, up to `explore`, is spread evenly over it
    instead: a task finishing where the estimate has little mass is news, and moves the estimate there.
    Older mass decays so that about `memory` completions make the estimate; a surprising one (see SURPRISE)
    also halves what came before, so that a prior wrong by 10x, or an upstream that slows down or speeds
    up, is followed within about ten completions. Its median then tracks the decayed median of what the
    tasks really took (so it wanders with the sample, some 10% for tasks spread like 2-4 s).

    Tasks are weighed by when they started, not by when they finished: a task's unit has decayed by the
    completions learned since it started, so that tasks started together count alike. And once a class
    is trusted, the tasks still running count too, each one as a unit past the age it was last seen running
    (see `_estimate`). Without both, a burst of tasks started at once would be learned in the order it
    finishes, its fastest first: the estimate would sink while the burst runs, then end on its slowest.
    """

    def __init__(
        self,
        *,
        priors: Mapping[str, LatencyPrior] | None = None,
        hint: float = 1.0,
        longest: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        memory: float = 12.0,
        prior_weight: float = 2.0,
        explore: float = 0.5,
    ) -> None:
        """`priors` are the documented latencies by class (looked up by prefix, see `find_prior`), `hint` the
        factor on them before anything is learned, `longest` the longest a task may take (the grid's end)."""
        if hint <= 0 or longest <= GRID_LOW or memory < 1 or prior_weight <= 0 or not 0 < explore <= 1:
            raise ValueError("need hint > 0, longest > 0.05, memory >= 1, prior_weight > 0, 0 < explore <= 1")
        self._priors = dict(priors or {})
        self._hint = hint
        self._edges = log_grid(GRID_LOW, longest, GRID_PER_DECADE)
        self._memory = memory
        self._decay = 1 - 1 / memory
        self._prior_weight = prior_weight
        self._explore = explore
        self._classes: dict[str, _Class] = {}
        self._listeners: list[weakref.WeakMethod[Callable[[str], None]]] = []
        self._share: Callable[[str, float, float], None] | None = None
        self._prune_at = 64
        self._clock = clock
        self.observations = 0

    def model(self, latency_class: str) -> LatencyModel:
        """The present estimate of a class (seeded from its relatives or the documented table when new)."""
        return self._class(latency_class).model

    def enlist(self, latency_class: str, *, idle: bool) -> float | None:
        """Whether a task of this class starting now scouts (then `release` it when its watch ends): one of
        SCOUTS while the class is not trusted, whatever the budget; once trusted, one task in SCOUT_EVERY, on
        a key whose budget is `idle`, so that a speed-up is still seen. A scout gets a phase in [0, 1): how
        far along one step of the geometric schedule its polls are offset, so that scouts out at once poll
        at different ages and, together, bracket completions finely."""
        record = self._class(latency_class)
        record.since_scout += 1
        trusted = record.evidence >= TRUSTED
        if record.scouts >= SCOUTS[trusted] or (trusted and (not idle or record.since_scout < SCOUT_EVERY)):
            return None
        record.scouts += 1
        record.scouted += 1
        record.since_scout = 0
        return (record.scouted * _GOLDEN) % 1.0

    def probe(self, latency_class: str) -> bool:
        """Whether a task of this trusted class that does not scout is a probe (see PROBE_EVERY)."""
        record = self._class(latency_class)
        record.since_probe += 1
        if record.evidence < TRUSTED or record.since_probe < PROBE_EVERY:
            return False
        record.since_probe = 0
        return True

    def informed(self, latency_class: str) -> bool:
        """The estimate holds more than the documented table: completions, or what relatives showed."""
        return self._class(latency_class).informed

    def release(self, latency_class: str) -> None:
        record = self._class(latency_class)
        record.scouts = max(record.scouts - 1, 0)

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener(latency_class)` whenever a class's estimate moves enough for planned polls to be
        re-planned. `listener` is a bound method, held weakly (a forgotten Pacer just goes away)."""
        self._listeners.append(weakref.WeakMethod(listener))
        if len(self._listeners) >= self._prune_at:  # Pacers come and go with keys: drop the dead ones
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            self._prune_at = max(64, 2 * len(self._listeners))

    def start(self, latency_class: str) -> int:
        """A task of the class starts (it counts as running once seen running). Returns its start number, by
        which `running`, `observe` and `finish` name it."""
        record = self._class(latency_class)
        record.started += 1
        record.running[record.started] = (record.observations, 0.0)
        return record.started

    def running(self, latency_class: str, started: int, age: float) -> None:
        """The task numbered `started` was seen still running `age` seconds after its submit."""
        record = self._class(latency_class)
        if started in record.running:
            record.running[started] = (record.running[started][0], age)

    def finish(self, latency_class: str, started: int) -> None:
        """The task is no longer followed (completed, failed or given up): it no longer counts as running."""
        self._class(latency_class).running.pop(started, None)

    def share(self, listener: Callable[[str, float, float], None]) -> None:
        """Call `listener(latency_class, after, before)` with each completion learned here, not `heard`
        (so that other replicas learn it too: see `redis_learning`)."""
        self._share = listener

    def knows(self, latency_class: str) -> bool:
        return latency_class in self._classes

    def size(self) -> int:
        """How many latency classes are known."""
        return len(self._classes)

    def observe(
        self, latency_class: str, after: float, before: float, started: int | None = None, *, heard: bool = False
    ) -> None:
        """Record one completion known to have happened between `after` and `before` seconds after submit,
        of the task numbered `started` here, else of one that started `before` seconds ago (`heard` from
        another replica), else of one started just now."""
        record = self._class(latency_class)
        if started is not None:
            mark = record.running.pop(started, (record.observations, 0.0))[0]
        else:
            mark = self._learned_by(record, self._clock() - before) if heard else record.observations
        weight = self._weight(record, mark)
        edges, model = self._edges, record.model
        after = min(max(after, 0.0), edges[-1])
        before = min(max(before, after), edges[-1])
        if self._share is not None and not heard:
            self._share(latency_class, after, before)
        seen_from, seen_by = model.cdf(after), model.cdf(before)
        tail = min(seen_by, 1 - seen_from)
        surprised = tail < SURPRISE
        even = _overlaps(edges, after, before)
        # E-step: where in (after, before) the completion most likely fell, by the current density.
        likely = [even[j] * m / (edges[j + 1] - edges[j]) for j, m in enumerate(model.mass)]
        total = sum(likely)
        explore = self._explore * max(1 - 2 * (seen_by - seen_from), 0.0) if total > 0 else 1.0
        keep = self._decay * (FORGET if surprised else DOUBT_KEEP if tail < DOUBT else 1.0)
        record.counts = [
            count * keep + weight * ((1 - explore) * likely[j] / (total or 1.0) + explore * even[j])
            for j, count in enumerate(record.counts)
        ]
        record.model = self._estimate(record)
        if not heard:  # trust (and so scouting) is each replica's own: a surprise heard by all must not make all scout
            if surprised:
                record.evidence = 0.0
            elif tail < DOUBT:
                record.evidence /= 2
            else:
                record.evidence = record.evidence * self._decay + 1
        record.observations += 1
        record.learned_at.append((self._clock(), record.observations))
        record.informed = True
        self.observations += 1
        early = record.model.quantile(REPLAN_QUANTILE)
        if abs(early - record.planned) > REPLAN_SHIFT * record.planned:
            record.planned = early
            self._notify(latency_class)

    def first_poll(self, latency_class: str, age: float, *, done: bool) -> None:
        """A task's first poll, `age` seconds after submit, found it `done` (or still running)."""
        record = self._class(latency_class)
        model = record.model

        def chance(at: float) -> float:  # of what the poll found, were the estimate's cdf at `at` right
            seen = model.cdf(at)
            return min(max(seen if done else 1 - seen, 0.01), 0.99)

        expected = chance(age)
        if model.cdf(age) < EARLY:
            record.faster = max(record.faster + math.log(chance(age * SHIFT_FACTOR) / expected), 0.0)
        record.slower = max(record.slower + math.log(chance(age / SHIFT_FACTOR) / expected), 0.0)
        faster, slower = record.faster > SHIFT_ALARM["faster"], record.slower > SHIFT_ALARM["slower"]
        if faster or slower:
            record.counts = [count * FORGET for count in record.counts]
            record.model = self._estimate(record)
            if faster:
                record.evidence = 0.0
            record.faster = record.slower = 0.0

    def estimates(self) -> dict[str, dict[str, float | int | bool]]:
        """What has been learned, by class: completions seen, median and p90 (s), trusted. For /healthz."""
        return {
            name: {
                "observations": record.observations,
                "p50": round(record.model.quantile(0.5), 3),
                "p90": round(record.model.quantile(0.9), 3),
                "trusted": record.evidence >= TRUSTED,
            }
            for name, record in self._classes.items()
        }

    def speed(self, latency_class: str) -> float | None:
        """How much slower than documented (observed median / documented median) the nearest relatives of a
        class run, weighted by their completions; None when no relative has completed anything."""
        parts = latency_class.split("/")
        for keep in range(len(parts) - 1, 0, -1):
            prefix = "/".join(parts[:keep]) + "/"
            kin = [r for name, r in self._classes.items() if name.startswith(prefix) and r.observations]
            if kin:
                weights = [min(r.observations, self._memory) for r in kin]
                logs = [math.log(r.model.quantile(0.5) / r.documented.median) for r in kin]
                return math.exp(sum(w * x for w, x in zip(weights, logs, strict=True)) / sum(weights))
        return None

    def _class(self, latency_class: str) -> _Class:
        record = self._classes.get(latency_class)
        if record is None:
            documented = find_prior(self._priors, latency_class)
            borrowed = self.speed(latency_class)
            seed = documented.scaled(self._hint if borrowed is None else borrowed)
            top = self._edges[-1]
            low, high = min(seed.low, top / 2), min(seed.high, top)
            counts = [self._prior_weight * share for share in _overlaps(self._edges, low, high)]
            model = _normalized(self._edges, counts)
            record = _Class(documented, counts, model, planned=model.quantile(REPLAN_QUANTILE))
            if borrowed is not None:  # a relative's speed: trusted as far as scouting goes, until surprised
                record.informed, record.evidence = True, TRUSTED
            self._classes[latency_class] = record
        return record

    @staticmethod
    def _learned_by(record: _Class, at: float) -> int:
        """How many completions the class had learned by clock time `at` (as far as its times go back)."""
        times = record.learned_at
        j = bisect_right(times, (at, math.inf))
        return times[j - 1][1] if j else max(times[0][1] - 1, 0) if times else 0

    def _weight(self, record: _Class, mark: int) -> float:
        """What a task that started after `mark` completions counts now (those added since have decayed)."""
        return self._decay ** max(record.observations - mark, 0)

    def _estimate(self, record: _Class) -> LatencyModel:
        """The completions learned, plus the tasks still running: each one a unit of its start's weight past
        the age it was last seen running (a right-censored completion: one self-consistency step), shaped
        as the completions are there, with a share NEAR just past it. Not before the class is trusted: the
        shape past a running task's age would still be the documented table's, or a few tasks'."""
        edges, counts = self._edges, record.counts
        if record.evidence < TRUSTED:
            return _normalized(edges, counts)
        total = sum(counts) or 1.0
        beyond = list(itertools.accumulate(reversed(counts)))[::-1] + [0.0]  # mass of bins j.. on
        censored = [0.0] * len(counts)
        share = [0.0] * (len(counts) + 1)  # per bin j: weight / mass past bin j, spread over bins past j
        near = NEAR * total  # where the completions hardly reach past its age, a task finishes soon after it
        for mark, age in record.running.values():
            if age <= 0:
                continue  # not polled yet: says nothing about its latency
            weight = self._weight(record, mark)
            j = min(max(bisect_right(edges, age) - 1, 0), len(counts) - 1)
            part = counts[j] * (edges[j + 1] - min(age, edges[j + 1])) / (edges[j + 1] - edges[j])
            past = part + beyond[j + 1] + near
            censored[j] += weight * part / past
            censored[min(j + 1, len(counts) - 1)] += weight * near / past
            share[j + 1] += weight / past
        spread = 0.0
        for k in range(len(counts)):
            spread += share[k]
            censored[k] += spread * counts[k]
        return _normalized(edges, [c + x for c, x in zip(counts, censored, strict=True)])

    def _notify(self, latency_class: str) -> None:
        alive = []
        for ref in self._listeners:
            listener = ref()
            if listener is not None:
                alive.append(ref)
                listener(latency_class)
        self._listeners = alive


def _normalized(edges: list[float], counts: list[float]) -> LatencyModel:
    total = sum(counts) or 1.0
    return LatencyModel(edges, [c / total for c in counts])


def _overlaps(edges: list[float], lo: float, hi: float) -> list[float]:
    """How a unit of mass spread evenly over [lo, hi] falls into the bins (a point goes to its bin)."""
    shares = [0.0] * (len(edges) - 1)
    if hi <= lo:
        shares[min(max(bisect_right(edges, lo) - 1, 0), len(shares) - 1)] = 1.0
        return shares
    for j in range(len(shares)):
        overlap = min(hi, edges[j + 1]) - max(lo, edges[j])
        if overlap > 0:
            shares[j] = overlap / (hi - lo)
    return shares
