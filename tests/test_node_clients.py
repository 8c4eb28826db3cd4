"""Real Node clients against the shim: openai-node (images, and its videos resource), the Vercel AI SDK (`ai` +
`@ai-sdk/openai`) and LangChain JS (`@langchain/openai`'s DallEAPIWrapper), pinned in tests/node/package-lock.json
and installed by `npm ci` (.ci/run does it). `tests/node/clients.mjs` runs each client's checks against a uvicorn-served
shim with the emulators as upstreams and prints their results as JSON.

Node is expected: without `node` or the installed packages these tests fail, unless SHIM_NODE_TESTS=skip
says this machine has no Node on purpose.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import SelfAddressedShim, ServedApp
from .emulator.test_video_mp4 import decode

NODE_DIR = Path(__file__).parent / "node"
CLIENTS = ("openai", "ai-sdk", "langchain", "videos")


def node_or_fail() -> str:
    """The node executable, or a loud failure (a skip only when SHIM_NODE_TESTS=skip)."""
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "Node.js (`node`) is not on PATH"
    elif not (NODE_DIR / "node_modules" / "openai" / "package.json").is_file():
        problem = "the Node clients are not installed: run `npm ci` in tests/node"
    if problem is None:
        assert node is not None
        return node
    if os.environ.get("SHIM_NODE_TESTS") == "skip":
        pytest.skip(f"{problem} (SHIM_NODE_TESTS=skip)")
    pytest.fail(f"{problem}; set SHIM_NODE_TESTS=skip only where Node is not expected", pytrace=False)


@pytest.fixture(scope="module")
def node_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim that serves its own edit uploads (SHIM_PUBLIC_URL is its address)."""
    server = SelfAddressedShim(reapi_upstream, reve2img_upstream).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def runs(node_shim) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each client's (key, results): the three scripts run concurrently, each with a key of its own."""
    node = node_or_fail()
    started = {}
    for client in CLIENTS:
        key = f"rk_node_{client}_{uuid.uuid4().hex}"
        env = {**os.environ, "SHIM_URL": node_shim.url + "/v1", "SHIM_KEY": key}
        process = subprocess.Popen(
            [node, "clients.mjs", client], cwd=NODE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        started[client] = (key, process)
    done = {}
    for client, (key, process) in started.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{client}: exit {process.returncode}\n{err.decode()[-2000:]}"
        done[client] = (key, json.loads(out.decode().strip().splitlines()[-1]))
    return done


def result(runs, client: str, check: str) -> dict[str, Any]:
    value: dict[str, Any] = runs[client][1][check]
    return value


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


def test_openai_node_generate_b64(runs) -> None:
    """openai-node's images.generate on gpt-image-1 gets one PNG as b64_json, its size, and usage."""
    assert result(runs, "openai", "generate_b64") == {
        "count": 1,
        "png": True,
        "url": None,
        "size": "1024x1024",
        "total_tokens": 0,
    }


def test_openai_node_generate_url(runs) -> None:
    """openai-node on dall-e-3 gets a URL (no b64_json) that serves a PNG."""
    assert result(runs, "openai", "generate_url") == {"count": 1, "b64": None, "image": {"status": 200, "png": True}}


def test_openai_node_n2(runs, reapi_state) -> None:
    """n=2 on gpt-image-1 gives two distinct URLs from one batched task."""
    assert result(runs, "openai", "generate_n2") == {"count": 2, "distinct": 2}


def test_openai_node_edit_with_two_files(runs, reapi_state) -> None:
    """images.edit with two toFile() uploads (repeated image[]) answers a PNG; the upstream fetched both."""
    assert result(runs, "openai", "edit_two_files") == {"count": 1, "png": True}
    key = runs["openai"][0]
    (edit,) = [t for t in tasks_of(reapi_state, key) if t.body.get("image_urls")]
    assert len(edit.body["image_urls"]) == 2 and all(item["status"] == 200 for item in edit.fetched_inputs)


@pytest.mark.parametrize(
    ("check", "error", "status", "code"),
    [
        pytest.param("error_unknown_model", "NotFoundError", 404, "model_not_found", id="404"),
        pytest.param("error_bad_size", "BadRequestError", 400, "invalid_value", id="400"),
    ],
)
def test_openai_node_error_classes(runs, check, error, status, code) -> None:
    """openai-node raises its own error class for the shim's OpenAI-shaped errors, with status and code."""
    got = result(runs, "openai", check)
    assert (got["error"], got["status"], got["code"]) == (error, status, code)


def test_ai_sdk_gpt_image_n2(runs, reapi_state) -> None:
    """The AI SDK's generateImage with n=2 on gpt-image-1 (one call, no response_format) returns two PNGs."""
    assert result(runs, "ai-sdk", "gpt_image_n2") == {"count": 2, "png": True}
    (task,) = tasks_of(reapi_state, runs["ai-sdk"][0])
    assert task.body["n"] == 2


def test_ai_sdk_reve_model(runs, reve2img_state) -> None:
    """The AI SDK asks b64_json for a non-GPT id (reve2img/reve-2.0) and gets a PNG."""
    assert result(runs, "ai-sdk", "reve_b64") == {"png": True, "media_type": "image/png"}
    (task,) = tasks_of(reve2img_state, runs["ai-sdk"][0])
    assert task.body["aspect_ratio"] == "16:9"


def test_ai_sdk_error(runs) -> None:
    """An unknown model is the AI SDK's APICallError with status 404."""
    got = result(runs, "ai-sdk", "error_unknown_model")
    assert (got["error"], got["status"]) == ("APICallError", 404)


def test_langchain_dalle_wrapper(runs, reapi_state) -> None:
    """LangChain JS's DallEAPIWrapper gets a URL serving a PNG, b64_json when asked, and n=2 as two calls."""
    assert result(runs, "langchain", "dalle_url") == {"image": {"status": 200, "png": True}}
    assert result(runs, "langchain", "dalle_b64") == {"png": True}
    fan = result(runs, "langchain", "dalle_n2")
    assert fan["count"] == 2 and len(set(fan["urls"])) == 2
    bodies = [t.body for t in tasks_of(reapi_state, runs["langchain"][0])]
    assert len(bodies) == 4 and {b["model"] for b in bodies} == {"gpt-image-2-official", "gpt-image-2"}


def test_openai_node_videos_create_poll_download(runs, reapi_state) -> None:
    """openai-node's videos.create (multipart), retrieve until completed and downloadContent give an MP4 of the
    requested size, which FFmpeg decodes."""
    got = result(runs, "videos", "create_poll_download")
    mp4 = base64.b64decode(got.pop("mp4_b64"))
    assert got == {
        "created": {"object": "video", "status": "in_progress", "model": "sora-2"},
        "status": "completed", "seconds": "4", "size": "1280x720", "progress_last": 100, "content_type": "video/mp4",
    }  # fmt: skip
    found = decode(mp4, limit=1)
    assert (found.width, found.height, found.duration) == (1280, 720, 4)


def test_openai_node_videos_references_reach_the_upstream(runs, reapi_state) -> None:
    """A toFile() input_reference and an {image_url: data:...} one both reach the upstream as the shim's URLs."""
    assert result(runs, "videos", "upload_reference") == {"status": "completed"}
    assert result(runs, "videos", "url_reference") == {"status": "completed"}
    fetched = [t for t in tasks_of(reapi_state, runs["videos"][0]) if t.body.get("image_urls")]
    assert len(fetched) >= 2 and all(t.fetched_inputs[0]["status"] == 200 for t in fetched)


def test_openai_node_videos_remix_list_delete_and_errors(runs) -> None:
    """remix (a JSON body), auto-paginated list, delete, and NotFoundError / BadRequestError as openai-node's."""
    assert result(runs, "videos", "remix") == {
        "status": "completed",
        "remixed_from": True,
        "prompt": "[latency=0.3] a node fox\nat dusk",
    }
    assert result(runs, "videos", "list") == {"count": 4, "first_is_oldest": True, "has_more": True}
    assert result(runs, "videos", "delete") == {"deleted": True, "object": "video.deleted", "after": "NotFoundError"}
    got = result(runs, "videos", "error_bad_seconds")
    assert (got["error"], got["status"], got["code"]) == ("BadRequestError", 400, "invalid_value")
