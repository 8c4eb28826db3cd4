"""The reAPI emulator's video endpoint: validation, auth, shared rate limit, credits, markers, lifecycle, MP4s."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from shim.emulator.images import pick_colour
from shim.emulator.videos import FPS

from .test_reapi import KEY, OTHER, Emu, running
from .test_video_mp4 import assert_solid, decode

VIDEO_PATH = "/api/v1/videos/generations"
RATIOS = "16:9, 9:16, 1:1, 4:3, 3:4, 21:9"
DURATION_RULE = "duration must be an integer number of seconds from 4 to 15"
# The video ids of the documents' navigation that name generation models, and our wire id for "Veo 3.1".
DOCUMENTED_IDS = [
    "doubao-seedance-2.0",
    "doubao-seedance-2.0-official",
    "seedance-2.0-beta",
    "seedance-2.0-fast-beta",
    "seedance-2-0-mini",
    "kling-3-0",
    "kling-3-0-turbo",
    "wan-2-7-video",
    "viduq3",
    "happyhorse-1.0",
    "happyhorse-1.0-official",
    "happyhorse-1-1",
    "grok-imagine-1.0-video",
    "grok-imagine-video-1.5-beta",
    "pixverse-v6",
    "veo-3.1",
]


def _video(**fields: Any) -> dict[str, Any]:
    return {
        "model": "doubao-seedance-2.0",
        "prompt": "a red fox runs through snow",
        "resolution": "480p",
        "size": "16:9",
        "duration": 4,
        **fields,
    }


async def _submit(emu: Emu, body: dict[str, Any], key: str = KEY) -> httpx.Response:
    return await emu.client.post(VIDEO_PATH, json=body, headers={"Authorization": f"Bearer {key}"})


async def _submit_id(emu: Emu, body: dict[str, Any]) -> str:
    response = await _submit(emu, body)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["id"]
    return task_id


async def _completed(emu: Emu, body: dict[str, Any]) -> dict[str, Any]:
    task_id = await _submit_id(emu, body)
    await emu.state.wait_idle()
    emu.clock.now = emu.state.tasks[task_id].ready_at
    reply: dict[str, Any] = (await emu.poll(task_id)).json()
    assert reply["status"] == "completed", reply
    return reply


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    async with running() as emulator:
        yield emulator


VALIDATION = [
    pytest.param(b"{", 20001, "invalid JSON body", id="bad-json"),
    pytest.param(b'"video"', 20001, "invalid JSON body", id="json-not-object"),
    pytest.param({}, 20002, "Both `model` and `prompt` are required", id="nothing"),
    pytest.param(_video(model=None), 20002, "Both `model` and `prompt` are required", id="no-model"),
    pytest.param(_video(prompt=None), 20002, "prompt is required", id="no-prompt"),
    pytest.param(_video(prompt="  "), 20002, "prompt is required", id="blank-prompt"),
    pytest.param(_video(model=["kling-3-0"]), 20003, "model must be a string", id="model-not-string"),
    pytest.param(_video(prompt=7), 20003, "prompt must be a string", id="prompt-not-string"),
    pytest.param(_video(model="sora-2"), 20004, 'unknown model "sora-2"', id="unknown-model"),
    pytest.param(_video(model="gpt-image-2"), 20004, 'unknown model "gpt-image-2"', id="image-model"),
    pytest.param(_video(model="Seedance 2.5"), 20004, 'unknown model "Seedance 2.5"', id="display-name"),
    pytest.param(_video(prompt="x" * 4001), 20007, "prompt must be at most 4000 characters", id="long-prompt"),
    pytest.param(_video(resolution=None), 20002, "resolution is required", id="no-resolution"),
    pytest.param(_video(size=None), 20002, "size is required", id="no-size"),
    pytest.param(_video(duration=None), 20002, "duration is required", id="no-duration"),
    pytest.param(
        _video(resolution="8k"), 20003, 'invalid resolution "8k" (allowed: 480p, 720p, 1080p, 4k)', id="resolution"
    ),
    pytest.param(
        _video(resolution="720P"), 20003, 'invalid resolution "720P" (allowed: 480p, 720p, 1080p, 4k)', id="case"
    ),
    pytest.param(
        _video(model="kling-3-0", resolution="4k", duration=5),
        20003,
        'resolution "4k" is not supported by kling-3-0 (allowed: 720p, 1080p)',
        id="resolution-per-model",
    ),
    pytest.param(_video(size="7:5"), 20003, f'invalid size "7:5" (allowed: {RATIOS})', id="size"),
    pytest.param(_video(size="1280x720"), 20003, f'invalid size "1280x720" (allowed: {RATIOS})', id="pixels"),
    pytest.param(_video(size="auto"), 20003, f'invalid size "auto" (allowed: {RATIOS})', id="auto"),
    pytest.param(_video(resolution="4k", size="1:1"), 20003, "4k requires size 16:9 or 9:16", id="4k-square"),
    pytest.param(_video(duration=3), 20003, DURATION_RULE, id="duration-3"),
    pytest.param(_video(duration=16), 20003, DURATION_RULE, id="duration-16"),
    pytest.param(_video(duration="5"), 20003, DURATION_RULE, id="duration-string"),
    pytest.param(_video(duration=5.5), 20003, DURATION_RULE, id="duration-float"),
    pytest.param(_video(duration=True), 20003, DURATION_RULE, id="duration-bool"),
    pytest.param(
        _video(model="veo-3.1", resolution="720p", duration=5),
        20003,
        "duration 5 is not supported by veo-3.1 (allowed: 4, 6, 8)",
        id="duration-per-model",
    ),
    pytest.param(
        _video(image_urls=["data:image/png;base64,iVBORw0KGgo="]),
        20003,
        "image URL must be a public http(s) URL — data: URIs are rejected",
        id="data-uri",
    ),
    pytest.param(
        _video(image_urls=["file:///etc/passwd"]), 20003, "image URL must be a public http(s) URL", id="file-url"
    ),
    pytest.param(
        _video(image_urls="https://refs.test/photo.png"),
        20003,
        "image_urls must be an array of public http(s) URLs",
        id="image-urls-not-list",
    ),
    pytest.param(
        _video(image_urls=[f"https://refs.test/{i}.png" for i in range(10)]),
        20003,
        "image_urls accepts at most 9 entries",
        id="10-references",
    ),
    pytest.param(
        _video(model="kling-3-0", resolution="720p", duration=5, image_urls=["https://refs.test/a.png"] * 3),
        20003,
        "image_urls accepts at most 2 entries",
        id="3-references-kling",
    ),
    pytest.param(_video(n=1), 20003, "n is not supported by doubao-seedance-2.0", id="n"),
    pytest.param(_video(quality="high"), 20003, "quality is not supported by doubao-seedance-2.0", id="quality"),
    pytest.param(
        _video(image_urls=["https://refs.test/photo.png"], mask_url="https://refs.test/mask.png"),
        20003,
        "mask_url is not supported by doubao-seedance-2.0",
        id="mask",
    ),
]


@pytest.mark.parametrize(("body", "code", "message"), VALIDATION)
async def test_validation_rejects_with_documented_code(
    emu: Emu, body: dict[str, Any] | bytes, code: int, message: str
) -> None:
    """Each invalid video body answers 400 with its code and message, creating and charging nothing."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if isinstance(body, bytes):
        response = await emu.client.post(VIDEO_PATH, content=body, headers=headers)
    else:
        response = await emu.client.post(
            VIDEO_PATH, json={k: v for k, v in body.items() if v is not None}, headers=headers
        )
    assert response.status_code == 400
    assert (_error(response)["code"], _error(response)["message"]) == (code, message)
    assert _error(response)["request_id"] == response.headers["x-request-id"]
    assert emu.state.tasks == {}
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.counters(KEY)["submit_rejected"] == 1


