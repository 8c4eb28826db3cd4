"""Routing: public model ids to Routes (built-in aliases, provider ids, SHIM_CONFIG names), the config file
failing at start-up, and the reve2img codec those routes lead to (pure functions, no I/O)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shim import errors
from shim.app import create_app
from shim.config import ConfigurationError, Settings
from shim.providers import builtin_providers
from shim.providers import reve2img_codec as codec
from shim.routing import Door, Router
from shim.routing_config import load_config
from shim.types import ImageSpec, Route, Submission, Task

DOORS = {name: Door.of(factory) for name, factory in builtin_providers().items()}
#: The doors with SHIM_PASSTHROUGH off: ids outside the catalogs are unknown.
CLOSED = {name: Door.of(factory, passthrough=False) for name, factory in builtin_providers().items()}
CATALOGS = {name: door.models for name, door in DOORS.items()}
OFFICIAL = "gpt-image-2-official"


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "shim.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


# --- Router ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param("dall-e-2", Route("dall-e-2", "reapi", "gpt-image-2"), id="dall-e-2"),
        pytest.param("dall-e-3", Route("dall-e-3", "reapi", OFFICIAL, (("quality", "standard"),)), id="dall-e-3"),
        pytest.param("gpt-image-1", Route("gpt-image-1", "reapi", OFFICIAL), id="gpt-image-1"),
        pytest.param("gpt-image-1-mini", Route("gpt-image-1-mini", "reapi", OFFICIAL), id="gpt-image-1-mini"),
        pytest.param("gpt-image-1.5", Route("gpt-image-1.5", "reapi", OFFICIAL), id="gpt-image-1.5"),
        pytest.param(
            "chatgpt-image-latest",
            Route("chatgpt-image-latest", "reapi", OFFICIAL),
            id="chatgpt-image-latest",
        ),
        pytest.param("gpt-image-2.1-2026-01-01", Route("gpt-image-2.1-2026-01-01", "reapi", OFFICIAL), id="dated-2.x"),
        pytest.param("gpt-image-2.5", Route("gpt-image-2.5", "reapi", OFFICIAL), id="undated-2.x"),
        pytest.param("gpt-image-1.5-2025-12-16", Route("gpt-image-1.5-2025-12-16", "reapi", OFFICIAL), id="dated-1.5"),
        pytest.param("gpt-image-2-2026-04-21", Route("gpt-image-2-2026-04-21", "reapi", "gpt-image-2"), id="dated-2"),
        pytest.param(
            "dall-e-3-2025-01-01",
            Route("dall-e-3-2025-01-01", "reapi", OFFICIAL, (("quality", "standard"),)),
            id="dated-dall-e-3",
        ),
        pytest.param(
            "gpt-image-1-mini-2025-10-06", Route("gpt-image-1-mini-2025-10-06", "reapi", OFFICIAL), id="dated-mini"
        ),
    ],
)
def test_builtin_aliases(model, expected) -> None:
    """OpenAI's image ids route to the reAPI channel the alias table names, with its defaults."""
    assert Router(DOORS, {}).resolve(model) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param("reapi/gpt-image-2", Route("reapi/gpt-image-2", "reapi", "gpt-image-2"), id="reapi-prefixed"),
        pytest.param("reapi/" + OFFICIAL, Route("reapi/" + OFFICIAL, "reapi", OFFICIAL), id="reapi-official"),
        pytest.param("gpt-image-2", Route("gpt-image-2", "reapi", "gpt-image-2"), id="reapi-bare"),
        pytest.param("reve2img/reve-2.0", Route("reve2img/reve-2.0", "reve2img", "reve-2.0"), id="reve-prefixed"),
        pytest.param("reve2img/flux-2", Route("reve2img/flux-2", "reve2img", "flux-2"), id="flux-prefixed"),
        pytest.param("seedream-4.0", Route("seedream-4.0", "reve2img", "seedream-4.0"), id="seedream-bare"),
        pytest.param("reve-2.0-fast", Route("reve-2.0-fast", "reve2img", "reve-2.0-fast"), id="reve-fast-bare"),
    ],
)
def test_provider_model_ids(model, expected) -> None:
    """Every upstream model is reachable as provider/model and as its bare id."""
    assert Router(DOORS, {}).resolve(model) == expected


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("imagen-99", id="unknown-bare"),
        pytest.param("reve2img/gpt-image-2", id="model-of-another-provider"),
        pytest.param("midjourney/flux-2", id="unknown-provider"),
        pytest.param("reve2img/", id="empty-model"),
        pytest.param("", id="empty"),
        pytest.param("gpt-image-2.1-", id="dangling-suffix"),
        pytest.param("dall-e-3/x", id="alias-as-provider"),
        pytest.param("gpt-image-9-2025-01-01", id="dated-unknown-base"),
        pytest.param("flux-2-2025-01-01", id="dated-non-openai-id"),
        pytest.param("gpt-image-1-2025-1-1", id="not-a-date"),
    ],
)
def test_unknown_model(model) -> None:
    """With pass-through off, an id that names no route is ModelNotFound naming the model parameter."""
    with pytest.raises(errors.ModelNotFound) as caught:
        Router(CLOSED, {}).resolve(model)
    assert caught.value.param == "model" and caught.value.status == 404


