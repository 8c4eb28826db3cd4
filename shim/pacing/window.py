"""The sliding-window budget of one upstream credential: when the next request may leave.

Pure bookkeeping (times in, times out); the Pacer owns the clock and decides who gets each slot. Besides the
hard window, sends are spread evenly (`span / capacity` apart unless a burst is allowed), so that a saturated
key decides who goes next one slot at a time, on fresh information, rather than ten at once each second and
then nothing; even spacing also leaves the most room for arrival jitter.
"""

from __future__ import annotations

import bisect
import math
from collections import deque


class SlidingWindow:
    """At most `capacity` sends in any window of `span` seconds, plus an optional pause (an upstream 429).

    `span` should already include a safety margin: requests reach the upstream with jitter, so a window
    that is exact on our side may be one request over on theirs.
    """

    __slots__ = ("capacity", "span", "paused_until", "_sent", "_spacing", "_slack", "_tat")

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
        self._sent: deque[float] = deque(maxlen=capacity)
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
        """The earliest time, not before `now`, at which one more send keeps every window within capacity."""
        at = max(now, self._tat - self._slack, self.paused_until)
        if len(self._sent) == self.capacity:
            at = max(at, self._sent[0] + self.span)
        return at

    def record(self, at: float) -> None:
        """Count one send at `at` (call only when `next_free(at) <= at`)."""
        self._sent.append(at)
        self._tat = max(self._tat, at) + self._spacing

    async def claim(self, now: float) -> float:
        """`record(now)`, as the Pacer's `Budget` (see `budget`): a local slot leaves at once."""
        self.record(now)
        return now

    def resize(self, span: float) -> None:
        """The window is now `span` seconds long (its sends spread over it)."""
        self.span = span
        self._spacing = span / self.capacity

    def pause(self, until: float) -> None:
        """Send nothing before `until` (extends, never shortens, a pause already in force)."""
        self.paused_until = max(self.paused_until, until)

    def used(self, now: float) -> float:
        """The share of the window's capacity spent over the last span."""
        # Sends are recorded in time order: a binary search finds the first one inside the window.
        return (len(self._sent) - bisect.bisect_right(self._sent, now - self.span)) / self.capacity

    def load(self, local: int) -> int:
        """As the Pacer's `Budget`: a process's own window carries its own load alone."""
        return local

    def idle(self, now: float) -> bool:
        """True when no send or pause of the past still constrains the future."""
        return self.paused_until <= now and (not self._sent or self._sent[-1] + self.span <= now)


class Slack:
    """Room added to every window of one upstream, learned from 429s we did not expect: arrival jitter belongs
    to the path to the upstream (its load balancer, its event loop), not to a key, so one key's surprise
    widens every key's window, within `ceiling` seconds."""

    __slots__ = ("ceiling", "extra")

    def __init__(self, ceiling: float = 1.0) -> None:
        self.ceiling = ceiling
        self.extra = 0.0

    def widen(self, step: float) -> None:
        self.extra = min(self.extra + step, self.ceiling)


class Spread:
    """How unevenly an upstream's answers come back (`excess`), shared by the upstream's Pacers: the seconds
    from a poll leaving to its answer, of the last `size` polls. A send reaches the upstream anywhere in that
    time, so when the times spread beyond the window's margin (a loaded upstream, or this process busy),
    arrivals bunch up by as much, and every key's window leaves that much more room."""

    __slots__ = ("_samples", "_excess", "_fresh")

    def __init__(self, size: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._excess = 0.0
        self._fresh = 0

    def observe(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._fresh += 1
        if self._fresh >= 16 and len(self._samples) >= 32:  # re-read every 16 answers (a sort of <= 256)
            ordered = sorted(self._samples)
            self._excess = ordered[int(len(ordered) * 0.95)] - ordered[0]
            self._fresh = 0

    def excess(self, margin: float) -> float:
        """How much the spread of answer times exceeds `margin` (0 while it does not)."""
        return max(self._excess - margin, 0.0)
