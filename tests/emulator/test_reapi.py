"""The reAPI emulator speaks the documented wire format: validation, auth, credits, limits, latency, media."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette

from shim.emulator.ratelimit import SlidingWindowLimiter, retry_after_seconds
from shim.emulator.reapi import ReapiEmulator, create_reapi_app

KEY = "rk_live_test_key_0001"
OTHER = "rk_live_other_key_0002"
ALL_SIZES = "1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 5:4, 4:5, 2:1, 1:2, 21:9, 9:21, auto"
WIDE = "{16:9, 9:16, 2:1, 1:2, 21:9, 9:21}"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _png(width: int, height: int, mode: str = "RGB", hole: bool = False) -> bytes:
    image = Image.new(mode, (width, height), (10, 20, 30, 255) if mode == "RGBA" else (10, 20, 30))
    if hole:
        image.paste((0, 0, 0, 0), (0, 0, width // 2, height // 2))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


REFS = {
    "/photo.png": _png(64, 48),
    "/mask.png": _png(64, 48, "RGBA", hole=True),
    "/small-mask.png": _png(32, 32, "RGBA", hole=True),
    "/opaque-mask.png": _png(64, 48, "RGBA"),
    "/rgb-mask.png": _png(64, 48),
    "/notes.txt": b"not an image",
}


def _serve_refs(request: httpx.Request) -> httpx.Response:
    data = REFS.get(request.url.path)
    return httpx.Response(200, content=data) if data is not None else httpx.Response(404)


@dataclass
class Emu:
    app: Starlette
    client: httpx.AsyncClient
    clock: FakeClock
    slept: list[float]

    @property
    def state(self) -> ReapiEmulator:
        return self.app.state.emulator  # type: ignore[no-any-return]

    async def submit(self, body: dict[str, Any], key: str = KEY) -> httpx.Response:
        return await self.client.post(
            "/api/v1/images/generations", json=body, headers={"Authorization": f"Bearer {key}"}
        )

    async def poll(self, task_id: str, key: str = KEY) -> httpx.Response:
        return await self.client.get(f"/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {key}"})


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[Emu]:
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    options.setdefault("rate_limit", 10_000)
    options.setdefault("fetch_transport", httpx.MockTransport(_serve_refs))
    app = create_reapi_app(clock=clock, sleep=fake_sleep, **options)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://emu") as client,
    ):
        yield Emu(app, client, clock, slept)


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    async with running() as emulator:
        yield emulator


def _official(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-image-2-official", "prompt": "a red fox", **fields}


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


VALIDATION = [
    pytest.param(b"{", 20001, "invalid JSON body", id="bad-json"),
    pytest.param(b"[1, 2]", 20001, "invalid JSON body", id="json-not-object"),
    pytest.param({}, 20002, "Both `model` and `prompt` are required", id="nothing"),
    pytest.param({"prompt": "x"}, 20002, "Both `model` and `prompt` are required", id="no-model"),
    pytest.param({"model": "gpt-image-2-official"}, 20002, "prompt is required", id="no-prompt"),
    pytest.param(_official(prompt=""), 20002, "prompt is required", id="empty-prompt"),
    pytest.param(_official(prompt=42), 20003, "prompt must be a string", id="prompt-not-string"),
    pytest.param({"model": 7, "prompt": "x"}, 20003, "model must be a string", id="model-not-string"),
    pytest.param(_official(model="dall-e-3"), 20004, 'unknown model "dall-e-3"', id="unknown-model"),
    pytest.param(_official(prompt="x" * 4001), 20007, "prompt must be at most 4000 characters", id="long-prompt"),
    pytest.param(
        _official(size="7:5"),
        20003,
        f'invalid size "7:5" (allowed: {ALL_SIZES}, or WxH pixels)',
        id="unknown-size",
    ),
    pytest.param(
        _official(size="0x100"),
        20003,
        f'invalid size "0x100" (allowed: {ALL_SIZES}, or WxH pixels)',
        id="0xH",
    ),
    pytest.param(
        _official(model="gpt-image-2", size="1024x1024"),
        20003,
        f'invalid size "1024x1024" (allowed: {ALL_SIZES})',
        id="pixels-on-gpt-image-2",
    ),
    pytest.param(_official(resolution="8k"), 20003, 'invalid resolution "8k" (allowed: 1k, 2k, 4k)', id="resolution"),
    pytest.param(
        _official(resolution="4k", size="1:1"),
        20003,
        f"4K requires an explicit size in {WIDE}",
        id="4k-square",
    ),
    pytest.param(
        _official(resolution="4K", size="auto"),
        20003,
        f"4K requires an explicit size in {WIDE}",
        id="4k-auto",
    ),
    pytest.param(_official(resolution="4k"), 20003, f"4K requires an explicit size in {WIDE}", id="4k-no-size"),
    pytest.param(
        _official(resolution="4k", size="3840x2160"),
        20003,
        f"4K requires an explicit size in {WIDE}",
        id="4k-pixels",
    ),
    pytest.param(_official(n=5), 20003, "n must be between 1 and 4", id="n-5"),
    pytest.param(_official(n=0), 20003, "n must be between 1 and 4", id="n-0"),
    pytest.param(_official(n="2"), 20003, "n must be between 1 and 4", id="n-string"),
    pytest.param(_official(n=True), 20003, "n must be between 1 and 4", id="n-bool"),
    pytest.param(_official(model="gpt-image-2", n=2), 20003, "n must be 1 for this model", id="n-gpt-image-2"),
    pytest.param(
        _official(model="gemini-3-pro-image-preview", n=4),
        20003,
        "n must be 1 for this model",
        id="n-gemini",
    ),
    pytest.param(
        _official(image_urls=[f"https://cdn.test/{i}.png" for i in range(17)]),
        20003,
        "image_urls accepts at most 16 entries",
        id="17-images",
    ),
    pytest.param(
        _official(image_urls=["data:image/png;base64,iVBORw0KGgo="]),
        20003,
        "image URL must be a public http(s) URL — data: URIs are rejected",
        id="data-uri",
    ),
    pytest.param(
        _official(image_urls=["ftp://cdn.test/a.png"]),
        20003,
        "image URL must be a public http(s) URL",
        id="ftp-url",
    ),
    pytest.param(
        _official(image_urls="https://cdn.test/a.png"),
        20003,
        "image_urls must be an array of public http(s) URLs",
        id="image-urls-not-list",
    ),
    pytest.param(
        _official(mask_url="https://cdn.test/m.png"),
        20003,
        "mask_url requires at least one entry in image_urls",
        id="mask-alone",
    ),
    pytest.param(
        _official(image_urls=["https://cdn.test/a.png"], mask_url="data:image/png;base64,AAAA"),
        20003,
        "mask_url must be a public http(s) URL — data: URIs are rejected",
        id="mask-data-uri",
    ),
    pytest.param(
        _official(quality="ultra"),
        20003,
        'invalid quality "ultra" (allowed: auto, low, medium, high)',
        id="quality",
    ),
    pytest.param(
        _official(background="blue"),
        20003,
        'invalid background "blue" (allowed: auto, opaque, transparent)',
        id="background",
    ),
    pytest.param(
        _official(moderation="high"), 20003, 'invalid moderation "high" (allowed: auto, low)', id="moderation"
    ),
    pytest.param(
        _official(model="gpt-image-2", quality="low"),
        20003,
        "quality is not supported by gpt-image-2",
        id="quality-gpt-image-2",
    ),
    pytest.param(
        _official(model="gpt-image-2", image_urls=["https://cdn.test/a.png"], mask_url="https://cdn.test/m.png"),
        20003,
        "mask_url is not supported by gpt-image-2",
        id="mask-gpt-image-2",
    ),
    pytest.param(
        _official(model="doubao-seedream-5-0-lite", background="opaque"),
        20003,
        "background is not supported by doubao-seedream-5-0-lite",
        id="background-doubao",
    ),
    pytest.param(
        _official(model="gemini-2.5-flash-image-preview", moderation="low"),
        20003,
        "moderation is not supported by gemini-2.5-flash-image-preview",
        id="moderation-gemini",
    ),
]


@pytest.mark.parametrize(("body", "code", "message"), VALIDATION)
async def test_validation_rejects_with_documented_code(
    emu: Emu, body: dict[str, Any] | bytes, code: int, message: str
) -> None:
    """Each documented validation row answers 400 with its code and message, creating and charging nothing."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if isinstance(body, bytes):
        response = await emu.client.post("/api/v1/images/generations", content=body, headers=headers)
    else:
        response = await emu.client.post("/api/v1/images/generations", json=body, headers=headers)
    assert response.status_code == 400
    assert _error(response)["code"] == code
    assert _error(response)["message"] == message
    assert emu.state.tasks == {}
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.counters(KEY)["submit_rejected"] == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_official(prompt="x" * 4000), id="prompt-4000"),
        pytest.param(_official(resolution="2K", size="3:2"), id="resolution-uppercase"),
        pytest.param(_official(size="1920x1080", n=4), id="pixels-n4"),
        pytest.param(_official(size="auto", quality="low", background="transparent", moderation="low"), id="enums"),
        pytest.param(_official(image_urls=[f"https://cdn.test/{i}.png" for i in range(16)]), id="16-images"),
        pytest.param(_official(model="gpt-image-2", size="21:9", resolution="4k", n=1), id="gpt-image-2-4k"),
        pytest.param(_official(model="gemini-3.1-flash-image-preview", size="9:16"), id="gemini"),
        pytest.param(_official(quality=None, n=None, size=None), id="nulls-are-absent"),
    ],
)
async def test_valid_submits_are_accepted(emu: Emu, body: dict[str, Any]) -> None:
    """Bodies at the documented limits are accepted with the documented submit reply."""
    response = await emu.submit(body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert re.fullmatch(r"task_[0-9a-f]{32}", reply["id"])
    assert reply == {
        "id": reply["id"],
        "model": body["model"],
        "status": "processing",
        "created_at": reply["created_at"],
    }
    assert isinstance(reply["created_at"], int)
    assert emu.state.tasks[reply["id"]].body == body


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        pytest.param(None, 401, 10001, id="missing"),
        pytest.param("Basic dXNlcjpwYXNz", 401, 10002, id="basic"),
        pytest.param("Bearer", 401, 10002, id="no-key"),
        pytest.param(KEY, 401, 10002, id="no-scheme"),
        pytest.param("Bearer rk_invalid_123", 401, 10003, id="invalid"),
        pytest.param("Bearer rk_revoked_123", 403, 10004, id="revoked"),
    ],
)
@pytest.mark.parametrize("method", ["submit", "poll"])
async def test_auth_errors(emu: Emu, header: str | None, status: int, code: int, method: str) -> None:
    """Bad credentials get the documented status and code on submit and poll, with a matching request id."""
    headers = {"Authorization": header} if header else {}
    if method == "submit":
        response = await emu.client.post("/api/v1/images/generations", json=_official(), headers=headers)
    else:
        response = await emu.client.get("/api/v1/tasks/task_0123", headers=headers)
    assert response.status_code == status
    error = _error(response)
    assert error["code"] == code
    assert re.fullmatch(r"req_[0-9a-f-]{36}", error["request_id"])
    assert response.headers["x-request-id"] == error["request_id"]
    if code == 10003:
        assert error["message"] == "invalid API key"
    assert emu.state.tasks == {}


