"""Replays of real clients, built from their public source: each test sends exactly what the client sends
(through the same SDK where it uses one, or the same raw HTTP) and reads exactly what it reads, against the
shim served by uvicorn with the emulators as upstreams. No client code is copied, only its wire behaviour.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from .conftest import SelfAddressedShim, ServedApp


def decode(b64: str) -> Image.Image:
    return decode_bytes(base64.b64decode(b64))


def decode_bytes(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


# --- Dify's OpenAI plugin, tools/openai/tools/gpt_image_generate.py ----------------------------------------
def test_dify_gpt_image_tool_reads_usage(sdk, shim_server, reapi_state, key) -> None:
    """Dify's GPT Image tool (model gpt-image-1, size and quality only when not auto, n always) reads
    usage.total_tokens, input/output tokens and input_tokens_details, then each b64_json."""
    client = sdk(shim_server, key)  # Dify appends /v1 to the configured base URL itself
    response = client.images.generate(model="gpt-image-1", prompt="[latency=0.1] a lighthouse", quality="low", n=1)
    usage = response.usage  # the tool does `usage = response.usage; usage.total_tokens` after hasattr()
    token_usage = {
        "total_tokens": usage.total_tokens,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "input_tokens_details": {
            "text_tokens": usage.input_tokens_details.text_tokens,
            "image_tokens": usage.input_tokens_details.image_tokens,
        },
    }
    assert token_usage == {
        "total_tokens": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "input_tokens_details": {"text_tokens": 0, "image_tokens": 0},
    }
    assert usage.output_tokens_details is not None and usage.output_tokens_details.image_tokens == 0
    blobs = [base64.b64decode(image.b64_json) for image in response.data if image.b64_json]
    assert len(blobs) == 1 and decode(response.data[0].b64_json).format == "PNG"
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official" and task.body["quality"] == "low"


def test_dall_e_answers_carry_no_usage(sdk, shim_server, key) -> None:
    """A DALL-E id answers without usage, as OpenAI's DALL-E models did."""
    raw = sdk(shim_server, key).images.with_raw_response.generate(model="dall-e-3", prompt="[latency=0.1] a fox")
    assert "usage" not in raw.http_response.json() and raw.parse().data[0].url


