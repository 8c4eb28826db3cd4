"""The reve2img emulator speaks the wire format of the upstream reference, errors and timing included."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette

from shim.emulator.reve2img import Reve2imgEmulator, create_reve2img_app

KEY = "sk-test-alice"
OTHER = "sk-test-bob"
INITIAL = 1_000


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_app(clock: FakeClock, **options: Any) -> Starlette:
    settings: dict[str, Any] = {"initial_credits": INITIAL, "rate_limit": 1_000} | options
    return create_reve2img_app(clock=clock, **settings)


@pytest.fixture
def app(clock: FakeClock) -> Starlette:
    return make_app(clock)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(app) as c:
        yield c


def connect(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu.test")


def emulator_of(app: Starlette) -> Reve2imgEmulator:
    emulator: Reve2imgEmulator = app.state.emulator
    return emulator


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def generate(client: httpx.AsyncClient, key: str = KEY, **body: Any) -> httpx.Response:
    body = {"model": "flux-2", "prompt": "a lighthouse"} | body
    return await client.post("/api/v1/generate", json=body, headers=auth(key))


async def status(client: httpx.AsyncClient, task_id: str, key: str = KEY) -> httpx.Response:
    return await client.get("/api/v1/status", params={"task_id": task_id}, headers=auth(key))


def assert_error(response: httpx.Response, code: int, name: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert (response.status_code, body["code"], body["message"]) == (code, code, name)
    assert isinstance(body["detail"], str) and body["detail"]
    assert "data" not in body
    return body


# --- success paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "size"),
    [
        pytest.param(None, (1024, 1024), id="default-1:1"),
        pytest.param("16:9", (1360, 768), id="16:9"),
        pytest.param("2:3", (832, 1248), id="2:3"),
    ],
)
async def test_sync_model_answers_success_with_real_png(
    client: httpx.AsyncClient, app: Starlette, ratio: str | None, size: tuple[int, int]
) -> None:
    """A synchronous model answers SUCCESS at once with a decodable PNG of the ratio's pixel size."""
    extra = {"aspect_ratio": ratio} if ratio else {}
    response = await generate(client, model="reve-2.0", **extra)
    body = response.json()
    assert (response.status_code, body["code"], body["message"]) == (200, 200, "success")
    data = body["data"]
    assert data["status"] == "SUCCESS" and data["consumed_credits"] == 12
    [url] = data["response"]["resultUrls"]
    assert url == f"http://emu.test/cdn/{data['task_id']}/0.png"
    image_response = await client.get(url)  # no Authorization header: the CDN is public
    assert image_response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(image_response.content))
    assert (image.format, image.size) == ("PNG", size)
    assert emulator_of(app).credits(KEY) == INITIAL - 12
    assert emulator_of(app).tasks[data["task_id"]].first_seen_terminal_at == 0.0


async def test_async_model_succeeds_after_its_latency(
    client: httpx.AsyncClient, app: Starlette, clock: FakeClock
) -> None:
    """flux-2 answers IN_PROGRESS, stays so before 10 s and is SUCCESS by 20 s."""
    submitted = (await generate(client)).json()["data"]
    assert submitted == {"task_id": submitted["task_id"], "status": "IN_PROGRESS"}
    task_id = submitted["task_id"]
    clock.now = 9.9
    assert (await status(client, task_id)).json()["data"] == {"task_id": task_id, "status": "IN_PROGRESS"}
    clock.now = 20.0
    data = (await status(client, task_id)).json()["data"]
    assert data["status"] == "SUCCESS" and data["consumed_credits"] == 20
    assert data["response"]["resultUrls"] == [f"http://emu.test/cdn/{task_id}/0.png"]
    record = emulator_of(app).tasks[task_id]
    assert 10.0 <= record.ready_at <= 20.0
    assert (record.polls, record.first_seen_terminal_at) == (2, 20.0)
    assert emulator_of(app).counters(KEY)["polls"] == 2


async def test_time_scale_shrinks_model_latency(clock: FakeClock) -> None:
    """seedream-4.0 (20-40 s) is done within 0.4 s at time_scale 0.01."""
    async with connect(make_app(clock, time_scale=0.01)) as client:
        task_id = (await generate(client, model="seedream-4.0")).json()["data"]["task_id"]
        clock.now = 0.19
        assert (await status(client, task_id)).json()["data"]["status"] == "IN_PROGRESS"
        clock.now = 0.4
        assert (await status(client, task_id)).json()["data"]["status"] == "SUCCESS"