async def test_request_ids_are_unique_and_on_success_too(emu: Emu) -> None:
    """Every response, successful or not, carries its own x-request-id."""
    first = await emu.submit(_official())
    second = await emu.submit(_official())
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2
    assert all(i.startswith("req_") for i in ids)


@pytest.mark.parametrize(
    ("body", "credits"),
    [
        pytest.param(_official(model="gpt-image-2"), 7, id="gpt-image-2-1k"),
        pytest.param(_official(model="gpt-image-2", resolution="2k"), 14, id="gpt-image-2-2k"),
        pytest.param(_official(model="gpt-image-2", resolution="4k", size="16:9"), 20, id="gpt-image-2-4k"),
        pytest.param(_official(quality="low"), 6, id="low-1k"),
        pytest.param(_official(quality="medium", n=3), 45, id="medium-1k-x3"),
        pytest.param(_official(), 40, id="auto-bills-high"),
        pytest.param(_official(quality="high", resolution="2k", size="16:9", n=2), 160, id="high-2k-x2"),
        pytest.param(_official(quality="high", resolution="4k", size="16:9"), 120, id="high-4k"),
        pytest.param(_official(quality="low", resolution="2k", size="21:9"), 14, id="widest-surcharge"),
        pytest.param(_official(quality="low", resolution="2k", size="auto", n=3), 40, id="auto-size-dearest"),
    ],
)
async def test_credits_charged_on_submit(emu: Emu, body: dict[str, Any], credits: int) -> None:
    """A submit charges ceil(per-image rate x n) from the key's balance and records it on the task."""
    response = await emu.submit(body)
    assert response.status_code == 200
    assert emu.state.credits(KEY) == 1_000_000 - credits
    assert emu.state.tasks[response.json()["id"]].credits_charged == credits


