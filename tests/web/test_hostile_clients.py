"""Clients are untrusted input: oversized and trickled bodies, half-sent heads, decompression bombs, junk keys
and odd headers, against the shim served by uvicorn exactly as the CLI serves it. Each test is one defect of
issue 10 (it failed before the change)."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from shim.app import create_app
from shim.config import Settings

from ..conftest import SelfAddressedShim, ServedApp, served, upstreams
from ..hostile_upstream import blank_png, png_claiming


@pytest.fixture(scope="module")
def shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    server = SelfAddressedShim(reapi_upstream, reve2img_upstream, header_timeout=0.5, body_timeout=1.0).start()
    try:
        yield server
    finally:
        server.stop()


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(out, "PNG")
    return out.getvalue()


def edit(server: ServedApp, key: str, image: bytes, **kw) -> httpx.Response:
    files = {"image": ("a.png", image, "image/png")}
    data = {"prompt": "[latency=0.05] x", "model": "gpt-image-1", **kw}
    return httpx.post(
        server.url + "/v1/images/edits", files=files, data=data, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


# --- 3. one JSON cap for every route


def test_json_edit_over_the_json_cap_is_413(shim, key) -> None:
    """A 2 MB JSON edit body (under the 50 MB upload cap) is refused with 413 before it is parsed."""
    body = json.dumps({"prompt": "x", "x": [0] * 700_000}).encode()
    response = httpx.post(
        shim.url + "/v1/images/edits",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


# --- 4. decompression bombs cost nothing to refuse


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(blank_png(8000), id="real-64-megapixels"),
        pytest.param(png_claiming(30000, 30000), id="claims-900-megapixels"),
    ],
)
def test_image_over_the_pixel_cap_is_refused_from_its_header(shim, key, image) -> None:
    """An upload over SHIM_MAX_IMAGE_PIXELS is a 400 naming 'image', read from the header: nothing is stored."""
    response = edit(shim, key, image)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "image" and "pixels" in error["message"]
    assert shim.app.state.shim.media.used(None) == 0


# --- 5. rejected keys store nothing


def test_rejected_key_stores_nothing_and_is_not_relayed_again(shim, reapi_state) -> None:
    """Thirty edits from a key the upstream rejects: all 401, one upstream call, no upload left behind; a good
    key's edit then goes through."""
    bad = "rk_invalid_flood_key"
    statuses = [edit(shim, bad, photo()).status_code for _ in range(30)]
    assert statuses == [401] * 30
    assert reapi_state.counters(bad)["requests"] == 1
    assert shim.app.state.shim.media.used(None) == 0
    assert edit(shim, "rk_good_after_flood", photo()).status_code == 200


def test_junk_key_flood_keeps_no_jobs(shim, reapi_state) -> None:
    """Requests with distinct junk keys leave nothing in the registry once answered (no 15-minute memory)."""
    client_keys = [f"rk_invalid_junk_{i}" for i in range(40)]
    kept = shim.app.state.shim.jobs.kept_jobs()
    with httpx.Client(base_url=shim.url) as http:
        for k in client_keys:
            response = http.post(
                "/v1/images/generations", json={"prompt": "x"}, headers={"authorization": f"Bearer {k}"}
            )
            assert response.status_code == 401
    assert shim.app.state.shim.jobs.kept_jobs() == kept


# --- 7. half-sent heads and trickled bodies are cut


def test_half_sent_request_heads_are_closed(shim, key) -> None:
    """Connections that never finish their request head are closed after SHIM_HEADER_TIMEOUT; others are served."""
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", shim.port))
        sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: app")
        sock.settimeout(10)
        sockets.append(sock)
    assert httpx.get(shim.url + "/healthz").status_code == 200
    try:
        assert all(sock.recv(100) == b"" for sock in sockets)  # closed by the server, not by us
    finally:
        for sock in sockets:
            sock.close()


def test_trickled_body_is_408(shim, key) -> None:
    """A body that does not arrive within SHIM_BODY_TIMEOUT is answered 408 and the connection freed."""
    with socket.create_connection(("127.0.0.1", shim.port)) as sock:
        sock.sendall(
            b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pro'
        )
        sock.settimeout(10)
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 408")


def test_client_disconnect_mid_body_is_logged_at_info(shim, key, caplog) -> None:
    """A client that leaves mid-body is an info line, not an error with a traceback."""
    caplog.set_level(logging.INFO, logger="shim")
    with socket.create_connection(("127.0.0.1", shim.port)) as sock:
        sock.sendall(
            b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt": '
        )
    deadline = time.monotonic() + 5
    while not any("client disconnected" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(r.levelno == logging.INFO and "client disconnected" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- 8. no client input produces a 5xx


@pytest.mark.parametrize(
    "retry_count",
    [pytest.param("\u00b2".encode("latin-1"), id="superscript-two"), pytest.param(b"9" * 5000, id="5000-digits")],
)
def test_odd_retry_count_headers_are_ignored(shim, key, retry_count) -> None:
    """x-stainless-retry-count that is not a small ASCII number counts as a first attempt, never a 500."""
    response = httpx.post(
        shim.url + "/v1/images/generations",
        json={"prompt": "[latency=0.05] x", "model": "dall-e-2"},
        headers={"authorization": f"Bearer {key}", "x-stainless-retry-count": retry_count},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["data"][0]["url"]


def test_lone_surrogate_in_json_is_400(shim, key, reapi_state) -> None:
    """A prompt with a lone surrogate escape is a 400 invalid_json, never sent upstream (it was a 502)."""
    response = httpx.post(
        shim.url + "/v1/images/generations",
        content=b'{"prompt": "x\\ud800y"}',
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert reapi_state.counters(key)["requests"] == 0


def test_key_with_a_non_ascii_byte_is_401_without_an_upstream_call() -> None:
    """A key holding byte 0xE9 is refused with 401 invalid_api_key (it was a 502 from the encoding error)."""
    calls: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    with served(
        create_app(Settings(upstreams=upstreams(reapi="http://u.test")), transport=httpx.MockTransport(upstream))
    ) as srv:
        response = httpx.post(
            srv.url + "/v1/images/generations", json={"prompt": "x"}, headers={"authorization": b"Bearer rk_\xe9t\xe9"}
        )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="rk with space", max_retries=0).images.generate(prompt="x")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert calls == []
