"""What the shim's poll rule would reach if it were told the truth: each class's latency law as the emulator
draws it (uniform between the class's bounds x the time scale: `emulator.reapi_state`), polls never queued.
A reference beside the targets: how many upstream requests a task needs, at the least, for the delay
targets under that rule. Plain data in and out; no clock, no I/O.

The rule is the shim's (`pacing.latency.next_poll` inside the estimate's range): a task last seen running
at age `a` is next polled when the expected finished-but-unseen time since then reaches `price`; one price
for every class, as under one key's budget. Told the law, the last poll of a class comes when its slowest
task can finish, so no task is ever a straggler. Not a bound on every conceivable planner: one that knew
each task's own latency would need one poll a task.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..emulator.reapi_catalog import latency_bounds, parse_request
from ..emulator.reapi_markers import parse_markers

#: The delay targets (seconds from the upstream finishing a task to the poll that sees it).
P50, P90 = 0.7, 1.5
#: The prices tried: log-spaced from 10 ms to 10 s.
PRICES = tuple(0.01 * 10 ** (i / 40) for i in range(121))


@dataclass(frozen=True, slots=True)
class Law:
    """`tasks` tasks whose latencies are uniform on [low, high] seconds."""

    low: float
    high: float
    tasks: int = 1


@dataclass(frozen=True, slots=True)
class Reach:
    """What one price reaches over a run's tasks: requests per task (the submit and its polls), delays."""

    price: float
    requests_per_task: float
    p50: float
    p90: float


def laws_of(tasks: Iterable[Any], scales: Sequence[tuple[float, float]]) -> list[Law]:
    """The law of each image task the emulator recorded (`body`, `created`): its class's bounds x the time
    scale in force when it was created (`scales`: (from when, time scale), in time order), or the exact
    latency its prompt's marker set."""
    starts = [at for at, _ in scales]
    bounds: Counter[tuple[float, float]] = Counter()
    for task in tasks:
        _, spec = parse_request(json.dumps(task.body).encode())
        exact = parse_markers(spec.prompt).latency
        if exact is not None:
            bounds[exact, exact] += 1
        else:
            scale = scales[max(bisect.bisect_right(starts, task.created) - 1, 0)][1]
            low, high = latency_bounds(spec)
            bounds[low * scale, high * scale] += 1
    return [Law(low, high, tasks) for (low, high), tasks in sorted(bounds.items())]


def schedule(law: Law, price: float) -> list[float]:
    """The poll ages of a class under `price`: while running at age a, E[(t - C)+ | C > a] = (t - a)^2 /
    2(high - a) for C uniform; the last poll comes at `high`, when every task has finished."""
    polls = []
    age = law.low
    while age < law.high:
        age = min(age + math.sqrt(2 * (law.high - age) * price), law.high)
        polls.append(age)
    return polls or [law.high]


def reach(laws: Sequence[Law], price: float) -> Reach:
    """Every task of every class polled by the rule at `price`: polls a task takes, how late it is seen.
    A task finishing between two polls of its class is seen at the later one, its delay uniform until it."""
    parts: list[tuple[float, float]] = []  # (share of all tasks, gap): a delay uniform on [0, gap)
    requests = 0.0
    total = sum(law.tasks for law in laws)
    for law in laws:
        width = law.high - law.low
        edges = [law.low, *schedule(law, price)]
        for k, (before, at) in enumerate(zip(edges, edges[1:], strict=False), start=1):
            share = law.tasks / total * ((at - before) / width if width > 0 else float(k == 1))
            parts.append((share, at - before))
            requests += share * (1 + k)  # its submit and k polls
    return Reach(price, requests, _delay_quantile(parts, 0.5), _delay_quantile(parts, 0.9))


def fewest(laws: Sequence[Law], *, p50: float = P50, p90: float = P90) -> Reach | None:
    """The price that meets both delay targets with the fewest requests per task; None when none does."""
    meeting = [r for price in PRICES if (r := reach(laws, price)).p50 <= p50 and r.p90 <= p90]
    return min(meeting, key=lambda r: r.requests_per_task, default=None)


def _delay_quantile(parts: Sequence[tuple[float, float]], q: float) -> float:
    """The q-quantile of a mixture of delays uniform on [0, gap) (bisection on its cdf)."""

    def cdf(d: float) -> float:
        return sum(share * (min(d / gap, 1.0) if gap > 0 else 1.0) for share, gap in parts)

    low, high = 0.0, max((gap for _, gap in parts), default=0.0)
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < q else (low, mid)
    return high
