"""The reAPI codec: tables in, whole values out (pure functions, no I/O)."""

from __future__ import annotations

import dataclasses

import pytest

from shim import errors
from shim.providers import reapi_codec as codec
from shim.providers.base import ModelSpec
from shim.types import ImageSpec, Route, Task


@pytest.mark.parametrize(
    ("size", "resolution", "expected"),
    [
        pytest.param("1024x1024", None, ("1:1", "1k", "1024x1024"), id="square"),
        pytest.param("1536x1024", None, ("3:2", "1k", "1536x1024"), id="landscape"),
        pytest.param("1024x1536", None, ("2:3", "1k", "1024x1536"), id="portrait"),
        pytest.param("1792x1024", None, ("16:9", "2k", "2048x1152"), id="dalle3-wide-needs-2k"),
        pytest.param("1024x1792", None, ("9:16", "2k", "1152x2048"), id="dalle3-tall-needs-2k"),
        pytest.param("512x512", None, ("1:1", "1k", "1024x1024"), id="small-rounds-up"),
        pytest.param("256x256", None, ("1:1", "1k", "1024x1024"), id="tiny"),
        pytest.param("3840x2160", None, ("16:9", "4k", "3840x2160"), id="4k-widescreen"),
        pytest.param("3840x2160", "4k", ("16:9", "4k", "3840x2160"), id="4k-pixels-explicit-tier"),
        pytest.param("3840x1648", None, ("21:9", "4k", "3840x1648"), id="4k-21:9"),
        pytest.param("3072x3072", None, ("1:1", "2k", "2048x2048"), id="square-capped-at-2k"),
        pytest.param("2048x1360", None, ("3:2", "2k", "2048x1360"), id="3:2-2k"),
        pytest.param("16:9", "4k", ("16:9", "4k", "3840x2160"), id="ratio-4k"),
        pytest.param("21:9", None, ("21:9", None, "2016x864"), id="ratio-default-tier"),
        pytest.param("auto", None, ("auto", None, "auto"), id="auto"),
        pytest.param(None, "2k", (None, "2k", "2048x2048"), id="no-size"),
    ],
)
def test_map_size(size, resolution, expected) -> None:
    """OpenAI sizes map to the document's (ratio, tier) cells: a ratio with a tier on every channel."""
    assert codec.map_size(size, resolution) == expected


@pytest.mark.parametrize(("ratio", "tier"), [(ratio, tier) for ratio, cells in codec.PIXELS.items() for tier in cells])
def test_every_documented_cell_keeps_its_pixels(ratio, tier) -> None:
    """Asking for a documented cell's exact pixels sends that cell's ratio and tier, and reports its pixels."""
    width, height = codec.PIXELS[ratio][tier]
    assert codec.map_size(f"{width}x{height}", None) == (ratio, tier, f"{width}x{height}")


@pytest.mark.parametrize(
    ("size", "resolution"),
    [("1:1", "4k"), ("auto", "4k"), (None, "4k"), ("4:3", "4k"), ("1024x1024", "4k")],
)
def test_4k_only_widescreen(size, resolution) -> None:
    """4k with a non-widescreen, auto or missing size never reaches the upstream."""
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.map_size(size, resolution)
    assert caught.value.param == "resolution"


def _job(model: str, n: int = 1, **kw) -> ImageSpec:
    return ImageSpec(operation="generate", route=Route(model, "reapi", model), prompt="p", n=n, **kw)


def test_plan_batches_official() -> None:
    """The official channel takes batches of up to 4: n=10 becomes 4 + 4 + 2."""
    subs = codec.plan(_job("gpt-image-2-official", 10, quality="low", size="1024x1024"))
    assert [s.count for s in subs] == [4, 4, 2]
    assert [s.body["n"] for s in subs] == [4, 4, 2]
    assert subs[0].body == {
        "model": "gpt-image-2-official", "prompt": "p", "size": "1:1", "resolution": "1k",
        "quality": "low", "n": 4,
    }  # fmt: skip
    assert subs[0].latency_class == "reapi/gpt-image-2-official/low/1k"