@pytest.mark.parametrize("model", ["dall-e-2", "gpt-image-1", "gpt-image-2.1-2026-01-01"])
def test_alias_of_absent_provider(model) -> None:
    """Without the reapi provider, its aliases are unknown models rather than routes to nowhere."""
    router = Router({"reve2img": CLOSED["reve2img"]}, {})
    with pytest.raises(errors.ModelNotFound):
        router.resolve(model)
    assert model not in dict(router.ids())


def test_masked_dated_dall_e_2_routes_like_masked_dall_e_2() -> None:
    """A dated dall-e-2 with a mask goes where a masked dall-e-2 goes: the channel that takes masks."""
    router = Router(DOORS, {})
    assert router.resolve("dall-e-2-2024-01-01", mask=True).upstream_model == OFFICIAL
    assert router.resolve("dall-e-2-2024-01-01").upstream_model == "gpt-image-2"


def test_configured_name_wins_and_is_listed() -> None:
    """A configured name resolves to its Route, even over a built-in alias, and is listed first."""
    house = Route("house-style", "reve2img", "flux-2", (("size", "16:9"),))
    dalle = Route("dall-e-3", "reve2img", "reve-2.0")
    router = Router(DOORS, {"house-style": house, "dall-e-3": dalle})
    assert router.resolve("house-style") == house and router.resolve("dall-e-3") == dalle
    ids = router.ids()
    assert ids[:2] == [("house-style", "reve2img"), ("dall-e-3", "reve2img")]
    assert len(ids) == len(dict(ids))


def test_ids_lists_bare_and_prefixed_models() -> None:
    """ids() names every upstream model prefixed with its provider as owner, and bare with the first provider
    in registry order that offers it as owner."""
    owners = dict(Router(DOORS, {}).ids())
    for provider, models in CATALOGS.items():
        for model in models:
            first = next(p for p, offered in CATALOGS.items() if model in offered)
            assert owners[model] == first and owners[f"{provider}/{model}"] == provider


# --- SHIM_CONFIG ---------------------------------------------------------------------------------------


def test_load_config_builds_routes(tmp_path) -> None:
    """Each [models."name"] table becomes a Route with its defaults, top-level and nested alike."""
    path = write(
        tmp_path,
        """
[models."house-style"]
provider = "reve2img"
model = "flux-2"
size = "16:9"

[models.crisp]
provider = "reapi"
model = "gpt-image-2-official"
quality = "high"
defaults = { background = "transparent", output_format = "webp" }

[models."reve-2.0"]
provider = "reve2img"
model = "reve-2.0"
response_format = "b64_json"
""",
    )
    assert load_config(path, DOORS).routes == {
        "house-style": Route("house-style", "reve2img", "flux-2", (("size", "16:9"),)),
        "crisp": Route(
            "crisp",
            "reapi",
            OFFICIAL,
            (("background", "transparent"), ("output_format", "webp"), ("quality", "high")),
        ),
        "reve-2.0": Route("reve-2.0", "reve2img", "reve-2.0", (("response_format", "b64_json"),)),
    }


