"""The upstream is untrusted input: a hostile upstream of the test's own (tests/hostile_upstream.py), served by
uvicorn, against the shim served by uvicorn, through the real openai SDK. Each test is one defect of issue 10
(it failed before the change)."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from starlette.responses import JSONResponse, Response

from shim.app import create_app
from shim.config import Settings

from ..conftest import ServedApp, served, upstreams
from ..hostile_upstream import Bystander, HostileUpstream, completed, png, png_claiming

KEY = "rk_live_untrusted_0123456789"


@pytest.fixture
def bystander() -> Iterator[tuple[ServedApp, Bystander]]:
    target = Bystander()
    with served(target.app()) as server:
        yield server, target


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    upstream = HostileUpstream()
    with served(upstream.app()) as server:
        upstream.url = server.url
        yield upstream


def shim_for(upstream: HostileUpstream, **changes: Any) -> ServedApp:
    settings = Settings(
        upstreams=upstreams(reapi=upstream.url), upstream_timeout=5.0, download_timeout=5.0, latency_scale=0.001
    )
    settings = dataclasses.replace(settings, **changes)
    return ServedApp(create_app(settings)).start()


@pytest.fixture
def shim(hostile: HostileUpstream) -> Iterator[ServedApp]:
    server = shim_for(hostile)
    try:
        yield server
    finally:
        server.stop()


def client(server: ServedApp, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, **kw)


# --- 1. a short poll outage never loses the paid task


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(lambda: JSONResponse({"error": {"code": 90000, "message": "internal"}}, 500), id="five-500s"),
        pytest.param(lambda: Response("<html>503 Service Unavailable</html>", 503), id="proxy-html-503s"),
        pytest.param(lambda: Response("not json at all", 200), id="garbage-200s"),
    ],
)
def test_poll_outage_delivers_the_paid_image(hostile, shim, outage, request) -> None:
    """Five failed polls in a row (about 4 s of outage) only delay the answer: one submit, the image delivered."""
    outage_id = request.node.callspec.id
    failing = 5 if outage_id == "five-500s" else 3  # five used to end the job; fewer keep the suite fast
    hostile.poll = lambda n, task: outage() if n <= failing else completed(task, f"{hostile.url}/files/0.png")
    result = client(shim).images.generate(model="gpt-image-1", prompt="x", quality="low")
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).format == "PNG"
    assert len(hostile.submits) == 1 and len(hostile.polls) == failing + 1


def test_retry_during_poll_trouble_attaches_and_pays_once(hostile) -> None:
    """With a 1 s hold budget and polls failing for several seconds, the SDK's retries attach to the same job."""
    hostile.poll = lambda n, task: (
        Response("bad gateway", 502) if n <= 4 else completed(task, f"{hostile.url}/files/0.png")
    )
    server = shim_for(hostile, hold_seconds=1.0)
    try:
        result = client(server, max_retries=6).images.generate(model="dall-e-2", prompt="x")
    finally:
        server.stop()
    assert result.data[0].url == f"{hostile.url}/files/0.png" and len(hostile.submits) == 1


# --- 2. result URLs cannot reach internal addresses


def test_result_url_to_a_metadata_service_is_refused(hostile, shim, bystander) -> None:
    """A result URL on another loopback server (a metadata service) is never fetched: a clear 502, no bytes."""
    target_server, target = bystander
    metadata = f"{target_server.url}/latest/meta-data/iam/credentials"
    hostile.poll = lambda n, task: completed(task, metadata)
    with pytest.raises(openai.InternalServerError) as caught:
        client(shim).images.generate(model="gpt-image-1", prompt="x")
    assert caught.value.status_code == 502 and "not a public address" in caught.value.message
    assert "hunter2" not in caught.value.response.text and target.hits == []


def test_redirect_to_a_metadata_service_is_refused(hostile, shim, bystander) -> None:
    """A result URL on the upstream's own origin that redirects to an internal address is refused at the hop."""
    target_server, target = bystander
    hostile.redirects["0.png"] = f"{target_server.url}/latest/meta-data/"
    with pytest.raises(openai.InternalServerError) as caught:
        client(shim).images.generate(model="gpt-image-1", prompt="x")
    assert caught.value.status_code == 502 and target.hits == [] and hostile.fetched == ["0.png"]


def test_streamed_answer_refuses_internal_result_urls(hostile, shim, bystander) -> None:
    """`stream: true` goes through the same guard: an error event, nothing fetched."""
    target_server, target = bystander
    hostile.poll = lambda n, task: completed(task, f"http://169.254.169.254/latest/meta-data/ {target_server.url}")
    hostile.poll = lambda n, task: completed(task, f"{target_server.url}/admin")
    with pytest.raises(openai.APIError) as caught:
        for _ in client(shim).images.generate(model="gpt-image-1", prompt="x", stream=True):
            pass
    assert "not a public address" in str(caught.value) and target.hits == []


