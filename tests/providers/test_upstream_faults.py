"""Upstream replies the emulator cannot produce (httpx.MockTransport), and the shim's own task cap."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from shim.app import create_app
from shim.config import Settings

from ..conftest import ServedApp, served, shim_settings, upstreams

UPSTREAM = "http://upstream.test"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), "green").save(out, "PNG")
    return out.getvalue()


class PartialUpstream:
    """A reAPI double whose second task of every three fails; records what it was asked."""

    def __init__(self) -> None:
        self.submits = 0
        self.ids = itertools.count()
        self.image = png()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/images/generations":
            self.submits += 1
            task = f"task_{next(self.ids)}"
            return httpx.Response(200, json={"id": task, "model": "gpt-image-2", "status": "processing"})
        if path.startswith("/api/v1/tasks/"):
            task = path.rsplit("/", 1)[1]
            if task.endswith("1"):
                error = {"code": 80003, "message": "provider_failed"}
                return httpx.Response(200, json={"id": task, "status": "failed", "output": None, "error": error})
            output = {"image_urls": [f"{UPSTREAM}/media/{task}.png"]}
            return httpx.Response(200, json={"id": task, "status": "completed", "output": output, "error": None})
        if path.startswith("/media/"):
            return httpx.Response(200, content=self.image, headers={"content-type": "image/png"})
        return httpx.Response(404)


@pytest.fixture
def partial() -> Iterator[tuple[ServedApp, PartialUpstream]]:
    upstream = PartialUpstream()
    settings = Settings(upstreams=upstreams(reapi=UPSTREAM), latency_scale=0.0001)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        yield server, upstream


def test_partial_failure_returns_paid_images(partial, sdk) -> None:
    """n=3 fanned out with one failed task: the two paid images come back, the failure is reported."""
    server, upstream = partial
    raw = sdk(server, "rk_x").images.with_raw_response.generate(model="dall-e-2", prompt="three", n=3)
    result = raw.parse()
    assert len(result.data) == 2 and all(d.url.startswith(UPSTREAM) for d in result.data)
    assert upstream.submits == 3
    assert "80003" in raw.headers["x-shim-partial-failure"]


def test_task_cap_is_504_naming_the_task(reapi_upstream, reve2img_upstream, sdk, key, reapi_state) -> None:
    """SHIM_MAX_TASK_SECONDS=1 on a 3 s task: 504 upstream_timeout naming the task id."""
    settings = shim_settings(reapi_upstream, reve2img_upstream, max_task_seconds=1.0)
    with served(create_app(settings)) as server:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(server, key, max_retries=0).images.generate(model="dall-e-2", prompt="[latency=3] slow")
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert task.id in caught.value.message


def test_poll_outage_of_html_pages_does_not_lose_the_task(sdk) -> None:
    """Six polls answered with a proxy's HTML 502 page only delay the answer: the paid image arrives."""
    polls: list[int] = []
    image = png()

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": "task_h", "status": "processing"})
        if request.url.path.startswith("/api/v1/tasks/"):
            polls.append(1)
            if len(polls) <= 6:
                return httpx.Response(502, text="<html>bad gateway</html>")
            output = {"image_urls": [f"{UPSTREAM}/media/h.png"]}
            return httpx.Response(200, json={"id": "task_h", "status": "completed", "output": output})
        return httpx.Response(200, content=image)

    settings = Settings(upstreams=upstreams(reapi=UPSTREAM), latency_scale=0.0001)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        raw = sdk(server, "rk_y", max_retries=0).images.with_raw_response.generate(model="dall-e-2", prompt="x")
    assert raw.status_code == 200 and raw.headers["x-upstream-task-ids"] == "task_h"
    assert len(polls) == 7


def test_unreadable_upstream_answer_is_retried_until_the_cap(sdk) -> None:
    """Polls answered with an HTML error page are retried, never a crash and never abandoned while the task
    cap lasts: at the cap, a 504 in OpenAI's shape naming the task."""
    polls = []

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"id": "task_h", "status": "processing"})
        polls.append(request.url.path)
        return httpx.Response(502, text="<html>bad gateway</html>")

    settings = Settings(upstreams=upstreams(reapi=UPSTREAM), latency_scale=0.0001, max_task_seconds=2.0)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(server, "rk_y", max_retries=0).images.generate(model="dall-e-2", prompt="x")
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    assert "task_h" in caught.value.message and len(polls) >= 3


def test_echoed_key_is_redacted(sdk) -> None:
    """An upstream that echoes the API key in its error message never gets it to the client."""
    secret = "rk_live_SECRET123"

    def upstream(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"].split()[1]
        error = {"code": 20003, "message": f"invalid size for key {echoed}", "request_id": "req_e"}
        return httpx.Response(400, json={"error": error})

    settings = Settings(upstreams=upstreams(reapi=UPSTREAM), latency_scale=0.0001)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(server, secret, max_retries=0).images.generate(model="dall-e-2", prompt="x")
    assert secret not in caught.value.message and "[redacted]" in caught.value.message
    assert secret not in caught.value.response.text


def test_upstream_429_on_submit_is_waited_out_not_passed_through(sdk) -> None:
    """An upstream 429 on submit (no task created) is retried inside the shim after Retry-After."""
    calls: list[str] = []
    image = png()

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and calls.count("POST /api/v1/images/generations") == 1:
            error = {"code": 50001, "message": "rate limit exceeded", "request_id": "req_r"}
            return httpx.Response(429, json={"error": error}, headers={"Retry-After": "1"})
        if request.method == "POST":
            return httpx.Response(200, json={"id": "task_r", "status": "processing"})
        if request.url.path.startswith("/api/v1/tasks/"):
            output = {"image_urls": [f"{UPSTREAM}/media/r.png"]}
            return httpx.Response(200, json={"id": "task_r", "status": "completed", "output": output})
        return httpx.Response(200, content=image)

    settings = Settings(upstreams=upstreams(reapi=UPSTREAM), latency_scale=0.0001)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        raw = sdk(server, "rk_z", max_retries=0).images.with_raw_response.generate(model="dall-e-2", prompt="x")
    assert raw.status_code == 200 and raw.headers["x-upstream-task-ids"] == "task_r"
    assert calls.count("POST /api/v1/images/generations") == 2
