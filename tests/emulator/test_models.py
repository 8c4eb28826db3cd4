"""The emulators' model catalogs: reAPI's 13 image models (the navigation of its gpt-image-2-official page),
and the "future" ids both emulators accept as models added after our documents (ours, for pass-through tests)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from shim.emulator import reapi_catalog as catalog
from shim.emulator.reapi import create_reapi_app
from shim.emulator.reve2img import create_reve2img_app
from shim.emulator.reve2img_catalog import ApiError, parse_generate

#: The Image section of the navigation in reapi-gpt-image-2-official.txt, in its order.
NAVIGATION = (
    "midjourney-v8", "flux-2", "z-image", "qwen-image-2", "midjourney-v7", "wan-2-7-image", "gpt-image-2",
    "gpt-image-2-official", "gemini-2.5-flash-image-preview", "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image-preview", "doubao-seedream-5-0-lite", "imagen-4-0",
)  # fmt: skip
CHEAP = [m for m in NAVIGATION if m != "gpt-image-2-official"]


def parse(**body: Any) -> catalog.ImageSpec:
    return catalog.parse_request(json.dumps({"prompt": "a fox", **body}).encode())[1]


def refused(**body: Any) -> catalog.ReapiError:
    with pytest.raises(catalog.ReapiError) as caught:
        parse(**body)
    return caught.value


@pytest.mark.parametrize("model", NAVIGATION)
def test_every_navigation_model_is_known(model) -> None:
    """Each of the 13 image models is accepted at 1k with the default ratio, and priced."""
    spec = parse(model=model)
    assert (spec.model, spec.ratio, spec.resolution) == (model, "1:1", "1k")
    assert catalog.price(spec) > 0


@pytest.mark.parametrize("model", CHEAP)
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("n", 2, "n must be 1 for this model", id="n"),
        pytest.param("quality", "low", "quality is not supported by", id="quality"),
        pytest.param("background", "opaque", "background is not supported by", id="background"),
        pytest.param("moderation", "low", "moderation is not supported by", id="moderation"),
        pytest.param("size", "1024x1024", 'invalid size "1024x1024"', id="pixels"),
    ],
)
def test_cheap_models_keep_the_cheap_channels_rules(model, field, value, message) -> None:
    """Every model but the official channel refuses n > 1, quality, background, moderation and pixel sizes
    with 20003 (strict: the narrowest documented surface, gpt-image-2's)."""
    error = refused(model=model, **{field: value})
    assert (error.status, error.code) == (400, 20003) and message in error.message


@pytest.mark.parametrize(
    ("model", "resolution", "credits"),
    [
        pytest.param("midjourney-v8", "4k", 120, id="midjourney-v8-4k"),
        pytest.param("imagen-4-0", "2k", 40, id="imagen-2k"),
        pytest.param("z-image", "1k", 10, id="z-image-1k"),
        pytest.param("future-lite-x", "2k", 14, id="future-lite-as-gpt-image-2"),
    ],
)
def test_flat_prices(model, resolution, credits) -> None:
    """The cheap models are priced flat per resolution (ours), future-lite ids as gpt-image-2."""
    size = "16:9" if resolution == "4k" else "1:1"
    assert catalog.price(parse(model=model, size=size, resolution=resolution)) == credits


def test_future_model_has_the_official_surface() -> None:
    """A future-<x> id takes batches, pixel sizes and quality like gpt-image-2-official, and is priced so."""
    spec = parse(model="future-quad", n=4, size="1280x720", quality="low")
    official = parse(model="gpt-image-2-official", n=4, size="1280x720", quality="low")
    assert (spec.n, spec.ratio, spec.resolution, spec.quality) == (4, "16:9", "1k", "low")
    assert catalog.price(spec) == catalog.price(official)
    assert catalog.latency_bounds(spec) == catalog.latency_bounds(official) == catalog.LATENCY[("low", "1k")]


def test_future_lite_model_has_the_cheap_rules() -> None:
    """A future-lite-<x> id refuses n > 1 like gpt-image-2."""
    assert refused(model="future-lite-x", n=2).code == 20003


@pytest.mark.parametrize("model", ["some-future-model", "future-", "future-lite-", "imagen-5", "FLUX-2"])
def test_other_ids_are_unknown(model) -> None:
    """Any other id is 400 20004 "unknown model" (the emulator's own code: the documents name none)."""
    error = refused(model=model)
    assert (error.status, error.code, error.message) == (400, 20004, f'unknown model "{model}"')


async def test_reapi_future_model_over_http() -> None:
    """Over HTTP, a future id is a task like any other, and an unknown one a 400 envelope with 20004."""
    app = create_reapi_app(time_scale=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as client:
        headers = {"Authorization": "Bearer rk_live_models"}
        url = "/api/v1/images/generations"
        ok = await client.post(url, json={"model": "future-lite-x", "prompt": "a fox"}, headers=headers)
        unknown = await client.post(url, json={"model": "some-future-model", "prompt": "a fox"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["model"] == "future-lite-x"
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 20004


def test_reve2img_future_model() -> None:
    """reve2img accepts future-<x> as an asynchronous model on flux-2's terms; other unknown ids are
    INVALID_MODEL."""
    generation = parse_generate(b'{"model": "future-sketch", "prompt": "a heron"}')
    assert (generation.model.id, generation.model.synchronous, generation.price) == ("future-sketch", False, 20)
    with pytest.raises(ApiError) as caught:
        parse_generate(b'{"model": "some-future-model", "prompt": "a heron"}')
    assert (caught.value.status, caught.value.name) == (400, "INVALID_MODEL")


async def test_reve2img_future_model_over_http() -> None:
    """Over HTTP, a reve2img future id answers IN_PROGRESS with a task id."""
    app = create_reve2img_app(time_scale=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emu") as client:
        reply = await client.post(
            "/api/v1/generate",
            json={"model": "future-sketch", "prompt": "a heron"},
            headers={"Authorization": "Bearer sk-models"},
        )
    data = reply.json()["data"]
    assert reply.status_code == 200 and data["task_id"] and data["status"] in ("IN_PROGRESS", "SUCCESS")