def test_reve2img_result_urls_are_guarded_too(bystander) -> None:
    """A reve2img upstream whose resultUrls point at an internal server: refused the same way."""
    target_server, target = bystander

    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/generate":
            data = {"task_id": "t1", "status": "SUCCESS", "response": {"resultUrls": [f"{target_server.url}/x"]}}
            return httpx.Response(200, json={"code": 200, "message": "success", "data": data})
        return httpx.Response(404)

    settings = Settings(upstreams=upstreams(reve2img="http://reve2img.test"), latency_scale=0.001)
    with served(create_app(settings, transport=httpx.MockTransport(upstream))) as server:
        with pytest.raises(openai.InternalServerError) as caught:
            client(server).images.generate(model="reve2img/reve-2.0", prompt="x", response_format="b64_json")
    assert "not a public address" in caught.value.message and target.hits == []


@pytest.mark.parametrize(
    ("body", "content_type", "output_format", "expected"),
    [
        pytest.param(b'{"AccessKeyId": "x"}', "image/png", "png", "not a readable image", id="json-as-png"),
        pytest.param(b"<html>hi</html>", "text/html", "jpeg", "not a readable image", id="html-as-jpeg"),
        pytest.param(png_claiming(20000, 20000), "image/png", "jpeg", "more than the cap", id="400-megapixels"),
    ],
)
def test_result_bytes_must_decode_as_an_image(hostile, shim, body, content_type, output_format, expected) -> None:
    """Bytes that are not an image, or an image over the pixel cap, are a clear 502, never a 500 or a 'png'."""
    hostile.files["0.png"] = (body, content_type)
    with pytest.raises(openai.InternalServerError) as caught:
        client(shim).images.generate(model="gpt-image-1", prompt="x", output_format=output_format)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    assert expected in caught.value.message and "paid for" in caught.value.message


# --- 9. upstream data never makes a paid image undeliverable


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param("task_\u00e9\u4e2d\u6587", id="non-latin-1"),
        pytest.param("task_a\r\nx-injected: 1", id="crlf"),
        pytest.param("task/../../etc?x=1#y", id="path-characters"),
    ],
)
def test_odd_task_ids_are_polled_and_delivered(hostile, shim, task_id) -> None:
    """Any task id the upstream chooses is polled (quoted) and shown (printable): the image is delivered."""
    hostile.task_id = task_id
    raw = client(shim).images.with_raw_response.generate(model="dall-e-2", prompt="x")
    assert raw.status_code == 200 and hostile.polls == [task_id]
    assert raw.headers["x-upstream-task-ids"].isascii() and "\n" not in raw.headers["x-upstream-task-ids"]
    assert "x-injected" not in {k.lower() for k in raw.headers}


def test_unknown_success_status_with_urls_is_delivered(hostile, shim) -> None:
    """A task reported 'succeeded' (not a documented status) with its URLs is delivered, not 'refunded'."""
    hostile.poll = lambda n, task: completed(task, f"{hostile.url}/files/0.png", status="succeeded")
    result = client(shim).images.generate(model="dall-e-2", prompt="x")
    assert result.data[0].url == f"{hostile.url}/files/0.png"


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("req_\u4e2d\u6587", id="non-latin-1"),
        pytest.param("req_1\r\nset-cookie: stolen=1", id="crlf"),
    ],
)
def test_odd_request_ids_reach_the_client_printable(hostile, shim, request_id) -> None:
    """An upstream error's request_id with CR/LF or non-latin-1 text is shown printable: a clean 400, no 500."""
    hostile.submit_reply = lambda body: JSONResponse(
        {"error": {"code": 20003, "message": "invalid size", "request_id": request_id}}, 400
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client(shim).images.generate(model="dall-e-2", prompt="x")
    header = caught.value.response.headers["x-upstream-request-id"]
    assert header.isascii() and header.isprintable() and "set-cookie" not in caught.value.response.headers


def test_echoed_key_in_request_id_is_redacted(hostile, shim) -> None:
    """An upstream echoing the key in request_id gets it into neither the message nor a header."""
    hostile.submit_reply = lambda body: JSONResponse(
        {"error": {"code": 20003, "message": "bad", "request_id": f"req_{KEY}"}}, 400
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client(shim).images.generate(model="dall-e-2", prompt="x")
    assert KEY not in caught.value.response.text
    assert all(KEY not in value for value in caught.value.response.headers.values())


# --- 10. every upstream read has a cap and a total deadline


def test_huge_poll_body_is_a_transient_failure(hostile, shim) -> None:
    """A 60 MB poll answer is not read whole: the poll is repeated and the next answer delivers."""
    hostile.poll = lambda n, task: (
        Response(b" " * (60 << 20), media_type="application/json")
        if n == 1
        else completed(task, f"{hostile.url}/files/0.png")
    )
    result = client(shim).images.generate(model="dall-e-2", prompt="x")
    assert result.data[0].url and len(hostile.polls) == 2


def test_slow_drip_download_hits_the_total_deadline(hostile) -> None:
    """A result served one byte at a time is cut at SHIM_DOWNLOAD_TIMEOUT for the whole download."""
    hostile.files["0.png"] = (png(), "image/png")
    hostile.drip["0.png"] = 0.05  # each read is quick; the whole body would take ~10 s
    server = shim_for(hostile, download_timeout=0.5)
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client(server).images.generate(model="gpt-image-1", prompt="x")
    finally:
        server.stop()
    assert "longer than 0.5s" in caught.value.message and hostile.fetched.count("0.png") == 3
