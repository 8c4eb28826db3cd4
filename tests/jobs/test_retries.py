"""Never pay twice, never lose a paid image: SDK retries, disconnects, hold budgets, streaming, faults."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from shim.app import create_app

from ..conftest import ServedApp, served, shim_settings


@pytest.fixture(scope="module")
def held_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim that holds a request at most 1 s (SHIM_HOLD_SECONDS=1)."""
    with served(create_app(shim_settings(reapi_upstream, reve2img_upstream, hold_seconds=1.0))) as server:
        yield server


@pytest.fixture(scope="module")
def impatient_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim that waits at most 0.5 s for the upstream to answer a call."""
    settings = shim_settings(reapi_upstream, reve2img_upstream, upstream_timeout=0.5)
    with served(create_app(settings)) as server:
        yield server


def submits(state, key: str) -> int:
    return state.counters(key)["submits"]


def body(prompt: str, **extra) -> dict:
    return {"model": "dall-e-2", "prompt": prompt, **extra}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def test_sdk_timeouts_and_retries_pay_once(sdk, shim_server, reapi_state, key) -> None:
    """An SDK with a 1 s timeout and 4 retries, on a 2.5 s task, succeeds with exactly one submit."""
    client = sdk(shim_server, key, timeout=1.0, max_retries=4)
    result = client.images.generate(model="dall-e-2", prompt="[latency=2.5] slow fox")
    assert result.data[0].url
    assert submits(reapi_state, key) == 1


def test_dropped_client_collects_paid_result_on_retry(shim_server, reapi_state, key) -> None:
    """A client that drops at 0.3 s and retries later with x-stainless-retry-count: 1 gets the paid image."""
    payload = body("[latency=1.0] dropped")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(shim_server.url + "/v1/images/generations", json=payload, headers=auth(key), timeout=0.3)
    time.sleep(1.2)  # the task finishes while nobody waits for it
    response = httpx.post(
        shim_server.url + "/v1/images/generations",
        json=payload,
        headers=auth(key, **{"x-stainless-retry-count": "1"}),
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-shim-attached"] == "true"
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert task.id in response.headers["x-upstream-task-ids"]
    assert submits(reapi_state, key) == 1


async def test_two_first_attempts_are_two_intents(shim_server, reapi_state, key) -> None:
    """Two simultaneous first attempts with the same body make two tasks."""
    async with httpx.AsyncClient(base_url=shim_server.url, headers=auth(key), timeout=10) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/images/generations", json=body("[latency=0.3] twins")) for _ in range(2))
        )
    assert [r.status_code for r in responses] == [200, 200]
    assert submits(reapi_state, key) == 2
    assert responses[0].json()["data"][0]["url"] != responses[1].json()["data"][0]["url"]


async def test_idempotency_key_makes_one_task(shim_server, reapi_state, key) -> None:
    """Concurrent requests with the same Idempotency-Key share one task and one image."""
    headers = auth(key, **{"Idempotency-Key": "order-42"})
    async with httpx.AsyncClient(base_url=shim_server.url, headers=headers, timeout=10) as http:
        responses = await asyncio.gather(
            *(http.post("/v1/images/generations", json=body("[latency=0.3] idem")) for _ in range(3))
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["data"][0]["url"] for r in responses}) == 1
    assert submits(reapi_state, key) == 1


def test_idempotency_key_with_other_body_is_rejected(shim_server, reapi_state, key) -> None:
    """Reusing an Idempotency-Key with a different body is a 400, not a second charge."""
    headers = auth(key, **{"Idempotency-Key": "k1"})
    first = httpx.post(shim_server.url + "/v1/images/generations", json=body("[latency=0.1] a"), headers=headers)
    second = httpx.post(shim_server.url + "/v1/images/generations", json=body("[latency=0.1] b"), headers=headers)
    assert first.status_code == 200 and second.status_code == 400
    assert second.json()["error"]["code"] == "idempotency_key_reused"
    assert submits(reapi_state, key) == 1


def test_retry_header_never_attaches_across_keys(shim_server, reapi_state, key) -> None:
    """An SDK retry of the same body under another key is that key's own job and its own task."""
    other = key + "_other"
    payload = body("[latency=0.6] shared")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(shim_server.url + "/v1/images/generations", json=payload, headers=auth(key), timeout=0.2)
    response = httpx.post(
        shim_server.url + "/v1/images/generations",
        json=payload,
        headers=auth(other, **{"x-stainless-retry-count": "1"}),
        timeout=10,
    )
    assert response.status_code == 200 and response.headers["x-shim-attached"] == "false"
    assert submits(reapi_state, key) == 1 and submits(reapi_state, other) == 1


def test_poll_failures_are_retried(sdk, shim_server, reapi_state, key) -> None:
    """Polls failing with 500 three times in a row still end in success."""
    client = sdk(shim_server, key)
    result = client.images.generate(model="dall-e-2", prompt="[latency=0.2][poll500=3] flaky")
    assert result.data[0].url
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert task.polls >= 4