GOOD = 'provider = "reve2img"\nmodel = "flux-2"\n'


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param('[models."bad"]\nprovider = "midjourney"\nmodel = "flux-2"\n', "provider", id="unknown-provider"),
        pytest.param('[models."bad"]\nmodel = "flux-2"\n', "provider", id="missing-provider"),
        pytest.param('[models."bad"]\nprovider = ["reve2img"]\nmodel = "flux-2"\n', "provider", id="provider-array"),
        pytest.param('[models."bad"]\nprovider = "reve2img"\nmodel = "gpt-image-2"\n', "model", id="unknown-model"),
        pytest.param('[models."bad"]\nprovider = "reve2img"\n', "model", id="missing-model"),
        pytest.param(f'[models."bad"]\n{GOOD}style = "vivid"\n', "unknown parameter 'style'", id="unknown-param"),
        pytest.param(f'[models."bad"]\n{GOOD}size = "1000x1000"\n', "multiples of 16", id="bad-size"),
        pytest.param(f'[models."bad"]\n{GOOD}size = "huge"\n', "size", id="size-word"),
        pytest.param(f'[models."bad"]\n{GOOD}size = 1024\n', "size must be a string", id="size-number"),
        pytest.param(f'[models."bad"]\n{GOOD}quality = "ultra"\n', "quality", id="bad-quality"),
        pytest.param(f'[models."bad"]\n{GOOD}output_format = "gif"\n', "output_format", id="bad-format"),
        pytest.param(f'[models."bad"]\n{GOOD}background = "none"\n', "background", id="bad-background"),
        pytest.param(f'[models."bad"]\n{GOOD}response_format = "png"\n', "response_format", id="bad-response-format"),
        pytest.param(f'[models."bad"]\n{GOOD}defaults = "hd"\n', "defaults", id="defaults-not-table"),
        pytest.param(f'[models."bad"]\n{GOOD}defaults = 3\n', "defaults", id="defaults-number"),
        pytest.param(f'[models."bad"]\n{GOOD}[models."bad".defaults]\nseed = "1"\n', "seed", id="nested-unknown"),
        pytest.param('[models]\nbad = "flux-2"\n', "must be a table", id="entry-not-table"),
        pytest.param(f'[models."bad/name"]\n{GOOD}', "'/'", id="slash-in-name"),
    ],
)
def test_bad_entry_names_it(tmp_path, text, needle) -> None:
    """A bad model entry is a ConfigurationError that names the entry and what is wrong with it."""
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), DOORS)
    message = caught.value.message
    assert message.startswith('SHIM_CONFIG: [models."bad') and needle in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param('[models."x"\nprovider = "reve2img"\n', "not valid TOML", id="bad-toml"),
        pytest.param(b'[models."h\xe9"]\nprovider = "reve2img"\n', "not valid TOML", id="not-utf8"),
        pytest.param("models = 3\n", "[models] in", id="models-not-table"),
        pytest.param('[aliases."x"]\nprovider = "reve2img"\n', "unknown top-level key(s) ['aliases']", id="top-key"),
    ],
)
def test_bad_file(tmp_path, text, needle) -> None:
    """A file that is not a models table is a ConfigurationError naming the file."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path, DOORS)
    assert needle in caught.value.message and repr(path) in caught.value.message


def test_missing_file(tmp_path) -> None:
    """An unreadable path is a ConfigurationError naming it."""
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigurationError, match="cannot read") as caught:
        load_config(path, DOORS)
    assert repr(path) in caught.value.message


def test_bad_config_fails_create_app(tmp_path) -> None:
    """create_app raises on a bad SHIM_CONFIG file, before any request can be served."""
    path = write(tmp_path, '[models."house-style"]\nprovider = "reve2img"\nmodel = "flux-3"\n')
    with pytest.raises(ConfigurationError, match='models."house-style"'):
        create_app(Settings(config_file=path))


# --- the reve2img codec --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("auto", None, id="auto"),
        pytest.param("1024x1024", "1:1", id="square"),
        pytest.param("256x256", "1:1", id="small-square"),
        pytest.param("1792x1024", "16:9", id="dalle3-wide"),
        pytest.param("1024x1792", "9:16", id="dalle3-tall"),
        pytest.param("1536x1024", "3:2", id="landscape"),
        pytest.param("1024x1536", "2:3", id="portrait"),
        pytest.param("2048x1536", "4:3", id="four-three"),
        pytest.param("1536x2048", "3:4", id="three-four"),
        pytest.param("3840x1280", "21:9", id="widest-wide"),
        pytest.param("1280x1024", "5:4", id="five-four-pixels"),
        pytest.param("16:9", "16:9", id="ratio"),
        pytest.param("21:9", "21:9", id="ratio-21:9-as-given"),
        pytest.param("5:4", "5:4", id="ratio-5:4-as-given"),
        pytest.param("1:2", "1:2", id="ratio-1:2-as-given"),
    ],
)
def test_aspect_ratio(size, ratio) -> None:
    """A ratio goes to reve2img as given, WxH as its nearest ratio; none is sent for auto or absent (the
    reference lists no aspect ratios, so none is replaced by a guess of what the upstream takes)."""
    assert codec.aspect_ratio(size) == ratio


def job(model: str = "flux-2", **fields) -> ImageSpec:
    return ImageSpec(
        operation="generate", route=Route(f"reve2img/{model}", "reve2img", model), prompt="a cat", **fields
    )


FIVE = tuple(f"https://x.test/{i}.png" for i in range(5))


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param({}, {"model": "flux-2", "prompt": "a cat"}, id="default"),
        pytest.param({"size": "1792x1024"}, {"model": "flux-2", "prompt": "a cat", "aspect_ratio": "16:9"}, id="wide"),
        pytest.param(
            {"size": "2:3", "image_urls": ("https://x.test/a.png",)},
            {
                "model": "flux-2",
                "prompt": "a cat",
                "aspect_ratio": "2:3",
                "image_urls": ["https://x.test/a.png"],
            },
            id="reference-image",
        ),
        pytest.param(
            {"image_urls": FIVE}, {"model": "flux-2", "prompt": "a cat", "image_urls": list(FIVE)}, id="five-images"
        ),
    ],
)
def test_plan_one_task_per_image(fields, body) -> None:
    """plan makes n identical one-image submissions with the mapped aspect ratio (pixels undocumented, so
    the size is only reported when read from a downloaded image)."""
    submission = Submission(body, 1, "reve2img/flux-2", None, None, "opaque")
    assert codec.plan(job(n=3, **fields)) == [submission] * 3


def test_plan_takes_a_long_prompt() -> None:
    """The reference sets no prompt length: a 10,000-character prompt goes through as given."""
    (submission,) = codec.plan(dataclasses.replace(job(), prompt="p" * 10_000))
    assert submission.body["prompt"] == "p" * 10_000


def test_plan_rejects_a_mask() -> None:
    """A mask is an InvalidRequest naming it, before any upstream call (reve2img has no mask field)."""
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.plan(job(mask_url="https://x.test/m.png"))
    assert caught.value.param == "mask"


@pytest.mark.parametrize(
    ("detail", "param"),
    [
        pytest.param("aspect_ratio '21:9' is not one of 1:1, 16:9", "size", id="aspect-ratio"),
        pytest.param("image_urls accepts at most 4 URLs.", "image", id="image-urls"),
        pytest.param("prompt must be a string.", "prompt", id="prompt"),
        pytest.param("Invalid JSON, or a parameter is invalid / missing.", None, id="unnamed"),
    ],
)
def test_invalid_parameter_names_the_field(detail, param) -> None:
    """An upstream INVALID_PARAMETER is a 400 whose param is the OpenAI field its detail names."""
    payload = {"code": 400, "message": "INVALID_PARAMETER", "detail": detail}
    error = codec.map_error(400, payload, 1.0, submitting=True)
    assert type(error) is errors.InvalidRequest and error.param == param and detail in error.message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"task_id": "abc123", "status": "IN_PROGRESS"}, Task("abc123", "processing"), id="in-progress"),
        pytest.param(
            {
                "task_id": "abc123",
                "status": "SUCCESS",
                "consumed_credits": 12,
                "response": {"resultUrls": ["https://cdn.reve2img.com/a.png"]},
            },
            Task("abc123", "completed", ("https://cdn.reve2img.com/a.png",), credits=12),
            id="success",
        ),
        pytest.param(
            {
                "task_id": "abc123",
                "status": "FAILED",
                "error": {"code": "TIMEOUT", "message": "The task timed out."},
            },
            Task("abc123", "failed", error_code="TIMEOUT", error_message="The task timed out."),
            id="failed-name-in-code",
        ),
        pytest.param(
            {"task_id": "abc123", "status": "FAILED", "error": {"code": 504, "message": "TIMEOUT"}},
            Task("abc123", "failed", error_code="TIMEOUT", error_message="code 504"),
            id="failed-status-in-code-name-in-message",
        ),
        pytest.param(
            {
                "task_id": "abc123",
                "status": "SUCCESS",
                "consumed_credits": True,
                "response": {"resultUrls": ["https://c/u.png"]},
            },
            Task("abc123", "completed", ("https://c/u.png",)),
            id="credits-not-a-number",
        ),
    ],
)
def test_parse_task(data, expected) -> None:
    """A generate or status `data` object becomes the whole provider-neutral Task."""
    assert codec.parse_task(data, "abc123") == expected


def test_success_without_urls_is_polled_again() -> None:
    """SUCCESS with no usable URL is re-polled, and given up (without a refund claim) only if it persists."""
    with pytest.raises(errors.UpstreamTransient) as caught:
        codec.parse_task({"task_id": "abc123", "status": "SUCCESS", "response": {"resultUrls": []}}, "abc123")
    assert caught.value.final is not None and "not charged" not in caught.value.final.message


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        pytest.param("GENERATION_FAILED", errors.TaskFailed, 502, id="generation-failed"),
        pytest.param("TIMEOUT", errors.TaskFailed, 504, id="timeout"),
        pytest.param("SERVICE_UNAVAILABLE", errors.TaskFailed, 503, id="unavailable"),
        pytest.param("CONTENT_POLICY_VIOLATION", errors.ContentPolicyViolation, 400, id="moderated-output"),
        pytest.param(None, errors.TaskFailed, 502, id="no-code"),
    ],
)
def test_task_failure(code, error, status) -> None:
    """A FAILED task becomes the client's error with the status of its code, naming the task."""
    failure = codec.task_failure(Task("t-1", "failed", error_code=code, error_message="m"))
    assert type(failure) is error and failure.status == status and "t-1" in failure.message


