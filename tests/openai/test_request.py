"""The OpenAI request parser and renderers: bodies in, jobs and error bodies out."""

from __future__ import annotations

import pytest

from shim import errors
from shim.openai.render import render_error
from shim.openai.request import parse_image_request
from shim.providers.reapi import ReapiProvider
from shim.routing import Door, Router
from shim.types import Route

ROUTER = Router({"reapi": Door.of(ReapiProvider)}, {})


def parse(body, **kw):
    return parse_image_request(body, operation="generate", resolve=ROUTER.resolve, default_model="gpt-image-2", **kw)


def test_defaults() -> None:
    """Only a prompt: the default model, n=1, b64_json for a gpt-image-* id, png."""
    job = parse({"prompt": "a cat"})
    assert (job.route, job.n, job.response_format, job.output_format) == (
        Route("gpt-image-2", "reapi", "gpt-image-2"),
        1,
        "b64_json",
        "png",
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("dall-e-2", "url"),
        ("dall-e-3", "url"),
        ("gpt-image-1", "b64_json"),
        ("chatgpt-image-latest", "b64_json"),
    ],
)
def test_default_response_format_follows_openai(model, expected) -> None:
    """Without response_format: b64_json for gpt-image-*/chatgpt-image-*, url otherwise, like OpenAI."""
    assert parse({"prompt": "x", "model": model}).response_format == expected


def test_response_format_override() -> None:
    """SHIM_DEFAULT_RESPONSE_FORMAT replaces the per-family default, never an explicit value."""
    assert parse({"prompt": "x", "model": "dall-e-2"}, response_format_override="b64_json").response_format == (
        "b64_json"
    )
    assert parse({"prompt": "x", "response_format": "url"}, response_format_override="b64_json").response_format == (
        "url"
    )


CONFIGURED = Router(
    {"reapi": Door.of(ReapiProvider), "reve2img": Door(("reve-2.0",), {})},
    {
        "reve-b64": Route("reve-b64", "reve2img", "reve-2.0", (("response_format", "b64_json"),)),
        "reve-url": Route("reve-url", "reve2img", "reve-2.0", (("response_format", "url"),)),
    },
)


@pytest.mark.parametrize(
    ("body", "override", "expected"),
    [
        pytest.param({"model": "reve-2.0"}, None, "url", id="plain-other-id"),
        pytest.param({"model": "reve-b64"}, None, "b64_json", id="configured-b64"),
        pytest.param({"model": "reve-b64"}, "url", "b64_json", id="configured-beats-global"),
        pytest.param({"model": "reve-b64", "response_format": "url"}, None, "url", id="request-beats-configured"),
        pytest.param({"model": "reve-url", "output_format": "png"}, None, "url", id="configured-beats-gpt-fields"),
        pytest.param({"model": "reve-2.0", "output_format": "png"}, None, "b64_json", id="output_format"),
        pytest.param({"model": "reve-2.0", "output_compression": 80}, None, "b64_json", id="output_compression"),
        pytest.param({"model": "reve-2.0", "background": "auto"}, None, "b64_json", id="background"),
        pytest.param({"model": "reve-2.0", "moderation": "low"}, None, "b64_json", id="moderation"),
        pytest.param({"model": "reve-2.0", "quality": "auto"}, None, "b64_json", id="gpt-quality"),
        pytest.param({"model": "reve-2.0", "size": "auto"}, None, "b64_json", id="gpt-size"),
        pytest.param({"model": "dall-e-3", "quality": "hd", "size": "1024x1024"}, None, "url", id="dalle-values"),
        pytest.param({"model": "reve-2.0", "background": None}, None, "url", id="explicit-null-is-absent"),
        pytest.param({"model": "reve-2.0", "output_format": "png"}, "url", "b64_json", id="gpt-fields-beat-global"),
        pytest.param({"model": "reve-2.0"}, "b64_json", "b64_json", id="global-still-works"),
    ],
)
def test_response_format_precedence(body, override, expected) -> None:
    """Without response_format: the configured model's default, else b64_json for a body written for GPT
    image models, else SHIM_DEFAULT_RESPONSE_FORMAT, else OpenAI's default for the id."""
    job = parse_image_request(
        {"prompt": "x", **body},
        operation="generate",
        resolve=CONFIGURED.resolve,
        default_model="gpt-image-2",
        response_format_override=override,
    )
    assert job.response_format == expected


@pytest.mark.parametrize("given", ["hd", "standard", "low", "auto", "xhigh"])
def test_quality_is_kept_as_given(given) -> None:
    """The wire keeps OpenAI's quality word (lowercased): which tier it means is each upstream's to say."""
    assert parse({"prompt": "x", "quality": given.upper()}).quality == given


