"""Foreign (httpx) failures translated at the boundary, with the question that matters for money:
could this call have reached the upstream?"""

from __future__ import annotations

import httpx

#: Failures where the request certainly never left this process: safe to send again, even a submit.
NOT_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def describe(exc: Exception) -> str:
    """A short, key-free description of a transport failure."""
    return f"{type(exc).__name__}: {str(exc)[:200] or 'no detail'}"


def retry_after_seconds(headers: httpx.Headers, default: float = 1.0) -> float:
    """Retry-After (seconds or retry-after-ms) of an upstream 429; `default` when absent or unreadable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) * scale)
            except ValueError:
                continue
    return default


def json_or_none(response: httpx.Response) -> object:
    """The response's JSON, or None when it has none (an HTML error page from a proxy, say)."""
    try:
        return response.json()
    except ValueError:
        return None
