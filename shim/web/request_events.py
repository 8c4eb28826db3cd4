"""The `request_finished` event of every HTTP request: its route template (never the raw path, which may
carry ids), method, status and duration, for the exporters (metrics, debug log lines)."""

from __future__ import annotations

import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..events import Events

#: The route label of a request no route matched.
UNMATCHED = "unmatched"


class RequestEvents:
    """Emits `request_finished` once the answer is sent (a streamed one once its last event is), or once the
    app gave up on it (a client gone, a crash: status 500 when no answer had started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            bus = _events(scope)
            if bus is not None:
                bus.emit(
                    "request_finished",
                    route=route_template(scope),
                    method=scope["method"],
                    status=status,
                    seconds=round(time.perf_counter() - started, 6),
                )


def _events(scope: Scope) -> Events | None:
    """The app's event bus, once its lifespan has built it."""
    app = scope.get("app")
    shim = getattr(getattr(app, "state", None), "shim", None)
    bus = getattr(shim, "events", None)
    return bus if isinstance(bus, Events) else None


def route_template(scope: Scope) -> str:
    """The path template of the route that matches the request (`/v1/images/jobs/{job_id}`), or UNMATCHED."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED
