"""A faithful emulator of the reve2img API: generate, status and a CDN of real PNGs, for tests and sandbox.

Owns the emulator's ledger (tasks, credits, counters) and its HTTP face. The pure part (catalog, prices,
sizes, markers, validation, task records, wire shapes) lives in `reve2img_catalog`; the rate limiter and the
PNGs are the shared emulator helpers `ratelimit` and `images`. Nothing here imports the gateway.

Prompt markers (anywhere in the prompt):
    [moderated]            400 CONTENT_POLICY_VIOLATION at submit; no task, no charge.
    [moderated_output]     the task ends FAILED, error {code: 400, message: CONTENT_POLICY_VIOLATION}, refunded.
    [fail=NAME]            NAME is GENERATION_FAILED, TIMEOUT or SERVICE_UNAVAILABLE: ends FAILED with error
                           {code: <its HTTP status>, message: NAME}, refunded.
    [latency=S]            ready after exactly S real seconds (time_scale is not applied).
    [submit500]            500 GENERATION_FAILED at submit; no task, no charge.
    [submit503]            503 SERVICE_UNAVAILABLE at submit; no task, no charge.
    [poll500=K]            the task's first K status calls answer 500 GENERATION_FAILED.

Rules, each with the sentence of ../shared/upstream/reve2img-api-reference.txt it implements ("ours" where
the reference is silent; "strict" where it is ambiguous and the emulator takes the reading that refuses most
or that a careless client would misread):

    envelope {code, message, data}; errors {code: HTTP status, message: NAME, detail}
                        "Every response uses a consistent envelope ... Errors return the HTTP status code in
                        both the HTTP response and code, with a machine-readable message and an optional
                        detail"; the NAME -> status table is ERROR_STATUS ("Errors" table)
    Bearer key, 401 INVALID_API_KEY
                        "All requests require an API key, passed as a Bearer token"; "Missing, malformed,
                        unknown, or revoked API key"; which keys are bad (sk-invalid*): ours (test keys)
    429 RATE_LIMITED, Retry-After
                        "Too many requests - slow down"; the limit (10 per sliding second), Retry-After and
                        a refused request taking no slot: ours. strict: status calls count too, although
                        "Polling too fast simply returns the current state (it is not an error)"
    429 TOO_MANY_TASKS  "Too many tasks in flight - wait for them to finish"; the cap (8 per key): ours
    400 INVALID_PARAMETER for a body that is not a JSON object
                        "Invalid JSON, or a parameter is invalid / missing"
    400 INVALID_MODEL   "Unknown or missing model"; the catalog (reve-2.0, reve-2.0-fast, flux-2,
                        seedream-4.0) and prices: ours (the category pages are not in our documents); so
                        are future-<x> ids, accepted as models added after our documents (flux-2's terms)
    400 INVALID_PROMPT  "prompt is missing or empty"; strict: required for every model ("Usually")
    prompt length       no limit (the reference sets none)
    aspect_ratio        the field is named ("e.g. image_urls, aspect_ratio"), its values are not: the seven
                        ratios of ASPECT_SIZES, their pixels and the 1:1 default are ours; any other value is
                        INVALID_PARAMETER naming aspect_ratio (strict: a short list)
    image_urls          named, not specified: a list of at most 4 http(s) URLs, 2 credits each, is ours
    other fields        accepted and ignored ("Each category adds its own fields")
    400 CONTENT_POLICY_VIOLATION
                        "Prompt or output rejected by content moderation": at submit ([moderated]) or as
                        a FAILED task ([moderated_output])
    credits             "Credits are deducted ... when a task is created" (402 INSUFFICIENT_CREDITS when the
                        balance is short); "the exact amount is returned as consumed_credits on success";
                        "Failed tasks are refunded automatically" / "not charged" (refunded once)
    synchronous models  "Synchronous models (e.g. Reve 2.0) may return SUCCESS with response.resultUrls right
                        away; everything else returns IN_PROGRESS"; it answers SUCCESS at once only when no
                        marker delays or fails the task (ours)
    status call         "GET /api/v1/status?task_id={id}"; no task_id: INVALID_PARAMETER; unknown or another
                        key's task: 404 TASK_NOT_FOUND ("No task with that task_id belongs to your account")
    FAILED task error   "data.error contains a code and message": strict, by analogy with the envelope,
                        {code: <HTTP status of the NAME>, message: <NAME>}; no consumed_credits (ours)
    one image per task, the /cdn/ result URLs, x-request-id, check order (auth, rate limit, body, markers,
    in-flight cap, credits), the /_emulator/* control endpoints (no key, plain JSON): ours
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shim.emulator.images import render_png
from shim.emulator.ratelimit import SlidingWindowLimiter, retry_after_seconds
from shim.emulator.reve2img_catalog import (
    ERROR_STATUS,
    ERROR_TEXT,
    ApiError,
    TaskRecord,
    key_digest,
    model_of,
    parse_generate,
    task_data,
)

__all__ = ["Reve2imgEmulator", "TaskRecord", "create_reve2img_app"]

COUNTERS = ("submits", "submit_rejected", "polls", "rate_limited", "too_many_tasks", "requests")


class Reve2imgEmulator:
    """The state behind the app; every method reads the injected clock, none does I/O."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        rate_limit: int = 10,
        rate_window: float = 1.0,
        max_in_flight: int = 8,
        initial_credits: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale < 0 or rate_limit < 1 or rate_window <= 0 or max_in_flight < 1 or initial_credits < 0:
            raise ValueError("reve2img emulator: invalid configuration")
        self.time_scale = time_scale
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.max_in_flight = max_in_flight
        self.initial_credits = initial_credits
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every task, balance, counter and rate-limit window."""
        self._tasks: dict[str, TaskRecord] = {}
        self._pending: set[str] = set()
        self._balances: dict[str, int] = {}
        self._counters: dict[str, dict[str, int]] = {}
        self._limiter = SlidingWindowLimiter(self.rate_limit, self.rate_window, clock=self.clock)

    @property
    def tasks(self) -> dict[str, TaskRecord]:
        """All tasks by id, with statuses brought up to the clock."""
        self._settle(self.clock())
        return self._tasks

    def counters(self, key: str) -> dict[str, int]:
        """A copy of the key's counters; RATE_LIMITED requests count only in requests and rate_limited."""
        return dict(self._counters.get(key) or self._new_counters())

    def credits(self, key: str) -> int:
        self._settle(self.clock())
        return self._balance(key)

    def set_credits(self, key: str, credits: int) -> None:
        self._balances[key] = credits

    def stats(self) -> dict[str, Any]:
        tasks = self.tasks
        keys = sorted(set(self._counters) | set(self._balances) | {t.key for t in tasks.values()})
        by_status = {s: sum(t.status == s for t in tasks.values()) for s in ("IN_PROGRESS", "SUCCESS", "FAILED")}
        return {
            "tasks": by_status,
            "keys": {
                key_digest(k): {
                    **self.counters(k),
                    "credits": self._balance(k),
                    "tasks": sum(t.key == k for t in tasks.values()),
                }
                for k in keys
            },
        }

    def authenticate(self, authorization: str | None) -> str:
        """The key of an `Authorization: Bearer <key>` header, or 401 INVALID_API_KEY."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token or token.startswith("sk-invalid"):
            raise ApiError("INVALID_API_KEY")
        return token

    def admit(self, key: str) -> None:
        """Count an API request and apply the sliding-window rate limit (not scaled by time_scale)."""
        self._count(key, "requests")
        wait = self._limiter.acquire(key)
        if wait is not None:
            self._count(key, "rate_limited")
            raise ApiError("RATE_LIMITED", retry_after=retry_after_seconds(wait))

    def generate(self, key: str, raw: bytes, base_url: str) -> dict[str, Any]:
        """Handle a generate body; returns the `data` of the answer or raises ApiError."""
        try:
            task = self._create(key, raw, base_url)
        except ApiError:
            self._count(key, "submit_rejected")
            raise
        self._count(key, "submits")
        if self._is_synchronous(task) and task.status == "SUCCESS":
            task.first_seen_terminal_at = task.created
            return task_data(task)
        return {"task_id": task.id, "status": "IN_PROGRESS"}

    def poll(self, key: str, task_id: str | None) -> dict[str, Any]:
        """Handle a status call; returns the `data` of the answer or raises ApiError."""
        self._count(key, "polls")
        if not task_id:
            raise ApiError("INVALID_PARAMETER", "task_id query parameter is required.")
        task = self._tasks.get(task_id)
        if task is None or task.key != key:
            raise ApiError("TASK_NOT_FOUND")
        task.polls += 1
        if task.polls <= task.poll500:
            raise ApiError("GENERATION_FAILED", "Injected by the [poll500=K] marker.")
        now = self.clock()
        self._settle(now)
        if task.status != "IN_PROGRESS" and task.first_seen_terminal_at is None:
            task.first_seen_terminal_at = now
        return task_data(task)

    def png_for(self, task_id: str, index: int) -> bytes | None:
        """The PNG behind a result URL, or None if there is no such finished image."""
        task = self.tasks.get(task_id)
        if task is None or task.status != "SUCCESS" or index != 0:
            return None
        return render_png(*task.size, seed=task.id)

    def _create(self, key: str, raw: bytes, base_url: str) -> TaskRecord:
        request = parse_generate(raw)
        markers = request.markers
        if markers.moderated:
            raise ApiError("CONTENT_POLICY_VIOLATION", "Prompt rejected by content moderation.")
        if markers.submit_error is not None:
            raise ApiError(markers.submit_error, f"{ERROR_TEXT[markers.submit_error]} (injected by marker)")
        now = self.clock()
        self._settle(now)
        if self._in_flight(key) >= self.max_in_flight:
            self._count(key, "too_many_tasks")
            raise ApiError("TOO_MANY_TASKS", f"{self.max_in_flight} tasks already in flight for this key.")
        balance = self._balance(key)
        if balance < request.price:
            raise ApiError("INSUFFICIENT_CREDITS", f"This request costs {request.price}, balance is {balance}.")
        self._balances[key] = balance - request.price
        task_id = uuid.uuid4().hex
        if markers.latency is not None:
            latency = markers.latency
        else:
            low, high = request.model.latency
            spread = int(task_id[:8], 16) / 0xFFFFFFFF
            latency = (low + (high - low) * spread) * self.time_scale
        task = TaskRecord(
            id=task_id,
            key=key,
            model=request.model.id,
            body=request.body,
            created=now,
            ready_at=now + latency,
            credits_charged=request.price,
            size=request.size,
            base_url=base_url,
            fate=markers.fail,
            poll500=markers.poll500,
        )
        self._tasks[task_id] = task
        self._pending.add(task_id)
        self._settle(now)
        counters = self._counters_of(key)
        counters["max_in_flight_seen"] = max(counters["max_in_flight_seen"], self._in_flight(key))
        return task

    def _is_synchronous(self, task: TaskRecord) -> bool:
        model = model_of(task.model)
        return task.ready_at == task.created and model is not None and model.synchronous

    def _settle(self, now: float) -> None:
        for task_id in [t for t in self._pending if self._tasks[t].ready_at <= now]:
            self._pending.discard(task_id)
            self._finish(self._tasks[task_id])

    def _finish(self, task: TaskRecord) -> None:
        if task.fate is None:
            task.status = "SUCCESS"
            task.result_urls = [f"{task.base_url}/cdn/{task.id}/0.png"]
            return
        task.status = "FAILED"
        # "data.error contains a code and message": which field holds the NAME is not said, so the strictest
        # reading, by analogy with the error envelope, puts the HTTP status in `code`, the NAME in `message`.
        task.error = {"code": ERROR_STATUS[task.fate], "message": task.fate}
        if not task.refunded:
            self._balances[task.key] = self._balance(task.key) + task.credits_charged
            task.refunded = True

    def _in_flight(self, key: str) -> int:
        return sum(self._tasks[t].key == key for t in self._pending)

    def _balance(self, key: str) -> int:
        if key not in self._balances:
            self._balances[key] = 0 if key.startswith("sk-broke") else self.initial_credits
        return self._balances[key]

    def _count(self, key: str, name: str) -> None:
        self._counters_of(key)[name] += 1

    def _counters_of(self, key: str) -> dict[str, int]:
        return self._counters.setdefault(key, self._new_counters())

    @staticmethod
    def _new_counters() -> dict[str, int]:
        return dict.fromkeys((*COUNTERS, "max_in_flight_seen"), 0)


# --- HTTP face -------------------------------------------------------------------------------------------


def _success(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"code": 200, "message": "success", "data": data})


def _error(status: int, name: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": status, "message": name, "detail": detail}, status, headers=headers)


async def _render_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return _error(exc.status, exc.name, exc.detail, headers)


async def _render_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    name = "NOT_FOUND" if exc.status_code == 404 else "METHOD_NOT_ALLOWED"
    return _error(exc.status_code, name, exc.detail, dict(exc.headers or {}))


def _emulator(request: Request) -> Reve2imgEmulator:
    emulator: Reve2imgEmulator = request.app.state.emulator
    return emulator


async def _generate(request: Request) -> Response:
    emulator = _emulator(request)
    key = emulator.authenticate(request.headers.get("authorization"))
    emulator.admit(key)
    raw = await request.body()
    # This app's own external base URL, mount prefix included (`request.base_url` is the top-level app's).
    base_url = str(request.base_url.replace(path=request.scope.get("root_path", ""))).rstrip("/")
    return _success(emulator.generate(key, raw, base_url))


async def _status(request: Request) -> Response:
    emulator = _emulator(request)
    key = emulator.authenticate(request.headers.get("authorization"))
    emulator.admit(key)
    return _success(emulator.poll(key, request.query_params.get("task_id")))


async def _cdn(request: Request) -> Response:
    png = _emulator(request).png_for(request.path_params["task_id"], request.path_params["index"])
    if png is None:
        return _error(404, "NOT_FOUND", "No such image.")
    return Response(png, media_type="image/png")


async def _stats(request: Request) -> Response:
    return JSONResponse(_emulator(request).stats())


async def _set_credits(request: Request) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    key = body.get("key") if isinstance(body, dict) else None
    credits = body.get("credits") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key or type(credits) is not int or credits < 0:
        raise ApiError("INVALID_PARAMETER", 'Expected {"key": "<non-empty>", "credits": <int >= 0>}.')
    _emulator(request).set_credits(key, credits)
    return JSONResponse({"key": key_digest(key), "credits": credits})


async def _reset(request: Request) -> Response:
    _emulator(request).reset()
    return JSONResponse({"reset": True})


class _RequestIdMiddleware:
    """Stamps every response with a fresh `x-request-id`, as the upstream does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_reve2img_app(
    *,
    time_scale: float = 1.0,
    rate_limit: int = 10,
    rate_window: float = 1.0,
    max_in_flight: int = 8,
    initial_credits: int = 100_000,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """A Starlette app speaking the reve2img wire format; `app.state.emulator` is its `Reve2imgEmulator`."""
    emulator = Reve2imgEmulator(
        time_scale=time_scale,
        rate_limit=rate_limit,
        rate_window=rate_window,
        max_in_flight=max_in_flight,
        initial_credits=initial_credits,
        clock=clock,
    )
    app = Starlette(
        routes=[
            Route("/api/v1/generate", _generate, methods=["POST"]),
            Route("/api/v1/status", _status, methods=["GET"]),
            Route("/cdn/{task_id}/{index:int}.png", _cdn, methods=["GET"]),
            Route("/_emulator/stats", _stats, methods=["GET"]),
            Route("/_emulator/credits", _set_credits, methods=["POST"]),
            Route("/_emulator/reset", _reset, methods=["POST"]),
        ],
        middleware=[Middleware(_RequestIdMiddleware)],
        exception_handlers={ApiError: _render_api_error, HTTPException: _render_http_error},
    )
    app.state.emulator = emulator
    return app