async def test_video_model_is_unknown_on_the_image_endpoint(emu: Emu) -> None:
    """The image endpoint does not accept a video model: 400 code 20004."""
    response = await emu.submit({"model": "kling-3-0", "prompt": "a fox"})
    assert response.status_code == 400
    assert _error(response)["code"] == 20004


@pytest.mark.parametrize("model", DOCUMENTED_IDS)
async def test_every_video_id_accepts_a_plain_request(emu: Emu, model: str) -> None:
    """Each documented video id accepts a 720p 16:9 request with the documented submit reply."""
    duration = {"veo-3.1": 8, "kling-3-0": 5, "kling-3-0-turbo": 5, "grok-imagine-1.0-video": 6}.get(model, 5)
    body = _video(model=model, resolution="720p", duration=duration)
    response = await _submit(emu, body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply == {"id": reply["id"], "model": model, "status": "processing", "created_at": reply["created_at"]}
    assert emu.state.tasks[reply["id"]].body == body
    assert emu.state.tasks[reply["id"]].kind == "video"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_video(duration=15, resolution="4k", size="9:16"), id="4k-15s-portrait"),
        pytest.param(_video(prompt="x" * 4000, size="21:9"), id="prompt-4000"),
        pytest.param(_video(image_urls=[f"https://refs.test/{i}.png" for i in range(9)]), id="9-references"),
        pytest.param(_video(model="veo-3.1", resolution="4k", duration=4), id="veo-4k"),
        pytest.param(_video(image_urls=None), id="null-image-urls"),
    ],
)
async def test_valid_edges_are_accepted(emu: Emu, body: dict[str, Any]) -> None:
    """Bodies at the limits (4k, 15 s, 4000 characters, 9 references) are accepted."""
    assert (await _submit(emu, body)).status_code == 200


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        pytest.param(None, 401, 10001, id="missing"),
        pytest.param("Basic dXNlcjpwYXNz", 401, 10002, id="basic"),
        pytest.param("Bearer rk_invalid_9", 401, 10003, id="invalid"),
        pytest.param("Bearer rk_revoked_9", 403, 10004, id="revoked"),
    ],
)
async def test_auth_errors(emu: Emu, header: str | None, status: int, code: int) -> None:
    """A video submit with bad credentials gets the documented status and code and creates nothing."""
    headers = {"Authorization": header} if header else {}
    response = await emu.client.post(VIDEO_PATH, json=_video(), headers=headers)
    assert response.status_code == status
    assert _error(response)["code"] == code
    assert emu.state.tasks == {}


