"""The seam between a Pacer and the budget it spends: `Budget`, met by the process's own `SlidingWindow` and by
`redis_budget.RedisBudget` (one budget shared by every replica). The Pacer asks `next_free` (cheap, local)
before it picks who goes, then `claim`s the slot for that one: at once (local), or after one round trip that
reserves the key's next free slot among all replicas (shared)."""

from __future__ import annotations

from typing import Protocol

from .window import Send


class Budget(Protocol):
    """What a Pacer asks of its key's budget (times are the Pacer's clock)."""

    @property
    def capacity(self) -> int: ...

    @property
    def span(self) -> float: ...

    @property
    def paused_until(self) -> float: ...

    def next_free(self, now: float) -> float:
        """The earliest time, not before `now`, at which this process sees a slot free."""
        ...

    async def claim(self, now: float) -> Send:
        """Reserve one send, `next_free(now) <= now` permitting: its `at` is when it may leave (`now`, or later
        when other replicas hold the slots before it); it holds its slot until `Send.answered`."""
        ...

    def pause(self, until: float) -> None: ...

    def resize(self, span: float) -> None:
        """The window is now `span` seconds long (the room against arrival jitter moved)."""
        ...

    def used(self, now: float) -> float: ...

    def load(self, local: int) -> int:
        """The key's load (tasks followed, calls queued) on everything sharing this budget, given this
        process's: what a poll's price is reckoned from."""
        ...

    def idle(self, now: float) -> bool: ...
