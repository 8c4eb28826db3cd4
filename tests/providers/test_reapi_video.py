"""reAPI's video side, pure: OpenAI sizes and seconds to what is sent, the planned submission and its fallbacks,
video task envelopes read, failures with the upstream code, and the routing of video ids (no I/O)."""

from __future__ import annotations

import pytest

from shim import errors
from shim.app import create_app
from shim.config import ConfigurationError, Settings
from shim.pacing.latency import LatencyModel, log_grid
from shim.providers import builtin_providers
from shim.providers import reapi_codec as codec
from shim.providers import reapi_video as video
from shim.routing import Door, Router
from shim.types import ImageSpec, Route, Task, VideoSpec

DOORS = {name: Door.of(factory) for name, factory in builtin_providers().items()}
SORA = Route("sora-2", "reapi", "doubao-seedance-2.0")


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        pytest.param("720x1280", None, ("9:16", "720p"), id="sora-portrait"),
        pytest.param("1280x720", None, ("16:9", "720p"), id="sora-landscape"),
        pytest.param("1024x1792", None, ("9:16", "1080p"), id="sora-pro-portrait"),
        pytest.param("1792x1024", None, ("16:9", "1080p"), id="sora-pro-landscape"),
        pytest.param("854x480", None, ("16:9", "480p"), id="480p"),
        pytest.param("3840x2160", None, ("16:9", "4k"), id="4k"),
        pytest.param("1024x1024", None, ("1:1", "1080p"), id="square"),
        pytest.param("1280x720", "4k", ("16:9", "4k"), id="explicit-tier-wins"),
        pytest.param("21:9", None, ("21:9", "720p"), id="ratio-default-tier"),
        pytest.param("9:16", "480p", ("9:16", "480p"), id="ratio-and-tier"),
    ],
)
def test_map_size(size, resolution, expected) -> None:
    """WxH goes as the nearest common ratio and the smallest tier whose short side covers the request's."""
    assert video.map_size(size, resolution) == expected


def test_durations_nearest_first_shorter_on_ties() -> None:
    """seconds -> the documented 4-15 range, nearest first; of two equally near, the shorter (cheaper) one."""
    assert video.durations(4)[:4] == [4, 5, 6, 7]
    assert video.durations(8)[:5] == [8, 7, 9, 6, 10]
    assert video.durations(20)[:2] == [15, 14] and video.durations(1)[0] == 4
    assert sorted(video.durations(12)) == list(range(4, 16))


def test_plan_is_one_task_with_the_other_durations_as_fallbacks() -> None:
    """A video is one submission to the video endpoint, its body the notes' fields, its other durations
    fallbacks (refit on a refusal naming seconds), each with its own latency class."""
    spec = VideoSpec(SORA, "a fox", seconds=8, size="1280x720", reference_url="https://cdn.example/ref.png")
    (sub,) = codec.plan(spec)
    assert sub.body == {
        "model": "doubao-seedance-2.0", "prompt": "a fox", "resolution": "720p", "size": "16:9", "duration": 8,
        "image_urls": ["https://cdn.example/ref.png"],
    }  # fmt: skip
    assert (sub.media, sub.count, sub.duration, sub.size, sub.refit_param) == ("video", 1, 8, "1280x720", "seconds")
    assert sub.latency_class == "reapi-video/doubao-seedance-2.0/720p/8s"
    assert [f.duration for f in sub.fallbacks] == video.durations(8)[1:]
    assert sub.fallbacks[0].body == {**sub.body, "duration": 7} and not sub.fallbacks[0].fallbacks


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        pytest.param(VideoSpec(SORA, "x" * 4001), "prompt", id="prompt-over-4000"),
        pytest.param(VideoSpec(SORA, "x", resolution="8k"), "resolution", id="unknown-tier"),
        pytest.param(VideoSpec(SORA, "x", size="wide"), "size", id="bad-size"),
        pytest.param(VideoSpec(Route("gpt-image-1", "reapi", "gpt-image-2-official"), "x"), "model", id="image-model"),
    ],
)
def test_check_refuses_before_anything_is_sent(spec, param) -> None:
    """What reAPI's video endpoint cannot take is a 400 naming the field."""
    with pytest.raises(errors.InvalidRequest) as refused:
        codec.check(spec)
    assert refused.value.param == param


def test_an_image_spec_on_a_video_model_is_refused() -> None:
    """A video model reached by an image request is a 400 saying where videos go."""
    with pytest.raises(errors.InvalidRequest, match="/v1/videos"):
        codec.check(ImageSpec("generate", Route("m", "reapi", "kling-3-0"), "x"))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {
                "status": "completed",
                "output": {"video_urls": ["https://cdn/0.mp4"], "last_frame_url": "https://cdn/l.png"},
            },
            Task(
                "t",
                "completed",
                ("https://cdn/0.mp4",),
                media="video",
                extras=(("last_frame_url", "https://cdn/l.png"),),
            ),
            id="with-last-frame",
        ),
        pytest.param(
            {"status": "completed", "output": {"video_urls": ["https://cdn/0.mp4"], "last_frame_url": "javascript:x"}},
            Task("t", "completed", ("https://cdn/0.mp4",), media="video"),
            id="unusable-last-frame-dropped",
        ),
        pytest.param({"status": "processing", "output": None}, Task("t", "processing"), id="running"),
    ],
)
def test_parse_video_task(payload, expected) -> None:
    """A video task's output.video_urls are its results, last_frame_url a named extra (usable URLs only)."""
    assert codec.parse_task(payload, "t") == expected


