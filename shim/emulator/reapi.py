"""The reAPI image and video API as a Starlette app (`create_reapi_app`): a faithful upstream for tests and bench.

Routes:
  POST /api/v1/images/generations   submit an image task (Bearer auth, rate limit, validation, credits)
  POST /api/v1/videos/generations   submit a video task: the same auth, rate limit, credits and markers; its
                                    own validation, prices and latencies (rules: reapi_video_catalog.py)
  GET  /api/v1/tasks/{id}           poll either kind; status follows the injected clock
  GET  /media/tasks/{hex}/{i}.png   result images, real PNGs, no auth (a CDN, reapi_media.py; Range-aware)
  GET  /media/tasks/{hex}/0.mp4     result videos, real H.264 MP4s (h264.py, mp4.py), no auth, Range-aware
  GET  /media/tasks/{hex}/last_frame.png   a video's last frame, for the models that return one
  GET  /_emulator/stats             counters and credits by key fingerprint, tasks (never a raw key)
  POST /_emulator/credits           {"key": ..., "credits": n}
  POST /_emulator/time_scale        {"time_scale": s}: tasks submitted from now on take the documented
                                    latencies x s (a bench upstream that slows down mid-run)
  POST /_emulator/reset

Keys: `rk_invalid*` -> 401 10003, `rk_revoked*` -> 403 10004, `rk_broke*` starts with 0 credits, any other
key is valid and starts with `initial_credits`.

Prompt markers (for tests, on image and video submits; they combine):
  [moderated]               submit -> 400 code 20010 "prompt rejected by content moderation", no charge
  [fail=80001|80002|80003]  the task ends failed with that code and message provider_submit_failed /
                            provider_polling_timeout / provider_failed, and is refunded
  [latency=S]               the task is terminal exactly S clock seconds after submit (not scaled)
  [poll500=K]               the first K polls of the task answer 500 code 90000 "internal error"
  [submit500] [submit503]   submit answers 500 / 503 code 90000; no task, no charge
  [submit_slow=S]           the task is created and charged, then the reply waits S real seconds

Image rules, each with the sentence of ../shared/upstream/ it implements ("ours" where the documents are silent;
"strict" where they are ambiguous and the emulator takes the reading that refuses most). Files: O =
reapi-overview.txt, G = reapi-gpt-image-2-official.txt, N = reapi-notes.md, Q = reapi-quickstart.txt.

  auth: 10001 / 10002 (401)     N "10001 missing Authorization header, 10002 header is not `Bearer <key>`"
  auth: rk_invalid* 10003 (401), rk_revoked* 10004 (403)
                                N "10003 key invalid, 10004 key revoked"; which keys: ours (test keys)
  rate limit, 429 50001         O "10 requests / second / user. When exceeded, you get HTTP 429 with code
                                50001 and a Retry-After header"; polls count: O "Polling ... shares the same
                                limit". strict: "in 1-second windows" read as a sliding window (any 1 s),
                                not fixed clock seconds; a refused request takes no slot: ours
  invalid JSON 20001            ours (the validation table names no code for it)
  model or prompt missing 20002 O "Both `model` and `prompt` are required" (code 20002 in the example)
  unknown model 20004           ours (no code is documented)
  the 13 image models           G's navigation lists them; besides the two G and N describe, each has the
                                cheap channel's rules (strict: N's gpt-image-2, the narrowest surface) and a
                                flat price of ours (reapi_catalog.FLAT_PRICES)
  future-lite-<x>, future-<x>   ours: models added after our documents, with gpt-image-2's and with
                                gpt-image-2-official's rules and prices (for pass-through tests)
  prompt empty 20002, > 4000 20007
                                G "Missing / empty -> 400 prompt is required (code 20002). Longer than 4,000
                                chars -> 400 prompt must be at most 4000 characters (code 20007)"
  non-string model / prompt 20003  ours
  size: 14 values, WxH on official only, else 20003
                                G "One of these 14 values (or auto ...). This channel additionally accepts a
                                pixel string ... Anything outside the list and not a pixel string is rejected
                                with 400"; N gpt-image-2 "sizes are the 14 ratio values (no WxH)"
  WxH snapping                  G "the upstream snaps it to the closest supported dimension": nearest ratio,
                                then nearest area is ours; the snapped tier wins over `resolution` (ours:
                                the document does not say how the two combine)
  resolution 1k/2k/4k, any case G "1k / 2k / 4k. Case-insensitive"; unknown -> 20003 (validation table)
  4k only with the six ratios   G "resolution: "4k" requires size to be one of 16:9, 9:16, 2:1, 1:2, 21:9,
                                or 9:21"; strict: the size string itself, so 4k with a pixel string is 20003
  size omitted                  G "T2I (no image_urls) -> defaults to "1:1". I2I -> output mirrors the first
                                reference image's ratio"
  n 1-4 on official, else 20003 G "Range 1-4" / "n outside 1-4 | 20003"; other models: N "`n` is fixed at 1";
                                strict: any other n is 20003 rather than ignored
  quality / mask_url / background / moderation on other models -> 20003
                                N gpt-image-2 has "no quality, mask, background or moderation"; strict:
                                refused rather than ignored
  image_urls <= 16, http(s), no data: URIs (20003)
                                G "Up to 16 entries. ... Public HTTP(S) URLs only. No data: URIs" and the
                                validation table's messages
  mask_url needs image_urls, no data: URI (20003)   G validation table
  quality / background / moderation enums (20003)   G "Unknown quality / background / moderation | 20003"
  a bad mask (size, alpha, opaque) fails the task 80003 after the download
                                G "Mismatched dimensions or a fully opaque mask return 400 from upstream":
                                the emulator learns it only once it has fetched the mask, so ours
  [moderated] -> 400 20010, no charge
                                G "rejected prompts return 400 at no charge"; the code 20010 is ours
  credits charged on submit, refunded once before a poll sees the failure
                                O "Each call deducts credits"; "Failed tasks are automatically refunded ...
                                before any poll observes the failed status. Refund is one-shot"
  price                         G "credits = ceil(per_image_usd x n x 1000)", "auto bills at the high rate",
                                "When size is "auto", reAPI prices against the most expensive ratio"; the
                                rates are ours (N: gpt-image-2 "1K 7 credits, 2K 14, 4K 20")
  402 30001                     N "3xxxx billing (402)"; 30001 is ours
  Idempotency-Key ignored       O "reAPI does not deduplicate by Idempotency-Key"
  task statuses and replies     N "processing, completed (output filled), failed (error filled ...)";
                                G "Submit and poll share the same shape", "output.image_urls ... length = n",
                                "error ... { code, message }"
  80001 / 80002 / 80003         G "provider_submit_failed / provider_polling_timeout / provider_failed"
  latency                       G "Polling pattern" table (low x 1k 20-40 s, medium x 1k 30-60 s, high x 2k
                                60-120 s, high x 4k 120-180 s); other cells interpolated: ours
  unknown or foreign task 404 20404   ours (no code is documented)
  result images                 N "Result URLs stay valid for 7 days" (Cache-Control max-age 7 days)
  x-request-id, request_id      O "request_id is unique per call"; the header is ours
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
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .images import inspect_image
from .reapi_catalog import ReapiError
from .reapi_media import media_routes
from .reapi_state import ReapiEmulator
from .reapi_task import FetchedInput, MediaKind, TaskRecord, fingerprint

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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            emulator.cancel_background()
            await fetcher.aclose()

    app = Starlette(
        routes=[
            Route("/api/v1/images/generations", _submit_image, methods=["POST"]),
            Route("/api/v1/videos/generations", _submit_video, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", _poll, methods=["GET"]),
            *media_routes(emulator),
            Route("/_emulator/stats", _stats, methods=["GET"]),
            Route("/_emulator/credits", _set_credits, methods=["POST"]),
            Route("/_emulator/time_scale", _set_time_scale, methods=["POST"]),
            Route("/_emulator/reset", _reset, methods=["POST"]),
        ],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={ReapiError: render_error, HTTPException: render_http_error},
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    app.state.fetcher = fetcher
    app.state.sleep = sleep
    return app


def _emulator(request: Request) -> ReapiEmulator:
    emulator: ReapiEmulator = request.app.state.emulator
    return emulator


async def _submit(request: Request, kind: MediaKind) -> Response:
    emulator = _emulator(request)
    raw = await request.body()
    task = emulator.submit(request.headers.get("authorization"), raw, _own_base_url(request), kind)
    if task.inputs_pending:
        emulator.spawn(_fetch_inputs(emulator, request.app.state.fetcher, task))
    if task.markers.submit_slow:
        await request.app.state.sleep(task.markers.submit_slow)
    reply = {"id": task.id, "model": task.model, "status": "processing", "created_at": task.created_at}
    return JSONResponse(reply)


async def _submit_image(request: Request) -> Response:
    return await _submit(request, "image")


async def _submit_video(request: Request) -> Response:
    return await _submit(request, "video")


async def _poll(request: Request) -> Response:
    reply = _emulator(request).poll(request.headers.get("authorization"), request.path_params["task_id"])
    return JSONResponse(reply)


async def _stats(request: Request) -> Response:
    return JSONResponse(_emulator(request).stats())


async def _set_credits(request: Request) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ReapiError(400, 20001, "invalid JSON body") from None
    key, credits = (body.get("key"), body.get("credits")) if isinstance(body, dict) else (None, None)
    if not isinstance(key, str) or not isinstance(credits, int) or isinstance(credits, bool):
        raise ReapiError(400, 20003, 'body must be {"key": str, "credits": int}')
    _emulator(request).set_credits(key, credits)
    return JSONResponse({"key_fingerprint": fingerprint(key), "credits": credits})


async def _set_time_scale(request: Request) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ReapiError(400, 20001, "invalid JSON body") from None
    scale = body.get("time_scale") if isinstance(body, dict) else None
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not 0 <= scale < float("inf"):
        raise ReapiError(400, 20003, 'body must be {"time_scale": a number >= 0}')
    emulator = _emulator(request)
    emulator.time_scale = float(scale)
    return JSONResponse({"time_scale": emulator.time_scale})


async def _reset(request: Request) -> Response:
    _emulator(request).reset()
    return JSONResponse({"reset": True})


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
    fetched = await asyncio.gather(*(fetcher.fetch(url) for url in task.input_urls))
    emulator.inputs_fetched(task, list(fetched))