def test_plan_fans_out_cheap_channel() -> None:
    """gpt-image-2 has n fixed at 1: n=3 is three tasks, and quality/background/moderation are not sent."""
    subs = codec.plan(_job("gpt-image-2", 3, quality="high", background="opaque", moderation="low"))
    assert [s.count for s in subs] == [1, 1, 1]
    assert all(s.body == {"model": "gpt-image-2", "prompt": "p"} for s in subs)


def test_plan_mask_on_cheap_channel_names_a_model_that_has_it() -> None:
    """A mask on a model without mask support is a 400 that names gpt-image-2-official."""
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.plan(_job("gpt-image-2", image_urls=("https://x/a.png",), mask_url="https://x/m.png"))
    assert caught.value.param == "mask"
    assert "gpt-image-2-official" in caught.value.message


def test_parse_task_completed() -> None:
    """A completed envelope becomes a terminal Task with its image URLs."""
    task = codec.parse_task(
        {"id": "task_1", "status": "completed", "output": {"image_urls": ["https://c/0.png"]}, "error": None},
        "task_1",
    )
    assert task == Task(id="task_1", status="completed", urls=("https://c/0.png",))


def test_parse_task_failed() -> None:
    """A failed envelope keeps the upstream code and message."""
    task = codec.parse_task(
        {"id": "t", "status": "failed", "output": None, "error": {"code": 80002, "message": "timeout"}}, "t"
    )
    assert (task.status, task.error_code, task.error_message) == ("failed", "80002", "timeout")


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("80001", 502, errors.TaskFailed),
        ("80002", 504, errors.TaskFailed),
        ("80003", 502, errors.TaskFailed),
    ],
)
def test_task_failure(code, status, error) -> None:
    """Failed tasks: 502 for 80001/80003, 504 for 80002; the message names code and task id."""
    failure = codec.task_failure(Task("task_9", "failed", error_code=code, error_message="m"))
    assert isinstance(failure, error)
    assert failure.status == status
    assert "task_9" in failure.message and code in failure.message


@pytest.mark.parametrize(
    ("status", "code", "message", "expected", "param"),
    [
        (401, 10003, "invalid API key", errors.AuthenticationFailed, None),
        (403, 10004, "revoked", errors.AuthenticationFailed, None),
        (400, 20002, "prompt is required", errors.InvalidRequest, "prompt"),
        (400, 20003, 'invalid size "x"', errors.InvalidRequest, "size"),
        (400, 20010, "prompt rejected by content moderation", errors.ContentPolicyViolation, None),
        (402, 30001, "insufficient credits", errors.InsufficientQuota, None),
        (429, 50001, "rate limited", errors.UpstreamRateLimited, None),
        (500, 90000, "internal", errors.UpstreamTransient, None),
    ],
)
def test_map_error(status, code, message, expected, param) -> None:
    """Upstream error replies map by code to the client-facing error classes."""
    error = codec.map_error(status, {"error": {"code": code, "message": message, "request_id": "req_1"}}, 2.0)
    assert type(error) is expected
    if isinstance(error, errors.ShimError):
        assert error.param == param
        assert error.upstream_request_id == "req_1"
    if isinstance(error, errors.UpstreamRateLimited):
        assert error.retry_after == 2.0


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        pytest.param("https://c/0.png", ("https://c/0.png",), id="lone-string"),
        pytest.param(["https://c/0.png", None], ("https://c/0.png",), id="mixed"),
        pytest.param(
            ["javascript:alert(1)", "file:///etc/passwd", "https://c/1.png"], ("https://c/1.png",), id="schemes"
        ),
        pytest.param(
            ["https://c/a\r\nSet-Cookie: x", "https://c/\u00e9.png", "https://c/2.png"],
            ("https://c/2.png",),
            id="header-breaking",
        ),
    ],
)
def test_parse_task_keeps_only_usable_urls(urls, expected) -> None:
    """Only http(s) URLs of visible ASCII are result URLs; a lone string is one URL."""
    task = codec.parse_task({"id": "t", "status": "completed", "output": {"image_urls": urls}}, "t")
    assert (task.status, task.urls) == ("completed", expected)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"status": "completed", "output": {"image_urls": [None, 123]}}, id="completed-no-urls"),
        pytest.param({"status": "completed", "output": None}, id="completed-null-output"),
        pytest.param({"status": "succeeded"}, id="unknown-status"),
        pytest.param({"status": ["x"]}, id="status-not-a-string"),
    ],
)
def test_unclear_answers_are_polled_again_not_failed(payload) -> None:
    """An undocumented status or a completion without a usable URL is not a (refunded) failure: poll again."""
    with pytest.raises(errors.UpstreamTransient) as caught:
        codec.parse_task({"id": "t", **payload}, "t")
    completed = payload["status"] == "completed"
    assert (caught.value.final is not None) is completed
    if completed:
        assert "refunded" not in caught.value.final.message and "may have been charged" in caught.value.final.message


