"""The bench's reference, the shim's poll rule told the truth (`bench.truth`): its schedule keeps the rule,
its figures are what polling tasks of that law by that schedule gives, and it reads each task's law as the
emulator draws it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from shim.bench.truth import PRICES, Law, fewest, laws_of, reach, schedule


def overdue(law: Law, running_at: float, t: float) -> float:
    """E[(t - C)+ | C > running_at] for C uniform on the law, by the midpoint rule (not the closed form)."""
    start = max(law.low, running_at)
    steps = 20_000
    width = (law.high - start) / steps
    return sum(max(t - (start + (i + 0.5) * width), 0.0) for i in range(steps)) / steps


@pytest.mark.parametrize("price", [0.05, 0.3, 1.0])
def test_each_poll_comes_when_the_expected_unseen_time_reaches_the_price(price: float) -> None:
    """Every poll but the last comes when the tasks still running at the poll before have spent `price`
    seconds finished and unseen, on average; the last one at the law's end, when all have finished."""
    law = Law(2.0, 4.0)
    polls = schedule(law, price)
    assert polls[-1] == law.high and polls == sorted(polls)
    for before, at in zip([law.low, *polls], polls[:-1], strict=False):
        assert overdue(law, before, at) == pytest.approx(price, rel=1e-3)
    assert overdue(law, polls[-2] if len(polls) > 1 else law.low, law.high) <= price * (1 + 1e-3)


@pytest.mark.parametrize("price", [0.1, 0.5, 2.0])
def test_figures_are_those_of_polling_tasks_by_the_schedule(price: float) -> None:
    """Requests per task and the delay quantiles match those of 40,000 tasks spread evenly over two laws,
    each polled by its class's schedule (seen at the first poll at or after it finished)."""
    laws = [Law(2.0, 4.0, tasks=3), Law(4.5, 9.0, tasks=1)]
    requests, delays = [], []
    for law in laws:
        polls = schedule(law, price)
        count = 10_000 * law.tasks
        for i in range(count):
            latency = law.low + (i + 0.5) / count * (law.high - law.low)
            k = next(j for j, at in enumerate(polls) if at >= latency)
            requests.append(k + 2)
            delays.append(polls[k] - latency)
    delays.sort()
    figures = reach(laws, price)
    assert figures.requests_per_task == pytest.approx(sum(requests) / len(requests), abs=1e-3)
    assert figures.p50 == pytest.approx(delays[len(delays) // 2], abs=1e-3)
    assert figures.p90 == pytest.approx(delays[int(0.9 * len(delays))], abs=1e-3)


def test_fewest_is_the_cheapest_price_that_meets_both_targets() -> None:
    """The answer meets p50 <= 0.7 s and p90 <= 1.5 s, and no price tried that needs fewer requests does;
    a target no price meets gives None."""
    laws = [Law(2.0, 4.0, tasks=60)]
    best = fewest(laws)
    assert best is not None and best.p50 <= 0.7 and best.p90 <= 1.5
    cheaper = [r for p in PRICES if (r := reach(laws, p)).requests_per_task < best.requests_per_task - 1e-9]
    assert cheaper and all(r.p50 > 0.7 or r.p90 > 1.5 for r in cheaper)
    assert fewest(laws, p50=0.0, p90=0.0) is None


def test_a_task_of_exact_latency_takes_one_poll_seen_at_once() -> None:
    """A law of one latency (a marker's) is polled once, exactly when it finishes."""
    figures = reach([Law(1.0, 1.0, tasks=5)], 0.2)
    assert (figures.requests_per_task, figures.p50, figures.p90) == (2.0, 0.0, 0.0)


def test_laws_are_read_as_the_emulator_draws_them() -> None:
    """A task's law is its class's documented bounds x the time scale in force when it was created (low x 1k
    20-40 s, medium x 2k 45-90 s), or exactly the latency its prompt's marker sets; tasks of one law count
    together."""

    def task(created: float, prompt: str = "a cat", **body: object) -> SimpleNamespace:
        body = {"model": "gpt-image-2-official", "prompt": prompt, "resolution": "1k", "quality": "low", **body}
        return SimpleNamespace(created=created, body=body)

    tasks = [
        task(1.0),
        task(2.0),
        task(3.0, quality="medium", resolution="2k"),
        task(12.0),
        task(13.0, prompt="a cat [latency=1.5]"),
    ]
    laws = laws_of(tasks, [(-math.inf, 0.1), (10.0, 0.3)])
    assert sorted((round(w.low, 6), round(w.high, 6), w.tasks) for w in laws) == [
        (1.5, 1.5, 1),
        (2.0, 4.0, 2),
        (4.5, 9.0, 1),
        (6.0, 12.0, 1),
    ]