async def test_image_urls_add_to_the_price(client: httpx.AsyncClient, app: Starlette) -> None:
    """Each image_url adds 2 credits to the model price."""
    urls = ["https://example.com/a.png", "http://example.com/b.jpg"]
    data = (await generate(client, model="reve-2.0", image_urls=urls)).json()["data"]
    assert data["consumed_credits"] == 12 + 2 * 2
    assert emulator_of(app).credits(KEY) == INITIAL - 16


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    """Category fields of other models (resolution, duration) do not make the request invalid."""
    response = await generate(client, model="reve-2.0-fast", resolution="1k", duration=5)
    assert response.json()["data"]["consumed_credits"] == 6


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    """Success, error, unknown route and CDN answers all carry a distinct x-request-id."""
    responses = [
        await generate(client, model="reve-2.0"),
        await generate(client, model="nope"),
        await client.get("/api/v1/status", params={"task_id": "x"}),
        await client.get("/nowhere"),
        await client.get("/cdn/ffff/0.png"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)


# --- the error table ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code", "name"),
    [
        pytest.param(b"{not json", 400, "INVALID_PARAMETER", id="invalid-json"),
        pytest.param(b"[1, 2]", 400, "INVALID_PARAMETER", id="not-an-object"),
        pytest.param(b'{"prompt": "x"}', 400, "INVALID_MODEL", id="model-missing"),
        pytest.param(b'{"model": "dall-e-3", "prompt": "x"}', 400, "INVALID_MODEL", id="model-unknown"),
        pytest.param(b'{"model": 7, "prompt": "x"}', 400, "INVALID_PARAMETER", id="model-wrong-type"),
        pytest.param(b'{"model": "flux-2"}', 400, "INVALID_PROMPT", id="prompt-missing"),
        pytest.param(b'{"model": "flux-2", "prompt": "  "}', 400, "INVALID_PROMPT", id="prompt-blank"),
        pytest.param(b'{"model": "flux-2", "prompt": ["x"]}', 400, "INVALID_PARAMETER", id="prompt-type"),
        pytest.param(
            b'{"model": "flux-2", "prompt": "x", "image_urls": "http://a/b"}',
            400,
            "INVALID_PARAMETER",
            id="image-urls-not-list",
        ),
        pytest.param(
            b'{"model": "flux-2", "prompt": "x", "image_urls": ["ftp://a/b"]}',
            400,
            "INVALID_PARAMETER",
            id="image-url-not-http",
        ),
        pytest.param(
            b'{"model": "flux-2", "prompt": "x", "image_urls": ["http://a/1", "http://a/2", "http://a/3", '
            b'"http://a/4", "http://a/5"]}',
            400,
            "INVALID_PARAMETER",
            id="too-many-image-urls",
        ),
        pytest.param(b'{"model": "flux-2", "prompt": "[fail=NOPE]"}', 400, "INVALID_PARAMETER", id="bad-marker"),
        pytest.param(b'{"model": "flux-2", "prompt": "[moderated]"}', 400, "CONTENT_POLICY_VIOLATION", id="mod"),
        pytest.param(b'{"model": "flux-2", "prompt": "x [submit500]"}', 500, "GENERATION_FAILED", id="submit500"),
        pytest.param(b'{"model": "flux-2", "prompt": "[submit503]"}', 503, "SERVICE_UNAVAILABLE", id="submit503"),
    ],
)
async def test_rejected_submit_creates_no_task_and_charges_nothing(
    client: httpx.AsyncClient, app: Starlette, raw: bytes, code: int, name: str
) -> None:
    """A refused generate answers the table's status and name, creates no task and charges nothing."""
    response = await client.post("/api/v1/generate", content=raw, headers=auth())
    assert_error(response, code, name)
    emulator = emulator_of(app)
    assert emulator.tasks == {}
    assert emulator.credits(KEY) == INITIAL
    assert emulator.counters(KEY)["submit_rejected"] == 1 and emulator.counters(KEY)["submits"] == 0