async def test_insufficient_credits_is_402_without_charge(emu: Emu) -> None:
    """A balance below the price answers 402 code 30001 and neither charges nor creates a task."""
    emu.state.set_credits(KEY, 6)
    response = await emu.submit(_official(model="gpt-image-2"))
    assert response.status_code == 402
    assert _error(response)["code"] == 30001
    assert _error(response)["message"] == "insufficient credits"
    assert emu.state.credits(KEY) == 6
    assert emu.state.tasks == {}


async def test_broke_key_starts_at_zero(emu: Emu) -> None:
    """A key starting with rk_broke has no credits, so its first submit is refused with 402."""
    response = await emu.submit(_official(), key="rk_broke_1")
    assert response.status_code == 402
    assert emu.state.credits("rk_broke_1") == 0


async def test_failed_task_refunded_once_before_poll_sees_it(emu: Emu) -> None:
    """A failed task is refunded exactly once, already when the first poll reports failed."""
    task_id = (await emu.submit(_official(prompt="fox [fail=80003] [latency=5]"))).json()["id"]
    assert emu.state.credits(KEY) == 1_000_000 - 40
    emu.clock.advance(5)
    first = await emu.poll(task_id)
    assert first.json()["status"] == "failed"
    assert emu.state.credits(KEY) == 1_000_000
    for _ in range(3):
        await emu.poll(task_id)
    assert emu.state.credits(KEY) == 1_000_000
    record = emu.state.tasks[task_id]
    assert record.refunded is True
    assert record.first_seen_terminal_at == emu.clock.now