@pytest.mark.parametrize(
    ("error", "name", "status", "kind"),
    [
        pytest.param({"code": "TIMEOUT", "message": "timed out"}, "TIMEOUT", 504, errors.TaskFailed, id="name-in-code"),
        pytest.param({"code": 504, "message": "TIMEOUT"}, "TIMEOUT", 504, errors.TaskFailed, id="envelope-504"),
        pytest.param(
            {"code": 503, "message": "SERVICE_UNAVAILABLE"}, "SERVICE_UNAVAILABLE", 503, errors.TaskFailed, id="env-503"
        ),
        pytest.param(
            {"code": 400, "message": "CONTENT_POLICY_VIOLATION"},
            "CONTENT_POLICY_VIOLATION",
            400,
            errors.ContentPolicyViolation,
            id="envelope-moderated",
        ),
        pytest.param(
            {"code": 500, "message": "GENERATION_FAILED"}, "GENERATION_FAILED", 502, errors.TaskFailed, id="env-500"
        ),
        pytest.param({"code": 504}, "TIMEOUT", 504, errors.TaskFailed, id="status-only-504"),
        pytest.param({"code": "503"}, "SERVICE_UNAVAILABLE", 503, errors.TaskFailed, id="status-only-as-text"),
        pytest.param(
            {"code": 400, "message": "Output rejected by content moderation"},
            "CONTENT_POLICY_VIOLATION",
            400,
            errors.ContentPolicyViolation,
            id="status-and-moderation-words",
        ),
        pytest.param({"message": "the GPU caught fire"}, "GENERATION_FAILED", 502, errors.TaskFailed, id="unknown"),
        pytest.param({}, "GENERATION_FAILED", 502, errors.TaskFailed, id="no-error-object"),
        pytest.param({"code": "timeout", "message": 7}, "TIMEOUT", 504, errors.TaskFailed, id="lower-case-name"),
    ],
)
def test_failed_task_under_every_reading(error, name, status, kind) -> None:
    """A FAILED task's error names the same failure whichever field carries the NAME or only a status."""
    task = codec.parse_task({"task_id": "t-2", "status": "FAILED", "error": error}, "t-2")
    assert task.error_code == name
    failure = codec.task_failure(task)
    assert type(failure) is kind and failure.status == status and "t-2" in failure.message and name in failure.message


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"code": 504, "message": "TIMEOUT", "detail": "slow"}, id="name-in-message"),
        pytest.param({"code": "TIMEOUT", "message": "slow"}, id="name-in-code"),
    ],
)
def test_map_error_reads_the_name_from_either_field(payload) -> None:
    """An error envelope's NAME is found in `message` (the reference) or in `code`."""
    assert type(codec.map_error(504, payload, 1.0, submitting=True)) is errors.SubmitOutcomeUnknown