async def test_bad_aspect_ratio_is_named_in_the_detail(client: httpx.AsyncClient) -> None:
    """An unknown aspect_ratio is an INVALID_PARAMETER whose detail names the value."""
    body = assert_error(await generate(client, aspect_ratio="5:4"), 400, "INVALID_PARAMETER")
    assert "5:4" in body["detail"] and "aspect_ratio" in body["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Basic abc"}, id="not-bearer"),
        pytest.param({"Authorization": "Bearer "}, id="empty"),
        pytest.param({"Authorization": "Bearer sk-invalid-123"}, id="revoked"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/generate", "/api/v1/status?task_id=x"])
async def test_bad_keys_are_refused(
    client: httpx.AsyncClient, app: Starlette, headers: dict[str, str], path: str
) -> None:
    """A missing, malformed or sk-invalid key answers 401 INVALID_API_KEY on both endpoints."""
    method = "POST" if path.endswith("generate") else "GET"
    request_body = b'{"model": "reve-2.0", "prompt": "x"}' if method == "POST" else None
    response = await client.request(method, path, content=request_body, headers=headers)
    assert_error(response, 401, "INVALID_API_KEY")
    assert emulator_of(app).tasks == {}


async def test_broke_key_gets_insufficient_credits_until_topped_up(client: httpx.AsyncClient, app: Starlette) -> None:
    """An sk-broke key starts at 0 and answers 402 until credits are set over HTTP."""
    broke = "sk-broke-1"
    assert_error(await generate(client, broke), 402, "INSUFFICIENT_CREDITS")
    assert emulator_of(app).tasks == {}
    answer = await client.post("/_emulator/credits", json={"key": broke, "credits": 20})
    assert answer.json() == {"key": hashlib.sha256(broke.encode()).hexdigest()[:12], "credits": 20}
    assert (await generate(client, broke)).status_code == 200
    assert emulator_of(app).credits(broke) == 0
    assert_error(await generate(client, broke), 402, "INSUFFICIENT_CREDITS")


async def test_set_credits_validates_its_body(client: httpx.AsyncClient) -> None:
    """POST /_emulator/credits refuses a body without a key or with a negative or non-integer amount."""
    for body in ({"credits": 5}, {"key": KEY, "credits": -1}, {"key": KEY, "credits": "5"}):
        assert_error(await client.post("/_emulator/credits", json=body), 400, "INVALID_PARAMETER")


async def test_status_of_missing_unknown_or_foreign_task(client: httpx.AsyncClient) -> None:
    """No task_id is INVALID_PARAMETER; an unknown id or another key's task is TASK_NOT_FOUND."""
    task_id = (await generate(client, KEY)).json()["data"]["task_id"]
    assert_error(await client.get("/api/v1/status", headers=auth()), 400, "INVALID_PARAMETER")
    assert_error(await status(client, "0" * 32), 404, "TASK_NOT_FOUND")
    assert_error(await status(client, task_id, OTHER), 404, "TASK_NOT_FOUND")
    assert (await status(client, task_id, KEY)).status_code == 200


async def test_rate_limit_answers_429_with_retry_after(clock: FakeClock) -> None:
    """Past rate_limit requests in the window a key gets 429 RATE_LIMITED with Retry-After; others do not."""
    app = make_app(clock, rate_limit=3, rate_window=5.0)
    async with connect(app) as client:
        task_id = (await generate(client)).json()["data"]["task_id"]
        clock.now = 1.5
        assert (await status(client, task_id)).status_code == 200
        assert (await status(client, task_id)).status_code == 200
        limited = await status(client, task_id)
        assert_error(limited, 429, "RATE_LIMITED")
        assert limited.headers["Retry-After"] == "4"  # the first request leaves the window at t=5
        assert_error(await generate(client), 429, "RATE_LIMITED")
        assert (await generate(client, OTHER)).status_code == 200
        clock.now = 5.0
        assert (await status(client, task_id)).status_code == 200
        counters = emulator_of(app).counters(KEY)
        assert (counters["rate_limited"], counters["requests"], counters["submits"]) == (2, 6, 1)


async def test_rate_limit_retry_after_is_at_least_one_second(clock: FakeClock) -> None:
    """A sub-second window still advertises Retry-After of 1."""
    async with connect(make_app(clock, rate_limit=1, rate_window=0.2)) as client:
        assert (await generate(client)).status_code == 200
        response = await generate(client)
        assert_error(response, 429, "RATE_LIMITED")
        assert response.headers["Retry-After"] == "1"


async def test_in_flight_cap_refuses_without_charge_then_frees(clock: FakeClock) -> None:
    """A key with max_in_flight running tasks gets TOO_MANY_TASKS, uncharged, until one finishes."""
    app = make_app(clock, max_in_flight=2)
    emulator = emulator_of(app)
    async with connect(app) as client:
        assert (await generate(client, model="reve-2.0")).status_code == 200  # synchronous: never in flight
        await generate(client)
        await generate(client)
        balance = emulator.credits(KEY)
        assert_error(await generate(client), 429, "TOO_MANY_TASKS")
        assert (emulator.credits(KEY), len(emulator.tasks)) == (balance, 3)
        assert (await generate(client, OTHER)).status_code == 200
        clock.now = 20.0
        assert (await generate(client)).json()["data"]["status"] == "IN_PROGRESS"
        counters = emulator.counters(KEY)
        assert (counters["too_many_tasks"], counters["max_in_flight_seen"], counters["submits"]) == (1, 2, 4)


# --- markers that shape a task ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "code", "name"),
    [
        pytest.param("[fail=GENERATION_FAILED]", 500, "GENERATION_FAILED", id="generation-failed"),
        pytest.param("[fail=TIMEOUT]", 504, "TIMEOUT", id="timeout"),
        pytest.param("[fail=SERVICE_UNAVAILABLE]", 503, "SERVICE_UNAVAILABLE", id="unavailable"),
        pytest.param("[moderated_output]", 400, "CONTENT_POLICY_VIOLATION", id="moderated-output"),
    ],
)
async def test_failing_task_is_refunded_once(
    client: httpx.AsyncClient, app: Starlette, clock: FakeClock, marker: str, code: int, name: str
) -> None:
    """A failure marker ends the task FAILED with error {code: HTTP status, message: NAME} (the envelope's
    layout, the strictest reading of "contains a code and message") and refunds it exactly once."""
    emulator = emulator_of(app)
    task_id = (await generate(client, prompt=f"a cat {marker}")).json()["data"]["task_id"]
    assert emulator.credits(KEY) == INITIAL - 20
    clock.now = 20.0
    for _ in range(2):
        data = (await status(client, task_id)).json()["data"]
        assert data["status"] == "FAILED" and data["error"] == {"code": code, "message": name}
        assert "consumed_credits" not in data and "response" not in data
    assert emulator.credits(KEY) == INITIAL
    assert emulator.tasks[task_id].refunded is True
    assert (await client.get(f"/cdn/{task_id}/0.png")).status_code == 404


