"""OpenAI's Videos API through the real openai SDK (sync and async) against the shim served by uvicorn, with
the reAPI emulator served separately as the upstream (the shim is not told how fast it runs): create_and_poll
and download_content, progress, list, delete, remix, references, failures, bad input, ownership, retries."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from shim.emulator.images import pick_colour

from .conftest import SelfAddressedShim, ServedApp
from .emulator.test_video_mp4 import assert_solid, decode

# The SDK marks the Videos API deprecated (OpenAI shut Sora down); the shim is what keeps it working.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
FAST = 100  # ms between the SDK's polls


@pytest.fixture(scope="module")
def video_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim that serves its own uploads (SHIM_PUBLIC_URL is its address), for input_reference files."""
    server = SelfAddressedShim(reapi_upstream, reve2img_upstream).start()
    try:
        yield server
    finally:
        server.stop()


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key and t.kind == "video"]


def png(size: tuple[int, int] = (64, 36), colour: tuple[int, int, int] = (20, 160, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def finished(client: openai.OpenAI, video_id: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed") or time.monotonic() > deadline:
            return video
        time.sleep(0.1)


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@pytest.mark.parametrize(
    ("size", "pixels", "ratio", "resolution"),
    [
        pytest.param("1280x720", (1280, 720), "16:9", "720p", id="landscape"),
        pytest.param("720x1280", (720, 1280), "9:16", "720p", id="portrait"),
    ],
)
def test_create_and_poll_then_download_is_a_playable_mp4(
    sdk, video_shim, reapi_state, key, size, pixels, ratio, resolution
) -> None:
    """create_and_poll ends completed; download_content is an H.264 MP4 of the requested size and seconds,
    decoded by FFmpeg; one upstream task carried the mapped ratio, tier and duration."""
    client = sdk(video_shim, key)
    video = client.videos.create_and_poll(prompt="a red fox", size=size, seconds="4", poll_interval_ms=FAST)
    assert (video.status, video.progress, video.seconds, video.size, video.model) == (
        "completed", 100, "4", size, "sora-2",
    )  # fmt: skip
    assert video.prompt == "a red fox" and video.error is None and video.remixed_from_video_id is None
    assert video.completed_at >= video.created_at and video.expires_at == video.completed_at + 7 * 86400
    found = decode(client.videos.download_content(video.id).read())
    assert (found.codec, found.width, found.height, found.duration) == ("h264", *pixels, 4)
    (task,) = tasks_of(reapi_state, key)
    assert_solid(found.frames[0], pick_colour(f"{task.id}/0"))  # the bytes are that task's own
    assert task.body == {
        "model": "doubao-seedance-2.0", "prompt": "a red fox", "resolution": resolution, "size": ratio, "duration": 4,
    }  # fmt: skip


async def test_async_sdk_creates_polls_and_downloads(video_shim, reapi_state, key) -> None:
    """The async SDK's create_and_poll and download_content give a 1080p clip for 1792x1024 on sora-2-pro."""
    async with openai.AsyncOpenAI(base_url=video_shim.url + "/v1", api_key=key) as client:
        video = await client.videos.create_and_poll(
            model="sora-2-pro", prompt="a heron", size="1792x1024", seconds="8", poll_interval_ms=FAST
        )
        data = await (await client.videos.download_content(video.id, variant="video")).aread()
    assert (video.status, video.seconds, video.model) == ("completed", "8", "sora-2-pro")
    found = decode(data, limit=1)
    assert (found.width, found.height, found.duration) == (1920, 1080, 8)
    (task,) = tasks_of(reapi_state, key)
    assert (task.body["model"], task.body["resolution"], task.body["size"]) == (
        "doubao-seedance-2.0-official", "1080p", "16:9",
    )  # fmt: skip


def test_retrieve_shows_progress_rising(sdk, video_shim, key) -> None:
    """Once a class has been seen, retrieve's progress rises from 0 while the task runs (estimated from
    the learned latency), never falls, and is 100 when it completed."""
    client = sdk(video_shim, key)
    warm = [client.videos.create(model="viduq3", prompt="warm-up", size="854x480", seconds="6") for _ in range(4)]
    assert all(finished(client, v.id).status == "completed" for v in warm)
    video = client.videos.create(model="viduq3", prompt="[latency=3] slow", size="854x480", seconds="6")
    seen = [video.progress]
    while (current := client.videos.retrieve(video.id)).status != "completed":
        seen.append(current.progress)
        time.sleep(0.15)
    seen.append(current.progress)
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 100
    assert len({p for p in seen if 0 < p < 100}) >= 3


def test_list_pages_newest_first(sdk, video_shim, key) -> None:
    """GET /v1/videos lists a key's videos newest first in pages (has_more, last_id); the SDK's
    auto-pagination walks them all; order=asc reverses; another key sees none of them."""
    client = sdk(video_shim, key)
    ids = [client.videos.create(prompt=f"[latency=0.2] clip {i}").id for i in range(3)]
    page = client.videos.list(limit=2)
    assert [v.id for v in page.data] == ids[:0:-1] and page.has_more is True and page.last_id == ids[1]
    assert [v.id for v in client.videos.list(limit=2)] == ids[::-1]  # iterating fetches the next page
    assert [v.id for v in client.videos.list(order="asc")] == ids
    assert list(sdk(video_shim, key + "-other").videos.list()) == []


def test_delete_forgets_a_finished_video(sdk, video_shim, key) -> None:
    """A finished video is deleted (video.deleted) and then unknown; a running one cannot be (its paid task
    would be abandoned)."""
    client = sdk(video_shim, key)
    running = client.videos.create(prompt="[latency=3] still going")
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.delete(running.id)
    assert refused.value.code == "invalid_value"
    done = client.videos.create_and_poll(prompt="[latency=0.2] done", poll_interval_ms=FAST)
    deleted = client.videos.delete(done.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (done.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(done.id)
    assert [v.id for v in client.videos.list()] == [running.id]


def test_remix_is_a_new_video_with_both_prompts(sdk, video_shim, reapi_state, key) -> None:
    """remix makes a new paid video from the original prompt plus the new one, its model, seconds and size,
    with remixed_from_video_id set; a video not completed yet cannot be remixed."""
    client = sdk(video_shim, key)
    original = client.videos.create_and_poll(
        model="kling-3-0", prompt="[latency=0.3] a lighthouse", size="1280x720", seconds="10", poll_interval_ms=FAST
    )
    remix = client.videos.remix(original.id, prompt="at night")
    assert remix.id != original.id and remix.remixed_from_video_id == original.id
    assert (remix.model, remix.seconds, remix.size) == ("kling-3-0", "10", "1280x720")
    assert remix.prompt == "[latency=0.3] a lighthouse\nat night"
    assert finished(client, remix.id).status == "completed"
    first, second = tasks_of(reapi_state, key)
    assert second.body == {**first.body, "prompt": "[latency=0.3] a lighthouse\nat night"}
    pending = client.videos.create(prompt="[latency=3] not yet")
    with pytest.raises(openai.BadRequestError):
        client.videos.remix(pending.id, prompt="too soon")


def test_input_reference_upload_reaches_the_upstream_as_a_url(sdk, video_shim, reapi_state, key) -> None:
    """An uploaded input_reference is checked, published through the media store and fetched by the upstream
    from the shim's URL; a remix sends the same reference; a data: URL in JSON is uploaded the same way."""
    client = sdk(video_shim, key)
    video = client.videos.create_and_poll(
        prompt="[latency=0.3] animate this", input_reference=("ref.png", png(), "image/png"), poll_interval_ms=FAST
    )
    assert video.status == "completed"
    remix = client.videos.remix(video.id, prompt="slower")
    assert finished(client, remix.id).status == "completed"
    data_url = "data:image/png;base64," + base64.b64encode(png(colour=(1, 2, 3))).decode()
    response = httpx.post(
        video_shim.url + "/v1/videos",
        json={"prompt": "[latency=0.3] from json", "input_reference": {"image_url": data_url}},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    assert finished(client, response.json()["id"]).status == "completed"
    first, remixed, from_json = tasks_of(reapi_state, key)
    (url,) = first.body["image_urls"]
    assert url.startswith(video_shim.url + "/media/") and remixed.body["image_urls"] == [url]
    assert from_json.body["image_urls"][0].startswith(video_shim.url + "/media/")
    assert all(t.fetched_inputs and t.fetched_inputs[0]["status"] == 200 for t in (first, from_json))


@pytest.mark.parametrize("code", ["80001", "80002", "80003"])
def test_failed_task_is_a_failed_video(sdk, video_shim, reapi_state, key, code) -> None:
    """An upstream task that fails (80001-80003) is a `failed` video whose error carries the upstream code;
    its credits came back."""
    client = sdk(video_shim, key)
    video = client.videos.create_and_poll(prompt=f"[fail={code}] doomed", poll_interval_ms=FAST)
    assert video.status == "failed" and video.completed_at is None
    assert video.error.code == code and code in video.error.message and "refunded" in video.error.message
    (task,) = tasks_of(reapi_state, key)
    assert task.refunded
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(video.id)


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        pytest.param({}, 400, "prompt", id="no-prompt"),
        pytest.param({"prompt": "x", "seconds": "four"}, 400, "seconds", id="seconds-word"),
        pytest.param({"prompt": "x", "seconds": "99"}, 400, "seconds", id="seconds-big"),
        pytest.param({"prompt": "x", "size": "huge"}, 400, "size", id="size"),
        pytest.param({"prompt": "x", "size": "9000x9000"}, 400, "size", id="size-big"),
        pytest.param({"prompt": "x", "resolution": "8k"}, 400, "resolution", id="resolution"),
        pytest.param({"prompt": "x" * 4001}, 400, "prompt", id="prompt-long"),
        pytest.param({"prompt": "x", "model": "gpt-image-1"}, 404, "model", id="image-model"),
        pytest.param({"prompt": "x", "model": "sora-3"}, 404, "model", id="unknown-model"),
        pytest.param({"prompt": "x", "input_reference": {"file_id": "file_1"}}, 400, "input_reference", id="file-id"),
        pytest.param(
            {"prompt": "x", "input_reference": {"image_url": "ftp://a/b.png"}}, 400, "input_reference", id="ftp"
        ),
    ],
)
def test_bad_input_is_refused_before_any_upstream_call(video_shim, reapi_state, key, fields, status, param) -> None:
    """Invalid fields are a 4xx in OpenAI's shape naming the field, and the upstream never hears of them."""
    response = httpx.post(video_shim.url + "/v1/videos", json=fields, headers=auth(key))
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert reapi_state.counters(key)["requests"] == 0


def test_bad_reference_file_is_refused_and_not_stored(sdk, video_shim, reapi_state, key) -> None:
    """A file that is not an image is a 400 naming input_reference (the SDK's multipart), with no upstream call."""
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(video_shim, key).videos.create(prompt="x", input_reference=("a.png", b"not an image", "image/png"))
    assert refused.value.param == "input_reference"
    assert reapi_state.counters(key)["requests"] == 0


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        pytest.param({"size": "720x1680"}, "size", id="ratio-9:21"),
        pytest.param({"size": "2160x2160"}, "size", id="4k-square"),
    ],
)
def test_upstream_refusal_is_a_400_naming_openais_field(sdk, video_shim, reapi_state, key, fields, param) -> None:
    """A value the upstream refuses (2xxxx, nothing created) is the create's 400, named in OpenAI's words."""
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(video_shim, key, max_retries=0).videos.create(prompt="refused", **fields)
    assert refused.value.param == param and refused.value.code == "invalid_value"
    assert reapi_state.counters(key)["submits"] == 0


def test_seconds_go_to_the_nearest_duration_the_model_takes(sdk, video_shim, reapi_state, key) -> None:
    """A duration the model refuses is tried again with the next nearest (refusals create nothing): kling-3-0
    asked for 4 s makes a 5 s clip, paid once, and says seconds "5"."""
    client = sdk(video_shim, key)
    video = client.videos.create_and_poll(model="kling-3-0", prompt="k", seconds="4", poll_interval_ms=FAST)
    assert (video.status, video.seconds) == ("completed", "5")
    assert decode(client.videos.download_content(video.id).read(), limit=1).duration == 5
    counters = reapi_state.counters(key)
    assert (counters["submits"], counters["submit_rejected"]) == (1, 1)


def test_another_keys_video_is_not_found(sdk, video_shim, key) -> None:
    """Every route answers 404 for a video another key created, as for an id that never existed."""
    owner = sdk(video_shim, key)
    video = owner.videos.create_and_poll(prompt="[latency=0.2] mine", poll_interval_ms=FAST)
    other = sdk(video_shim, key + "-thief")
    for call in (
        lambda: other.videos.retrieve(video.id),
        lambda: other.videos.download_content(video.id),
        lambda: other.videos.delete(video.id),
        lambda: other.videos.remix(video.id, prompt="stolen"),
        lambda: other.videos.retrieve("video_" + "0" * 24),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert owner.videos.retrieve(video.id).status == "completed"


def test_sdk_answered_queued_within_its_own_timeout(sdk, video_shim, reapi_state, key) -> None:
    """A create whose submit answers slowly is answered `queued` before the SDK's announced timeout (1 s), so
    it never has to retry; the job goes on and completes with one paid task."""
    client = sdk(video_shim, key, timeout=1.0, max_retries=0)
    video = client.videos.create(prompt="[submit_slow=2] [latency=0.2] slow submit")
    assert (video.status, video.progress) == ("queued", 0)
    assert finished(client, video.id).status == "completed"
    assert reapi_state.counters(key)["submits"] == 1


def test_retry_of_a_dropped_create_pays_once(sdk, video_shim, reapi_state, key) -> None:
    """A client that gives up on a slow create and retries it (x-stainless-retry-count: 1, as the SDKs do)
    attaches to the same job: one video id, one paid task."""
    body = {"prompt": "[submit_slow=1.5] [latency=0.2] dropped", "seconds": "4"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(video_shim.url + "/v1/videos", json=body, headers=auth(key), timeout=0.3)
    retried = httpx.post(
        video_shim.url + "/v1/videos", json=body, headers=auth(key, **{"x-stainless-retry-count": "1"}), timeout=30
    )
    assert retried.status_code == 200 and retried.headers["x-shim-attached"] == "true"
    client = sdk(video_shim, key)
    assert finished(client, retried.json()["id"]).status == "completed"
    assert reapi_state.counters(key)["submits"] == 1
    assert [v.id for v in client.videos.list()] == [retried.json()["id"]]


async def test_idempotency_key_makes_one_video(video_shim, reapi_state, key) -> None:
    """Two concurrent creates with the same Idempotency-Key are one video and one paid task."""
    headers = auth(key, **{"Idempotency-Key": "video-order-1"})
    async with httpx.AsyncClient(base_url=video_shim.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/videos", json={"prompt": "[latency=0.3] once"}, headers=headers) for _ in range(2))
        )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sorted(a.headers["x-shim-attached"] for a in answers) == ["false", "true"]
    assert reapi_state.counters(key)["submits"] == 1


def test_content_passes_range_through(sdk, video_shim, key) -> None:
    """A Range request for the content is answered 206 with the upstream's Content-Range and those bytes."""
    client = sdk(video_shim, key)
    video = client.videos.create_and_poll(prompt="[latency=0.2] ranged", poll_interval_ms=FAST)
    url = f"{video_shim.url}/v1/videos/{video.id}/content"
    whole = httpx.get(url, headers=auth(key))
    part = httpx.get(url, headers=auth(key, Range="bytes=100-199"))
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert int(whole.headers["content-length"]) == len(whole.content)
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"


def test_thumbnail_is_the_last_frame_where_the_upstream_has_one(sdk, video_shim, key) -> None:
    """variant=thumbnail is the upstream's last frame (a PNG of the clip's size) for the Seedance ids; a model
    without one, and spritesheet (never offered), are 404s."""
    client = sdk(video_shim, key)
    seedance = client.videos.create_and_poll(prompt="[latency=0.2] t", size="1280x720", poll_interval_ms=FAST)
    frame = Image.open(io.BytesIO(client.videos.download_content(seedance.id, variant="thumbnail").read()))
    assert (frame.format, frame.size) == ("PNG", (1280, 720))
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(seedance.id, variant="spritesheet")
    kling = client.videos.create_and_poll(model="kling-3-0", prompt="[latency=0.2] t", poll_interval_ms=FAST)
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(kling.id, variant="thumbnail")


@pytest.mark.parametrize("model", ["reapi/veo-3.1", "veo-3.1", "sora-2-2025-10-06", "wan-2-7-video"])
def test_reapi_video_ids_route_bare_prefixed_and_dated(sdk, video_shim, reapi_state, key, model) -> None:
    """Every reAPI video id works bare or as reapi/<id>, and OpenAI's dated Sora ids as their undated name."""
    video = sdk(video_shim, key).videos.create(model=model, prompt="[latency=0.2] ids", seconds="8")
    assert video.model == model
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == {"sora-2-2025-10-06": "doubao-seedance-2.0"}.get(model, model.removeprefix("reapi/"))


def test_image_endpoint_refuses_a_video_id(sdk, video_shim, reapi_state, key) -> None:
    """images.generate with sora-2 is a 404 that says where video models go; no upstream call."""
    with pytest.raises(openai.NotFoundError) as refused:
        sdk(video_shim, key).images.generate(model="sora-2", prompt="x")
    assert "/v1/videos" in refused.value.message
    assert reapi_state.counters(key)["requests"] == 0
