"""The HTTP adapters against upstream doubles (httpx.MockTransport) for answers the emulators never give:
a submit accepted with a 2xx other than 200."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from shim.app import create_app
from shim.config import Settings

from ..conftest import served, upstreams

UPSTREAM = "http://upstream.test"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(out, "PNG")
    return out.getvalue()


class Upstream:
    """A double of one upstream: answers the submit with `status`, then a finished task; counts submits."""

    def __init__(self, status: int, submit: dict, finished: dict, poll_path: str) -> None:
        self.status, self.submit, self.finished, self.poll_path = status, submit, finished, poll_path
        self.submits = 0
        self.image = png()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.submits += 1
            return httpx.Response(self.status, json=self.submit)
        if request.url.path.startswith(self.poll_path):
            return httpx.Response(200, json=self.finished)
        return httpx.Response(200, content=self.image, headers={"content-type": "image/png"})


def reapi(status: int) -> Upstream:
    task = {"id": "task_2xx", "model": "gpt-image-2", "status": "processing", "created_at": 1}
    done = {**task, "status": "completed", "output": {"image_urls": [f"{UPSTREAM}/media/0.png"]}, "error": None}
    return Upstream(status, task, done, "/api/v1/tasks/")


def reve2img(status: int) -> Upstream:
    submitted = {"code": status, "message": "success", "data": {"task_id": "t2xx", "status": "IN_PROGRESS"}}
    result = {"task_id": "t2xx", "status": "SUCCESS", "response": {"resultUrls": [f"{UPSTREAM}/cdn/0.png"]}}
    return Upstream(status, submitted, {"code": 200, "message": "success", "data": result}, "/api/v1/status")


@pytest.mark.parametrize("status", [201, 202])
@pytest.mark.parametrize(
    ("make", "model"),
    [pytest.param(reapi, "dall-e-2", id="reapi"), pytest.param(reve2img, "reve2img/flux-2", id="reve2img")],
)
def test_any_2xx_submit_with_a_task_id_counts(sdk, make: Callable[[int], Upstream], model: str, status: int) -> None:
    """A submit answered 201 or 202 with a task id is that paid task: polled and delivered, never resubmitted."""
    upstream = make(status)
    settings = Settings(upstreams=upstreams(reapi=UPSTREAM, reve2img=UPSTREAM), latency_scale=0.0001)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        raw = sdk(server, "sk-2xx", max_retries=0).images.with_raw_response.generate(
            model=model, prompt="x", response_format="url"
        )
    assert raw.status_code == 200 and raw.parse().data[0].url.startswith(UPSTREAM)
    assert raw.headers["x-upstream-task-ids"] in ("task_2xx", "t2xx")
    assert upstream.submits == 1
