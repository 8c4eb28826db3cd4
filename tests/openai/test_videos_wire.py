"""OpenAI's Videos wire format, pure: create bodies (multipart parts and JSON) to a VideoSpec and its reference,
the list query, and the rendered objects against the openai SDK's own models."""

from __future__ import annotations

import base64

import pytest
from openai.types import Video, VideoDeleteResponse

from shim import errors
from shim.openai import videos as wire
from shim.openai.multipart import Part
from shim.types import Route, VideoView

ROUTE = Route("sora-2", "reapi", "doubao-seedance-2.0")


def resolve(model: str) -> Route:
    if model.startswith("gpt-image"):
        raise errors.ModelNotFound("image model", param="model")
    return Route(model, "reapi", "doubao-seedance-2.0")


def test_sdk_multipart_create_without_a_file() -> None:
    """The SDK's multipart create (every value a string) gives OpenAI's defaults where fields are absent."""
    fields, reference = wire.inputs_from_parts([Part("prompt", b"a fox"), Part("seconds", b"8")])
    spec = wire.parse_video_request(fields, resolve=resolve, form=True)
    assert reference is None
    assert (spec.route.public_id, spec.prompt, spec.seconds, spec.size, spec.resolution) == (
        "sora-2", "a fox", 8, "720x1280", None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        pytest.param(Part("input_reference", b"\x89PNG...", "ref.png", "image/png"), b"\x89PNG...", id="file"),
        pytest.param(
            Part("input_reference[image_url]", b"https://cdn.example/a.png"), "https://cdn.example/a.png", id="url"
        ),
        pytest.param(
            Part("input_reference[image_url]", b"data:image/png;base64," + base64.b64encode(b"abc")),
            b"abc",
            id="data-url",
        ),
    ],
)
def test_multipart_reference_shapes(part, expected) -> None:
    """input_reference arrives as a file, or as the SDK's flattened {image_url} (a data: URL is an upload)."""
    assert wire.inputs_from_parts([Part("prompt", b"x"), part])[1] == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"prompt": "x", "input_reference": {"file_id": "file_1"}}, "input_reference", id="file-id"),
        pytest.param({"prompt": "x", "input_reference": 7}, "input_reference", id="not-a-url"),
        pytest.param({"prompt": "x", "input_reference": "javascript:alert(1)"}, "input_reference", id="scheme"),
        pytest.param({"prompt": " "}, "prompt", id="blank-prompt"),
        pytest.param({"prompt": "x", "seconds": 4.5}, "seconds", id="fractional-seconds"),
        pytest.param({"prompt": "x", "seconds": True}, "seconds", id="boolean-seconds"),
        pytest.param({"prompt": "x", "seconds": "0"}, "seconds", id="zero-seconds"),
        pytest.param({"prompt": "x", "size": "1280*720"}, "size", id="size-star"),
        pytest.param({"prompt": "x", "size": "8:1"}, "size", id="ratio-too-wide"),
        pytest.param({"prompt": "x", "model": 3}, "model", id="model-type"),
        pytest.param({"prompt": "x", "model": "gpt-image-1"}, "model", id="image-model"),
    ],
)
def test_json_create_errors_name_the_field(body, param) -> None:
    """Every problem of a JSON create is an InvalidRequest (or a 404 for the model) naming its field."""
    with pytest.raises(errors.ShimError) as refused:
        fields, reference = wire.inputs_from_json(body)
        wire.parse_video_request(fields, resolve=resolve, form=False)
    assert refused.value.param == param and refused.value.status in (400, 404)


def test_json_create_takes_integer_seconds_and_a_ratio() -> None:
    """JSON may carry seconds as an integer, a reAPI ratio size and tier; the reference URL is kept as given."""
    fields, reference = wire.inputs_from_json(
        {
            "prompt": "p",
            "seconds": 12,
            "size": "16:9",
            "resolution": "1080P",
            "input_reference": {"image_url": "https://a/b.png"},
        }
    )
    spec = wire.parse_video_request(fields, resolve=resolve, form=False, reference_url=reference)
    assert (spec.seconds, spec.size, spec.resolution, spec.reference_url) == (12, "16:9", "1080p", "https://a/b.png")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param({}, (None, 20, "desc"), id="defaults"),
        pytest.param({"after": "video_1", "limit": "100", "order": "asc"}, ("video_1", 100, "asc"), id="all"),
    ],
)
def test_list_query(query, expected) -> None:
    """GET /v1/videos takes after, limit (1-100, default 20) and order (default desc)."""
    assert wire.parse_list_query(query) == expected


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"order": "newest"}])
def test_bad_list_query(query) -> None:
    """A limit out of range or an unknown order is a 400 naming it."""
    with pytest.raises(errors.InvalidRequest) as refused:
        wire.parse_list_query(query)
    assert refused.value.param == next(iter(query))


def test_rendered_video_is_the_sdks_video_object() -> None:
    """The rendered video has exactly the fields of the SDK's Video model and validates against it."""
    view = VideoView("video_1", "sora-2", "failed", 40, 100, 8, "1280x720", "p", error=("80003", "provider_failed"))
    body = wire.render_video(view)
    assert set(body) == set(Video.model_fields)
    video = Video.model_validate(body)
    assert (video.seconds, video.error.code, video.completed_at, video.object) == ("8", "80003", None, "video")


def test_rendered_list_and_deletion() -> None:
    """A page names its first and last ids and has_more; a deletion is OpenAI's video.deleted object."""
    views = [VideoView(f"video_{i}", "sora-2", "queued", 0, 100, 4, "720x1280") for i in range(2)]
    page = wire.render_list(views, has_more=True)
    assert (page["object"], page["first_id"], page["last_id"], page["has_more"]) == ("list", "video_0", "video_1", True)
    assert wire.render_list([], has_more=False)["first_id"] is None
    VideoDeleteResponse.model_validate(wire.render_deleted("video_0"))


@pytest.mark.parametrize("name", ["prompt", "input_reference[image_url]"])
def test_multipart_text_fields_are_capped(name: str) -> None:
    """A text field of a video create past 256 KiB (as an edit's) is refused, naming the field, before any
    decoding: a hostile client cannot make the shim hold or parse megabytes of 'text'."""
    with pytest.raises(errors.InvalidRequest) as refused:
        wire.inputs_from_parts([Part(name, b"a" * (256 * 1024 + 1))])
    assert refused.value.param == name
    assert "longer than 262144 bytes" in str(refused.value)
