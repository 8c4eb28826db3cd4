"""`shim sandbox`: the shim and both emulators mounted in one app on one port, driven by the SDK."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from shim.cli import _sandbox_banner
from shim.config import Settings
from shim.sandbox import create_sandbox_app

from .conftest import ServedApp, free_port, served
from .emulator.test_video_mp4 import decode


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


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
def test_sandbox_serves_videos_as_its_banner_shows(sandbox, sdk, tmp_path) -> None:
    """The banner's video lines (create_and_poll, download_content) run as printed against the sandbox, and
    the file written is the MP4 asked for."""
    banner = _sandbox_banner(sandbox.url)
    lines = [line.strip() for line in banner.splitlines() if "videos." in line]
    assert any("create_and_poll" in line for line in lines) and any("download_content" in line for line in lines)
    client = sdk(sandbox, "sk-anything")
    program = "\n".join(lines).replace('"panda.mp4"', repr(str(tmp_path / "panda.mp4")))
    exec(program, {"client": client})  # the printed example itself
    found = decode((tmp_path / "panda.mp4").read_bytes(), limit=1)
    assert (found.width, found.height, found.duration) == (1280, 720, 4)
