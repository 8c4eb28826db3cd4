"""Image generation through the real openai SDK (sync and async) against the shim served by uvicorn,
with the reAPI emulator served separately as the upstream."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


def test_gpt_image_b64_default(sdk, shim_server, key, reapi_state) -> None:
    """gpt-image-1 answers b64_json of a real PNG at the requested size, from one official-channel task."""
    result = sdk(shim_server, key).images.generate(
        model="gpt-image-1", prompt="a red panda", size="1024x1024", quality="low"
    )
    assert len(result.data) == 1 and result.data[0].url is None
    image = decode(result.data[0].b64_json)
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    assert (result.size, result.quality, result.output_format) == ("1024x1024", "low", "png")
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official"
    assert task.body["size"] == "1:1" and task.body["quality"] == "low"


async def test_async_sdk_url(shim_server, key, reapi_state) -> None:
    """The async SDK with dall-e-2 gets a URL (OpenAI's default for DALL-E ids) that serves the PNG."""
    async with openai.AsyncOpenAI(base_url=shim_server.url + "/v1", api_key=key) as aclient:
        result = await aclient.images.generate(model="dall-e-2", prompt="a fox", size="512x512")
    assert result.data[0].b64_json is None
    async with httpx.AsyncClient() as http:
        png = (await http.get(result.data[0].url)).content
    assert Image.open(io.BytesIO(png)).size == (1024, 1024)
    (task,) = tasks_of(reapi_state, key)
    assert task.body == {"model": "gpt-image-2", "prompt": "a fox", "size": "1:1", "resolution": "1k"}


@pytest.mark.parametrize(
    ("model", "size", "quality", "upstream", "pixels"),
    [
        (
            "dall-e-3",
            "1792x1024",
            "hd",
            {"size": "16:9", "resolution": "2k", "quality": "high"},
            (2048, 1152),
        ),
        (
            "dall-e-3",
            "1024x1024",
            None,
            {"size": "1:1", "resolution": "1k", "quality": "medium"},
            (1024, 1024),
        ),
        ("gpt-image-1", "1536x1024", "medium", {"size": "3:2", "resolution": "1k"}, (1536, 1024)),
        pytest.param(
            "gpt-image-1", "3840x2160", "low", {"size": "16:9", "resolution": "4k"}, (3840, 2160), id="4k-pixels"
        ),
        ("gpt-image-2", "16:9", None, {"size": "16:9"}, (1536, 864)),
        ("dall-e-2", "1024x1536", None, {"size": "2:3", "resolution": "1k"}, (1024, 1536)),
    ],
)
def test_size_and_quality_mapping(sdk, shim_server, key, reapi_state, model, size, quality, upstream, pixels) -> None:
    """Sizes and qualities reach the upstream as the mapping table says, and the PNG has the cell's pixels."""
    kw = {"quality": quality} if quality else {}
    result = sdk(shim_server, key).images.generate(
        model=model, prompt="[latency=0.1] mapping", size=size, response_format="b64_json", **kw
    )
    assert decode(result.data[0].b64_json).size == pixels
    (task,) = tasks_of(reapi_state, key)
    assert {k: task.body.get(k) for k in upstream} == upstream


def test_n_batches_on_official_channel(sdk, shim_server, key, reapi_state) -> None:
    """n=6 on the official channel is two tasks (4 + 2) and six distinct images."""
    result = sdk(shim_server, key).images.generate(
        model="gpt-image-1", prompt="[latency=0.2] batch", n=6, quality="low", response_format="url"
    )
    assert len(result.data) == 6 and len({d.url for d in result.data}) == 6
    assert sorted(t.body["n"] for t in tasks_of(reapi_state, key)) == [2, 4]


async def test_n_fans_out_on_single_image_channel(shim_server, key, reapi_state) -> None:
    """n=3 on gpt-image-2 (n fixed at 1) is three concurrent tasks."""
    async with openai.AsyncOpenAI(base_url=shim_server.url + "/v1", api_key=key) as aclient:
        result = await aclient.images.generate(model="dall-e-2", prompt="[latency=0.2] fan", n=3)
    assert len(result.data) == 3
    tasks = tasks_of(reapi_state, key)
    assert len(tasks) == 3 and all("n" not in t.body for t in tasks)


def test_output_format_conversion(sdk, shim_server, key) -> None:
    """output_format jpeg/webp converts the downloaded PNG before base64."""
    c = sdk(shim_server, key)
    jpeg = c.images.generate(model="gpt-image-1", prompt="[latency=0.1] j", output_format="jpeg", quality="low")
    webp = c.images.generate(model="gpt-image-1", prompt="[latency=0.1] w", output_format="webp", quality="low")
    assert decode(jpeg.data[0].b64_json).format == "JPEG" and jpeg.output_format == "jpeg"
    assert decode(webp.data[0].b64_json).format == "WEBP"


def test_missing_key_is_401_without_upstream_call(shim_server, reapi_state) -> None:
    """No key at all: 401 from the shim, and the emulator sees nothing."""
    before = len(reapi_state.tasks)
    response = httpx.post(shim_server.url + "/v1/images/generations", json={"prompt": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-request-id"].startswith("req_")
    assert len(reapi_state.tasks) == before


@pytest.mark.parametrize(
    ("key_prefix", "prompt", "exception", "status", "code"),
    [
        ("rk_invalid_", "x", openai.AuthenticationError, 401, "invalid_api_key"),
        ("rk_revoked_", "x", openai.AuthenticationError, 401, "invalid_api_key"),
        ("rk_broke_", "x", openai.RateLimitError, 429, "insufficient_quota"),
        ("rk_t_", "[moderated] x", openai.BadRequestError, 400, "content_policy_violation"),
        ("rk_t_", "[latency=0.1][fail=80001] x", openai.InternalServerError, 502, "upstream_task_failed"),
        ("rk_t_", "[latency=0.1][fail=80002] x", openai.InternalServerError, 504, "upstream_task_failed"),
        ("rk_t_", "[latency=0.1][fail=80003] x", openai.InternalServerError, 502, "upstream_task_failed"),
    ],
)
def test_error_table(sdk, shim_server, reapi_state, key, key_prefix, prompt, exception, status, code) -> None:
    """Each upstream failure reaches the SDK as the documented OpenAI-shaped error, paying at most once."""
    api_key = key_prefix + key
    with pytest.raises(exception) as caught:
        sdk(shim_server, api_key).images.generate(model="dall-e-2", prompt=prompt)
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.request_id
    assert api_key not in str(caught.value.message)
    assert len(tasks_of(reapi_state, api_key)) <= 1  # SDK retries attached instead of paying again
    if status in (502, 504):
        (task,) = tasks_of(reapi_state, api_key)
        assert task.id in caught.value.message and task.refunded


def test_insufficient_quota_is_not_retried(sdk, shim_server, reapi_state, key) -> None:
    """402 becomes 429 insufficient_quota with x-should-retry: false: the SDK does not repeat it."""
    api_key = "rk_broke_" + key
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(shim_server, api_key, max_retries=2).images.generate(prompt="x")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert reapi_state.counters(api_key)["submit_rejected"] == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "size": "1000x1000"}, "size"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "quality": "ultra"}, "quality"),
        ({"prompt": "x", "model": "gpt-image-2", "size": "1:1", "resolution": "4k"}, "resolution"),
        ({"prompt": "x" * 4001, "model": "gpt-image-1"}, "prompt"),  # the official channel's documented cap
    ],
)
def test_validation_never_calls_upstream(shim_server, reapi_state, key, body, param) -> None:
    """Invalid input: 400 naming the field, and no upstream request with that key."""
    response = httpx.post(
        shim_server.url + "/v1/images/generations", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert reapi_state.counters(key)["requests"] == 0


def test_unknown_model_404(sdk, shim_server, key) -> None:
    """An unknown model is NotFoundError with code model_not_found."""
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(shim_server, key).images.generate(model="imagen-99", prompt="x")
    assert caught.value.code == "model_not_found"


def test_models_list_and_retrieve(sdk, shim_server, key) -> None:
    """models.list lists every routable id; retrieve decodes a percent-encoded provider/model id."""
    c = sdk(shim_server, key)
    ids = {m.id for m in c.models.list()}
    assert {"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-2", "reapi/gpt-image-2-official"} <= ids
    assert c.models.retrieve("reapi/gpt-image-2-official").owned_by == "reapi"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("nope")


@pytest.mark.parametrize(
    ("model", "upstream", "b64"),
    [
        pytest.param("gpt-image-1.5-2025-12-16", "gpt-image-2-official", True, id="gpt-image-1.5"),
        pytest.param("gpt-image-2-2026-04-21", "gpt-image-2", True, id="gpt-image-2"),
        pytest.param("dall-e-3-2024-02-01", "gpt-image-2-official", False, id="dall-e-3"),
    ],
)
def test_dated_snapshot_ids(sdk, shim_server, key, reapi_state, model, upstream, b64) -> None:
    """OpenAI's dated snapshot ids generate like their undated names and are retrievable as models."""
    client = sdk(shim_server, key)
    assert client.models.retrieve(model).id == model
    result = client.images.generate(model=model, prompt="[latency=0.1] a dated fox", quality="low" if b64 else "hd")
    assert bool(result.data[0].b64_json) is b64 and bool(result.data[0].url) is not b64
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == upstream


def test_without_v1_prefix(shim_server, key) -> None:
    """Clients that put /v1 in the path themselves reach the same endpoint without the prefix."""
    response = httpx.post(
        shim_server.url + "/images/generations",
        json={"prompt": "[latency=0.1] x", "model": "dall-e-2"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["data"][0]["url"].startswith("http")


def test_azure_style_api_key_header(shim_server, key, reapi_state) -> None:
    """An `api-key` header (Azure style) is the credential passed upstream."""
    response = httpx.post(
        shim_server.url + "/openai/deployments/dall-e-3/images/generations?api-version=2024-02-01",
        json={"prompt": "[latency=0.1] azure"},
        headers={"api-key": key},
        timeout=30,
    )
    assert response.status_code == 200
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official"


def test_langchain_dalle_wrapper(shim_server, key) -> None:
    """LangChain's DallEAPIWrapper (dall-e-2, url only) gets a working image URL."""
    from langchain_community.utilities.dalle_image_generator import DallEAPIWrapper

    wrapper = DallEAPIWrapper(api_key=key, base_url=shim_server.url + "/v1", model="dall-e-2")
    url = wrapper.run("[latency=0.1] a lighthouse")
    assert url.startswith(shim_server.url.rsplit(":", 1)[0])
    assert Image.open(io.BytesIO(httpx.get(url).content)).format == "PNG"


def test_cors_preflight_and_unknown_route(shim_server) -> None:
    """Browser preflights are allowed; an unknown route is a 404 in OpenAI's error shape with a request id."""
    preflight = httpx.options(
        shim_server.url + "/v1/images/generations",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"
    missing = httpx.get(shim_server.url + "/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    assert missing.headers["x-request-id"].startswith("req_")
    wrong_method = httpx.get(shim_server.url + "/v1/images/generations")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/v1/images/generations",
        "/v1/images/generations/",
        "/v1//images/generations",  # n8n, from a base URL ending in "/"
        "//v1/images//generations",
        "/v1//v1/images/generations",
    ],
)
def test_forgiving_paths(shim_server, key, path) -> None:
    """A doubled /v1 (Dify), empty segments (n8n) and a trailing slash reach the endpoint, not a 404."""
    response = httpx.post(
        shim_server.url + path,
        json={"model": "dall-e-2", "prompt": "[latency=0.1] path"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["data"][0]["url"]
