"""Bad input always gets a clear 4xx in OpenAI's shape: never a 5xx, never an upstream call.
And SIGTERM lets a held request finish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import TIME_SCALE

URL = "/v1/images/generations"

MALFORMED: list[tuple[str, bytes, dict[str, str]]] = [
    ("empty", b"", {}),
    ("not-json", b"prompt=cat", {}),
    ("truncated", b'{"prompt": "cat"', {}),
    ("array", b'["prompt"]', {}),
    ("string", b'"prompt"', {}),
    ("null", b"null", {}),
    ("nan", b'{"prompt": "cat", "n": NaN}', {}),
    ("infinity", b'{"prompt": "cat", "n": Infinity}', {}),
    ("huge-number", b'{"prompt": "cat", "n": 1e400}', {}),
    ("invalid-utf8", b'{"prompt": "\xff\xfe cat"}', {}),
    ("deep-nesting", b'{"prompt": "cat", "user": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
    ("moderately-deep", b'{"prompt": "cat", "x": ' + b"[" * 40 + b"]" * 40 + b"}", {}),
    ("oversized", b'{"prompt": "' + b"a" * (2 << 20) + b'"}', {}),
    ("n-as-string", b'{"prompt": "cat", "n": "2"}', {}),
    ("n-bool", b'{"prompt": "cat", "n": true}', {}),
    ("prompt-object", b'{"prompt": {"text": "cat"}}', {}),
    ("size-int", b'{"prompt": "cat", "size": 1024}', {}),
    ("model-list", b'{"prompt": "cat", "model": ["dall-e-2"]}', {}),
    ("stream-string", b'{"prompt": "cat", "stream": "true"}', {}),
    ("duplicate-garbage", b'{"prompt": "cat",,}', {}),
    ("bom-and-junk", b"\xef\xbb\xbf{junk", {}),
    ("form-content-type", b"prompt=cat", {"content-type": "application/x-www-form-urlencoded"}),
]


@pytest.mark.parametrize(("raw", "headers"), [pytest.param(r, h, id=i) for i, r, h in MALFORMED])
def test_malformed_bodies_get_4xx(shim_server, reapi_state, key, raw, headers) -> None:
    """Each malformed body is a 4xx with an OpenAI error object and no upstream request."""
    response = httpx.post(
        shim_server.url + URL,
        content=raw,
        headers={"Authorization": f"Bearer {key}", "content-type": "application/json", **headers},
        timeout=10,
    )
    assert 400 <= response.status_code < 500, response.text[:200]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert reapi_state.counters(key)["requests"] == 0


def test_oversized_is_413(shim_server, key) -> None:
    """A body over SHIM_MAX_BODY_BYTES is 413, whether declared or streamed without a length."""
    big = b'{"prompt": "' + b"a" * (2 << 20) + b'"}'
    declared = httpx.post(shim_server.url + URL, content=big, headers={"Authorization": f"Bearer {key}"})

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = httpx.post(shim_server.url + URL, content=chunks(), headers={"Authorization": f"Bearer {key}"})
    assert declared.status_code == 413 and streamed.status_code == 413


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
FIELDS = {
    "model": st.sampled_from(["dall-e-2", "dall-e-3", "gpt-image-1", "nope", ""]) | JSON_VALUES,
    "n": st.integers(-2, 12) | JSON_VALUES,
    "size": st.sampled_from(["1024x1024", "16:9", "auto", "1000x1000", "4096x4096", "x"]) | JSON_VALUES,
    "quality": st.sampled_from(["hd", "standard", "low", "ultra"]) | JSON_VALUES,
    "response_format": st.sampled_from(["url", "b64_json", "png"]) | JSON_VALUES,
    "output_format": st.sampled_from(["png", "jpeg", "gif"]) | JSON_VALUES,
    "output_compression": st.integers(-5, 120) | JSON_VALUES,
    "background": st.sampled_from(["auto", "transparent", "green"]) | JSON_VALUES,
    "moderation": st.sampled_from(["low", "auto", "off"]) | JSON_VALUES,
    "style": st.sampled_from(["vivid", "natural", "x"]) | JSON_VALUES,
    "user": JSON_VALUES,
    "resolution": st.sampled_from(["1k", "2K", "4k", "8k"]) | JSON_VALUES,
    "image_urls": st.lists(st.sampled_from(["data:x", "ftp://x", "file:///etc/passwd"]), max_size=3) | JSON_VALUES,
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompt=st.text(max_size=20) | JSON_VALUES,
    fields=st.fixed_dictionaries({}, optional=FIELDS),
)
def test_request_schema_property(shim_server, prompt, fields) -> None:
    """Any body over the request schema is answered with 200 or a 4xx in OpenAI's shape, never a 5xx."""
    body = {"prompt": prompt, **fields}
    if isinstance(prompt, str):
        body["prompt"] = "[latency=0.05] " + prompt  # valid bodies finish fast on the emulator
    body.pop("image_urls", None) if body.get("image_urls") == [] else None
    response = httpx.post(
        shim_server.url + URL,
        content=json.dumps(body),
        headers={"Authorization": "Bearer rk_property", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text[:300]
    payload = response.json()
    if response.status_code == 200:
        assert payload["data"] and isinstance(payload["created"], int)
    else:
        assert set(payload["error"]) == {"message", "type", "param", "code"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_delivers_held_request(reapi_upstream, key) -> None:
    """SIGTERM during a held request: the shim stops accepting, still delivers it, then exits."""
    port = _free_port()
    env = {
        **os.environ,
        "SHIM_REAPI_BASE_URL": reapi_upstream.url,
        "SHIM_DRAIN_SECONDS": "10",
        "SHIM_LATENCY_SCALE": str(TIME_SCALE),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "shim", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        with httpx.Client(timeout=15) as http:
            import threading

            result: dict[str, httpx.Response] = {}

            def call() -> None:
                result["r"] = http.post(
                    base + URL,
                    json={"model": "dall-e-2", "prompt": "[latency=1.5] drain me"},
                    headers={"Authorization": f"Bearer {key}"},
                )

            caller = threading.Thread(target=call)
            caller.start()
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            caller.join(timeout=15)
        assert result["r"].status_code == 200 and result["r"].json()["data"][0]["url"]
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
