"""The replica's connection to Redis (SHIM_REDIS_URL), shared by its budget, job registry and readiness check:
one redis-py asyncio client (imported only when configured), and a breaker: once Redis fails to answer, calls
fail at once (`LinkDown`) while a watcher pings it, and whoever buffered writes is told when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("shim")


class LinkDown(Exception):
    """Redis did not answer (now, or moments ago): the caller decides what is still safe to do."""


class RedisLink:
    """See the module docstring. `timeout` bounds every call; `retry_every` is how often a down Redis is pinged."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "shim",
        timeout: float = 1.0,
        retry_every: float = 0.5,
        client: Any = None,
    ) -> None:
        import redis.asyncio as aioredis
        from redis import exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.client: Any = client or aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the breaker decides when to try again, not the client
            decode_responses=True,
        )
        self.prefix = prefix
        self._timeout = timeout
        self._retry_every = retry_every
        self._failures: tuple[type[BaseException], ...] = (
            exceptions.ConnectionError,
            exceptions.TimeoutError,
            exceptions.ReadOnlyError,  # a replica promoted late, or a failover under way
            OSError,
            TimeoutError,
        )
        self._down = False
        self._watcher: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], object]] = []
        self._closed = False

    def key(self, *parts: str) -> str:
        """A key of this deployment: the prefix, then the parts (never a secret: hashes and ids only)."""
        return ":".join((self.prefix, *parts))

    @property
    def up(self) -> bool:
        """Redis answered the last call (or nothing has failed yet)."""
        return not self._down

    def on_recovery(self, listener: Callable[[], object]) -> None:
        """Call `listener()` each time Redis answers again after failing."""
        self._listeners.append(listener)

    def script(self, lua: str) -> Any:
        """A server-side script (EVALSHA, loaded again by the client when Redis restarted without it)."""
        return self.client.register_script(lua)

    async def run(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """`call(client)`, or LinkDown when Redis is down or does not answer within the timeout."""
        if self._down:
            raise LinkDown("Redis is unreachable")
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await call(self.client)
        except self._failures as exc:
            self.mark_down(exc)
            raise LinkDown(f"Redis is unreachable ({type(exc).__name__})") from None

    def mark_down(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("redis unreachable (%s): new jobs wait for it; running tasks go on", type(exc).__name__)
        self._down = True
        if self._watcher is None and not self._closed:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def problem(self) -> str | None:
        """The readiness check: None when Redis answers a PING, else why not."""
        try:
            await self.run(lambda client: client.ping())
        except LinkDown as exc:
            return str(exc)
        return None

    async def _watch(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._retry_every)
                try:
                    async with asyncio.timeout(self._timeout * 2):
                        await self.client.ping()
                except self._failures:
                    continue
                break
        finally:
            self._watcher = None
        self._down = False
        log.warning("redis reachable again")
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # one part's bug must not keep the others from recovering
                log.exception("redis recovery listener failed")

    async def aclose(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        with contextlib.suppress(*self._failures):
            await self.client.aclose()
