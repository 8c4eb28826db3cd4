"""Jobs a client looks up later: `Prefer: respond-async` answers 202 at once, `GET /v1/images/jobs/{id}` answers
202 while the job runs and then exactly what the synchronous call answers (images or error), to the creating
key only; the 503 hand-off names the job URL. Through httpx and the openai SDK, against the reAPI emulator."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import ImagesResponse
from PIL import Image

from shim.app import create_app
from shim.jobs.job import credential_id

from ..conftest import SelfAddressedShim, ServedApp, served, shim_settings


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def submits(state: Any, key: str) -> int:
    return int(state.counters(key)["submits"])


def until_done(url: str, key: str, *, deadline: float = 20.0) -> tuple[list[int], httpx.Response]:
    """GET a job until it is no longer 202: the statuses seen and the last answer."""
    seen: list[int] = []
    end = time.monotonic() + deadline
    while True:
        response = httpx.get(url, headers=auth(key), timeout=10)
        seen.append(response.status_code)
        if response.status_code != 202 or time.monotonic() > end:
            return seen, response
        assert response.headers["retry-after"] == "1"
        time.sleep(0.1)  # a test need not wait the second Retry-After asks for


def test_respond_async_then_lookup_through_httpx(shim_server, reapi_state, key) -> None:
    """A generation preferring respond-async answers 202 with the job's id, Location and Preference-Applied;
    its URL answers 202 while it runs, then 200 with a decodable image; one upstream submit."""
    payload = {"model": "gpt-image-1", "prompt": "[latency=0.6] a fox", "size": "1024x1024"}
    response = httpx.post(
        shim_server.url + "/v1/images/generations",
        json=payload,
        headers=auth(key, Prefer="return=minimal, Respond-Async"),
        timeout=10,
    )
    assert response.status_code == 202
    body = response.json()
    assert body == {"id": body["id"], "object": "image.job", "status": "in_progress"}
    assert body["id"].startswith("job_") and response.headers["x-shim-job"] == body["id"]
    assert response.headers["location"] == f"/v1/images/jobs/{body['id']}"
    assert response.headers["preference-applied"] == "respond-async"
    seen, done = until_done(shim_server.url + response.headers["location"], key)
    assert seen[0] == 202 and seen[-1] == 200
    image = Image.open(io.BytesIO(base64.b64decode(done.json()["data"][0]["b64_json"])))
    assert image.size == (1024, 1024)
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert task.id in done.headers["x-upstream-task-ids"]
    assert submits(reapi_state, key) == 1


def test_lookup_body_is_the_synchronous_answer(shim_server, reapi_state, key) -> None:
    """The looked-up body is the one the synchronous call returns: a synchronous retry with the same
    Idempotency-Key collects the same job and answers the same images, size and usage."""
    payload = {"model": "gpt-image-1", "prompt": "[latency=0.2] same answer", "response_format": "b64_json"}
    headers = auth(key, **{"Idempotency-Key": "idem-" + key})
    accepted = httpx.post(
        shim_server.url + "/v1/images/generations", json=payload, headers={**headers, "Prefer": "respond-async"}
    )
    _, looked_up = until_done(shim_server.url + accepted.headers["location"], key)
    synchronous = httpx.post(shim_server.url + "/v1/images/generations", json=payload, headers=headers, timeout=10)
    assert looked_up.status_code == synchronous.status_code == 200
    assert synchronous.headers["x-shim-job"] == accepted.json()["id"]
    assert {k: v for k, v in looked_up.json().items() if k != "created"} == {
        k: v for k, v in synchronous.json().items() if k != "created"
    }
    assert looked_up.headers["x-upstream-task-ids"] == synchronous.headers["x-upstream-task-ids"]
    assert submits(reapi_state, key) == 1


def test_respond_async_through_the_openai_sdk(sdk, shim_server, reapi_state, key) -> None:
    """The openai SDK with extra_headers Prefer: respond-async gets the 202 job, polls its URL with the SDK's
    own client, and parses the 200 as an ImagesResponse with a decodable image; one upstream submit."""
    client = sdk(shim_server, key, max_retries=0)
    raw = client.images.with_raw_response.generate(
        model="dall-e-3", prompt="[latency=0.5] an owl", response_format="b64_json",
        extra_headers={"Prefer": "respond-async"},
    )  # fmt: skip
    assert raw.status_code == 202 and raw.headers["preference-applied"] == "respond-async"
    job = raw.http_response.json()
    path = raw.headers["location"].removeprefix("/v1")
    statuses = []
    for _ in range(200):
        polled = client.get(path, cast_to=httpx.Response)
        statuses.append(polled.status_code)
        if polled.status_code != 202:
            break
        assert polled.json() == {"id": job["id"], "object": "image.job", "status": "in_progress"}
        time.sleep(0.1)
    assert statuses[0] == 202 and statuses[-1] == 200
    result = client.get(path, cast_to=ImagesResponse)  # still kept: a second look-up answers the same
    assert result.data and result.data[0].b64_json
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (1024, 1024)
    assert submits(reapi_state, key) == 1


def test_another_key_cannot_see_the_job(sdk, shim_server, key) -> None:
    """Another API key looking the job up gets 404 job_not_found, the same as for an unknown id; the creating
    key sees it."""
    accepted = httpx.post(
        shim_server.url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "[latency=0.2] mine"},
        headers=auth(key, Prefer="respond-async"),
    )
    path = accepted.headers["location"].removeprefix("/v1")
    other = sdk(shim_server, "rk_test_other_" + key[-8:], max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        other.get(path, cast_to=httpx.Response)
    assert caught.value.code == "job_not_found" and key not in caught.value.message
    unknown = httpx.get(shim_server.url + "/v1/images/jobs/job_0123", headers=auth(key))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"
    _, mine = until_done(shim_server.url + accepted.headers["location"], key)
    assert mine.status_code == 200 and mine.json()["data"][0]["url"]


def test_lookup_needs_a_key(shim_server) -> None:
    """Looking a job up without a key is 401, as every endpoint that spends a key's jobs."""
    response = httpx.get(shim_server.url + "/v1/images/jobs/job_0123")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize(
    ("prompt", "status", "code", "paid"),
    [
        pytest.param("[fail=80003] doomed", 502, "upstream_task_failed", 1, id="task-failed-upstream"),
        pytest.param("[moderated] refused", 400, "content_policy_violation", 0, id="refused-at-submit"),
    ],
)
def test_a_failed_job_answers_its_error(shim_server, reapi_state, key, prompt, status, code, paid) -> None:
    """A job that failed answers its look-up with the OpenAI-shaped error the synchronous call gets, also when
    its submit was refused and nothing was paid (such a job is otherwise forgotten at once)."""
    accepted = httpx.post(
        shim_server.url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": prompt},
        headers=auth(key, Prefer="respond-async"),
    )
    assert accepted.status_code == 202
    _, failed = until_done(shim_server.url + accepted.headers["location"], key)
    assert failed.status_code == status
    error = failed.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    assert failed.headers["x-shim-job"] == accepted.json()["id"]
    assert submits(reapi_state, key) == paid


