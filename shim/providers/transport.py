"""Foreign (httpx) failures translated at the boundary, with the question that matters for money:
could this call have reached the upstream?"""

from __future__ import annotations

import math

import httpx

#: Failures where the request certainly never left this process: safe to send again, even a submit.
NOT_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def describe(exc: Exception) -> str:
    """A short, key-free description of a transport failure."""
    return f"{type(exc).__name__}: {str(exc)[:200] or 'no detail'}"


#: The longest pause an upstream's Retry-After can impose on a key (seconds).
MAX_RETRY_AFTER = 300.0


def retry_after_seconds(headers: httpx.Headers, default: float = 1.0) -> float:
    """Retry-After (seconds or retry-after-ms) of an upstream 429; `default` when absent or unreadable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                seconds = float(raw) * scale
            except ValueError:
                continue
            if math.isfinite(seconds):  # "inf" or "nan" from an upstream must not pause a key forever
                return min(max(0.0, seconds), MAX_RETRY_AFTER)
    return default
