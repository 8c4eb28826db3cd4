"""The reAPI image API as a Starlette app (`create_reapi_app`): a faithful upstream for tests and bench.

Routes:
  POST /api/v1/images/generations   submit (Bearer auth, rate limit, validation, credits)
  GET  /api/v1/tasks/{id}           poll; status follows the injected clock
  GET  /media/tasks/{hex}/{i}.png   result images, real PNGs, no auth (a CDN)
  GET  /_emulator/stats             counters and credits by key fingerprint, tasks (never a raw key)
  POST /_emulator/credits           {"key": ..., "credits": n}
  POST /_emulator/time_scale        {"time_scale": s}: tasks submitted from now on take the documented
                                    latencies x s (a bench upstream that slows down mid-run)
  POST /_emulator/reset

Keys: `rk_invalid*` -> 401 10003, `rk_revoked*` -> 403 10004, `rk_broke*` starts with 0 credits, any other
key is valid and starts with `initial_credits`.

Prompt markers (for tests; they combine):
  [moderated]               submit -> 400 code 20010 "prompt rejected by content moderation", no charge
  [fail=80001|80002|80003]  the task ends failed with that code and message provider_submit_failed /
                            provider_polling_timeout / provider_failed, and is refunded
  [latency=S]               the task is terminal exactly S clock seconds after submit (not scaled)
  [poll500=K]               the first K polls of the task answer 500 code 90000 "internal error"
  [submit500] [submit503]   submit answers 500 / 503 code 90000; no task, no charge
  [submit_slow=S]           the task is created and charged, then the reply waits S real seconds
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .images import inspect_image, render_png
from .reapi_catalog import ReapiError
from .reapi_state import ReapiEmulator
from .reapi_task import FetchedInput, TaskRecord, fingerprint

__all__ = ["ReapiEmulator", "TaskRecord", "create_reapi_app"]

FETCH_TIMEOUT = 10.0
FETCH_MAX_BYTES = 50 * 1024 * 1024


def create_reapi_app(
    *,
    time_scale: float = 1.0,
    rate_limit: int = 10,
    rate_window: float = 1.0,
    initial_credits: int = 1_000_000,
    clock: Callable[[], float] = time.monotonic,
    fetch_transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Starlette:
    """Build the emulator app; `app.state.emulator` is its `ReapiEmulator`.

    `time_scale` multiplies the documented latencies (0 makes tasks finish at once); the rate limit is never
    scaled. `fetch_transport` is how reference images are downloaded (default: the network); `sleep` serves
    `[submit_slow=S]`.
    """
    emulator = ReapiEmulator(
        time_scale=time_scale,
        rate_limit=rate_limit,
        rate_window=rate_window,
        initial_credits=initial_credits,
        clock=clock,
    )
    fetcher = InputFetcher(fetch_transport)

    async def submit(request: Request) -> Response:
        raw = await request.body()
        task = emulator.submit(request.headers.get("authorization"), raw, _own_base_url(request))
        if task.inputs_pending:
            emulator.spawn(_fetch_inputs(emulator, fetcher, task))
        if task.markers.submit_slow:
            await sleep(task.markers.submit_slow)
        reply = {"id": task.id, "model": task.model, "status": "processing", "created_at": task.created_at}
        return JSONResponse(reply)

    async def poll(request: Request) -> Response:
        reply = emulator.poll(request.headers.get("authorization"), request.path_params["task_id"])
        return JSONResponse(reply)

    async def media(request: Request) -> Response:
        cell = emulator.media_cell(request.path_params["hex_id"], request.path_params["index"])
        if cell is None:
            raise ReapiError(404, 20404, "media not found")
        png = await run_in_threadpool(render_png, *cell)
        return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=604800"})

    async def stats(request: Request) -> Response:
        return JSONResponse(emulator.stats())

    async def set_credits(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise ReapiError(400, 20001, "invalid JSON body") from None
        key, credits = (body.get("key"), body.get("credits")) if isinstance(body, dict) else (None, None)
        if not isinstance(key, str) or not isinstance(credits, int) or isinstance(credits, bool):
            raise ReapiError(400, 20003, 'body must be {"key": str, "credits": int}')
        emulator.set_credits(key, credits)
        return JSONResponse({"key_fingerprint": fingerprint(key), "credits": credits})

    async def set_time_scale(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise ReapiError(400, 20001, "invalid JSON body") from None
        scale = body.get("time_scale") if isinstance(body, dict) else None
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not 0 <= scale < float("inf"):
            raise ReapiError(400, 20003, 'body must be {"time_scale": a number >= 0}')
        emulator.time_scale = float(scale)
        return JSONResponse({"time_scale": emulator.time_scale})

    async def reset(request: Request) -> Response:
        emulator.reset()
        return JSONResponse({"reset": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            emulator.cancel_background()
            await fetcher.aclose()

    app = Starlette(
        routes=[
            Route("/api/v1/images/generations", submit, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", poll, methods=["GET"]),
            Route("/media/tasks/{hex_id}/{index:int}.png", media, methods=["GET"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
            Route("/_emulator/credits", set_credits, methods=["POST"]),
            Route("/_emulator/time_scale", set_time_scale, methods=["POST"]),
            Route("/_emulator/reset", reset, methods=["POST"]),
        ],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={ReapiError: render_error, HTTPException: render_http_error},
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app


def _own_base_url(request: Request) -> str:
    """This app's external base URL, mount prefix included (`request.base_url` is the top-level app's)."""
    return str(request.base_url.replace(path=request.scope.get("root_path", ""))).rstrip("/")


class RequestIdMiddleware:
    """Give every request a `req_<uuid>` id, kept in `request.state.request_id` and sent as `x-request-id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def _envelope(request: Request, status: int, code: int, message: str, headers: dict[str, str]) -> Response:
    request_id = request.state.request_id
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


async def render_error(request: Request, exc: Exception) -> Response:
    """The one renderer of reAPI errors: `{"error": {"code", "message", "request_id"}}`."""
    assert isinstance(exc, ReapiError)
    return _envelope(request, exc.status, exc.code, exc.message, exc.headers)


async def render_http_error(request: Request, exc: Exception) -> Response:
    """Routing errors in the same envelope; 20404 / 20405 are our codes (the docs name none)."""
    assert isinstance(exc, HTTPException)
    code = 20404 if exc.status_code == 404 else 20000 + exc.status_code % 1000
    return _envelope(request, exc.status_code, code, exc.detail, dict(exc.headers or {}))


class InputFetcher:
    """Downloads reference images through one lazily opened `httpx.AsyncClient` (closed in the lifespan)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def fetch(self, url: str) -> FetchedInput:
        """Download `url`; any failure is reported in the result, never raised."""
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, timeout=FETCH_TIMEOUT, follow_redirects=True)
        try:
            async with self._client.stream("GET", url) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > FETCH_MAX_BYTES:
                        return FetchedInput(url, response.status_code)
        except httpx.HTTPError:
            return FetchedInput(url, None)
        info = await asyncio.to_thread(inspect_image, bytes(data))
        return FetchedInput(url, response.status_code, hashlib.sha256(data).hexdigest(), info)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _fetch_inputs(emulator: ReapiEmulator, fetcher: InputFetcher, task: TaskRecord) -> None:
    urls: list[str] = [*task.spec.image_urls]
    if task.spec.mask_url is not None:
        urls.append(task.spec.mask_url)
    fetched = await asyncio.gather(*(fetcher.fetch(url) for url in urls))
    emulator.inputs_fetched(task, list(fetched))