async def test_sync_model_with_failure_marker_answers_in_progress(client: httpx.AsyncClient) -> None:
    """A synchronous model that will fail answers IN_PROGRESS and shows FAILED on the first poll."""
    submitted = (await generate(client, model="reve-2.0", prompt="x [fail=TIMEOUT]")).json()["data"]
    assert submitted["status"] == "IN_PROGRESS"
    assert (await status(client, submitted["task_id"])).json()["data"]["error"]["message"] == "TIMEOUT"


async def test_latency_marker_is_exact_and_unscaled(clock: FakeClock) -> None:
    """[latency=S] makes a task ready after exactly S seconds whatever the time_scale."""
    async with connect(make_app(clock, time_scale=100.0)) as client:
        task_id = (await generate(client, model="reve-2.0", prompt="x [latency=3]")).json()["data"]["task_id"]
        clock.now = 2.99
        assert (await status(client, task_id)).json()["data"]["status"] == "IN_PROGRESS"
        clock.now = 3.0
        assert (await status(client, task_id)).json()["data"]["status"] == "SUCCESS"


async def test_poll500_marker_fails_the_first_polls(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """[poll500=2] makes the first two status calls answer 500 GENERATION_FAILED, then normal answers."""
    task_id = (await generate(client, prompt="x [poll500=2] [latency=0]")).json()["data"]["task_id"]
    assert_error(await status(client, task_id), 500, "GENERATION_FAILED")
    assert_error(await status(client, task_id), 500, "GENERATION_FAILED")
    assert (await status(client, task_id)).json()["data"]["status"] == "SUCCESS"


async def test_cdn_serves_only_finished_images(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """The CDN answers 404 for an unknown task, a running task and an index past the first image."""
    task_id = (await generate(client)).json()["data"]["task_id"]
    assert (await client.get(f"/cdn/{task_id}/0.png")).status_code == 404
    assert (await client.get(f"/cdn/{'0' * 32}/0.png")).status_code == 404
    clock.now = 20.0
    assert (await client.get(f"/cdn/{task_id}/1.png")).status_code == 404
    assert (await client.get(f"/cdn/{task_id}/0.png")).status_code == 200


# --- control endpoints -------------------------------------------------------------------------------------


async def test_stats_never_show_raw_keys(client: httpx.AsyncClient) -> None:
    """GET /_emulator/stats shows keys only as the first 12 hex of their sha256."""
    secret = "sk-very-secret-key"
    await generate(client, secret, model="reve-2.0")
    await status(client, "missing", secret)
    response = await client.get("/_emulator/stats")
    assert "secret" not in response.text
    entry = response.json()["keys"][hashlib.sha256(secret.encode()).hexdigest()[:12]]
    assert (entry["submits"], entry["polls"], entry["requests"]) == (1, 1, 2)
    assert (entry["credits"], entry["tasks"]) == (INITIAL - 12, 1)
    assert response.json()["tasks"] == {"IN_PROGRESS": 0, "SUCCESS": 1, "FAILED": 0}


async def test_reset_forgets_everything(client: httpx.AsyncClient, app: Starlette) -> None:
    """POST /_emulator/reset drops tasks, balances and counters."""
    await generate(client)
    assert (await client.post("/_emulator/reset")).status_code == 200
    emulator = emulator_of(app)
    assert emulator.tasks == {} and emulator.credits(KEY) == INITIAL
    assert emulator.counters(KEY)["submits"] == 0
    assert (await client.get("/_emulator/stats")).json()["tasks"]["IN_PROGRESS"] == 0


def test_bad_configuration_fails_at_start_up() -> None:
    """A rate limit below 1 is refused when the app is built."""
    with pytest.raises(ValueError, match="invalid configuration"):
        create_reve2img_app(rate_limit=0)
