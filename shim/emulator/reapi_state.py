"""The reAPI emulator's state: keys, credits, counters, tasks, and the clock-driven task lifecycle.

No HTTP here: the Starlette shells (`reapi.py`, `reapi_media.py`) call `submit` / `poll` / `media_cell` /
`video_cell` / `last_frame_cell` and render what they return or raise. A task's status is computed from the
injected clock whenever someone looks at it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

from .ratelimit import SlidingWindowLimiter, retry_after_seconds
from .reapi_catalog import (
    ImageSpec,
    ReapiError,
    latency_bounds,
    nearest_ratio,
    parse_request,
    price,
)
from .reapi_markers import FAIL_MESSAGES, Markers, parse_markers
from .reapi_task import FetchedInput, MediaKind, TaskRecord, TaskReply, fingerprint, input_problem
from .reapi_video_catalog import VideoSpec, parse_video_request, video_latency_bounds, video_price


@dataclass(slots=True)
class Counters:
    """Per-key request counts, as `ReapiEmulator.counters` reports them."""

    submits: int = 0  # accepted submits (a task was created)
    submit_rejected: int = 0  # submits answered 4xx/5xx, auth and rate-limit refusals included
    polls: int = 0  # polls that passed auth and the rate limit
    rate_limited: int = 0  # 429s, submits and polls
    requests: int = 0  # every /api/v1 request carrying this key


def bearer_key(header: str | None) -> str:
    """The key in `Authorization: Bearer <key>`, or raise the documented 10001 / 10002."""
    if header is None:
        raise ReapiError(401, 10001, "missing Authorization header")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        raise ReapiError(401, 10002, "Authorization header must be `Bearer <key>`")
    return key


class ReapiEmulator:
    """Everything the emulated reAPI remembers; tests in the same process inspect it directly."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        rate_limit: int = 10,
        rate_window: float = 1.0,
        initial_credits: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale < 0:
            raise ValueError(f"time_scale must not be negative, got {time_scale}")
        self.time_scale = time_scale
        self.initial_credits = initial_credits
        self.clock = clock
        self.limiter = SlidingWindowLimiter(rate_limit, rate_window, clock=clock)
        self.tasks: dict[str, TaskRecord] = {}
        self._counters: dict[str, Counters] = {}
        self._credits: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._wall_offset = time.time() - clock()

    # --- inspection -------------------------------------------------------------------------------------
    def counters(self, key: str) -> dict[str, int]:
        """Request counts for `key` (zeros for a key never seen)."""
        return asdict(self._counters.get(key, Counters()))

    def credits(self, key: str) -> int:
        """The balance of `key`, after refunding any of its tasks that have failed by now."""
        now = self.clock()
        for task in self.tasks.values():
            if task.key == key:
                self._settle(task, now)
        return self._balance(key)

    def set_credits(self, key: str, credits: int) -> None:
        self._credits[key] = credits

    def reset(self) -> None:
        """Forget tasks, balances, counters and rate-limit history; cancel pending input fetches."""
        self.cancel_background()
        self.tasks.clear()
        self._counters.clear()
        self._credits.clear()
        self.limiter.reset()

    def stats(self) -> dict[str, Any]:
        """Counters and balances by key fingerprint, and every task, with no raw key anywhere."""
        now = self.clock()
        for task in self.tasks.values():
            self._settle(task, now)
        keys = set(self._counters) | set(self._credits)
        return {
            "keys": {fingerprint(k): {**self.counters(k), "credits": self._balance(k)} for k in sorted(keys)},
            "tasks": [task.describe() for task in self.tasks.values()],
        }

    # --- the API ----------------------------------------------------------------------------------------
    def submit(self, authorization: str | None, raw: bytes, base_url: str, kind: MediaKind = "image") -> TaskRecord:
        """Authenticate, rate-limit, validate, charge and create a task; raise `ReapiError` otherwise."""
        key: str | None = None
        spec: ImageSpec | VideoSpec
        try:
            key = bearer_key(authorization)
            self._admit(key)
            body, spec = parse_video_request(raw) if kind == "video" else parse_request(raw)
            markers = parse_markers(spec.prompt)
            if markers.moderated:
                # The docs say moderated prompts get a 400 at no charge but name no code: 20010 is ours.
                raise ReapiError(400, 20010, "prompt rejected by content moderation")
            if markers.submit_status is not None:
                raise ReapiError(markers.submit_status, 90000, "internal error")
            cost = video_price(spec) if isinstance(spec, VideoSpec) else price(spec)
            if self._balance(key) < cost:
                raise ReapiError(402, 30001, "insufficient credits")
        except ReapiError:
            if key is not None:
                self._counter(key).submit_rejected += 1
            raise
        self._credits[key] -= cost
        self._counter(key).submits += 1
        task = self._create(key, body, spec, markers, cost, base_url)
        self.tasks[task.id] = task
        return task

    def poll(self, authorization: str | None, task_id: str) -> TaskReply:
        """Answer `GET /api/v1/tasks/{task_id}` for the caller's own task."""
        key = bearer_key(authorization)
        self._admit(key)
        self._counter(key).polls += 1
        task = self.tasks.get(task_id)
        if task is None or task.key != key:
            # The docs name no code for an unknown task; 20404 is our assumption.
            raise ReapiError(404, 20404, "task not found")
        task.polls += 1
        now = self.clock()
        self._settle(task, now)
        if task.poll500_left > 0:
            task.poll500_left -= 1
            raise ReapiError(500, 90000, "internal error")
        if task.status != "processing" and task.first_seen_terminal_at is None:
            task.first_seen_terminal_at = now
        return task.reply()

    def media_cell(self, hex_id: str, index: int) -> tuple[int, int, str] | None:
        """(width, height, seed) of a completed task's image `index`, or None if there is no such image."""
        task = self._completed(hex_id, "image")
        if task is None or not isinstance(task.spec, ImageSpec) or not 0 <= index < task.spec.n:
            return None
        width, height = task.pixels
        return width, height, f"{task.id}/{index}"

    def video_cell(self, hex_id: str, index: int) -> tuple[int, int, int, str] | None:
        """(width, height, seconds, seed) of a completed task's video `index`, or None if there is none."""
        task = self._completed(hex_id, "video")
        if task is None or not isinstance(task.spec, VideoSpec) or index != 0:
            return None
        width, height = task.pixels
        return width, height, task.spec.duration, f"{task.id}/0"

    def last_frame_cell(self, hex_id: str) -> tuple[int, int, str] | None:
        """(width, height, seed) of a completed video's last frame, or None if its output has none."""
        task = self._completed(hex_id, "video")
        if task is None or task.output is None or "last_frame_url" not in task.output:
            return None
        width, height = task.pixels
        return width, height, f"{task.id}/0"

    # --- the worker -------------------------------------------------------------------------------------
    def inputs_fetched(self, task: TaskRecord, fetched: list[FetchedInput]) -> None:
        """Record the reference downloads of `task`; fail it at once (refunded) if they are unusable."""
        if self.tasks.get(task.id) is not task:
            return  # reset meanwhile
        task.fetched_inputs = [item.as_record() for item in fetched]
        task.inputs_pending = False
        now = self.clock()
        problem = input_problem(task.spec, fetched)
        if problem is not None:
            task.ready_at = now
            self._fail(task, {"code": 80003, "message": problem})
            return
        first = fetched[0].info
        if isinstance(task.spec, ImageSpec) and task.spec.ratio is None and first is not None:
            task.output_ratio = nearest_ratio(first.width, first.height)
        task.ready_at = max(task.ready_at, now)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work (input fetching) owned by this emulator."""
        job = asyncio.get_running_loop().create_task(work)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    def cancel_background(self) -> None:
        """Cancel pending input fetches (their tasks stay processing)."""
        for job in self._background:
            job.cancel()
        self._background.clear()

    async def wait_idle(self) -> None:
        """Wait until every background input fetch has finished (for tests)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # --- internals --------------------------------------------------------------------------------------
    def _counter(self, key: str) -> Counters:
        return self._counters.setdefault(key, Counters())

    def _balance(self, key: str) -> int:
        if key not in self._credits:
            self._credits[key] = 0 if key.startswith("rk_broke") else self.initial_credits
        return self._credits[key]

    def _admit(self, key: str) -> None:
        """Count the request, check the key, take a rate-limit slot; raise on refusal."""
        counter = self._counter(key)
        counter.requests += 1
        if key.startswith("rk_invalid"):
            raise ReapiError(401, 10003, "invalid API key")
        if key.startswith("rk_revoked"):
            raise ReapiError(403, 10004, "API key revoked")
        wait = self.limiter.acquire(key)
        if wait is not None:
            counter.rate_limited += 1
            seconds = retry_after_seconds(wait)
            raise ReapiError(429, 50001, "rate limit exceeded: too many requests", {"Retry-After": str(seconds)})

    def _completed(self, hex_id: str, kind: MediaKind) -> TaskRecord | None:
        task = self.tasks.get(f"task_{hex_id}")
        if task is None or task.kind != kind:
            return None
        self._settle(task, self.clock())
        return task if task.status == "completed" else None

    def _create(
        self,
        key: str,
        body: dict[str, Any],
        spec: ImageSpec | VideoSpec,
        markers: Markers,
        cost: int,
        base_url: str,
    ) -> TaskRecord:
        task_id = f"task_{uuid.uuid4().hex}"
        now = self.clock()
        if markers.latency is not None:
            latency = markers.latency  # real seconds, deliberately not scaled
        else:
            low, high = video_latency_bounds(spec) if isinstance(spec, VideoSpec) else latency_bounds(spec)
            latency = random.Random(task_id).uniform(low, high) * self.time_scale
        return TaskRecord(
            id=task_id,
            key=key,
            model=spec.model,
            body=body,
            spec=spec,
            markers=markers,
            created=now,
            created_at=int(self._wall_offset + now),
            ready_at=now + latency,
            base_url=base_url.rstrip("/"),
            credits_charged=cost,
            inputs_pending=bool(spec.image_urls),
            output_ratio=spec.ratio or "1:1",
            poll500_left=markers.poll500,
        )

    def _settle(self, task: TaskRecord, now: float) -> None:
        """Move a due task to its terminal state; a failure is refunded here, before anyone sees it."""
        if task.status != "processing" or task.inputs_pending or now < task.ready_at:
            return
        fail = task.markers.fail
        if fail is not None:
            self._fail(task, {"code": fail, "message": FAIL_MESSAGES[fail]})
            return
        task.output = task.result()
        task.status = "completed"

    def _fail(self, task: TaskRecord, error: dict[str, Any]) -> None:
        task.error = error
        task.status = "failed"
        if not task.refunded:
            task.refunded = True
            self._credits[task.key] = self._balance(task.key) + task.credits_charged
