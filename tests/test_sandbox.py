"""`shim sandbox`: the shim and both emulators mounted in one app on one port, driven by the SDK."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from shim.config import Settings
from shim.sandbox import create_sandbox_app

from .conftest import ServedApp, free_port, served


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ServedApp]:
    port = free_port()
    app = create_sandbox_app(Settings(), base_url=f"http://127.0.0.1:{port}", time_scale=0.01)
    with served(app, port) as server:
        yield server


@pytest.mark.parametrize(
    ("model", "size", "pixels"),
    [
        pytest.param("gpt-image-1", "1536x1024", (1536, 1024), id="reapi-official"),
        pytest.param("dall-e-2", "1024x1024", (1024, 1024), id="reapi-cheap"),
        pytest.param("reve2img/reve-2.0", "1792x1024", (1360, 768), id="reve2img-sync"),
        pytest.param("reve2img/flux-2", "1024x1024", (1024, 1024), id="reve2img-async"),
    ],
)
def test_sandbox_serves_every_upstream(sandbox, sdk, model, size, pixels) -> None:
    """Any key works in the sandbox, and b64_json images of both emulated upstreams download and decode."""
    result = sdk(sandbox, "sk-anything").images.generate(
        model=model, prompt="[latency=0.1] sandbox", size=size, response_format="b64_json", quality="low"
    )
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.size == pixels


def test_sandbox_urls_point_inside_the_sandbox(sandbox, sdk) -> None:
    """url answers name the sandbox's own mounted emulators, so they can be fetched."""
    result = sdk(sandbox, "sk-anything").images.generate(model="reve2img/reve-2.0", prompt="u", response_format="url")
    assert result.data[0].url.startswith(sandbox.url + "/_upstream/reve2img/")
    assert httpx.get(result.data[0].url).status_code == 200