def test_stream_yields_completed_event(sdk, shim_server, key) -> None:
    """stream=True through the SDK yields an image_generation.completed event with the image."""
    client = sdk(shim_server, key)
    events = list(client.images.generate(model="gpt-image-1", prompt="[latency=0.2] s", quality="low", stream=True))
    completed = [e for e in events if e.type == "image_generation.completed"]
    assert len(completed) == 1
    image = Image.open(io.BytesIO(base64.b64decode(completed[0].b64_json)))
    assert image.size == (1024, 1024)


def test_stream_error_event(sdk, shim_server, key) -> None:
    """A failure inside a stream arrives as an error event, which the SDK raises as APIError."""
    client = sdk(shim_server, key)
    with pytest.raises(openai.APIError) as caught:
        list(client.images.generate(model="gpt-image-1", prompt="[latency=0.1][fail=80003] s", stream=True))
    assert "80003" in caught.value.message


def test_stream_sends_no_id_lines(shim_server, key) -> None:
    """The raw stream has comment lines and data lines, never `id:` lines."""
    with httpx.stream(
        "POST",
        shim_server.url + "/v1/images/generations",
        json=body("[latency=0.2] raw", stream=True, response_format="b64_json"),
        headers=auth(key),
        timeout=10,
    ) as response:
        text = response.read().decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert text.startswith(":") and "data: " in text
    assert not any(line.startswith("id:") for line in text.splitlines())


def test_hold_budget_with_sdk_retries(sdk, held_shim, reapi_state, key) -> None:
    """With SHIM_HOLD_SECONDS=1, the SDK's default retries complete a 2.5 s task with one submit."""
    client = sdk(held_shim, key)
    result = client.images.generate(model="dall-e-2", prompt="[latency=2.5] held")
    assert result.data[0].url
    assert submits(reapi_state, key) == 1


def test_hold_budget_with_plain_client(held_shim, reapi_state, key) -> None:
    """A plain client that retries what it is told to (503 + Retry-After) gets the image, one submit."""
    payload = body("[latency=2.5] plain")
    started = time.monotonic()
    statuses = []
    for _ in range(10):
        response = httpx.post(held_shim.url + "/v1/images/generations", json=payload, headers=auth(key), timeout=5)
        statuses.append(response.status_code)
        if response.status_code != 503:
            break
        assert response.headers["x-should-retry"] == "true"
        time.sleep(float(response.headers["retry-after-ms"]) / 1000)
    assert statuses[0] == 503 and statuses[-1] == 200
    assert time.monotonic() - started < 6
    assert submits(reapi_state, key) == 1


def test_read_timeout_header_lowers_hold(shim_server, reapi_state, key) -> None:
    """x-stainless-read-timeout: 1 on a 2.5 s task: a retryable answer inside that second; the retry attaches."""
    payload = body("[latency=2.5] announced")
    started = time.monotonic()
    first = httpx.post(
        shim_server.url + "/v1/images/generations",
        json=payload,
        headers=auth(key, **{"x-stainless-read-timeout": "1", "x-stainless-retry-count": "0"}),
        timeout=5,
    )
    assert time.monotonic() - started < 1.0
    assert first.status_code == 503 and first.headers["x-should-retry"] == "true"
    second = httpx.post(
        shim_server.url + "/v1/images/generations",
        json=payload,
        headers=auth(key, **{"x-stainless-retry-count": "1"}),
        timeout=10,
    )
    assert second.status_code == 200 and second.headers["x-shim-attached"] == "true"
    assert second.headers["x-shim-job"] == first.headers["x-shim-job"]
    assert submits(reapi_state, key) == 1


def test_submit_without_answer_is_never_resubmitted(sdk, impatient_shim, reapi_state, key) -> None:
    """A submit that times out after sending is a 502 with x-should-retry: false; exactly one task exists."""
    client = sdk(impatient_shim, key, max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="dall-e-2", prompt="[submit_slow=1.5] lost answer")
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert caught.value.code == "upstream_submit_unknown"
    time.sleep(0.2)
    assert submits(reapi_state, key) == 1
    # Even a client that retries anyway (retry count 1) collects the same answer: no second submit.
    again = httpx.post(
        impatient_shim.url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "[submit_slow=1.5] lost answer"},
        headers=auth(key, **{"x-stainless-retry-count": "1"}),
        timeout=10,
    )
    assert again.status_code == 502 and again.headers["x-shim-attached"] == "true"
    assert submits(reapi_state, key) == 1


def test_submit_500_is_not_retried(sdk, shim_server, reapi_state, key) -> None:
    """A 5xx answer to a submit may hide a created task: no resubmit by the shim, nor by the SDK."""
    client = sdk(shim_server, key, max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(model="dall-e-2", prompt="[submit500] boom")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert reapi_state.counters(key)["requests"] == 1