def test_dalle3_defaults_to_standard_quality() -> None:
    """dall-e-3 without quality behaves as OpenAI's standard (medium upstream), not the upstream's costly auto."""
    assert parse({"prompt": "x", "model": "dall-e-3"}).quality == "standard"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({}, "prompt", id="missing-prompt"),
        pytest.param({"prompt": ""}, "prompt", id="empty-prompt"),
        pytest.param({"prompt": "x" * 32_001}, "prompt", id="longer-than-openai-allows"),
        pytest.param({"prompt": 5}, "prompt", id="prompt-type"),
        pytest.param({"prompt": "x", "n": 0}, "n", id="n-low"),
        pytest.param({"prompt": "x", "n": 11}, "n", id="n-high"),
        pytest.param({"prompt": "x", "n": True}, "n", id="n-bool"),
        pytest.param({"prompt": "x", "n": "2"}, "n", id="n-string"),
        pytest.param({"prompt": "x", "n": 1.5}, "n", id="n-float"),
        pytest.param({"prompt": "x", "size": "1000x1000"}, "size", id="size-not-16"),
        pytest.param({"prompt": "x", "size": "4096x4096"}, "size", id="size-too-big"),
        pytest.param({"prompt": "x", "size": "1024x3840"}, "size", id="size-ratio"),
        pytest.param({"prompt": "x", "size": "big"}, "size", id="size-word"),
        pytest.param({"prompt": "x", "size": 1024}, "size", id="size-type"),
        pytest.param({"prompt": "x", "quality": "ultra"}, "quality", id="quality"),
        pytest.param({"prompt": "x", "response_format": "png"}, "response_format", id="response-format"),
        pytest.param({"prompt": "x", "output_format": "gif"}, "output_format", id="output-format"),
        pytest.param({"prompt": "x", "output_compression": 101}, "output_compression", id="compression"),
        pytest.param({"prompt": "x", "background": "green"}, "background", id="background"),
        pytest.param({"prompt": "x", "moderation": "none"}, "moderation", id="moderation"),
        pytest.param({"prompt": "x", "style": "cubist"}, "style", id="style"),
        pytest.param({"prompt": "x", "stream": "yes"}, "stream", id="stream-type"),
        pytest.param({"prompt": "x", "resolution": "8k"}, "resolution", id="resolution"),
        pytest.param({"prompt": "x", "image_urls": ["data:image/png;base64,AAAA"]}, "image_urls", id="data-uri"),
        pytest.param({"prompt": "x", "image_urls": ["https://a"] * 17}, "image_urls", id="too-many-urls"),
        pytest.param({"prompt": "x", "user": ["u"]}, "user", id="user-type"),
    ],
)
def test_invalid_input_names_the_field(body, param) -> None:
    """Every invalid field is a 400 invalid_request_error whose param names it."""
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(body)
    status, rendered, _ = render_error(caught.value, "req_x")
    assert status == 400
    assert rendered["error"]["param"] == param
    assert rendered["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "size", ["auto", "1024x1024", "1792x1024", "256x256", "16:9", "9:21", "2048x1152", "3840x2160"]
)
def test_valid_sizes(size) -> None:
    """auto, classic sizes, 16-aligned WxH within 1:3..3:1, and the reAPI ratios are accepted."""
    assert parse({"prompt": "x", "size": size}).size == size


def test_unknown_model_is_404() -> None:
    """An unknown model is 404 model_not_found naming the model."""
    with pytest.raises(errors.ModelNotFound) as caught:
        parse({"prompt": "x", "model": "dall-e-9"})
    status, body, _ = render_error(caught.value, "r")
    assert status == 404 and body["error"]["code"] == "model_not_found" and "dall-e-9" in body["error"]["message"]


def test_not_an_object() -> None:
    """A JSON array body is a 400, not a crash."""
    with pytest.raises(errors.InvalidRequest):
        parse([1, 2])


def test_render_error_retry_headers() -> None:
    """Retry advice travels as x-should-retry and Retry-After headers; the request id is always there."""
    status, body, headers = render_error(errors.InsufficientQuota("no credits"), "req_1")
    assert status == 429 and headers["x-should-retry"] == "false" and headers["x-request-id"] == "req_1"
    status, _, headers = render_error(errors.RetryLater("later", retry_after=0.5), "req_2")
    assert status == 503 and headers["retry-after"] == "1" and headers["retry-after-ms"] == "500"
    assert headers["x-should-retry"] == "true"
