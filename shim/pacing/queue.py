"""The waiting room of one key: queued calls and planned polls, and who gets the next budget slot.

Calls (submits) wait in FIFO order, polls in a heap by due time. When both wait, a poll goes first if the
time its task may have sat finished outweighs the call's wait times `submit_weight`; a streak bound keeps
either kind from holding the budget for long. Among the longest-due polls the likeliest finished goes
first, or one left waiting too long. No clock and no I/O: the Pacer says what time it is.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .plan import Watch
from .window import Send

CallKind = Literal["submit", "poll"]

#: After this many grants of one kind in a row while the other kind waits, the other kind gets the next slot.
_MAX_STREAK: dict[CallKind, int] = {"submit": 3, "poll": 8}
#: How many of the longest-due polls compete for each slot.
_CANDIDATES = 16


class Planner(Protocol):
    """What the queue asks of poll timing (`pacing_plan.PollPlanner`)."""

    def plan(self, watch: Watch) -> float: ...

    def urgency(self, watch: Watch, now: float) -> float: ...

    def overdue(self, watch: Watch, now: float) -> float: ...


@dataclass(eq=False, slots=True)
class Call:
    """A queued call (mutable record, not a value): it owns a slot once `grant` resolves."""

    enqueued: float
    grant: asyncio.Future[Send]


class SlotQueue:
    """Queued calls, planned polls and task deadlines of one key; `take` says who gets a free slot."""

    def __init__(self, planner: Planner, *, submit_weight: float) -> None:
        self._planner = planner
        self._submit_weight = submit_weight
        self.calls: deque[Call] = deque()
        self._polls: list[tuple[float, int, Watch]] = []
        self._deadlines: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._streak: tuple[CallKind, int] = ("submit", 0)

    # --- filling -----------------------------------------------------------------------------------------

    def add_call(self, call: Call, *, front: bool = False) -> None:
        if front:
            self.calls.appendleft(call)
        else:
            self.calls.append(call)

    def add_poll(self, watch: Watch, grant: asyncio.Future[Send]) -> None:
        """Queue the task's next poll at `watch.due`; `grant` resolves when it may go."""
        watch.grant = grant
        self._push(watch)

    def add_deadline(self, watch: Watch) -> None:
        heapq.heappush(self._deadlines, (watch.deadline, next(self._seq), watch))

    def forget(self, watch: Watch, watching: int) -> None:
        """The task is no longer followed (its heap entries go stale; dead deadlines are dropped in bulk)."""
        watch.grant, watch.live = None, False
        if not watching:
            self._deadlines.clear()
        elif len(self._deadlines) > 2 * watching + 64:
            self._deadlines = [entry for entry in self._deadlines if entry[2].live]
            heapq.heapify(self._deadlines)

    def replan(self, latency_class: str) -> None:
        """Re-plan every queued model-planned poll of a class (its estimate moved)."""
        entries = []
        for _, seq, watch in self._polls:
            if self._waiting(watch, seq):
                if watch.adaptive and watch.latency_class == latency_class:
                    watch.due, watch.seq = self._planner.plan(watch), next(self._seq)
                entries.append((watch.due, watch.seq, watch))
        heapq.heapify(entries)
        self._polls = entries

    # --- reading -----------------------------------------------------------------------------------------

    def empty(self) -> bool:
        """Nothing queued and no task followed: the dispatcher may stop."""
        return self._head_call() is None and self._head_poll() is None and self.next_deadline() is None

    def ready(self, now: float) -> bool:
        """Something may go now, budget permitting."""
        watch = self._head_poll()
        return self._head_call() is not None or (watch is not None and watch.due <= now)

    def next_event(self) -> float | None:
        """The next time something may become ready or expire (None: only an arrival can change things)."""
        times = [t for t in (self.next_deadline(),) if t is not None]
        if (watch := self._head_poll()) is not None:
            times.append(watch.due)
        return min(times) if times else None

    def next_deadline(self) -> float | None:
        """The earliest deadline of a task still followed."""
        while self._deadlines and not self._deadlines[0][2].live:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def due_polls(self, now: float) -> int:
        return sum(1 for due, seq, w in self._polls if due <= now and self._waiting(w, seq))

    def queued_calls(self) -> int:
        return sum(1 for c in self.calls if not c.grant.done())

    # --- granting ----------------------------------------------------------------------------------------

    def take(self, now: float) -> tuple[CallKind, asyncio.Future[Send]] | None:
        """Remove who gets the slot free at `now`; None when nothing is ready after all (re-planned later)."""
        call, watch = self._head_call(), self._head_poll()
        ready = watch is not None and watch.due <= now
        if ready and watch is not None and watch.adaptive:
            due = self._planner.plan(watch)  # the price may have risen since this due was set
            if due > now + 1e-9:
                heapq.heappop(self._polls)
                watch.due = due
                self._push(watch)
                return None
        if ready:
            watch = self._pick_poll(now)
        contested = call is not None and ready
        kind: CallKind
        if call is not None and not (ready and watch is not None and self._poll_first(call, watch, now)):
            self.calls.popleft()
            kind, grant = "submit", call.grant
        elif watch is not None and watch.grant is not None:
            watch.seq = -1  # its heap entry is stale now
            kind, grant = "poll", watch.grant
        else:  # pragma: no cover - ready() said otherwise
            return None
        last, streak = self._streak
        self._streak = (kind, streak + 1 if kind == last and contested else int(contested))
        return kind, grant

    def expire(self, now: float, error: Callable[[Watch], Exception]) -> None:
        """Fail the queued polls of tasks past their deadline."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, watch = heapq.heappop(self._deadlines)
            if watch.grant is not None and not watch.grant.done():
                watch.grant.set_exception(error(watch))

    def fail_all(self, exc: BaseException) -> None:
        waiting = [c.grant for c in self.calls] + [w.grant for _, _, w in self._polls if w.grant is not None]
        self.calls.clear()
        self._polls.clear()
        self._deadlines.clear()
        for grant in waiting:
            if not grant.done():
                grant.set_exception(exc)

    # --- inside --------------------------------------------------------------------------------------------

    def _push(self, watch: Watch) -> None:
        watch.seq = next(self._seq)
        heapq.heappush(self._polls, (watch.due, watch.seq, watch))

    def _pick_poll(self, now: float) -> Watch:
        candidates: list[tuple[float, int, Watch]] = []
        while len(candidates) < _CANDIDATES and (watch := self._head_poll()) is not None and watch.due <= now:
            candidates.append(heapq.heappop(self._polls))
        best = max(candidates, key=lambda entry: self._planner.urgency(entry[2], now))
        for entry in candidates:
            heapq.heappush(self._polls, entry)
        return best[2]

    def _poll_first(self, call: Call, watch: Watch, now: float) -> bool:
        kind, streak = self._streak
        if streak >= _MAX_STREAK[kind]:
            return kind == "submit"
        return self._planner.overdue(watch, now) >= self._submit_weight * (now - call.enqueued)

    def _head_call(self) -> Call | None:
        while self.calls and self.calls[0].grant.done():  # the caller went away
            self.calls.popleft()
        return self.calls[0] if self.calls else None

    def _head_poll(self) -> Watch | None:
        while self._polls:
            _, seq, watch = self._polls[0]
            if self._waiting(watch, seq):
                return watch
            heapq.heappop(self._polls)
        return None

    @staticmethod
    def _waiting(watch: Watch, seq: int) -> bool:
        return seq == watch.seq and watch.grant is not None and not watch.grant.done()