@pytest.mark.parametrize(
    ("code", "message"),
    [(80001, "provider_submit_failed"), (80002, "provider_polling_timeout"), (80003, "provider_failed")],
)
async def test_fail_markers(emu: Emu, code: int, message: str) -> None:
    """[fail=CODE] ends the task failed with that code and message, output null."""
    task_id = (await emu.submit(_official(prompt=f"fox [fail={code}]"))).json()["id"]
    emu.clock.advance(200)
    reply = (await emu.poll(task_id)).json()
    assert reply["status"] == "failed"
    assert reply["output"] is None
    assert reply["error"] == {"code": code, "message": message}


async def test_sliding_window_rate_limit() -> None:
    """At most rate_limit requests in any sliding window; a 429 has 50001 and Retry-After and does nothing."""
    async with running(rate_limit=3, rate_window=1.0) as emu:
        for step in (0.0, 0.2, 0.2):
            emu.clock.advance(step)
            assert (await emu.submit(_official(model="gpt-image-2"))).status_code == 200
        emu.clock.advance(0.1)  # t=0.5: three requests in (t-1, t]
        refused = await emu.submit(_official(model="gpt-image-2"))
        assert refused.status_code == 429
        assert _error(refused)["code"] == 50001
        assert refused.headers["Retry-After"] == "1"
        assert len(emu.state.tasks) == 3
        assert emu.state.credits(KEY) == 1_000_000 - 21
        emu.clock.advance(0.5)  # t=1.0: the t=0 slot has left the window
        task_id = (await emu.submit(_official(model="gpt-image-2"))).json()["id"]
        emu.clock.advance(0.1)  # t=1.1: 0.2, 0.4, 1.0 are inside, a fixed 1 s window would allow this
        poll = await emu.poll(task_id)
        assert poll.status_code == 429
        counters = emu.state.counters(KEY)
        assert counters["rate_limited"] == 2
        assert counters["submits"] == 4
        assert counters["submit_rejected"] == 1
        assert counters["polls"] == 0
        assert counters["requests"] == 6
        assert emu.state.tasks[task_id].polls == 0


async def test_rate_limit_is_per_key() -> None:
    """One key's exhausted window does not limit another key."""
    async with running(rate_limit=1, rate_window=1.0) as emu:
        assert (await emu.submit(_official())).status_code == 200
        assert (await emu.submit(_official())).status_code == 429
        assert (await emu.submit(_official(), key=OTHER)).status_code == 200


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    """Retry-After is the wait until a slot frees, rounded up, at least one second."""
    now = [0.0]
    limiter = SlidingWindowLimiter(1, 5.0, clock=lambda: now[0])
    assert limiter.acquire("k") is None
    now[0] = 1.5
    wait = limiter.acquire("k")
    assert wait == pytest.approx(3.5)
    assert retry_after_seconds(wait) == 4
    assert retry_after_seconds(0.0001) == 1
    now[0] = 5.0
    assert limiter.acquire("k") is None


