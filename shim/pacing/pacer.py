"""Per-credential pacing: the one request budget of an upstream key, and the polling of its tasks.

    Pacers   (provider, credential hash) -> Pacer; one LatencyLearner per provider, shared by its Pacers
    Pacer    every upstream call of one key, submits and polls, takes a slot of its budget: a sliding
             window (rate per window, evenly spaced; a send holds its slot until a window after its
             answer) paused by any upstream 429. One dispatcher task per key sleeps until a slot is free
             and something is ready, then grants it.
Beside it: `pacing_window` (the window), `pacing_queue` (who goes next), `pacing_plan` (when to poll),
`pacing_latency` (latency priors, the distribution, the poll rule), `pacing_learner` (what the upstream is
observed to do, pooled across keys), `redis_learning` (and across replicas).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ..errors import (
    ShuttingDown,
    TaskTimeout,
    UpstreamRateLimited,
    UpstreamTransient,
    UpstreamUnavailable,
)
from ..types import LatencyPrior, Task
from .budget import Budget
from .learner import LatencyLearner
from .plan import PollPlanner, Watch
from .queue import Call, CallKind, SlotQueue
from .window import Send, Slack, SlidingWindow

T = TypeVar("T")
#: Added to a window's span (seconds): the upstream may round the arrival times it counts. Jitter on the way
#: needs no room of its own: a send holds its slot until a window after its answer (see `window`).
MARGIN = 0.005
#: How much an unexpected upstream 429 widens the upstream's windows (seconds), and at most by what share.
JITTER_STEP = 0.05
WIDEST = 0.2
#: A slot reserved ahead (a shared budget) is used only this soon after its time; a later wake-up (a busy
#: process) reserves another, once, so that late sends do not crowd the slots other replicas hold after it.
LATE_SLOT = 0.02
#: What a Pacer counts (its `stats`).
COUNTS = ("requests", "submits", "polls", "rate_limited", "too_many_tasks", "unreachable", "transient_failures",
          "timeouts", "completed", "failed")  # fmt: skip


def _check(latency_scale: float, max_task_seconds: float, max_poll_backoff: float, max_rate_limit_wait: float) -> None:
    if latency_scale <= 0 or max_task_seconds <= 0 or max_poll_backoff <= 0 or max_rate_limit_wait < 0:
        raise ValueError("need latency_scale > 0, max_task_seconds > 0, max_poll_backoff > 0")


def _check_not_negative(*values: float) -> None:
    if min(values) < 0:
        raise ValueError("poll intervals, price_factor and submit_weight must not be negative")


class Pacer:
    """The budget of one (provider, credential); see the module docstring."""

    def __init__(
        self,
        *,
        rate: float = 10,
        window: float = 1.0,
        latency_scale: float = 1.0,
        priors: Mapping[str, LatencyPrior] | None = None,
        max_task_seconds: float = 3600,
        max_poll_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        learner: LatencyLearner | None = None,
        slack: Slack | None = None,
        margin: float = MARGIN,
        max_rate_limit_wait: float = 120.0,
        min_poll_interval: float = 0.1,
        poll_retry_backoff: float = 0.25,
        price_factor: float = 0.05,
        submit_weight: float = 0.05,
        budget: Callable[[SlidingWindow], Budget] | None = None,
    ) -> None:
        """`margin` widens the window against the upstream's clock rounding. `min_poll_interval` is the
        closest two polls of one task ever come (they also stay a share of the task's age apart). A poll's
        price is `price_factor` x (tasks + queued calls) / budget per second; a queued call's wait counts
        `submit_weight` against a due poll. Without a `learner` (shared by a provider's Pacers, see Pacers),
        the Pacer learns alone, from `priors` (the documented latencies) x `latency_scale` (a hint for classes
        not yet observed). `budget` turns the key's window into the budget actually spent (one shared by
        replicas, say)."""
        _check(latency_scale, max_task_seconds, max_poll_backoff, max_rate_limit_wait)
        _check_not_negative(min_poll_interval, poll_retry_backoff, price_factor, submit_weight)
        window_ = SlidingWindow.for_rate(rate, window, margin)
        self._budget: Budget = window_ if budget is None else budget(window_)
        self._span = self._room = self._budget.span  # before any widening; the span last asked for
        self._slack = slack if slack is not None else Slack()  # shared by an upstream's Pacers (see Pacers)
        if learner is None:
            learner = LatencyLearner(
                priors=priors, hint=latency_scale, longest=max(max_task_seconds, 60.0), clock=clock
            )
        learner.subscribe(self._replan)
        self._planner = PollPlanner(
            learner=learner,
            min_poll_interval=min_poll_interval,
            price_factor=price_factor,
            per_second=self._budget.capacity / self._budget.span,
            load=lambda: self._budget.load(len(self._queue.calls) + self._watching),
        )
        self._queue = SlotQueue(self._planner, submit_weight=submit_weight)
        self._max_task_seconds = max_task_seconds
        self._max_poll_backoff = max_poll_backoff
        self._max_rate_limit_wait = max_rate_limit_wait
        self._retry_backoff = poll_retry_backoff
        self._clock = clock
        self._sleep = sleep
        self._watching = 0
        self._kick = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        #: the call or poll chosen for the slot reserved at that time (and whether that slot is a second one)
        self._held: tuple[asyncio.Future[Send], Send, bool] | None = None
        self._closed = False
        self._counts = dict.fromkeys(COUNTS, 0)

    @property
    def learner(self) -> LatencyLearner:
        return self._planner.learner

    async def call(self, fn: Callable[[], Awaitable[T]], *, kind: CallKind = "submit") -> T:
        """Run fn under one budget slot (retrying it after a pause when it raises UpstreamRateLimited)."""
        enqueued = self._clock()
        limited_since: float | None = None
        while True:
            call = Call(enqueued, asyncio.get_running_loop().create_future())
            self._queue.add_call(call, front=limited_since is not None)  # a retry keeps its place
            self._wake()
            send = await self._granted(call.grant)
            self._count(kind)
            try:
                return await self._out(send, fn())
            except UpstreamRateLimited as exc:
                limited_since = self._rate_limited(exc, limited_since)
                if exc.reason != "rate_limited":
                    # Only a rate limit concerns the whole key's budget; a full task cap or an unreachable
                    # upstream delays this call alone, so polls (which free the cap) keep flowing.
                    await self._sleep(max(exc.retry_after, 0.1))

    async def wait_for(
        self,
        task: Task,
        poll: Callable[[str], Awaitable[Task]],
        *,
        latency_class: str,
        submitted_at: float | None = None,
    ) -> Task:
        """Poll task.id through the budget until terminal; returns the terminal Task (completed or failed).

        A task the upstream accepted is never abandoned while its cap lasts: transient poll failures
        (network, timeouts, 5xx, unreadable answers) back off (doubling up to `max_poll_backoff`) and poll
        again, and 429s pause the key for as long as the upstream asks. Raises TaskTimeout
        `max_task_seconds` after submit; any other error of `poll` (a terminal upstream answer) propagates.
        """
        if task.terminal:
            return task
        start = self._clock() if submitted_at is None else submitted_at
        watch = Watch(task.id, latency_class, start, start + self._max_task_seconds)
        self._watching += 1
        self._queue.add_deadline(watch)
        self._planner.enlist(watch)
        try:
            return await self._follow(watch, poll)
        finally:
            self._planner.release(watch)
            self._watching -= 1
            self._queue.forget(watch, self._watching)

    def stats(self) -> dict[str, Any]:
        """Counters since start (requests, 429s, polls, ...) and the present queues: metrics, benchmarks."""
        now = self._clock()
        return {
            **self._counts,
            "queued_calls": self._queue.queued_calls(),
            "watched_tasks": self._watching,
            "due_polls": self._queue.due_polls(now),
            "price": self._planner.price(),
            "paused_for": max(self._budget.paused_until - now, 0.0),
            "budget_used": self._budget.used(now),  # share of the window's capacity spent over the last span
        }

    def idle(self) -> bool:
        """Nothing queued or watched, and the window no longer constrains anything."""
        idle = not self._queue.calls and not self._watching and self._held is None
        return idle and self._budget.idle(self._clock())

    async def aclose(self) -> None:
        """Stop the dispatcher; every queued call and watched task fails with ShuttingDown."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        self._fail_all(ShuttingDown("the gateway is shutting down"))

    # --- following one task ----------------------------------------------------------------------------

    async def _follow(self, watch: Watch, poll: Callable[[str], Awaitable[Task]]) -> Task:
        failures = strikes = 0
        watch.due = self._planner.plan(watch)
        while True:
            if self._clock() >= watch.deadline:
                raise self._timeout(watch)
            self._queue.add_poll(watch, asyncio.get_running_loop().create_future())
            self._wake()
            assert watch.grant is not None
            send = await self._granted(watch.grant)
            sent = self._clock()
            self._count("poll")
            try:
                result = await self._out(send, poll(watch.task_id))
            except UpstreamRateLimited as exc:
                self._rate_limited(exc, None, bounded=False)  # a paid task: wait as long as asked
                watch.adaptive = False  # same due: back near the head of the polls
                continue
            except UpstreamTransient as exc:
                failures += 1
                strikes = strikes + 1 if exc.final is not None else 0
                if exc.final is not None and strikes >= exc.patience:
                    raise exc.final from exc  # the same answer, again and again: the upstream means it
                self._counts["transient_failures"] += 1
                backoff = min(self._retry_backoff * 2 ** min(failures - 1, 32), self._max_poll_backoff)
                watch.due, watch.adaptive = min(self._clock() + backoff, watch.deadline), False
                continue
            failures = strikes = 0
            watch.polls += 1
            if watch.polls == 1:
                self._planner.first_poll(watch, sent - watch.submitted_at, done=result.terminal)
            if result.terminal:
                self._counts["completed" if result.status == "completed" else "failed"] += 1
                if result.status == "completed":  # finished after `running_at`, by now at the latest
                    self._planner.observe(watch, self._clock() - watch.submitted_at)
                return result
            self._planner.running(watch, sent - watch.submitted_at)
            watch.adaptive = True
            watch.due = self._planner.plan(watch)

    def _replan(self, latency_class: str) -> None:
        """The shared estimate of a class moved (learned on any key): re-plan this key's polls of it."""
        if self._watching and not self._closed:
            self._queue.replan(latency_class)
            if self._runner is not None:
                self._kick.set()

    def _timeout(self, watch: Watch) -> TaskTimeout:
        self._counts["timeouts"] += 1
        return TaskTimeout(f"task {watch.task_id} still processing after {self._max_task_seconds:g}s")

    def _rate_limited(self, exc: UpstreamRateLimited, since: float | None, *, bounded: bool = True) -> float:
        """Pause the whole key; when `bounded`, raise UpstreamUnavailable once waiting on would pass the bound
        (a submit: nothing was created, so the client may hear about it)."""
        now = self._clock()
        since = now if since is None else since
        counter = exc.reason if exc.reason in ("rate_limited", "too_many_tasks") else "unreachable"
        self._counts[counter] += 1
        wait = max(exc.retry_after, 0.1)
        if bounded and now + wait - since > self._max_rate_limit_wait:
            message = f"the upstream kept refusing this key for {now - since:.0f}s ({exc})"
            raise UpstreamUnavailable(message, retry_after=wait) from exc
        if exc.reason == "rate_limited":
            self._budget.pause(now + wait)
            # A 429 we did not expect means requests arrive with more jitter than the margin allows for:
            # give every later window (every key's) a little more room, within a bound.
            self._slack.widen(JITTER_STEP)
        return since

    async def _granted(self, grant: asyncio.Future[Send]) -> Send:
        """Wait for a slot; one granted to a caller who left before using it is released."""
        try:
            return await grant
        except BaseException:
            if grant.done() and not grant.cancelled() and grant.exception() is None:
                self._answered(grant.result())
            raise

    async def _out(self, send: Send, request: Awaitable[T]) -> T:
        """The request of a granted slot: its slot is held until a window after it returns (or fails)."""
        try:
            return await request
        finally:
            self._answered(send)

    def _answered(self, send: Send) -> None:
        """A send's answer came back (or it failed, or was never used): its slot frees a window from now."""
        send.answered(self._clock())
        if self._runner is not None:
            self._kick.set()  # the dispatcher may be waiting for this answer to free a slot

    def _count(self, kind: CallKind) -> None:
        self._counts["requests"] += 1
        self._counts["submits" if kind == "submit" else "polls"] += 1

    # --- the dispatcher --------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._closed:
            raise ShuttingDown("the gateway is shutting down")
        self._kick.set()
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Grant what can go now, then sleep until the next slot or due poll (or an arrival, if sooner)."""
        try:
            while True:
                now = self._clock()
                wake_at, interruptible = await self._dispatch(now)
                self._kick.clear()
                if wake_at is None:
                    if self._queue.empty():
                        return  # idle: the next arrival starts a new dispatcher
                    await self._kick.wait()
                elif interruptible:
                    await self._nap(wake_at - now)
                else:
                    await self._sleep(max(wake_at - now, 0.0))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            self._fail_all(exc)
            raise
        finally:
            if self._runner is asyncio.current_task():
                self._runner = None

    async def _nap(self, seconds: float) -> None:
        """Sleep, unless a new call or poll arrives first."""
        sleeper = asyncio.ensure_future(self._sleep(max(seconds, 0.0)))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait((sleeper, kicked), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            kicked.cancel()

    async def _dispatch(self, now: float) -> tuple[float | None, bool]:
        """Grant every slot free at `now`; return when to look again, and whether an arrival could matter
        sooner (not while waiting for the budget: an arrival cannot make a slot free)."""
        self._queue.expire(now, self._timeout)
        span = self._span + min(self._slack.extra, WIDEST * self._span)
        if span != self._room:  # the upstream's room moved (an unexpected 429 of any key)
            self._room = span  # (not the budget's span: a shared budget may hold a wider one of its own)
            self._budget.resize(span)
        self._planner.adapt(now, self._budget.used(now))
        while True:
            if self._held is not None:  # the one chosen for a slot reserved at `send.at`
                grant, send, again = self._held
                if not grant.done():  # else its caller left, or its task reached the cap: the slot goes unused
                    if send.at > now:
                        return self._budget_wait(send.at)
                    late = send.reserved and now - send.at > LATE_SLOT and not again
                    if late or not send.reserved:  # late: one more slot; none yet: ask again
                        send.answered(now)
                        self._held = (grant, await self._budget.claim(now), again or late)
                        now = self._clock()
                        continue
                    grant.set_result(send)
                else:
                    send.answered(now)
                self._held = None
            if not self._queue.ready(now):
                return self._queue.next_event(), True
            free_at = self._budget.next_free(now)
            if free_at > now:
                return self._budget_wait(free_at)
            taken = self._queue.take(now)
            if taken is not None:
                send = await self._budget.claim(now)
                self._held = (taken[1], send, False)
                if send.at > now:  # a shared budget: the round trip took time too
                    now = self._clock()

    def _budget_wait(self, until: float) -> tuple[float | None, bool]:
        """Wait for the budget (an arrival cannot free a slot); while every slot is out, an answer frees one."""
        deadline = self._queue.next_deadline()
        if until == math.inf:
            return deadline, True
        return min(until, math.inf if deadline is None else deadline), False

    def _fail_all(self, exc: BaseException) -> None:
        held, self._held = self._held, None
        if held is not None:
            held[1].answered(self._clock())
            if not held[0].done():
                held[0].set_exception(exc)
        self._queue.fail_all(exc)
