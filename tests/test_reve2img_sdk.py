"""reve2img models through the real openai SDK (sync and async) against the shim served by uvicorn, with the
reve2img emulator served separately as the upstream."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io

import httpx
import openai
import pytest
from PIL import Image

from shim.app import create_app
from shim.emulator.reve2img import create_reve2img_app

from .conftest import TIME_SCALE, ServedApp, served, shim_settings


def client(shim: ServedApp, key: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=shim.url + "/v1", api_key=key, **kw)


def aclient(shim: ServedApp, key: str, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=shim.url + "/v1", api_key=key, **kw)


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


#: (requested size, the aspect_ratio it maps to, the emulator's pixels for that ratio)
SIZES = [
    pytest.param("1792x1024", "16:9", (1360, 768), id="16:9"),
    pytest.param("1024x1536", "2:3", (832, 1248), id="2:3"),
    pytest.param("1024x1024", "1:1", (1024, 1024), id="1:1"),
]
MODELS = [
    pytest.param("reve-2.0", True, id="synchronous"),
    pytest.param("flux-2", False, id="asynchronous"),
]


@pytest.mark.parametrize(("upstream", "synchronous"), MODELS)
@pytest.mark.parametrize(("size", "ratio", "pixels"), SIZES)
def test_b64_json(shim_server, reve2img_state, key, upstream, synchronous, size, ratio, pixels) -> None:
    """b64_json is a PNG of the emulator's pixels for the size's aspect ratio; sync models are not polled."""
    result = client(shim_server, key).images.generate(
        model=f"reve2img/{upstream}", prompt="a heron", size=size, response_format="b64_json"
    )
    (datum,) = result.data
    image = decode(datum.b64_json)
    assert (image.format, image.size, datum.url) == ("PNG", pixels, None)
    assert result.size == f"{pixels[0]}x{pixels[1]}"
    (task,) = tasks_of(reve2img_state, key)
    assert task.body == {"model": upstream, "prompt": "a heron", "aspect_ratio": ratio}
    assert task.status == "SUCCESS"
    polls = reve2img_state.counters(key)["polls"]
    assert polls == 0 if synchronous else polls >= 1


@pytest.mark.parametrize(("upstream", "synchronous"), MODELS)
async def test_async_url(shim_server, reve2img_state, key, upstream, synchronous) -> None:
    """The async SDK gets the upstream result URL (the default for non-GPT ids), which serves the PNG."""
    async with aclient(shim_server, key) as c:
        result = await c.images.generate(model=f"reve2img/{upstream}", prompt="a kingfisher", size="1024x1792")
    (datum,) = result.data
    assert datum.b64_json is None
    (task,) = tasks_of(reve2img_state, key)
    assert datum.url == task.result_urls[0]
    async with httpx.AsyncClient() as http:
        png = (await http.get(datum.url)).content
    assert Image.open(io.BytesIO(png)).size == (768, 1360)
    assert task.body["aspect_ratio"] == "9:16"


@pytest.mark.parametrize(
    ("model", "n"),
    [
        pytest.param("reve2img/reve-2.0", 1, id="synchronous"),
        pytest.param("reve2img/flux-2", 1, id="asynchronous"),
        pytest.param("seedream-4.0", 2, id="fan-out-sums"),
    ],
)
def test_credits_header(shim_server, reve2img_state, key, model, n) -> None:
    """x-upstream-credits is the sum of the tasks' consumed_credits, x-upstream-task-ids names them."""
    raw = client(shim_server, key).images.with_raw_response.generate(
        model=model, prompt="an egret", n=n, response_format="url"
    )
    assert len(raw.parse().data) == n
    tasks = tasks_of(reve2img_state, key)
    assert len(tasks) == n
    assert raw.headers["x-upstream-credits"] == str(sum(t.credits_charged for t in tasks))
    assert sorted(raw.headers["x-upstream-task-ids"].split(",")) == sorted(t.id for t in tasks)


def test_moderated_prompt(shim_server, reve2img_state, key) -> None:
    """[moderated] is refused at submit: 400 content_policy_violation, no task, one rejected submit."""
    with pytest.raises(openai.BadRequestError) as caught:
        client(shim_server, key).images.generate(model="reve2img/reve-2.0", prompt="[moderated] a gull")
    assert (caught.value.status_code, caught.value.code) == (400, "content_policy_violation")
    assert tasks_of(reve2img_state, key) == []
    assert reve2img_state.counters(key)["submit_rejected"] == 1