@pytest.mark.parametrize(
    ("body", "low", "high"),
    [
        pytest.param(_official(quality="low"), 20, 40, id="low-1k"),
        pytest.param(_official(quality="medium"), 30, 60, id="medium-1k"),
        pytest.param(_official(quality="high", resolution="2k", size="16:9"), 60, 120, id="high-2k"),
        pytest.param(_official(quality="high", resolution="4k", size="16:9"), 120, 180, id="high-4k"),
        pytest.param(_official(resolution="2k", size="1:1"), 60, 120, id="auto-is-high"),
        pytest.param(_official(model="gpt-image-2"), 20, 40, id="gpt-image-2"),
    ],
)
async def test_latency_within_documented_range_times_scale(body: dict[str, Any], low: float, high: float) -> None:
    """A task turns terminal at created + latency, the latency inside the documented range x time_scale."""
    async with running(time_scale=0.5) as emu:
        for _ in range(3):
            task_id = (await emu.submit(body)).json()["id"]
            record = emu.state.tasks[task_id]
            latency = record.ready_at - record.created
            assert low * 0.5 <= latency <= high * 0.5
            emu.clock.now = record.ready_at - 0.01
            assert (await emu.poll(task_id)).json()["status"] == "processing"
            emu.clock.now = record.ready_at
            assert (await emu.poll(task_id)).json()["status"] == "completed"
            assert record.first_seen_terminal_at == record.ready_at


async def test_latency_marker_is_exact_and_unscaled() -> None:
    """[latency=S] makes the task terminal exactly S clock seconds after submit, whatever time_scale is."""
    async with running(time_scale=100) as emu:
        task_id = (await emu.submit(_official(prompt="fox [latency=2.5]"))).json()["id"]
        record = emu.state.tasks[task_id]
        assert record.ready_at - record.created == 2.5
        emu.clock.advance(2.5)
        assert (await emu.poll(task_id)).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "size"),
    [
        pytest.param(_official(size="16:9", resolution="4k"), (3840, 2160), id="16:9-4k"),
        pytest.param(_official(size="3:2", resolution="2k"), (2048, 1360), id="3:2-2k"),
        pytest.param(_official(size="9:21", resolution="2k"), (1152, 2688), id="9:21-2k"),
        pytest.param(_official(size="4:3"), (1024, 768), id="4:3-1k"),
        pytest.param(_official(size="auto"), (1024, 1024), id="auto"),
        pytest.param(_official(size="1920x1080"), (2048, 1152), id="pixels-snap-2k"),
        pytest.param(_official(size="1000x1010"), (1024, 1024), id="pixels-snap-square"),
        pytest.param(_official(model="gpt-image-2", size="2:1", resolution="1k"), (2048, 1024), id="gpt-image-2"),
    ],
)
async def test_output_images_are_real_pngs_of_documented_size(body: dict[str, Any], size: tuple[int, int]) -> None:
    """Completed tasks link to emulator-served PNGs that decode at the documented pixel size."""
    async with running(time_scale=0) as emu:
        task_id = (await emu.submit(body)).json()["id"]
        reply = (await emu.poll(task_id)).json()
        assert reply["status"] == "completed"
        assert reply["error"] is None
        [url] = reply["output"]["image_urls"]
        assert url == f"http://emu/media/tasks/{task_id.removeprefix('task_')}/0.png"
        image_response = await emu.client.get(url)
        assert image_response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image_response.content)) as image:
            assert image.format == "PNG"
            assert image.size == size


async def test_batch_returns_n_distinct_urls(emu: Emu) -> None:
    """n images give n URLs, each a PNG, and an index past n is 404."""
    task_id = (await emu.submit(_official(n=3, size="1:1", prompt="fox [latency=0]"))).json()["id"]
    urls = (await emu.poll(task_id)).json()["output"]["image_urls"]
    assert len(set(urls)) == 3
    for url in urls:
        assert (await emu.client.get(url)).content.startswith(b"\x89PNG")
    missing = await emu.client.get(urls[0].replace("/0.png", "/3.png"))
    assert missing.status_code == 404