# --- LibreChat: DALLE3.js (openai-node), OpenAIImageTools.js image_gen_oai / image_edit_oai ---------------
@pytest.fixture(scope="module")
def public_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim with SHIM_PUBLIC_URL set to its own address, so edit uploads can be served to the upstream."""
    server = SelfAddressedShim(reapi_upstream, reve2img_upstream).start()
    try:
        yield server
    finally:
        server.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def photo(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_librechat_dalle3_tool_reads_url(public_shim, reapi_state, key) -> None:
    """LibreChat's DALL-E 3 tool sends dall-e-3 / standard / vivid / a size / n 1, no response_format, and
    downloads data[0].url: the same shim that answers its GPT-style tools b64_json answers it a URL."""
    body = {"model": "dall-e-3", "quality": "standard", "style": "vivid", "size": "1792x1024"}
    response = httpx.post(
        public_shim.url + "/v1/images/generations",
        json={**body, "prompt": "[latency=0.1] a harbour at dusk", "n": 1},
        headers=auth(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    assert decode_bytes(httpx.get(url, timeout=30).content).size == (2048, 1152)
    (task,) = tasks_of(reapi_state, key)
    assert (task.body["model"], task.body["quality"]) == ("gpt-image-2-official", "medium")


def test_librechat_image_gen_oai_on_a_reve_model_reads_b64(public_shim, reve2img_state, key) -> None:
    """image_gen_oai with IMAGE_GEN_OAI_MODEL=reve-2.0 sends background/output_format/quality/size (no
    response_format) and reads only data[0].b64_json: its GPT-image fields get it b64_json."""
    body = {
        "model": "reve-2.0",
        "prompt": "a red kite over dunes",
        "n": 1,
        "background": "auto",
        "output_format": "png",
        "quality": "auto",
        "size": "auto",
    }
    response = httpx.post(public_shim.url + "/v1/images/generations", json=body, headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    assert decode(response.json()["data"][0]["b64_json"]).format == "PNG"
    (task,) = tasks_of(reve2img_state, key)
    assert task.body == {"model": "reve-2.0", "prompt": "a red kite over dunes"}


def test_librechat_image_edit_oai_chunked_reads_b64(public_shim, reve2img_state, key) -> None:
    """image_edit_oai posts axios form-data, chunked with no Content-Length: model, prompt, quality auto,
    size auto and repeated image[] parts; it reads only data[0].b64_json."""
    boundary = "--------------------------" + "7" * 24
    files = [photo(), photo((32, 32))]
    parts = [("model", b"reve-2.0", None), ("prompt", b"put a hat on it", None), ("quality", b"auto", None)]
    parts += [("size", b"auto", None)]
    parts += [("image[]", data, f"img-{i}.png") for i, data in enumerate(files)]
    body = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"Content-Disposition: {disposition}\r\n" + ("Content-Type: image/png\r\n" if filename else "")
        body += f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    response = httpx.post(
        public_shim.url + "/v1/images/edits",
        content=chunks(),
        headers={**auth(key), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert decode(response.json()["data"][0]["b64_json"]).format == "PNG"
    (task,) = tasks_of(reve2img_state, key)
    assert len(task.body["image_urls"]) == 2 and all(u.startswith(public_shim.url) for u in task.body["image_urls"])


# --- Haystack: haystack/components/generators/openai_image_generator.py ------------------------------------
@pytest.mark.parametrize(
    ("model", "quality", "state"),
    [
        pytest.param("reve-2.0", "auto", "reve2img_state", id="reve-2.0"),
        pytest.param("gemini-2.5-flash-image-preview", "high", "reapi_state", id="gemini"),
    ],
)
def test_haystack_image_generator_reads_b64(sdk, shim_server, request, key, model, quality, state) -> None:
    """Haystack's OpenAIImageGenerator sends model/prompt/size/quality (auto/high/medium/low)/n=1 and no
    response_format, then reads only data[0].b64_json: its GPT-image quality gets it b64_json."""
    client = sdk(shim_server, key)
    response = client.images.generate(
        model=model, prompt="[latency=0.1] a black cat", size="1024x1024", quality=quality, n=1
    )
    image_str = response.data[0].b64_json or ""
    assert decode(image_str).format == "PNG"
    (task,) = tasks_of(request.getfixturevalue(state), key)
    assert task.body["model"] == model


# --- Semantic Kernel: open_ai_text_to_image_base.py edit_image(), open_ai_handler._send_image_edit_request ---
def test_semantic_kernel_edit_image_with_mask_and_no_model(sdk, public_shim, reapi_state, key, tmp_path) -> None:
    """edit_image(image_paths=[...], mask_path=...) sends no model (only prompt and n=1 from its settings),
    image paths as repeated image[] and the mask; it reads each b64_json, else url."""
    first, second = tmp_path / "img_1.png", tmp_path / "img_2.png"
    first.write_bytes(photo())
    second.write_bytes(photo())
    mask_path = tmp_path / "mask.png"
    hole = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    hole.paste((0, 0, 0, 0), (0, 0, 32, 24))
    hole.save(mask_path, "PNG")
    response = sdk(public_shim, key).images.edit(
        image=[first, second], mask=mask_path, prompt="[latency=0.1] Make the cat wear a wizard hat", n=1
    )
    results = [img.b64_json or img.url for img in response.data if img.b64_json or img.url]
    assert len(results) == 1
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official"
    assert len(task.body["image_urls"]) == 2 and task.body["mask_url"].startswith(public_shim.url)


# --- n8n's OpenAI node, vendors/OpenAi/v2/actions/image/{generate,edit}.operation.ts -----------------------
def n8n_url(shim: ServedApp, endpoint: str) -> str:
    """n8n joins the credential's base URL and the endpoint as strings: a base ending in "/" gives "//"."""
    return f"{shim.url}/v1/{endpoint}"


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        pytest.param("dall-e-3", {"n": 1, "size": "1024x1024", "quality": "hd"}, "b64_json", id="dall-e-3-binary"),
        pytest.param("dall-e-3", {"n": 1, "returnImageUrls": True}, "url", id="dall-e-3-urls"),
        pytest.param("gpt-image-1-mini", {"n": 2, "quality": "low"}, "b64_json", id="gpt-image"),
    ],
)
def test_n8n_generate(public_shim, reapi_state, key, model, options, expected) -> None:
    """n8n's generate posts {prompt, model, response_format (b64_json, url with "return image URLs", none for
    gpt-image ids), ...options} to "<base>//images/generations" and reads data[].b64_json or data[].url."""
    options = dict(options)
    supports_response_format = not model.startswith("gpt-image")
    response_format = "url" if options.pop("returnImageUrls", False) and supports_response_format else "b64_json"
    body = {"prompt": "[latency=0.1] a cute cat eating a dinosaur", "model": model, **options}
    if supports_response_format:
        body["response_format"] = response_format
    response = httpx.post(n8n_url(public_shim, "/images/generations"), json=body, headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == options["n"]
    if expected == "url":
        assert all(httpx.get(entry["url"], timeout=30).status_code == 200 for entry in data)
    else:
        assert all(decode(entry["b64_json"]).format == "PNG" for entry in data)
    assert len(tasks_of(reapi_state, key)) >= 1


def test_n8n_edit_with_image_mask_on_dall_e_2(public_shim, reapi_state, key) -> None:
    """n8n's edit on dall-e-2 with the "Image Mask" option: multipart image, prompt, model, n, size,
    response_format url and mask, to "<base>//images/edits"; it reads data[] entries (url)."""
    hole = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    hole.paste((0, 0, 0, 0), (0, 0, 32, 24))
    out = io.BytesIO()
    hole.save(out, "PNG")
    response = httpx.post(
        n8n_url(public_shim, "/images/edits"),
        files=[("image", ("data.png", photo(), "image/png")), ("mask", ("mask.png", out.getvalue(), "image/png"))],
        data={
            "prompt": "[latency=0.1] a beautiful sunset",
            "model": "dall-e-2",
            "n": "1",
            "size": "1024x1024",
            "response_format": "url",
        },
        headers=auth(key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (entry,) = response.json()["data"]
    assert entry["url"].startswith("http")
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official" and task.body["mask_url"]