async def test_rate_limit_is_shared_with_images_and_polls() -> None:
    """Image submits, video submits and polls of one key draw on one window; the 429 creates and charges nothing."""
    async with running(rate_limit=3, rate_window=1.0) as emu:
        image = (await emu.submit({"model": "gpt-image-2", "prompt": "a fox"})).json()["id"]
        assert (await _submit(emu, _video())).status_code == 200
        assert (await emu.poll(image)).status_code == 200
        refused = await _submit(emu, _video())
        assert refused.status_code == 429
        assert _error(refused)["code"] == 50001
        assert refused.headers["Retry-After"] == "1"
        assert len(emu.state.tasks) == 2
        assert emu.state.credits(KEY) == 1_000_000 - 7 - 200
        assert (await _submit(emu, _video(), key=OTHER)).status_code == 200
        emu.clock.advance(1.0)
        assert (await _submit(emu, _video())).status_code == 200
        assert emu.state.counters(KEY)["rate_limited"] == 1


@pytest.mark.parametrize(
    ("body", "credits"),
    [
        pytest.param(_video(), 200, id="480p-4s"),
        pytest.param(_video(resolution="720p", duration=5), 500, id="720p-5s"),
        pytest.param(_video(resolution="1080p", duration=10), 2000, id="1080p-10s"),
        pytest.param(_video(resolution="4k", duration=15), 6000, id="4k-15s"),
        pytest.param(_video(model="veo-3.1", resolution="1080p", duration=8), 6400, id="veo-1080p-8s"),
        pytest.param(_video(model="seedance-2-0-mini", duration=5), 63, id="mini-rounds-up"),
        pytest.param(_video(model="kling-3-0-turbo", resolution="720p", duration=10), 700, id="kling-turbo"),
    ],
)
async def test_credits_charged_on_submit(emu: Emu, body: dict[str, Any], credits: int) -> None:
    """A video submit charges ceil(rate per second x resolution factor x seconds) and records it."""
    task_id = await _submit_id(emu, body)
    assert emu.state.credits(KEY) == 1_000_000 - credits
    assert emu.state.tasks[task_id].credits_charged == credits