ROWS = [  # the reference's error table: (HTTP, message)
    (400, "INVALID_PROMPT"),
    (400, "INVALID_MODEL"),
    (400, "INVALID_PARAMETER"),
    (400, "CONTENT_POLICY_VIOLATION"),
    (401, "INVALID_API_KEY"),
    (402, "INSUFFICIENT_CREDITS"),
    (404, "TASK_NOT_FOUND"),
    (429, "RATE_LIMITED"),
    (429, "TOO_MANY_TASKS"),
    (500, "GENERATION_FAILED"),
    (503, "SERVICE_UNAVAILABLE"),
    (504, "TIMEOUT"),
]
#: message -> (ours on submit, ours on poll, rendered status or None for a signal, param)
EXPECTED: dict[str, tuple[type[Exception], type[Exception], int | None, str | None]] = {
    "INVALID_PROMPT": (errors.InvalidRequest, errors.InvalidRequest, 400, "prompt"),
    "INVALID_MODEL": (errors.ModelNotFound, errors.ModelNotFound, 404, "model"),
    "INVALID_PARAMETER": (errors.InvalidRequest, errors.InvalidRequest, 400, None),
    "CONTENT_POLICY_VIOLATION": (errors.ContentPolicyViolation, errors.ContentPolicyViolation, 400, None),
    "INVALID_API_KEY": (errors.AuthenticationFailed, errors.AuthenticationFailed, 401, None),
    "INSUFFICIENT_CREDITS": (errors.InsufficientQuota, errors.InsufficientQuota, 429, None),
    "TASK_NOT_FOUND": (errors.UpstreamError, errors.UpstreamError, 502, None),
    "RATE_LIMITED": (errors.UpstreamRateLimited, errors.UpstreamRateLimited, None, None),
    "TOO_MANY_TASKS": (errors.UpstreamRateLimited, errors.UpstreamRateLimited, None, None),
    "GENERATION_FAILED": (errors.UpstreamError, errors.UpstreamTransient, 502, None),
    "SERVICE_UNAVAILABLE": (errors.UpstreamUnavailable, errors.UpstreamTransient, 503, None),
    "TIMEOUT": (errors.SubmitOutcomeUnknown, errors.UpstreamTransient, 502, None),
}