def test_completed_without_video_url_is_polled_again() -> None:
    """completed with no usable video URL is repeated (UpstreamTransient), never a success."""
    with pytest.raises(errors.UpstreamTransient):
        codec.parse_task({"status": "completed", "output": {"video_urls": ["file:///x"]}}, "t")


def test_task_failure_keeps_the_upstream_code() -> None:
    """A failed task's error carries reAPI's code (80002 is a 504), for the video's `error.code`."""
    failure = codec.task_failure(Task("t", "failed", error_code="80002", error_message="provider_polling_timeout"))
    assert isinstance(failure, errors.TaskFailed)
    assert (failure.status, failure.upstream_code) == (504, "80002")


@pytest.mark.parametrize(
    ("model", "default", "expected"),
    [
        pytest.param("sora-2", None, "doubao-seedance-2.0", id="sora-2"),
        pytest.param("sora-2-pro", None, "doubao-seedance-2.0-official", id="sora-2-pro"),
        pytest.param("sora-2-2025-12-08", None, "doubao-seedance-2.0", id="dated"),
        pytest.param("sora-2-pro-2025-10-06", None, "doubao-seedance-2.0-official", id="dated-pro"),
        pytest.param("sora-2", "kling-3-0", "kling-3-0", id="configured-default"),
        pytest.param("sora-2-2025-10-06", "reapi/veo-3.1", "veo-3.1", id="configured-default-dated"),
        pytest.param("sora-2-pro", "kling-3-0", "doubao-seedance-2.0-official", id="pro-stays"),
        pytest.param("reapi/pixverse-v6", None, "pixverse-v6", id="prefixed"),
        pytest.param("happyhorse-1-1", None, "happyhorse-1-1", id="bare"),
    ],
)
def test_video_routing(model, default, expected) -> None:
    """Video ids: sora-2 (or SHIM_DEFAULT_VIDEO_MODEL), sora-2-pro, dated snapshots, reAPI's ids bare or prefixed."""
    route = Router(DOORS, {}, default_video_model=default).resolve_video(model)
    assert (route.public_id, route.provider, route.upstream_model) == (model, "reapi", expected)


@pytest.mark.parametrize(
    ("resolve", "model", "needle"),
    [
        pytest.param("resolve", "sora-2", "use POST /v1/videos", id="video-id-on-images"),
        pytest.param("resolve", "reapi/kling-3-0", "use POST /v1/videos", id="prefixed-video-id-on-images"),
        pytest.param("resolve_video", "gpt-image-1", "use /v1/images", id="image-id-on-videos"),
        pytest.param("resolve_video", "reve2img/flux-2", "use /v1/images", id="other-upstream-image-id"),
        pytest.param("resolve_video", "sora-3", "does not exist", id="unknown"),
    ],
)
def test_images_and_videos_are_never_confused(resolve, model, needle) -> None:
    """An image endpoint given a video id, or the other way round, is a 404 that says where it belongs."""
    with pytest.raises(errors.ModelNotFound, match=needle):
        getattr(Router(DOORS, {}), resolve)(model)


def test_video_ids_are_listed_apart() -> None:
    """The router lists video ids (aliases, bare and prefixed) apart from the image ids."""
    ids = dict(Router(DOORS, {}).video_ids())
    assert {"sora-2", "sora-2-pro", "kling-3-0", "reapi/kling-3-0"} <= set(ids) and set(ids.values()) == {"reapi"}
    assert not {"sora-2", "kling-3-0"} & {name for name, _ in Router(DOORS, {}).ids()}


def test_default_video_model_must_be_a_video_model() -> None:
    """SHIM_DEFAULT_VIDEO_MODEL naming an image model or an unknown id stops start-up."""
    assert Settings.from_env({"SHIM_DEFAULT_VIDEO_MODEL": " kling-3-0 "}).default_video_model == "kling-3-0"
    for bad in ("gpt-image-1", "nope"):
        with pytest.raises(ConfigurationError, match="SHIM_DEFAULT_VIDEO_MODEL"):
            create_app(Settings(default_video_model=bad))


def test_remaining_is_the_median_time_left() -> None:
    """A task running at a has, by the estimate, the median of C - a given C > a left (0 past the grid)."""
    edges = log_grid(0.05, 100.0, 16)
    lo = next(j for j, e in enumerate(edges) if e >= 10) - 1
    mass = [1.0 if j == lo else 0.0 for j in range(len(edges) - 1)]  # all of it in one bin near 10 s
    model = LatencyModel(edges, mass)
    start, end = edges[lo], edges[lo + 1]
    assert model.remaining(0) == pytest.approx((start + end) / 2)
    assert model.remaining(start) == pytest.approx((end - start) / 2)
    assert model.remaining(end + 1) == 0.0  # overdue: the estimate expected it done