async def test_insufficient_credits_is_402_without_task(emu: Emu) -> None:
    """A balance below the price answers 402 code 30001; nothing is charged or created."""
    emu.state.set_credits(KEY, 199)
    response = await _submit(emu, _video())
    assert response.status_code == 402
    assert _error(response)["code"] == 30001
    assert emu.state.credits(KEY) == 199
    assert emu.state.tasks == {}


@pytest.mark.parametrize(
    ("code", "message"),
    [(80001, "provider_submit_failed"), (80002, "provider_polling_timeout"), (80003, "provider_failed")],
)
async def test_fail_markers_end_failed_and_refund_once(emu: Emu, code: int, message: str) -> None:
    """[fail=CODE] ends the video task failed with that error, already refunded when a poll first sees it, once."""
    task_id = await _submit_id(emu, _video(prompt=f"fox [fail={code}] [latency=30]"))
    assert emu.state.credits(KEY) == 1_000_000 - 200
    emu.clock.advance(29.9)
    assert (await emu.poll(task_id)).json()["status"] == "processing"
    emu.clock.advance(0.1)
    reply = (await emu.poll(task_id)).json()
    assert (reply["status"], reply["output"], reply["error"]) == ("failed", None, {"code": code, "message": message})
    for _ in range(2):
        await emu.poll(task_id)
    assert emu.state.credits(KEY) == 1_000_000
    assert emu.state.tasks[task_id].refunded is True
    media = f"/media/tasks/{task_id.removeprefix('task_')}/0.mp4"
    assert (await emu.client.get(media)).status_code == 404


@pytest.mark.parametrize(
    ("body", "low", "high"),
    [
        pytest.param(_video(resolution="720p", duration=5), 60, 180, id="720p-5s"),
        pytest.param(_video(duration=4), 28.8, 86.4, id="480p-4s"),
        pytest.param(_video(resolution="1080p", duration=10), 180, 540, id="1080p-10s"),
        pytest.param(_video(resolution="4k", duration=15), 540, 1620, id="4k-15s"),
        pytest.param(_video(model="seedance-2.0-fast-beta", resolution="720p", duration=5), 30, 90, id="fast"),
    ],
)
async def test_latency_grows_with_duration_and_resolution_times_scale(
    body: dict[str, Any], low: float, high: float
) -> None:
    """A video task turns terminal at created + latency, inside our bounds for its size x time_scale."""
    async with running(time_scale=0.5) as emu:
        for _ in range(3):
            task_id = await _submit_id(emu, body)
            record = emu.state.tasks[task_id]
            assert low * 0.5 <= record.ready_at - record.created <= high * 0.5
            emu.clock.now = record.ready_at - 0.01
            assert (await emu.poll(task_id)).json()["status"] == "processing"
            emu.clock.now = record.ready_at
            assert (await emu.poll(task_id)).json()["status"] == "completed"


async def test_latency_marker_is_exact_and_unscaled() -> None:
    """[latency=S] makes a video task terminal exactly S clock seconds after submit, whatever time_scale is."""
    async with running(time_scale=50) as emu:
        task_id = await _submit_id(emu, _video(prompt="fox [latency=3]"))
        record = emu.state.tasks[task_id]
        assert record.ready_at - record.created == 3
        emu.clock.advance(3)
        assert (await emu.poll(task_id)).json()["status"] == "completed"


async def test_request_markers(emu: Emu) -> None:
    """[moderated], [submit503], [poll500=K] and [submit_slow=S] act on video submits as on image ones."""
    moderated = await _submit(emu, _video(prompt="fox [moderated]"))
    assert (moderated.status_code, _error(moderated)["code"]) == (400, 20010)
    unavailable = await _submit(emu, _video(prompt="fox [submit503]"))
    assert (unavailable.status_code, _error(unavailable)["code"]) == (503, 90000)
    assert emu.state.tasks == {}
    assert emu.state.credits(KEY) == 1_000_000
    task_id = await _submit_id(emu, _video(prompt="fox [poll500=1] [latency=0] [submit_slow=4]"))
    assert emu.slept == [4.0]
    assert (await emu.poll(task_id)).status_code == 500
    assert (await emu.poll(task_id)).json()["status"] == "completed"


