"""Every reAPI image model, and models the shim has never heard of, through the openai SDK against the shim
served by uvicorn with the emulators as upstreams: the 13 navigation models, pass-through ids, upstream
"unknown model" answers, SHIM_CONFIG declarations, the collision rule, SHIM_PASSTHROUGH off, /v1/models."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image

from shim.app import create_app

from .conftest import served, shim_settings

#: The Image section of the navigation of reAPI's gpt-image-2-official page, in its order.
NAVIGATION = (
    "midjourney-v8", "flux-2", "z-image", "qwen-image-2", "midjourney-v7", "wan-2-7-image", "gpt-image-2",
    "gpt-image-2-official", "gemini-2.5-flash-image-preview", "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image-preview", "doubao-seedream-5-0-lite", "imagen-4-0",
)  # fmt: skip


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


@pytest.mark.parametrize("model", NAVIGATION)
def test_every_reapi_image_model_generates(sdk, shim_server, reapi_state, key, model) -> None:
    """Each of the 13 image models generates, bare and as reapi/<id>, as a reAPI task of that model with a
    ratio size (flux-2 included: its bare id is reapi's, the first provider in registry order)."""
    client = sdk(shim_server, key)
    for public in (model, f"reapi/{model}"):
        result = client.images.generate(
            model=public, prompt="[latency=0.05] a lighthouse", size="1792x1024", response_format="b64_json"
        )
        assert decode(result.data[0].b64_json).size == (2048, 1152)
    tasks = tasks_of(reapi_state, key)
    assert [t.body["model"] for t in tasks] == [model, model]
    assert all((t.body["size"], t.body["resolution"]) == ("16:9", "2k") for t in tasks)
    if model != "gpt-image-2-official":
        assert all(not {"n", "quality", "background", "moderation"} & set(t.body) for t in tasks)


def test_reapi_passthrough_reaches_the_upstream(sdk, shim_server, reapi_state, key) -> None:
    """reapi/<an id the shim does not know> is sent as it is with the conservative profile: n fanned out as
    tasks of one, a ratio with its tier, no quality (the emulator's future-lite ids take only that)."""
    result = sdk(shim_server, key).images.generate(
        model="reapi/future-lite-banana", prompt="[latency=0.05] a fox", n=2, size="1536x1024", quality="high"
    )
    assert len(result.data) == 2 and decode(result.data[0].b64_json).size == (1536, 1024)
    tasks = tasks_of(reapi_state, key)
    expected = {"model": "future-lite-banana", "prompt": "[latency=0.05] a fox", "size": "3:2", "resolution": "1k"}
    assert [t.body for t in tasks] == [expected, expected]


def test_reve2img_passthrough_reaches_the_upstream(sdk, shim_server, reve2img_state, key) -> None:
    """reve2img/<an id the shim does not know> is a reve2img task of that model."""
    result = sdk(shim_server, key).images.generate(
        model="reve2img/future-sketch", prompt="[latency=0.05] a heron", size="16:9", response_format="url"
    )
    (task,) = [t for t in reve2img_state.tasks.values() if t.key == key]
    assert result.data[0].url == task.result_urls[0]
    assert task.body == {"model": "future-sketch", "prompt": "[latency=0.05] a heron", "aspect_ratio": "16:9"}


@pytest.mark.parametrize("provider", ["reapi", "reve2img"])
def test_upstream_unknown_model_is_model_not_found(sdk, shim_server, reapi_state, reve2img_state, key, provider):
    """An id the upstream does not know either reaches it (one refused submit, nothing charged) and comes back
    as 404 model_not_found (reAPI's unknown-model 400, reve2img's INVALID_MODEL)."""
    state = {"reapi": reapi_state, "reve2img": reve2img_state}[provider]
    credits = state.credits(key) if provider == "reapi" else None
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(shim_server, key, max_retries=0).images.generate(model=f"{provider}/some-future-model", prompt="x")
    assert (caught.value.status_code, caught.value.code) == (404, "model_not_found")
    assert caught.value.body["param"] == "model"
    assert state.counters(key)["submit_rejected"] == 1 and not [t for t in state.tasks.values() if t.key == key]
    if provider == "reapi":
        assert state.credits(key) == credits


CONFIG = """
[upstream_models."reapi/future-quad"]
max_batch = 4
quality = true
pixel_sizes = true
latency = [1, 2]

[models."flux-2"]
provider = "reve2img"
model = "flux-2"
"""


@pytest.fixture(scope="module")
def declaring_shim(reapi_upstream, reve2img_upstream, tmp_path_factory):
    path = tmp_path_factory.mktemp("declared") / "shim.toml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = shim_settings(reapi_upstream, reve2img_upstream, config_file=str(path))
    with served(create_app(settings)) as server:
        yield server


@pytest.mark.parametrize("model", ["future-quad", "reapi/future-quad"])
def test_declared_model_is_batched(sdk, declaring_shim, reapi_state, key, model) -> None:
    """A model declared in SHIM_CONFIG with max_batch = 4 takes n=4 as one task, its quality sent."""
    result = sdk(declaring_shim, key).images.generate(
        model=model, prompt="[latency=0.05] four foxes", n=4, quality="low", response_format="url"
    )
    (task,) = tasks_of(reapi_state, key)
    assert (task.body["model"], task.body["n"], task.body["quality"]) == ("future-quad", 4, "low")
    urls = task.result()["image_urls"]
    assert [d.url for d in result.data] == urls and len(set(urls)) == 4


def test_declared_pixel_sizes_are_sent_as_given(sdk, declaring_shim, reapi_state, key) -> None:
    """pixel_sizes = true sends a WxH as it is (no resolution); the answer's size is the image's."""
    result = sdk(declaring_shim, key).images.generate(
        model="future-quad", prompt="[latency=0.05] a fox", size="1280x720", response_format="b64_json"
    )
    (task,) = tasks_of(reapi_state, key)
    assert task.body["size"] == "1280x720" and "resolution" not in task.body
    assert result.size == "1536x864" == "x".join(map(str, decode(result.data[0].b64_json).size))


def test_configured_name_decides_a_collision(sdk, declaring_shim, reapi_state, reve2img_state, key) -> None:
    """With [models."flux-2"] naming reve2img, bare flux-2 goes there; reapi/flux-2 still reaches reAPI."""
    client = sdk(declaring_shim, key)
    client.images.generate(model="flux-2", prompt="[latency=0.05] a heron", response_format="url")
    client.images.generate(model="reapi/flux-2", prompt="[latency=0.05] a heron", response_format="url")
    assert [t.body["model"] for t in reve2img_state.tasks.values() if t.key == key] == ["flux-2"]
    assert [t.body["model"] for t in tasks_of(reapi_state, key)] == ["flux-2"]
    owners = {m.id: m.owned_by for m in client.models.list()}
    assert (owners["flux-2"], owners["reapi/flux-2"], owners["future-quad"]) == ("reve2img", "reapi", "reapi")


@pytest.fixture(scope="module")
def closed_shim(reapi_upstream, reve2img_upstream):
    with served(create_app(shim_settings(reapi_upstream, reve2img_upstream, passthrough=False))) as server:
        yield server


@pytest.mark.parametrize("model", ["reapi/future-lite-banana", "reve2img/future-sketch", "some-future-model"])
def test_passthrough_off_refuses_unknown_ids_without_an_upstream_call(
    sdk, closed_shim, reapi_state, reve2img_state, key, model
) -> None:
    """With SHIM_PASSTHROUGH off, an id outside the catalogs is 404 model_not_found before any upstream call."""
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(closed_shim, key, max_retries=0).images.generate(model=model, prompt="x")
    assert caught.value.code == "model_not_found"
    assert reapi_state.counters(key)["requests"] == 0 and reve2img_state.counters(key)["requests"] == 0


def test_passthrough_off_still_serves_the_catalog(sdk, closed_shim, reapi_state, key) -> None:
    """With SHIM_PASSTHROUGH off, catalog ids still generate, and /v1/models lists no pass-through prefix."""
    client = sdk(closed_shim, key)
    client.images.generate(model="reapi/imagen-4-0", prompt="[latency=0.05] a fox", response_format="url")
    assert [t.body["model"] for t in tasks_of(reapi_state, key)] == ["imagen-4-0"]
    assert client.models.list().model_extra == {"x_shim_passthrough": []}


def test_models_list_owners_and_passthrough_marker(sdk, shim_server, key) -> None:
    """/v1/models lists the 13 models bare and prefixed, each owned by its provider (bare flux-2 by reapi,
    the first in registry order), and names the prefixes that pass unknown ids through."""
    page = sdk(shim_server, key).models.list()
    owners = {m.id: m.owned_by for m in page.data}
    assert all(owners[m] == owners[f"reapi/{m}"] == "reapi" for m in NAVIGATION)
    assert owners["reve2img/flux-2"] == "reve2img" and owners["reve-2.0"] == "reve2img"
    assert page.model_extra == {"x_shim_passthrough": ["reapi/*", "reve2img/*"]}
    assert not any(m.model_extra for m in page.data)  # every object keeps OpenAI's four fields


def test_models_retrieve_marks_a_passthrough_id(sdk, shim_server, key) -> None:
    """Retrieving a pass-through id answers its provider with x_shim_passthrough: true; a catalog id has none."""
    client = sdk(shim_server, key)
    passed = client.models.retrieve("reapi/some-future-model")
    known = client.models.retrieve("imagen-4-0")
    assert (passed.owned_by, passed.model_extra) == ("reapi", {"x_shim_passthrough": True})
    assert (known.owned_by, known.model_extra) == ("reapi", {})


def test_models_list_and_retrieve_video_ids(sdk, shim_server, key) -> None:
    """/v1/models also lists the video models (sora-2 through SHIM_DEFAULT_VIDEO_MODEL, reAPI's own ids bare and
    prefixed), as OpenAI lists sora-2; retrieving one answers its owner, with no pass-through marker."""
    client = sdk(shim_server, key)
    owners = {m.id: m.owned_by for m in client.models.list().data}
    assert owners["sora-2"] == owners["kling-3-0"] == owners["reapi/kling-3-0"] == "reapi"
    assert owners["gpt-image-1"] == "reapi"  # the image ids are still all there
    for model in ("sora-2", "sora-2-2025-10-06", "reapi/kling-3-0"):
        found = client.models.retrieve(model)
        assert (found.id, found.owned_by, found.model_extra) == (model, "reapi", {})
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("sora-3")
