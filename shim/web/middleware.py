"""The ASGI middleware around every route: forgiving the path mistakes clients make, a request id on every
answer, and CORS for browser clients."""

from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import events
from .request_events import RequestEvents


class PathTolerance:
    """Forgives the path mistakes clients make with a base URL: empty segments (n8n joins a base ending in
    `/` with `/images/...`), a doubled `/v1` (Dify appends `/v1` to a base that may already end in it) and a
    trailing slash (a redirect would not be followed by a POST)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            while "//" in path:
                path = path.replace("//", "/")
            while path.startswith("/v1/v1/"):
                path = path[3:]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/") or "/"
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Gives every request an id (scope state) and every response an `x-request-id` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        token = events.request_id.set(request_id)  # for the log lines of this request and of its jobs
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            events.request_id.reset(token)


def install(app: Starlette) -> None:
    """Add the middleware, outermost last."""
    app.add_middleware(RequestEvents)
    app.add_middleware(PathTolerance)
    app.add_middleware(RequestIdMiddleware)
    # Browser apps call OpenAI-compatible APIs directly with their own key: allow it, as OpenAI does.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["x-request-id", "x-shim-job", "x-upstream-task-ids", "retry-after", "x-should-retry"]
        + ["location", "preference-applied"],  # a job answered later (Prefer: respond-async)
    )
