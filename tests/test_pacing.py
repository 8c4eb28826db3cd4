"""The per-key budget and poll scheduler, on virtual time: an event loop whose clock jumps to the next timer.

Every test runs its scenario with `run(...)` on a `VirtualTimeLoop`, injects `clock=loop.time` and
`sleep=asyncio.sleep` into the Pacer, and talks to `FakeUpstream`, which enforces the upstream's sliding
window (at most `rate` arrivals in any 1-second window, else a 429) and records every arrival.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from shim.errors import (
    ShuttingDown,
    TaskTimeout,
    UpstreamRateLimited,
    UpstreamTransient,
    UpstreamUnavailable,
)
from shim.pacing import LatencyLearner, LatencyPrior, Pacer, Pacers
from shim.pacing_latency import find_prior
from shim.pacing_window import SlidingWindow
from shim.types import Task

T = TypeVar("T")

#: The documented low x 1k range; the emulator's time scale 0.1 makes tasks take 2-4 s.
LOW_1K = LatencyPrior(20, 40)
PRIORS = {"low": LOW_1K}


# --- virtual time ---


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Never blocks: when nothing is ready, time jumps by the timeout the loop asked to wait."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("virtual time: every task waits and no timer is set (a deadlock)")
        self.loop.now += max(timeout, 0.0)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on virtual time: hours pass in milliseconds, and the same inputs give the same run."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


def pacer(**kwargs: Any) -> Pacer:
    kwargs.setdefault("priors", PRIORS)
    return Pacer(clock=now, sleep=asyncio.sleep, **kwargs)


# --- the fake upstream ---


@dataclass
class FakeTask:
    started: float
    done_at: float
    seen_at: float | None = None
    polls: int = 0


@dataclass
class FakeUpstream:
    """Admits at most `rate` requests in any 1-second window (else 429, like reAPI's 50001), with jitter."""

    latency: Callable[[], float] = lambda: 3.0
    rate: int = 10
    jitter: tuple[float, float] = (0.002, 0.03)
    seed: int = 0
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    refused: int = 0
    tasks: dict[str, FakeTask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._window: deque[float] = deque()

    async def _arrive(self, kind: str) -> float:
        await asyncio.sleep(self._rng.uniform(*self.jitter))
        at = now()
        while self._window and self._window[0] <= at - 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate:
            self.refused += 1
            raise UpstreamRateLimited(1.0)
        self._window.append(at)
        self.arrivals.append((at, kind))
        return at

    async def submit(self) -> Task:
        at = await self._arrive("submit")
        task_id = f"task_{len(self.tasks)}"
        self.tasks[task_id] = FakeTask(at, at + self.latency())
        await asyncio.sleep(0.01)
        return Task(task_id, "processing")

    async def poll(self, task_id: str) -> Task:
        at = await self._arrive("poll")
        task = self.tasks[task_id]
        task.polls += 1
        await asyncio.sleep(0.01)
        if at >= task.done_at:
            task.seen_at = task.seen_at or at
            return Task(task_id, "completed", ("https://example.test/1.png",))
        return Task(task_id, "processing")

    def busiest_second(self) -> int:
        times = sorted(at for at, _ in self.arrivals)
        start, busiest = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - 1.0:
                start += 1
            busiest = max(busiest, end - start + 1)
        return busiest


async def submit_and_wait(p: Pacer, up: FakeUpstream, latency_class: str = "low") -> Task:
    task = await p.call(up.submit)
    return await p.wait_for(task, up.poll, latency_class=latency_class)


# --- the budget ---


@pytest.mark.parametrize(
    ("rate", "window", "capacity", "span"),
    [
        pytest.param(10, 1.0, 10, 1.05, id="ten-per-second"),
        pytest.param(2.5, 1.0, 2, 1.05, id="fractional-rounds-down"),
        pytest.param(0.5, 1.0, 1, 2.05, id="below-one-per-window"),
    ],
)
def test_window_for_rate(rate: float, window: float, capacity: int, span: float) -> None:
    """A rate becomes a whole number of sends per window widened by the margin."""
    budget = SlidingWindow.for_rate(rate, window, 0.05)
    assert (budget.capacity, budget.span) == (capacity, pytest.approx(span))


def test_window_spaces_sends_evenly_and_honors_pause() -> None:
    """Sends leave span/capacity apart, never more than capacity per span, and not during a pause."""
    budget = SlidingWindow(10, 1.05)
    at, sent = 0.0, []
    for _ in range(30):
        at = budget.next_free(at)
        budget.record(at)
        sent.append(at)
    assert all(b - a == pytest.approx(0.105) for a, b in zip(sent, sent[1:], strict=False))
    budget.pause(at + 5)
    assert budget.next_free(at) == at + 5


def test_limiter_never_exceeded_in_any_second() -> None:
    """Under a burst of 80 submits and their polls, no 1-second window ever holds more than the rate."""

    async def main() -> FakeUpstream:
        up = FakeUpstream(latency=lambda: 2.5)
        p = pacer(latency_scale=0.1)
        await asyncio.gather(*(submit_and_wait(p, up) for _ in range(80)))
        await p.aclose()
        return up

    up = run(main())
    assert up.refused == 0
    assert up.busiest_second() <= 10
    assert len(up.arrivals) >= 160


def test_rate_limit_pauses_the_whole_key_then_retries() -> None:
    """A 429 pauses every call of the key for Retry-After, then the refused call goes again and succeeds."""

    async def main() -> tuple[list[float], list[str], dict[str, Any]]:
        p = pacer()
        times: list[float] = []
        refusals = [UpstreamRateLimited(2.0)]

        async def call(name: str) -> str:
            times.append(now())
            if name == "a" and refusals:
                raise refusals.pop()
            return name

        results = await asyncio.gather(*(p.call(lambda n=n: call(n)) for n in "abc"))
        stats = p.stats()
        await p.aclose()
        return times, results, stats

    times, results, stats = run(main())
    assert results == ["a", "b", "c"]
    # a refused at t0; b and c (queued behind) and a's retry all wait out the 2 s pause
    assert times[0] == 0.0
    assert all(t >= 2.0 for t in times[1:])
    assert (stats["rate_limited"], stats["requests"]) == (1, 4)


def test_rate_limit_widens_the_window_within_a_bound() -> None:
    """Each unexpected 429 gives later windows more room against jitter, never more than a fifth."""
    from shim.pacing_window import SlidingWindow

    window = SlidingWindow.for_rate(10, 1.0, 0.05)
    window.widen(0.05, 1.26)
    assert window.span == pytest.approx(1.10)
    for _ in range(10):
        window.widen(0.05, 1.26)
    assert window.span == pytest.approx(1.26)
    window.record(0.0)
    assert window.next_free(0.0) == pytest.approx(0.126)  # the even spacing follows the wider window


def test_task_cap_refusal_delays_only_that_call() -> None:
    """TOO_MANY_TASKS delays the refused submit alone: other calls of the key (polls) keep flowing."""

    async def main() -> tuple[list[tuple[str, float]], dict[str, Any]]:
        p = pacer()
        times: list[tuple[str, float]] = []
        refusals = [UpstreamRateLimited(2.0, reason="too_many_tasks")]

        async def call(name: str) -> str:
            times.append((name, now()))
            if name == "a" and refusals:
                raise refusals.pop()
            return name

        await asyncio.gather(*(p.call(lambda n=n: call(n)) for n in "abc"))
        stats = p.stats()
        await p.aclose()
        return times, stats

    times, stats = run(main())
    first = {name: t for name, t in reversed(times)}
    assert first["b"] < 1.0 and first["c"] < 1.0  # not held behind a's 2 s wait
    assert [t for name, t in times if name == "a"][-1] >= 2.0
    assert (stats["too_many_tasks"], stats["rate_limited"]) == (1, 0)


def test_rate_limit_wait_is_bounded() -> None:
    """An upstream that keeps saying 429 ends in UpstreamUnavailable once the wait would pass the bound."""

    async def main() -> float:
        p = pacer(max_rate_limit_wait=60)

        async def refuse() -> None:
            raise UpstreamRateLimited(25.0)

        with pytest.raises(UpstreamUnavailable) as caught:
            await p.call(refuse)
        assert isinstance(caught.value.__cause__, UpstreamRateLimited)
        await p.aclose()
        return now()

    assert run(main()) == pytest.approx(50.0)  # refused at 0, 25, 50: a third wait would reach 75 s


def test_rate_limited_poll_is_requeued_not_failed() -> None:
    """A 429 on a poll pauses the key and the poll is simply made again: the client sees no error."""

    async def main() -> Task:
        p = pacer(latency_scale=0.1)
        answers: list[Task | Exception] = [UpstreamRateLimited(1.0), Task("t", "completed")]

        async def poll(task_id: str) -> Task:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        result = await p.wait_for(Task("t", "processing"), poll, latency_class="low")
        await p.aclose()
        return result

    assert run(main()).status == "completed"


# --- poll timing ---


def test_terminal_task_returns_at_once() -> None:
    """A task that is already complete at submit (a synchronous model) is returned without any poll."""

    async def main() -> Task:
        p = pacer()

        async def poll(task_id: str) -> Task:
            raise AssertionError("no poll expected")

        done = Task("t", "completed", ("u",))
        assert await p.wait_for(done, poll, latency_class="low") is done
        return done

    run(main())


def test_first_poll_near_expected_completion() -> None:
    """A lone task of the 20-40 s class (scale 0.1) is first polled inside its 2-4 s range, not at once."""

    async def main() -> list[float]:
        p = pacer(latency_scale=0.1)
        polls: list[float] = []

        async def poll(task_id: str) -> Task:
            polls.append(now())
            return Task(task_id, "completed" if now() >= 3.0 else "processing")

        await p.wait_for(Task("t", "processing"), poll, latency_class="low")
        await p.aclose()
        return polls

    polls = run(main())
    assert 2.0 <= polls[0] <= 3.0
    assert polls[-1] - 3.0 <= 0.5  # a plentiful budget: polled often, seen soon after it finished


def test_likeliest_finished_is_polled_first() -> None:
    """When two polls are due and one slot frees, it goes to the task more likely finished by now."""

    async def main() -> list[str]:
        priors = {"narrow": LatencyPrior(5, 6), "wide": LatencyPrior(4.9, 60)}
        p = pacer(priors=priors)
        order: list[str] = []
        refusals = [UpstreamRateLimited(10.0)]

        async def submit() -> str:
            if refusals:
                raise refusals.pop()  # the key is paused for 10 s: both polls fall due meanwhile
            order.append("submit")
            return "ok"

        async def poll(task_id: str) -> Task:
            order.append(task_id)
            return Task(task_id, "completed")

        await asyncio.gather(
            p.call(submit),
            p.wait_for(Task("wide", "processing"), poll, latency_class="wide"),
            p.wait_for(Task("narrow", "processing"), poll, latency_class="narrow"),
        )
        await p.aclose()
        return order

    order = run(main())
    assert order[0] == "narrow"
    assert [name for name in order if name != "submit"] == ["narrow", "wide"]


def test_learning_moves_first_poll_toward_observed_latency() -> None:
    """Tasks that always finish in 1 s, against a 2-4 s prior, get their first poll moved toward 1 s."""

    async def main() -> list[float]:
        p = pacer(latency_scale=0.1)
        firsts: list[float] = []
        for _ in range(16):
            start, polls = now(), []

            async def poll(task_id: str, start: float = start, polls: list[float] = polls) -> Task:
                polls.append(now() - start)
                return Task(task_id, "completed" if now() - start >= 1.0 else "processing")

            await p.wait_for(Task("t", "processing"), poll, latency_class="low")
            firsts.append(polls[0])
        await p.aclose()
        return firsts

    firsts = run(main())
    assert firsts[0] >= 2.0
    assert firsts[-1] == pytest.approx(1.0, abs=0.3)


def test_learner_handles_censored_completions() -> None:
    """Completions known only between two polls (around 8 s) move a 2-4 s estimate to about 8 s."""
    learner = LatencyLearner()
    prior = LatencyPrior(2, 4)
    assert learner.model("c", prior).quantile(0.5) == pytest.approx(3.0, abs=0.1)
    rng = random.Random(1)
    for _ in range(40):
        done = rng.uniform(7.5, 8.5)
        learner.observe("c", prior, done - rng.uniform(0, 0.4), done + rng.uniform(0, 0.4))
    model = learner.model("c", prior)
    assert model.quantile(0.5) == pytest.approx(8.0, abs=0.4)
    assert model.cdf(4.0) < 0.1


def test_transient_poll_failures_are_retried() -> None:
    """A poll that fails transiently a few times and then answers gives the answer, not an error."""

    async def main() -> tuple[Task, dict[str, Any]]:
        p = pacer(latency_scale=0.1)
        answers: list[Task | Exception] = [UpstreamTransient("reset")] * 3 + [Task("t", "completed")]

        async def poll(task_id: str) -> Task:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        result = await p.wait_for(Task("t", "processing"), poll, latency_class="low")
        stats = p.stats()
        await p.aclose()
        return result, stats

    result, stats = run(main())
    assert result.status == "completed"
    assert (stats["transient_failures"], stats["polls"]) == (3, 4)


def test_transient_poll_failures_never_abandon_the_task() -> None:
    """Forty failed polls in a row (minutes of outage) only back off: the next good poll completes the task."""

    async def main() -> tuple[Task, list[float]]:
        p = pacer(latency_scale=0.1, max_poll_backoff=8)
        times: list[float] = []

        async def poll(task_id: str) -> Task:
            times.append(now())
            if len(times) <= 40:
                raise UpstreamTransient(f"failure {len(times)}")
            return Task(task_id, "completed")

        result = await p.wait_for(Task("t", "processing"), poll, latency_class="low")
        await p.aclose()
        return result, times

    result, times = run(main())
    assert result.status == "completed" and len(times) == 41
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) == pytest.approx(8, abs=0.2)  # the backoff doubles up to its cap, and stays there
    assert gaps[1] < gaps[3] < gaps[6]


def test_failing_polls_end_only_at_the_task_cap() -> None:
    """A poll that never succeeds (5xx or 429 forever) ends in TaskTimeout at the cap, not earlier."""

    async def main(failure: Exception) -> float:
        p = pacer(max_task_seconds=600)

        async def poll(task_id: str) -> Task:
            raise failure

        with pytest.raises(TaskTimeout, match="task_down"):
            await p.wait_for(Task("task_down", "processing"), poll, latency_class="low")
        await p.aclose()
        return now()

    assert run(main(UpstreamTransient("502 Bad Gateway"))) == pytest.approx(600, abs=1)
    assert run(main(UpstreamRateLimited(25.0))) == pytest.approx(600, abs=26)


def test_task_cap_raises_timeout_naming_the_task() -> None:
    """A task still processing at max_task_seconds ends in TaskTimeout naming it, at the cap and not later."""

    async def main() -> float:
        p = pacer(max_task_seconds=300)

        async def poll(task_id: str) -> Task:
            return Task(task_id, "processing")

        with pytest.raises(TaskTimeout, match="task_slow"):
            await p.wait_for(Task("task_slow", "processing"), poll, latency_class="low")
        assert p.stats()["timeouts"] == 1
        await p.aclose()
        return now()

    assert run(main()) == pytest.approx(300, abs=0.01)


def test_task_cap_counts_from_submitted_at() -> None:
    """A task submitted long ago times out at once rather than being polled."""

    async def main() -> None:
        p = pacer(max_task_seconds=10)
        await asyncio.sleep(20)

        async def poll(task_id: str) -> Task:
            raise AssertionError("no poll expected")

        with pytest.raises(TaskTimeout):
            await p.wait_for(Task("t", "processing"), poll, latency_class="low", submitted_at=0.0)

    run(main())


# --- fairness and independence ---


def test_submits_are_not_starved_by_polls() -> None:
    """With 40 overdue tasks keeping polls due all the time, queued submits still get one slot in nine."""

    async def main() -> tuple[int, int]:
        up = FakeUpstream(latency=lambda: 1000.0)
        p = pacer(priors={"low": LatencyPrior(1, 2)})  # every task runs far past its estimate
        followers = [asyncio.ensure_future(submit_and_wait(p, up)) for _ in range(40)]
        await asyncio.sleep(5)
        queued = [asyncio.ensure_future(p.call(up.submit)) for _ in range(100)]
        await asyncio.sleep(20)
        assert p.stats()["due_polls"] > 10  # polls were waiting all along
        kinds = [kind for at, kind in up.arrivals if 5 <= at < 25]
        await p.aclose()
        await asyncio.gather(*followers, *queued, return_exceptions=True)
        return kinds.count("submit"), kinds.count("poll")

    submits, polls = run(main())
    assert submits >= (submits + polls) / 9 - 1
    assert polls >= (submits + polls) / 2


def test_polls_are_not_starved_by_submits() -> None:
    """A task due for its poll is served within a few slots even behind a queue of 200 submits."""

    async def main() -> tuple[float, int]:
        up = FakeUpstream(latency=lambda: 3.0)
        p = pacer(latency_scale=0.1)
        task = await p.call(up.submit)
        backlog = [asyncio.ensure_future(p.call(up.submit)) for _ in range(200)]
        await p.wait_for(task, up.poll, latency_class="low")
        seen = up.tasks[task.id].seen_at
        assert seen is not None
        submitted = sum(1 for f in backlog if f.done())
        await p.aclose()
        await asyncio.gather(*backlog, return_exceptions=True)
        return seen - up.tasks[task.id].done_at, submitted

    delay, submitted = run(main())
    assert delay <= 1.0
    assert submitted < 200  # the poll did not wait for the submit queue to drain


def test_keys_are_independent() -> None:
    """A backlog of 100 submits on key A does not delay a submit on key B."""

    async def main() -> float:
        pacers = Pacers(clock=now, sleep=asyncio.sleep)
        up_a, up_b = FakeUpstream(), FakeUpstream()
        a, b = pacers.get("reapi", "key-a"), pacers.get("reapi", "key-b")
        assert a is pacers.get("reapi", "key-a") and a is not b
        backlog = [asyncio.ensure_future(a.call(up_a.submit)) for _ in range(100)]
        await asyncio.sleep(0.5)
        asked = now()
        await b.call(up_b.submit)
        waited = now() - asked
        assert a.stats()["queued_calls"] > 80
        await pacers.aclose()
        await asyncio.gather(*backlog, return_exceptions=True)
        return waited

    assert run(main()) <= 0.1


def test_pacers_share_one_learner_per_provider() -> None:
    """Keys of one provider learn together; another provider learns apart."""
    pacers = Pacers()
    assert pacers.get("reapi", "a").learner is pacers.get("reapi", "b").learner
    assert pacers.get("reapi", "a").learner is not pacers.get("reve2img", "a").learner


def test_pacers_reject_bad_settings_at_start_up() -> None:
    """A nonsensical setting fails when the registry is built, not at the first request."""
    with pytest.raises(ValueError):
        Pacers(rate=0)


def test_close_fails_waiting_callers() -> None:
    """Closing a Pacer fails queued calls with ShuttingDown instead of leaving them hanging."""

    async def main() -> None:
        p = pacer()
        up = FakeUpstream()
        backlog = [asyncio.ensure_future(p.call(up.submit)) for _ in range(30)]
        await asyncio.sleep(0.5)
        await p.aclose()
        results = await asyncio.gather(*backlog, return_exceptions=True)
        assert any(isinstance(r, ShuttingDown) for r in results)
        assert all(isinstance(r, Task | ShuttingDown) for r in results)

    run(main())


def test_cancelled_wait_leaves_nothing_behind() -> None:
    """A client that goes away stops its task's polling."""

    async def main() -> None:
        p = pacer(latency_scale=0.1)
        up = FakeUpstream(latency=lambda: 100.0)
        waiter = asyncio.ensure_future(submit_and_wait(p, up))
        await asyncio.sleep(5)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        polls = len(up.arrivals)
        await asyncio.sleep(20)
        assert len(up.arrivals) == polls
        assert p.stats()["watched_tasks"] == 0

    run(main())


def test_held_tasks_cost_little_and_sleep_between_slots() -> None:
    """2,000 held tasks: the dispatcher wakes about once per request, never in a busy loop."""
    naps = 0

    async def counting_sleep(seconds: float) -> None:
        nonlocal naps
        naps += 1
        await asyncio.sleep(seconds)

    async def main() -> tuple[int, int]:
        up = FakeUpstream(latency=lambda: 10_000.0)
        p = Pacer(clock=now, sleep=counting_sleep, priors={"long": LatencyPrior(9_000, 11_000)})
        followers = [asyncio.ensure_future(submit_and_wait(p, up, "long")) for _ in range(2000)]
        await asyncio.sleep(600)
        requests = p.stats()["requests"]
        await p.aclose()
        await asyncio.gather(*followers, return_exceptions=True)
        return requests, naps

    requests, naps = run(main())
    assert requests == 2000  # the submits; nobody is polled long before the expected time
    assert naps <= 2 * requests + 10


def test_prior_lookup_falls_back_by_prefix() -> None:
    """A class without its own prior takes its longest prefix's, then "*", then the documented range."""
    priors = {"reapi/m/low": LatencyPrior(1, 2), "*": LatencyPrior(3, 4)}
    assert find_prior(priors, "reapi/m/low/8k") == LatencyPrior(1, 2)
    assert find_prior(priors, "reve2img/x") == LatencyPrior(3, 4)
    assert find_prior({}, "anything") == LatencyPrior(20, 180)


# --- the simulation ---


@dataclass(frozen=True)
class Outcome:
    refused: int
    busiest_second: int
    requests_per_task: float
    delay_p50: float
    delay_p90: float
    delay_max: float
    throughput: float


def simulate(tasks: int, seed: int) -> Outcome:
    """`tasks` concurrent clients on one key, latencies uniform 2-4 s, through a window-enforcing upstream."""

    async def main() -> Outcome:
        rng = random.Random(seed)
        up = FakeUpstream(latency=lambda: rng.uniform(2.0, 4.0), seed=seed)
        p = pacer(latency_scale=0.1)
        await asyncio.gather(*(submit_and_wait(p, up) for _ in range(tasks)))
        makespan = now()
        await p.aclose()
        delays = sorted((t.seen_at or 0) - t.done_at for t in up.tasks.values())
        return Outcome(
            refused=up.refused,
            busiest_second=up.busiest_second(),
            requests_per_task=len(up.arrivals) / tasks,
            delay_p50=delays[len(delays) // 2],
            delay_p90=delays[int(len(delays) * 0.9)],
            delay_max=delays[-1],
            throughput=tasks / makespan,
        )

    return run(main())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulation_sixty_tasks_on_one_key(seed: int) -> None:
    """60 tasks of 2-4 s on one 10 req/s key: no 429, <= 2.5 requests a task, >= 4 tasks/s, prompt answers."""
    outcome = simulate(60, seed)
    print(f"60 tasks, seed {seed}: {outcome}")
    assert outcome.refused == 0 and outcome.busiest_second <= 10
    assert outcome.requests_per_task <= 2.5
    assert outcome.throughput >= 4.0
    assert outcome.delay_p50 <= 0.9
    assert outcome.delay_p90 <= 2.0
    assert outcome.delay_max <= 3.0  # nobody starved


def test_simulation_five_tasks_polls_often() -> None:
    """5 tasks on a plentiful budget are seen soon after they finish (delay p50 <= 0.5 s)."""
    outcome = simulate(5, 0)
    print(f"5 tasks: {outcome}")
    assert outcome.refused == 0
    assert outcome.delay_p50 <= 0.5


def test_documented_cadence_is_capped_for_any_age() -> None:
    """The documented back-off reaches its 30 s cap and stays there, even for ages that would overflow."""
    from shim.pacing_latency import documented_cadence

    assert documented_cadence(10) == 4.0
    assert documented_cadence(180) == 10.0
    assert documented_cadence(1e9) == 30.0