@pytest.mark.parametrize("upstream", ["reve-2.0", "flux-2"])
def test_moderated_output(shim_server, reve2img_state, key, upstream) -> None:
    """[moderated_output] fails the task after it ran: 400 content_policy_violation, the task refunded."""
    with pytest.raises(openai.BadRequestError) as caught:
        client(shim_server, key).images.generate(
            model=f"reve2img/{upstream}", prompt="[latency=0.1][moderated_output] a gull"
        )
    assert (caught.value.status_code, caught.value.code) == (400, "content_policy_violation")
    (task,) = tasks_of(reve2img_state, key)
    assert task.status == "FAILED" and task.refunded
    assert task.id in caught.value.message


def test_ratio_passes_through_and_a_refusal_names_size(sdk, shim_server, reve2img_state, key) -> None:
    """size 21:9 reaches reve2img as aspect_ratio 21:9 (never silently 16:9); the emulator's refusal is a
    400 naming size, at no cost."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(shim_server, key).images.generate(model="reve2img/flux-2", prompt="a heron", size="21:9")
    assert (caught.value.code, caught.value.body["param"]) == ("invalid_value", "size")
    assert "21:9" in caught.value.message and "INVALID_PARAMETER" in caught.value.message
    counters = reve2img_state.counters(key)
    assert (counters["submit_rejected"], counters["submits"]) == (1, 0)


def test_image_urls_count_is_the_upstreams_to_limit(sdk, shim_server, reve2img_state, key) -> None:
    """Five image_urls are sent (the reference sets no count); the emulator's own cap comes back as a 400
    naming image."""
    urls = [f"https://images.test/{i}.png" for i in range(5)]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(shim_server, key).images.generate(model="reve-2.0", prompt="a heron", extra_body={"image_urls": urls})
    assert caught.value.body["param"] == "image"
    assert reve2img_state.counters(key)["submit_rejected"] == 1


def test_long_prompt_is_sent(sdk, shim_server, reve2img_state, key) -> None:
    """A 5,000-character prompt (over reAPI's 4,000) reaches reve2img, which sets no length."""
    prompt = "a heron " * 625
    result = sdk(shim_server, key).images.generate(model="reve2img/reve-2.0", prompt=prompt)
    assert result.data[0].url
    (task,) = tasks_of(reve2img_state, key)
    assert task.body["prompt"] == prompt


def test_no_credits(shim_server, reve2img_state, key) -> None:
    """A key with no credits is 429 insufficient_quota with x-should-retry false: one submit, no SDK retry."""
    api_key = "sk-broke-" + key
    with pytest.raises(openai.RateLimitError) as caught:
        client(shim_server, api_key, max_retries=2).images.generate(model="reve2img/flux-2", prompt="a crane")
    assert (caught.value.status_code, caught.value.code) == (429, "insufficient_quota")
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert api_key not in caught.value.message
    counters = reve2img_state.counters(api_key)
    assert (counters["requests"], counters["submit_rejected"], counters["submits"]) == (1, 1, 0)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        pytest.param("GENERATION_FAILED", 502, id="generation-failed"),
        pytest.param("TIMEOUT", 504, id="timeout"),
        pytest.param("SERVICE_UNAVAILABLE", 503, id="unavailable"),
    ],
)
def test_failed_task(shim_server, reve2img_state, key, code, status) -> None:
    """A FAILED task is its code's status naming the task; the SDK's retry attaches, paying nothing more."""
    with pytest.raises(openai.InternalServerError) as caught:
        client(shim_server, key, max_retries=1).images.generate(
            model="reve2img/flux-2", prompt=f"[latency=0.1][fail={code}] a stork"
        )
    assert (caught.value.status_code, caught.value.code) == (status, "upstream_task_failed")
    assert caught.value.response.headers["x-shim-attached"] == "true"  # the retry's answer
    (task,) = tasks_of(reve2img_state, key)
    assert task.id in caught.value.message and code in caught.value.message
    assert task.status == "FAILED" and task.refunded


def test_poll_errors_are_retried(shim_server, reve2img_state, key) -> None:
    """[poll500=2]: two status calls answer 500, the shim polls on and the image arrives."""
    result = client(shim_server, key).images.generate(
        model="reve2img/flux-2", prompt="[latency=0.1][poll500=2] an ibis", response_format="b64_json"
    )
    assert decode(result.data[0].b64_json).format == "PNG"
    (task,) = tasks_of(reve2img_state, key)
    assert task.polls >= 3 and reve2img_state.counters(key)["submits"] == 1