def test_unknown_status_with_urls_is_a_completion() -> None:
    """'succeeded' with result URLs delivers the paid images (never 'failed, credits refunded')."""
    task = codec.parse_task({"id": "x", "status": "succeeded", "output": {"image_urls": ["https://c/0.png"]}}, "t9")
    assert task == Task("t9", "completed", ("https://c/0.png",))


@pytest.mark.parametrize("bad_id", [None, "", True, ["t"], "t" * 1025])
def test_submit_with_unusable_id_is_outcome_unknown(bad_id) -> None:
    """A submit answer whose id cannot be polled leaves the outcome unknown (never resubmitted)."""
    with pytest.raises(errors.SubmitOutcomeUnknown):
        codec.parse_submitted({"id": bad_id, "status": "processing"})


@pytest.mark.parametrize(
    ("given", "sent"),
    [("hd", "high"), ("standard", "medium"), ("xhigh", "high"), ("max", "high"), ("low", "low"), ("auto", "auto")],
)
def test_quality_tiers(given, sent) -> None:
    """OpenAI's qualities become reAPI's tiers: hd is high, standard is medium, xhigh/max the best there is."""
    (submission,) = codec.plan(_job(codec.OFFICIAL, quality=given))
    assert submission.body["quality"] == sent and submission.quality == sent


def test_no_quality_is_not_sent_and_reported_auto() -> None:
    """Without a quality nothing is sent (the upstream's default) and the answer says auto."""
    (submission,) = codec.plan(_job(codec.OFFICIAL))
    assert "quality" not in submission.body and submission.quality == "auto"


# --- ids the catalog does not have, and declared capabilities -------------------------------------------


def test_passthrough_id_is_planned_with_the_conservative_profile() -> None:
    """An id outside the catalog is planned as the cheap channel: n tasks of one, a ratio with its tier, no
    quality, background or moderation sent."""
    subs = codec.plan(
        _job("some-future-model", 3, size="1792x1024", quality="high", background="opaque", moderation="low")
    )
    assert [s.count for s in subs] == [1, 1, 1]
    assert all(
        s.body == {"model": "some-future-model", "prompt": "p", "size": "16:9", "resolution": "2k"} for s in subs
    )
    assert subs[0].latency_class == "reapi/some-future-model/low/2k" and subs[0].size == "2048x1152"


def test_passthrough_id_takes_no_mask() -> None:
    """A mask on an id outside the catalog is refused before anything is sent (the conservative profile)."""
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.check(_job("some-future-model", image_urls=("https://x/a.png",), mask_url="https://x/m.png"))
    assert caught.value.code == "unsupported_parameter"


DECLARED = {
    "quad": ModelSpec("quad", max_batch=4, quality=True, background=True, moderation=True, mask=True),
    "pixels": ModelSpec("pixels", pixel_sizes=True),
    "text-only": ModelSpec("text-only", max_image_urls=0),
}