@pytest.mark.parametrize("submitting", [pytest.param(True, id="submit"), pytest.param(False, id="poll")])
@pytest.mark.parametrize(("status", "name"), [pytest.param(s, n, id=n) for s, n in ROWS])
def test_map_error_table(status, name, submitting) -> None:
    """Every row of the reference's error table maps to our error; 5xx on a poll is safe to repeat."""
    payload = {"code": status, "message": name, "detail": "from the table"}
    error = codec.map_error(status, payload, 7.0, submitting=submitting)
    on_submit, on_poll, rendered, param = EXPECTED[name]
    assert type(error) is (on_submit if submitting else on_poll)
    if isinstance(error, errors.UpstreamRateLimited):
        assert (error.retry_after, error.reason) == (7.0, name.lower())
    elif isinstance(error, errors.ShimError):
        assert (error.status, error.param) == (rendered, param)
        assert name in error.message and "from the table" in error.message
    else:
        assert name in str(error)


@pytest.mark.parametrize(
    ("status", "payload", "submitting", "error"),
    [
        pytest.param(429, None, True, errors.UpstreamRateLimited, id="bare-429"),
        pytest.param(403, "<html>", False, errors.AuthenticationFailed, id="bare-403"),
        pytest.param(402, {}, True, errors.InsufficientQuota, id="bare-402"),
        pytest.param(400, {"message": "SOMETHING_NEW"}, True, errors.InvalidRequest, id="unknown-400"),
        pytest.param(502, "<html>bad gateway</html>", True, errors.UpstreamTransient, id="proxy-502-submit"),
        pytest.param(503, None, True, errors.UpstreamUnavailable, id="bare-503-submit"),
        pytest.param(504, None, True, errors.SubmitOutcomeUnknown, id="bare-504-submit"),
        pytest.param(500, None, False, errors.UpstreamTransient, id="bare-500-poll"),
    ],
)
def test_map_error_by_status(status, payload, submitting, error) -> None:
    """An answer without a known message name is mapped by its HTTP status."""
    assert type(codec.map_error(status, payload, 1.0, submitting=submitting)) is error