async def generate_14(shim: ServedApp, key: str) -> list:
    async with aclient(shim, key) as c:
        return await asyncio.gather(
            *(
                c.images.generate(model="reve2img/flux-2", prompt=f"[latency=0.3] a heron #{i}", response_format="url")
                for i in range(14)
            )
        )


async def test_concurrency_on_one_key(shim_server, reve2img_state, key) -> None:
    """14 concurrent calls on one key all succeed, never more than 8 tasks in flight, never TOO_MANY_TASKS."""
    results = await generate_14(shim_server, key)
    assert len({r.data[0].url for r in results}) == 14
    counters = reve2img_state.counters(key)
    assert counters["submits"] == 14 and counters["too_many_tasks"] == 0
    assert 1 <= counters["max_in_flight_seen"] <= 8
    assert all(t.status == "SUCCESS" for t in tasks_of(reve2img_state, key))


@pytest.fixture(scope="module")
def unthrottled(reapi_upstream):
    """An emulator and a shim whose request rate never binds: only the in-flight cap holds submits back."""
    with served(create_reve2img_app(time_scale=TIME_SCALE, rate_limit=1000)) as upstream:
        settings = shim_settings(reapi_upstream, upstream)
        reve2img = dataclasses.replace(settings.upstreams["reve2img"], rate_limit=1000.0)
        settings = dataclasses.replace(settings, upstreams={**settings.upstreams, "reve2img": reve2img})
        with served(create_app(settings)) as shim:
            yield shim, upstream.app.state.emulator


async def test_in_flight_cap_binds(unthrottled, key) -> None:
    """With the rate out of the way, 14 concurrent calls fill exactly 8 slots and never hit TOO_MANY_TASKS.

    (At the shared emulator's 10 requests/s the pacing alone keeps fewer than 8 tasks in flight, so the
    test above would pass without the cap.)
    """
    shim, state = unthrottled
    results = await generate_14(shim, key)
    assert len({r.data[0].url for r in results}) == 14
    counters = state.counters(key)
    assert (counters["submits"], counters["too_many_tasks"], counters["max_in_flight_seen"]) == (14, 0, 8)


HOUSE_STYLE = """
[models."house-style"]
provider = "reve2img"
model = "flux-2"
size = "16:9"

[models."reve-b64"]
provider = "reve2img"
model = "reve-2.0"
response_format = "b64_json"
"""


@pytest.fixture(scope="module")
def configured_shim(reapi_upstream, reve2img_upstream, tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "shim.toml"
    path.write_text(HOUSE_STYLE, encoding="utf-8")
    settings = shim_settings(reapi_upstream, reve2img_upstream, config_file=str(path))
    with served(create_app(settings)) as server:
        yield server


@pytest.mark.parametrize(
    ("size", "ratio", "pixels"),
    [
        pytest.param(None, "16:9", (1360, 768), id="configured-default"),
        pytest.param("1024x1536", "2:3", (832, 1248), id="client-size-wins"),
    ],
)
def test_config_alias(configured_shim, reve2img_state, key, size, ratio, pixels) -> None:
    """A SHIM_CONFIG name routes to its upstream model with its default size; the client's size wins."""
    kw = {"size": size} if size else {}
    result = client(configured_shim, key).images.generate(
        model="house-style", prompt="[latency=0.1] a heron", response_format="b64_json", **kw
    )
    assert decode(result.data[0].b64_json).size == pixels
    (task,) = tasks_of(reve2img_state, key)
    assert (task.body["model"], task.body["aspect_ratio"]) == ("flux-2", ratio)


def test_config_response_format(configured_shim, reve2img_state, key) -> None:
    """A SHIM_CONFIG model with response_format = "b64_json" answers b64_json to a request naming none."""
    response = httpx.post(
        configured_shim.url + "/v1/images/generations",
        json={"model": "reve-b64", "prompt": "a heron", "size": "1024x1024"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (datum,) = response.json()["data"]
    assert set(datum) == {"b64_json"} and decode(datum["b64_json"]).format == "PNG"
    (task,) = tasks_of(reve2img_state, key)
    assert task.body["model"] == "reve-2.0"


def test_config_alias_listed(configured_shim, key) -> None:
    """models.list shows the configured name beside the provider ids and the bare ids."""
    c = client(configured_shim, key)
    ids = {m.id for m in c.models.list()}
    assert {"house-style", "reve2img/reve-2.0", "reve2img/flux-2", "reve-2.0", "flux-2", "dall-e-3"} <= ids
    assert c.models.retrieve("house-style").owned_by == "reve2img"