async def test_media_not_served_before_completion(emu: Emu) -> None:
    """A processing task's image URL is 404 until the task completes."""
    task_id = (await emu.submit(_official())).json()["id"]
    url = f"/media/tasks/{task_id.removeprefix('task_')}/0.png"
    assert (await emu.client.get(url)).status_code == 404
    emu.clock.advance(200)
    assert (await emu.client.get(url)).status_code == 200


async def test_moderated_prompt_is_400_without_charge(emu: Emu) -> None:
    """[moderated] answers 400 code 20010 and charges nothing."""
    response = await emu.submit(_official(prompt="something [moderated]"))
    assert response.status_code == 400
    assert _error(response) | {"request_id": None} == {
        "code": 20010,
        "message": "prompt rejected by content moderation",
        "request_id": None,
    }
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.tasks == {}


@pytest.mark.parametrize("status", [500, 503])
async def test_submit_error_markers_create_nothing(emu: Emu, status: int) -> None:
    """[submit500] / [submit503] answer that status with code 90000 and neither create nor charge."""
    response = await emu.submit(_official(prompt=f"fox [submit{status}]"))
    assert response.status_code == status
    assert _error(response)["code"] == 90000
    assert emu.state.tasks == {}
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.counters(KEY)["submit_rejected"] == 1


async def test_poll500_marker(emu: Emu) -> None:
    """[poll500=K] makes the first K polls answer 500 code 90000, then the task answers normally."""
    task_id = (await emu.submit(_official(prompt="fox [poll500=2] [latency=0]"))).json()["id"]
    for _ in range(2):
        response = await emu.poll(task_id)
        assert response.status_code == 500
        assert _error(response) | {"request_id": ""} == {
            "code": 90000,
            "message": "internal error",
            "request_id": "",
        }
    assert (await emu.poll(task_id)).json()["status"] == "completed"
    assert emu.state.tasks[task_id].polls == 3


async def test_submit_slow_marker_creates_and_charges_before_answering(emu: Emu) -> None:
    """[submit_slow=S] creates and charges the task, then waits S seconds before the reply."""
    response = await emu.submit(_official(prompt="fox [submit_slow=12.5]"))
    assert response.status_code == 200
    assert emu.slept == [12.5]
    assert response.json()["id"] in emu.state.tasks
    assert emu.state.credits(KEY) == 1_000_000 - 40


async def test_other_keys_task_is_not_found(emu: Emu) -> None:
    """Polling another key's task, or an unknown id, answers 404 code 20404."""
    task_id = (await emu.submit(_official())).json()["id"]
    for response in (await emu.poll(task_id, key=OTHER), await emu.poll("task_" + "0" * 32)):
        assert response.status_code == 404
        assert _error(response)["code"] == 20404
        assert _error(response)["message"] == "task not found"
    assert emu.state.tasks[task_id].polls == 0


async def test_stats_reset_and_credits_over_http(emu: Emu) -> None:
    """The control plane reports by key fingerprint (never the raw key), sets credits and resets."""
    task_id = (await emu.submit(_official())).json()["id"]
    await emu.poll(task_id)
    stats = await emu.client.get("/_emulator/stats")
    assert KEY not in stats.text
    fingerprint = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert stats.json()["keys"][fingerprint] == {
        "submits": 1,
        "submit_rejected": 0,
        "polls": 1,
        "rate_limited": 0,
        "requests": 2,
        "credits": 1_000_000 - 40,
    }
    [task] = stats.json()["tasks"]
    assert task["id"] == task_id
    assert task["key_fingerprint"] == fingerprint
    assert "key" not in task

    set_response = await emu.client.post("/_emulator/credits", json={"key": KEY, "credits": 5})
    assert set_response.json() == {"key_fingerprint": fingerprint, "credits": 5}
    assert emu.state.credits(KEY) == 5

    assert (await emu.client.post("/_emulator/reset")).status_code == 200
    assert emu.state.tasks == {}
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.counters(KEY)["submits"] == 0