def test_declared_batches_and_fields_are_sent() -> None:
    """A declared max_batch batches (n=6: 4 + 2, with n sent), and declared quality, background, moderation and
    mask reach the body."""
    job = _job("quad", 6, quality="hd", background="opaque", moderation="low", image_urls=("https://x/a.png",))
    subs = codec.plan(dataclasses.replace(job, mask_url="https://x/m.png"), DECLARED)
    assert [(s.count, s.body["n"]) for s in subs] == [(4, 4), (2, 2)]
    assert {k: subs[0].body[k] for k in ("quality", "background", "moderation", "mask_url")} == {
        "quality": "high", "background": "opaque", "moderation": "low", "mask_url": "https://x/m.png",
    }  # fmt: skip
    assert subs[0].latency_class == "reapi/quad/high/1k"


@pytest.mark.parametrize(
    ("size", "resolution", "sent", "reported", "klass"),
    [
        pytest.param("1280x720", None, ("1280x720", None), None, "reapi/pixels/low/1k", id="as-given"),
        pytest.param("2400x1200", None, ("2400x1200", None), None, "reapi/pixels/low/2k", id="as-given-2k-class"),
        pytest.param("3840x2160", None, ("16:9", "4k"), "3840x2160", "reapi/pixels/low/4k", id="4k-rule"),
        pytest.param("1280x720", "2k", ("16:9", "2k"), "2048x1152", "reapi/pixels/low/2k", id="with-resolution"),
        pytest.param("16:9", None, ("16:9", None), "1536x864", "reapi/pixels/low/1k", id="ratio"),
    ],
)
def test_declared_pixel_sizes(size, resolution, sent, reported, klass) -> None:
    """pixel_sizes sends a WxH as given (no resolution, output pixels unknown), except where the 4K rule wants
    a ratio or the request names a resolution (how the two combine is not documented)."""
    (sub,) = codec.plan(_job("pixels", size=size, resolution=resolution), DECLARED)
    assert (sub.body.get("size"), sub.body.get("resolution")) == sent
    assert (sub.size, sub.latency_class) == (reported, klass)


def test_declared_max_image_urls() -> None:
    """max_image_urls = 0 refuses any input image, before anything is sent."""
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.check(_job("text-only", image_urls=("https://x/a.png",)), DECLARED)
    assert caught.value.param == "image" and "at most 0" in caught.value.message


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        pytest.param(400, 20004, 'unknown model "some-future-model"', errors.ModelNotFound, id="emulator-20004"),
        pytest.param(400, 20003, "invalid model: x", errors.ModelNotFound, id="invalid-model-words"),
        pytest.param(400, 20099, "Model 'x' does not exist", errors.ModelNotFound, id="does-not-exist"),
        pytest.param(400, 0, "model not found", errors.ModelNotFound, id="bare-400"),
        pytest.param(400, 20003, "unsupported model gpt-9", errors.ModelNotFound, id="unsupported-model"),
        pytest.param(400, 20003, "quality is not supported by some-future-model", errors.InvalidRequest, id="field"),
        pytest.param(400, 20003, "n must be 1 for this model", errors.InvalidRequest, id="n-for-this-model"),
        pytest.param(400, 20003, "mask_url is not supported by model gpt-image-2", errors.InvalidRequest, id="mask"),
        pytest.param(401, 10003, "invalid model key", errors.AuthenticationFailed, id="auth-first"),
    ],
)
def test_unknown_model_answers(status, code, message, expected) -> None:
    """A validation error saying the model is unknown or invalid (20004, or its words under any code) is 404
    model_not_found naming `model`; other validation errors stay 400."""
    error = codec.map_error(status, {"error": {"code": code or None, "message": message}}, 1.0)
    assert type(error) is expected
    if expected is errors.ModelNotFound:
        assert (error.status, error.code, error.param) == (404, "model_not_found", "model") and message in error.message