def test_edits_prefer_respond_async_too(reapi_upstream, reve2img_upstream, reapi_state, key) -> None:
    """A multipart edit preferring respond-async answers 202, and its job's URL then answers the edited image."""
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(png, format="PNG")
    server = SelfAddressedShim(reapi_upstream, reve2img_upstream).start()
    try:
        accepted = httpx.post(
            server.url + "/v1/images/edits",
            data={"model": "gpt-image-1", "prompt": "[latency=0.3] make it blue"},
            files={"image": ("in.png", png.getvalue(), "image/png")},
            headers=auth(key, Prefer="respond-async"),
        )
        assert accepted.status_code == 202 and accepted.json()["object"] == "image.job"
        _, done = until_done(server.url + accepted.headers["location"], key)
    finally:
        server.stop()
    assert done.status_code == 200 and done.json()["data"][0]["b64_json"]
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert task.input_urls and all(item["status"] == 200 for item in task.fetched_inputs)


@pytest.fixture(scope="module")
def held_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim that holds a request at most 0.5 s."""
    with served(create_app(shim_settings(reapi_upstream, reve2img_upstream, hold_seconds=0.5))) as server:
        yield server


def test_handoff_names_the_job_url(held_shim, reapi_state, key) -> None:
    """The 503 of a request held past its budget names the job's URL, and that URL answers the paid image."""
    response = httpx.post(
        held_shim.url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "[latency=1.5] slow"},
        headers=auth(key),
        timeout=10,
    )
    assert response.status_code == 503
    url = f"/v1/images/jobs/{response.headers['x-shim-job']}"
    assert url in response.json()["error"]["message"]
    _, done = until_done(held_shim.url + url, key)
    assert done.status_code == 200 and done.json()["data"][0]["url"]
    assert submits(reapi_state, key) == 1


def test_handoff_keeps_a_failure_for_its_lookup(reapi_upstream, reve2img_upstream, key) -> None:
    """A job handed off by a 503 whose submit is refused afterwards (nothing paid) is still kept: the URL the
    503 named answers the refusal, not 404."""

    async def upstream(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.8)  # the refusal comes after the hold budget
        return httpx.Response(400, json={"error": {"code": 20010, "message": "prompt rejected by moderation"}})

    settings = shim_settings(reapi_upstream, reve2img_upstream, hold_seconds=0.2)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        response = httpx.post(
            server.url + "/v1/images/generations",
            json={"model": "dall-e-2", "prompt": "refused late"},
            headers=auth(key),
            timeout=10,
        )
        assert response.status_code == 503
        _, refused = until_done(server.url + f"/v1/images/jobs/{response.headers['x-shim-job']}", key)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_policy_violation"


def test_uncollected_job_is_no_longer_kept_after_its_ttl(reapi_upstream, reve2img_upstream, reapi_state, key) -> None:
    """A job nobody looks up is kept for SHIM_RESULT_TTL_SECONDS, then its URL answers 404."""
    settings = shim_settings(reapi_upstream, reve2img_upstream, result_ttl_seconds=0.5)
    with served(create_app(settings)) as server:
        accepted = httpx.post(
            server.url + "/v1/images/generations",
            json={"model": "dall-e-2", "prompt": "[latency=0.1] forgotten"},
            headers=auth(key, Prefer="respond-async"),
        )
        job_id = accepted.json()["id"]
        jobs = server.app.state.shim.jobs
        end = time.monotonic() + 10
        while jobs.get(job_id, credential_id(key)) is not None and time.monotonic() < end:
            time.sleep(0.1)
        response = httpx.get(server.url + accepted.headers["location"], headers=auth(key))
    assert response.status_code == 404
    assert submits(reapi_state, key) == 1
