"""The sliding-window budget of one upstream credential: when the next request may leave.

Pure bookkeeping (times in, times out); the Pacer owns the clock and decides who gets each slot. The upstream
counts a request when it arrives, which we cannot see: only that it arrived after the send was granted and
before its answer came back. So a send holds its slot from its grant until a whole window after its answer
(a `Send`): whatever the jitter of the path (this process busy, the upstream's queue), no window of the
upstream's can hold more than `capacity` of ours. Besides the window, sends are spread evenly (`span /
capacity` apart unless a burst is allowed), so that a saturated key decides who goes next one slot at a time,
on fresh information, rather than ten at once each second and then nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class Send:
    """One send's hold on its window: from `at` (when it may leave) until a span after `end` (when its answer
    came back; infinite while it is out). A send not `reserved` holds nothing: no slot was free yet (a shared
    budget), so it is only when to ask again. `then` runs once it is answered (a shared budget's release)."""

    __slots__ = ("at", "end", "reserved", "_then")

    def __init__(self, at: float, *, reserved: bool = True, then: Callable[[], None] | None = None) -> None:
        self.at = at
        self.end = math.inf
        self.reserved = reserved
        self._then = then

    def answered(self, at: float) -> None:
        """Its answer (or failure) came back at `at`; a slot never used is released the same way (once)."""
        if self.end == math.inf:
            self.end = max(at, self.at)
            if self._then is not None:
                self._then()


class SlidingWindow:
    """At most `capacity` sends in any window of `span` seconds, plus an optional pause (an upstream 429).

    `span` may include a margin for clock rounding on the upstream's side; jitter needs none (see above).
    """

    __slots__ = ("capacity", "span", "paused_until", "_sends", "_spacing", "_slack", "_tat")

    def __init__(self, capacity: int, span: float, *, burst: int = 1) -> None:
        """Up to `burst` sends may leave at once after a quiet spell; beyond that they leave evenly spaced."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if span <= 0:
            raise ValueError(f"span must be positive, got {span}")
        burst = min(max(burst, 1), capacity)
        self.capacity = capacity
        self.span = span
        self.paused_until = -math.inf
        self._sends: list[Send] = []  # those still holding a slot (pruned as they expire)
        self._spacing = span / capacity
        self._slack = (burst - 1) * self._spacing
        self._tat = -math.inf  # when the next send is due at an even pace

    @classmethod
    def for_rate(cls, rate: float, window: float, margin: float) -> SlidingWindow:
        """`rate` requests per `window` seconds; a rate below one per window becomes one per longer window."""
        if rate <= 0 or window <= 0 or margin < 0:
            raise ValueError(f"need rate > 0, window > 0, margin >= 0; got {rate}, {window}, {margin}")
        if rate >= 1:
            return cls(math.floor(rate), window + margin)
        return cls(1, window / rate + margin)

    def next_free(self, now: float) -> float:
        """The earliest time, not before `now`, at which one more send keeps every window within capacity:
        infinite while `capacity` sends are out (one's answer frees a slot a span later)."""
        at = max(now, self._tat - self._slack, self.paused_until)
        held = self._held(now)
        if len(held) >= self.capacity:
            ends = sorted(send.end for send in held)
            at = max(at, ends[len(held) - self.capacity] + self.span)
        return at

    def record(self, at: float, then: Callable[[], None] | None = None) -> Send:
        """Count one send granted at `at` (call only when `next_free(at) <= at`); it holds its slot until a
        span after `Send.answered` (which then runs `then`)."""
        send = Send(at, then=then)
        self._sends.append(send)
        self._tat = max(self._tat, at) + self._spacing
        return send

    async def claim(self, now: float) -> Send:
        """`record(now)`, as the Pacer's `Budget` (see `budget`): a local slot leaves at once."""
        return self.record(now)

    def resize(self, span: float) -> None:
        """The window is now `span` seconds long (its sends spread over it)."""
        self.span = span
        self._spacing = span / self.capacity

    def pause(self, until: float) -> None:
        """Send nothing before `until` (extends, never shortens, a pause already in force)."""
        self.paused_until = max(self.paused_until, until)

    def used(self, now: float) -> float:
        """The share of the window's capacity held: sends out, or answered within the last span."""
        return len(self._held(now)) / self.capacity

    def load(self, local: int) -> int:
        """As the Pacer's `Budget`: a process's own window carries its own load alone."""
        return local

    def idle(self, now: float) -> bool:
        """True when no send or pause of the past still constrains the future."""
        return self.paused_until <= now and not self._held(now)

    def _held(self, now: float) -> list[Send]:
        """The sends still holding a slot at `now` (few: at most `capacity`, plus any recorded past it)."""
        cutoff = now - self.span
        if any(send.end <= cutoff for send in self._sends):
            self._sends = [send for send in self._sends if send.end > cutoff]
        return self._sends


class Slack:
    """Room added to every window of one upstream, learned from 429s we did not expect: the upstream counts
    otherwise than the window does (a coarser limiter, clocks that round, a proxy of its own), which belongs
    to the upstream, not to a key, so one key's surprise widens every key's window, within `ceiling` seconds."""

    __slots__ = ("ceiling", "extra")

    def __init__(self, ceiling: float = 1.0) -> None:
        self.ceiling = ceiling
        self.extra = 0.0

    def widen(self, step: float) -> None:
        self.extra = min(self.extra + step, self.ceiling)
