"""How the shim is served: uvicorn, with the limits that keep hostile clients from holding the process.

uvicorn bounds neither how long a client may take to send its request head nor how many connections it may
open: a thousand half-sent requests would hold a thousand descriptors for ever. `GuardedH11Protocol` closes
a connection whose request head is not complete `header_timeout` seconds after it opened (or after the
previous answer on it), and refuses connections past `max_connections`. Body reads have their own deadline
(`inbound.read_body`).
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import Settings
from .logs import uvicorn_log_config


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on request heads and a cap on open connections."""

    header_timeout = 10.0
    max_connections = 10_000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a whole request head arrived: the app's own deadlines take over

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request head on this connection gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        waiting_for_head = self.cycle is None or self.cycle.response_complete
        if waiting_for_head and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration every shim server uses (the CLI's and the tests')."""
    protocol = type(
        "ShimH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": settings.header_timeout, "max_connections": settings.max_connections},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        lifespan="on",
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings.log_format) or LOGGING_CONFIG,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=int(settings.drain_seconds) or None,
    )


def raise_open_files_limit() -> None:
    """Held requests each need a descriptor: lift the soft limit to the hard one (never above it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