async def test_completed_reply_shape_and_ownership(emu: Emu) -> None:
    """A completed video reply holds one MP4 URL and no last frame for kling; other keys get 404."""
    body = _video(model="kling-3-0", resolution="720p", duration=5)
    reply = await _completed(emu, body)
    hex_id = reply["id"].removeprefix("task_")
    assert reply == {
        "id": reply["id"],
        "model": "kling-3-0",
        "status": "completed",
        "created_at": reply["created_at"],
        "output": {"video_urls": [f"http://emu/media/tasks/{hex_id}/0.mp4"]},
        "error": None,
    }
    foreign = await emu.poll(reply["id"], key=OTHER)
    assert (foreign.status_code, _error(foreign)["code"]) == (404, 20404)
    assert (await emu.client.get(f"/media/tasks/{hex_id}/last_frame.png")).status_code == 404
    [task] = (await emu.client.get("/_emulator/stats")).json()["tasks"]
    assert (task["kind"], task["output"], task["width"], task["height"]) == ("video", reply["output"], 1280, 720)


async def test_seedance_output_adds_last_frame_png(emu: Emu) -> None:
    """A Seedance video's output adds last_frame_url: a PNG of the video's size and colour."""
    reply = await _completed(emu, _video(size="9:16"))
    hex_id = reply["id"].removeprefix("task_")
    assert reply["output"] == {
        "video_urls": [f"http://emu/media/tasks/{hex_id}/0.mp4"],
        "last_frame_url": f"http://emu/media/tasks/{hex_id}/last_frame.png",
    }
    frame = await emu.client.get(reply["output"]["last_frame_url"])
    assert frame.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(frame.content)) as image:
        assert image.size == (480, 854)
        assert image.getpixel((0, 0)) == pick_colour(f"{reply['id']}/0")
    video = await emu.client.get(reply["output"]["video_urls"][0])
    assert_solid(decode(video.content).frames[-1], pick_colour(f"{reply['id']}/0"))


@pytest.mark.parametrize(
    ("size", "resolution", "duration", "pixels"),
    [
        pytest.param("16:9", "480p", 4, (854, 480), id="16:9-480p"),
        pytest.param("9:16", "480p", 5, (480, 854), id="9:16-480p"),
        pytest.param("1:1", "480p", 4, (480, 480), id="1:1-480p"),
        pytest.param("4:3", "480p", 4, (640, 480), id="4:3-480p"),
        pytest.param("3:4", "480p", 4, (480, 640), id="3:4-480p"),
        pytest.param("21:9", "480p", 4, (1120, 480), id="21:9-480p"),
    ],
)
async def test_video_is_a_playable_mp4_of_the_requested_shape(
    emu: Emu, size: str, resolution: str, duration: int, pixels: tuple[int, int]
) -> None:
    """The served file is video/mp4 with its length, and decodes as H.264 of that size, duration and colour."""
    reply = await _completed(emu, _video(size=size, resolution=resolution, duration=duration))
    response = await emu.client.get(reply["output"]["video_urls"][0])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "public, max-age=604800"
    found = decode(response.content)
    assert (found.codec, found.width, found.height) == ("h264", *pixels)
    assert found.declared_frames == len(found.frames) == duration * FPS
    assert found.duration == duration
    assert_solid(found.frames[0], pick_colour(f"{reply['id']}/0"))


@pytest.mark.parametrize(
    ("size", "resolution", "pixels"),
    [
        pytest.param("16:9", "720p", (1280, 720), id="16:9-720p"),
        pytest.param("9:16", "720p", (720, 1280), id="9:16-720p"),
        pytest.param("16:9", "1080p", (1920, 1080), id="16:9-1080p"),
        pytest.param("9:16", "1080p", (1080, 1920), id="9:16-1080p"),
        pytest.param("16:9", "4k", (3840, 2160), id="16:9-4k"),
    ],
)
async def test_large_tiers_have_their_pixel_size(emu: Emu, size: str, resolution: str, pixels: tuple[int, int]) -> None:
    """720p, 1080p and 4k videos are 1280x720, 1920x1080 and 3840x2160 (or portrait), first frame decoded."""
    reply = await _completed(emu, _video(size=size, resolution=resolution, duration=6))
    found = decode((await emu.client.get(reply["output"]["video_urls"][0])).content, limit=1)
    assert (found.width, found.height, found.declared_frames) == (*pixels, 6 * FPS)
    assert (found.frames[0].width, found.frames[0].height) == pixels