async def test_time_scale_changes_over_http_for_later_tasks(emu: Emu) -> None:
    """POST /_emulator/time_scale sets the factor for tasks submitted from then on; a bad body is a 400."""
    assert (await emu.client.post("/_emulator/time_scale", json={"time_scale": 0.1})).json() == {"time_scale": 0.1}
    fast = emu.state.tasks[(await emu.submit(_official())).json()["id"]]
    assert (await emu.client.post("/_emulator/time_scale", json={"time_scale": 3})).status_code == 200
    slow = emu.state.tasks[(await emu.submit(_official())).json()["id"]]
    assert 4.0 <= fast.ready_at - fast.created <= 8.0  # high x 1k: 40-80 s documented, x 0.1
    assert 120.0 <= slow.ready_at - slow.created <= 240.0  # x 3
    for bad in ({"time_scale": -1}, {"time_scale": "fast"}, {"time_scale": True}, [1]):
        response = await emu.client.post("/_emulator/time_scale", json=bad)
        assert response.status_code == 400 and _error(response)["code"] == 20003
    assert emu.state.time_scale == 3.0


async def test_reference_images_are_fetched_and_recorded(emu: Emu) -> None:
    """image_urls and mask_url are downloaded; the record holds status, sha256 and pixel size."""
    body = _official(image_urls=["https://refs.test/photo.png"], mask_url="https://refs.test/mask.png")
    task_id = (await emu.submit(body)).json()["id"]
    await emu.state.wait_idle()
    record = emu.state.tasks[task_id]
    assert record.fetched_inputs == [
        {
            "url": "https://refs.test/photo.png",
            "status": 200,
            "sha256": hashlib.sha256(REFS["/photo.png"]).hexdigest(),
            "width": 64,
            "height": 48,
        },
        {
            "url": "https://refs.test/mask.png",
            "status": 200,
            "sha256": hashlib.sha256(REFS["/mask.png"]).hexdigest(),
            "width": 64,
            "height": 48,
        },
    ]
    emu.clock.advance(200)
    reply = (await emu.poll(task_id)).json()
    assert reply["status"] == "completed"
    # size omitted with references: the output mirrors the first reference (64x48 -> 4:3).
    image = await emu.client.get(reply["output"]["image_urls"][0])
    with Image.open(io.BytesIO(image.content)) as decoded:
        assert decoded.size == (1024, 768)


@pytest.mark.parametrize(
    ("image", "mask", "message"),
    [
        pytest.param("/missing.png", None, "provider failed: could not fetch reference image", id="404"),
        pytest.param("/notes.txt", None, "provider failed: could not fetch reference image", id="not-image"),
        pytest.param("/photo.png", "/small-mask.png", "must share dimensions", id="mask-size"),
        pytest.param("/photo.png", "/rgb-mask.png", "no alpha channel", id="mask-no-alpha"),
        pytest.param("/photo.png", "/opaque-mask.png", "fully opaque", id="mask-opaque"),
    ],
)
async def test_unusable_references_fail_the_task_refunded(emu: Emu, image: str, mask: str | None, message: str) -> None:
    """An unfetchable or non-image reference, or a bad mask, ends the task failed 80003 and refunded."""
    body = _official(image_urls=[f"https://refs.test{image}"])
    if mask:
        body["mask_url"] = f"https://refs.test{mask}"
    task_id = (await emu.submit(body)).json()["id"]
    await emu.state.wait_idle()
    reply = (await emu.poll(task_id)).json()
    assert reply["status"] == "failed"
    assert reply["error"]["code"] == 80003
    assert message in reply["error"]["message"]
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.tasks[task_id].refunded is True


async def test_task_waits_for_reference_downloads(emu: Emu) -> None:
    """While references are still downloading, a due task stays processing."""
    task_id = (await emu.submit(_official(image_urls=["https://refs.test/photo.png"], prompt="x [latency=0]"))).json()[
        "id"
    ]
    assert emu.state.tasks[task_id].inputs_pending is True
    assert (await emu.poll(task_id)).json()["status"] == "processing"
    await emu.state.wait_idle()
    assert (await emu.poll(task_id)).json()["status"] == "completed"


async def test_media_urls_keep_the_mount_prefix() -> None:
    """Mounted under a prefix (as in the sandbox), result URLs include it and resolve."""
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/_upstream/reapi", app=create_reapi_app(time_scale=0))])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu/_upstream/reapi") as client:
        headers = {"Authorization": f"Bearer {KEY}"}
        submitted = await client.post("/api/v1/images/generations", json=_official(), headers=headers)
        reply = (await client.get(f"/api/v1/tasks/{submitted.json()['id']}", headers=headers)).json()
        [url] = reply["output"]["image_urls"]
        assert url.startswith("http://emu/_upstream/reapi/media/tasks/")
        assert (await client.get(url)).status_code == 200
