"""How long upstream tasks take, and when to poll them: latency priors, the distribution, the poll rule.

Pure: times are seconds since the task's submit, no clock. A completion-time distribution is piecewise
uniform on a log-spaced grid (`pacing_learner` learns one per latency class from censored completions). A
poll is due when the expected time the task has already sat finished but unseen, E[(t - C)+ | C > a],
reaches a price in seconds set by the caller from how scarce the budget is; a task past the estimate (a
straggler) is polled on a geometric schedule, a share of its age apart.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping

from ..types import LatencyPrior

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
    """The documented gap between polls: 3-5 s for three minutes, then 10 s backing off to 30 s. The
    longest a straggler ever waits between polls; how fast the upstream really is gets learned."""
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

    def remaining(self, a: float) -> float:
        """The median of what a task still running at `a` has left to run (robust to a long tail, unlike
        the mean): a progress estimate's denominator. 0 once the estimate expected it finished."""
        fa = self.cdf(a)
        if fa >= 1 - 1e-9:
            return 0.0
        return max(self.quantile(fa + (1 - fa) / 2) - a, 0.0)

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


def log_grid(low: float, high: float, per_decade: int) -> list[float]:
    """Bin edges: [0, low], then log-spaced bins, `per_decade` to a factor of ten, up to `high` (at least)."""
    if not 0 < low < high or per_decade < 1:
        raise ValueError(f"need 0 < low < high and per_decade >= 1, got {low}, {high}, {per_decade}")
    bins = max(math.ceil(per_decade * math.log10(high / low)), 1)
    ratio = 10 ** (1 / per_decade)
    return [0.0] + [low * ratio**i for i in range(bins + 1)]


#: Past this chance that a running task has finished, waiting longer only adds delay: poll.
CERTAIN = 0.95


def next_poll(
    model: LatencyModel, *, running_at: float, first: bool, price: float, min_gap: float, cadence: float
) -> float:
    """When to poll a task last seen running at `running_at` (seconds since submit).

    Inside the estimate's range: when the expected finished-but-unseen time reaches `price`, or once the
    task has almost surely finished. Past it (a straggler, about which the estimate knows nothing): as if
    it finished at any moment with mean wait `cadence`, which spaces polls sqrt(2 x cadence x price) apart,
    within [cadence/2, max(cadence, 2 x price)]. A task already past the estimate's median never waits
    longer than that either: mass far out (kept from an older regime, say) must not leave it unpolled for
    long. Polls of one task come at least `min_gap` apart.
    """
    seen = model.cdf(running_at)
    gap = min(max(math.sqrt(2 * cadence * price), cadence / 2), max(cadence, 2 * price))
    straggler = running_at + max(gap, min_gap)
    if not first and seen >= CERTAIN:
        return straggler
    t = min(model.reach(running_at, price), model.quantile(seen + CERTAIN * (1 - seen)))
    if first:
        return max(t, running_at)
    t = max(t, running_at + min_gap)
    return min(t, straggler) if seen >= 0.5 else t
