"""How long upstream tasks take, and when to poll them: latency priors, the online learner, the poll rule.

Pure: times are seconds since the task's submit, no clock. A latency class ("reapi/<model>/<quality>/<tier>")
gets a piecewise-uniform density on a log-spaced grid, seeded from its documented prior and updated from
censored completions (a task is only known to finish between its last "processing" poll and the first
"completed" one). A poll is due when the expected time the task has already sat finished but unseen,
E[(t - C)+ | C > a], reaches a price in seconds set by the caller from how scarce the budget is.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping

from .types import LatencyPrior

#: Used when neither the class nor any '/'-prefix of it has a prior: the whole documented range.
FALLBACK_PRIOR = LatencyPrior(20.0, 180.0)


def find_prior(priors: Mapping[str, LatencyPrior], latency_class: str) -> LatencyPrior:
    """The prior of `latency_class`, else of its longest '/'-prefix ("reapi/m/low" for "reapi/m/low/8k"),
    else of "*", else FALLBACK_PRIOR."""
    key = latency_class
    while key:
        if key in priors:
            return priors[key]
        key = key.rpartition("/")[0]
    return priors.get("*", FALLBACK_PRIOR)


def documented_cadence(elapsed: float) -> float:
    """The documented gap between polls (unscaled): 3-5 s for three minutes, then 10 s backing off to 30 s."""
    if elapsed < 180:
        return 4.0
    # The exponent is capped (3 already reaches the 30 s cap): an unbounded one overflows on long tasks.
    growth: float = 1.5 ** min((elapsed - 180) / 60, 3.0)  # typeshed types float ** float as Any
    return min(30.0, 10.0 * growth)


class LatencyModel:
    """An immutable completion-time distribution: mass `m[j]` spread evenly over [edges[j], edges[j+1])."""

    __slots__ = ("edges", "mass", "_cdf", "_area")

    def __init__(self, edges: list[float], mass: list[float]) -> None:
        self.edges = edges
        self.mass = mass
        cdf, area = [0.0], [0.0]  # F and the integral of F at each edge
        for j, m in enumerate(mass):
            width = edges[j + 1] - edges[j]
            area.append(area[-1] + width * (cdf[-1] + m / 2))
            cdf.append(cdf[-1] + m)
        self._cdf = cdf
        self._area = area

    def cdf(self, t: float) -> float:
        j = self._bin(t)
        if j >= len(self.mass):
            return 1.0
        return self._cdf[j] + self.mass[j] * (t - self.edges[j]) / (self.edges[j + 1] - self.edges[j])

    def _integral(self, t: float) -> float:
        j = self._bin(t)
        if j >= len(self.mass):
            return self._area[-1] + (t - self.edges[-1])
        x = t - self.edges[j]
        return self._area[j] + self._cdf[j] * x + self.mass[j] * x * x / (2 * (self.edges[j + 1] - self.edges[j]))

    def _bin(self, t: float) -> int:
        return max(bisect_right(self.edges, t) - 1, 0)

    def quantile(self, q: float) -> float:
        """The time by which a fraction `q` of tasks has finished."""
        j = bisect_right(self._cdf, q) - 1
        if j >= len(self.mass):
            return self.edges[-1]
        m, width = self.mass[j], self.edges[j + 1] - self.edges[j]
        return self.edges[j] + (width * (q - self._cdf[j]) / m if m > 0 else 0.0)

    def overdue(self, a: float, t: float) -> float:
        """E[(t - C)+ | C > a]: how long, on average, a task still running at `a` has sat finished by `t`."""
        fa = self.cdf(a)
        if fa >= 1 - 1e-12:
            return max(t - a, 0.0)
        return max(self._integral(t) - self._integral(a) - fa * (t - a), 0.0) / (1 - fa)

    def reach(self, a: float, price: float) -> float:
        """The time t >= a at which `overdue(a, t)` equals `price`."""
        fa = self.cdf(a)
        if fa >= 1 - 1e-12:
            return a + price
        target = self._integral(a) - fa * a + price * (1 - fa)
        edges, n = self.edges, len(self.mass)

        def h(j: int) -> float:  # G(t) - F(a) t at edge j: increasing for edges past a
            return self._area[j] - fa * edges[j]

        if h(n) <= target:
            return edges[n] + (target - h(n)) / (1 - fa)
        lo, hi = self._bin(a) + 1, n  # find the first edge past a with h > target
        while lo < hi:
            mid = (lo + hi) // 2
            if h(mid) > target:
                hi = mid
            else:
                lo = mid + 1
        k = lo - 1
        width = edges[k + 1] - edges[k]
        qa, qb, qc = self.mass[k] / (2 * width), self._cdf[k] - fa, h(k) - target
        disc = math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))
        if qb >= 0:
            x = -2 * qc / (qb + disc) if qb + disc > 0 else 0.0
        else:
            x = (-qb + disc) / (2 * qa)
        return min(max(edges[k] + x, a), edges[k + 1])


#: Past this chance that a running task has finished, waiting longer only adds delay: poll.
CERTAIN = 0.95


def next_poll(
    model: LatencyModel, *, running_at: float, first: bool, price: float, min_gap: float, cadence: float
) -> float:
    """When to poll a task last seen running at `running_at` (seconds since submit).

    Inside the estimate's range: when the expected finished-but-unseen time reaches `price`, or once the
    task has almost surely finished. Past it (a straggler, about which the estimate knows nothing): as if
    it finished at any moment with mean wait `cadence` (the documented gap), which spaces polls
    sqrt(2 x cadence x price) apart, within [cadence/2, max(cadence, 2 x price)] so that a long overrun
    never goes unpolled for long. Polls of one task come at least `min_gap` apart.
    """
    seen = model.cdf(running_at)
    if not first and seen >= CERTAIN:
        gap = max(math.sqrt(2 * cadence * price), cadence / 2)
        return running_at + max(min(gap, max(cadence, 2 * price)), min_gap)
    t = min(model.reach(running_at, price), model.quantile(seen + CERTAIN * (1 - seen)))
    return max(t, running_at) if first else max(t, running_at + min_gap)


class LatencyLearner:
    """Per latency class, a completion-time distribution learned online from censored observations.

    Shared by every Pacer of a provider: latency belongs to the upstream model, not to a key. A completion
    known to lie in (after, before) adds one unit of mass over that interval, shaped by the current estimate
    (one online EM step, which keeps a well-placed estimate sharp). When the estimate gave that interval
    less than even odds, a share of the unit, up to `explore`, is spread evenly over it instead: a task
    finishing where the estimate has little mass is news, and moves the estimate there. Older mass decays
    so that about `memory` observations, the prior's `prior_weight` included, make the estimate.
    """

    def __init__(
        self, *, memory: float = 20.0, prior_weight: float = 3.0, explore: float = 0.5, bins: int = 72
    ) -> None:
        if memory < 1 or prior_weight <= 0 or not 0 < explore <= 1 or bins < 4:
            raise ValueError("need memory >= 1, prior_weight > 0, 0 < explore <= 1, bins >= 4")
        self._decay = 1 - 1 / memory
        self._prior_weight = prior_weight
        self._explore = explore
        self._bins = bins
        self._counts: dict[str, list[float]] = {}
        self._edges: dict[str, list[float]] = {}
        self._models: dict[str, LatencyModel] = {}
        self.observations = 0

    def model(self, latency_class: str, prior: LatencyPrior) -> LatencyModel:
        """The present estimate of a class; `prior` (already scaled) seeds a class seen for the first time."""
        model = self._models.get(latency_class)
        if model is None:
            edges = _grid(prior, self._bins)
            counts = [self._prior_weight * share for share in _overlaps(edges, prior.low, prior.high)]
            self._edges[latency_class], self._counts[latency_class] = edges, counts
            model = self._models[latency_class] = _normalized(edges, counts)
        return model

    def observe(self, latency_class: str, prior: LatencyPrior, after: float, before: float) -> None:
        """Record one completion known to have happened between `after` and `before` seconds after submit."""
        model = self.model(latency_class, prior)
        edges, counts = self._edges[latency_class], self._counts[latency_class]
        after = min(max(after, 0.0), edges[-1])
        before = min(max(before, after), edges[-1])
        even = _overlaps(edges, after, before)
        # E-step: where in (after, before) the completion most likely fell, by the current density.
        likely = [even[j] * m / (edges[j + 1] - edges[j]) for j, m in enumerate(model.mass)]
        total = sum(likely)
        expected = model.cdf(before) - model.cdf(after)
        explore = self._explore * max(1 - 2 * expected, 0.0) if total > 0 else 1.0
        for j in range(len(counts)):
            added = (1 - explore) * likely[j] / (total or 1.0) + explore * even[j]
            counts[j] = counts[j] * self._decay + added
        self._models[latency_class] = _normalized(edges, counts)
        self.observations += 1


def _normalized(edges: list[float], counts: list[float]) -> LatencyModel:
    total = sum(counts) or 1.0
    return LatencyModel(edges, [c / total for c in counts])


def _grid(prior: LatencyPrior, bins: int) -> list[float]:
    """Edges: [0, g0] then `bins - 1` log-spaced bins from g0 to g1, a decade either side of the prior."""
    g0 = max(prior.low, prior.high / 10) / 10
    g1 = prior.high * 10
    ratio = (g1 / g0) ** (1 / (bins - 1))
    return [0.0] + [g0 * ratio**i for i in range(bins - 1)] + [g1]


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
