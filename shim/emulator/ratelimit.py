"""A per-key sliding-window limiter: at most `limit` admissions in any window of `window` seconds.

Each admission is logged; a request at time t sees the admissions in (t - window, t]. Refused requests are not
logged, so a client that waits the advised delay is admitted.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Admit or refuse requests per key; the clock is injected so tests need no real waiting."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._log: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """Admit one request for `key` and return None, or refuse it and return seconds until a slot frees."""
        now = self._clock()
        log = self._log.setdefault(key, deque())
        while log and log[0] <= now - self.window:
            log.popleft()
        if len(log) < self.limit:
            log.append(now)
            return None
        return max(log[0] + self.window - now, 0.0)

    def reset(self) -> None:
        """Forget every admission."""
        self._log.clear()


def retry_after_seconds(wait: float) -> int:
    """Render a wait as a `Retry-After` value: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))