async def test_range_requests(emu: Emu) -> None:
    """Byte ranges answer 206 with Content-Range and exactly that slice; chunks reassemble into the file."""
    reply = await _completed(emu, _video())
    url = reply["output"]["video_urls"][0]
    whole = (await emu.client.get(url)).content
    size = len(whole)
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=100-": (100, size - 1),
        "bytes=-50": (size - 50, size - 1),
        f"bytes=10-{size * 3}": (10, size - 1),
        "BYTES=5-5": (5, 5),
    }
    for header, (first, last) in cases.items():
        response = await emu.client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert response.headers["content-type"] == "video/mp4"
        assert int(response.headers["content-length"]) == last - first + 1
        assert response.content == whole[first : last + 1]
    chunks = [
        (await emu.client.get(url, headers={"Range": f"bytes={i}-{i + 999}"})).content for i in range(0, size, 1000)
    ]
    assert b"".join(chunks) == whole
    assert decode(b"".join(chunks)).width == 854


async def test_range_edge_cases(emu: Emu) -> None:
    """Past-the-end ranges are 416 with bytes */size; several ranges or a stale If-Range get the whole file."""
    reply = await _completed(emu, _video())
    url = reply["output"]["video_urls"][0]
    whole = await emu.client.get(url)
    size = len(whole.content)
    for header in (f"bytes={size}-", "bytes=-0", "bytes=9-3"):
        refused = await emu.client.get(url, headers={"Range": header})
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{size}"
    for headers in ({"Range": "bytes=0-1,5-9"}, {"Range": "pages=1-2"}, {"Range": "bytes=0-9", "If-Range": '"old"'}):
        full = await emu.client.get(url, headers=headers)
        assert (full.status_code, full.content) == (200, whole.content), headers
    fresh = await emu.client.get(url, headers={"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
    assert (fresh.status_code, fresh.content) == (206, whole.content[:10])


async def test_media_is_served_only_for_completed_videos(emu: Emu) -> None:
    """Before completion, at another index, or under the image route, a video's media is 404 code 20404."""
    task_id = await _submit_id(emu, _video())
    hex_id = task_id.removeprefix("task_")
    assert (await emu.client.get(f"/media/tasks/{hex_id}/0.mp4")).status_code == 404
    emu.clock.advance(100)
    assert (await emu.client.get(f"/media/tasks/{hex_id}/0.mp4")).status_code == 200
    for path in ("1.mp4", "0.png"):
        missing = await emu.client.get(f"/media/tasks/{hex_id}/{path}")
        assert (missing.status_code, _error(missing)["code"]) == (404, 20404)
    image = (await emu.submit({"model": "gpt-image-2", "prompt": "a fox [latency=0]"})).json()["id"]
    assert (await emu.client.get(f"/media/tasks/{image.removeprefix('task_')}/0.mp4")).status_code == 404


async def test_reference_images_are_fetched_or_fail_the_task(emu: Emu) -> None:
    """image_urls are downloaded and recorded; an unfetchable one ends the task failed 80003, refunded."""
    good = await _submit_id(emu, _video(image_urls=["https://refs.test/photo.png"], prompt="fox [latency=0]"))
    bad = await _submit_id(emu, _video(image_urls=["https://refs.test/missing.png"]))
    assert (await emu.poll(good)).json()["status"] == "processing"  # still downloading
    await emu.state.wait_idle()
    assert [item["status"] for item in emu.state.tasks[good].fetched_inputs] == [200]
    assert emu.state.tasks[good].fetched_inputs[0]["width"] == 64
    assert (await emu.poll(good)).json()["status"] == "completed"
    failed = (await emu.poll(bad)).json()
    assert (failed["status"], failed["error"]["code"]) == ("failed", 80003)
    assert emu.state.credits(KEY) == 1_000_000 - 200
