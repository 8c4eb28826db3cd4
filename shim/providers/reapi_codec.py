"""reAPI's wire format, pure: OpenAI-side jobs to submit bodies, task JSON to Task, error JSON to our errors,
and the public ids reAPI answers for (OpenAI's image model names). Video jobs are planned by `reapi_video`.

Tables come from the gpt-image-2-official document (sizes, 4K rule, batches) and reAPI's notes (codes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .. import errors
from ..sizes import COMMON_RATIOS, nearest_ratio, parse_pixels
from ..types import ImageSpec, LatencyPrior, MediaKind, Spec, Submission, Task
from ..untrusted import printable
from . import reapi_video
from .base import SYNCHRONOUS_PRIOR, Alias, ModelSpec, spec_of, submitted_id, url_strings

OFFICIAL = "gpt-image-2-official"
#: The rest of the 13 image models in the navigation of the gpt-image-2-official page. Our documents name
#: them and nothing more, so they get the conservative profile of the cheap channel (ModelSpec's defaults:
#: one image per task, ratio sizes with tiers, up to 16 image_urls, no quality/mask/background/moderation).
NAVIGATION_MODELS = (
    "midjourney-v8",
    "flux-2",
    "z-image",
    "qwen-image-2",
    "midjourney-v7",
    "wan-2-7-image",
    "imagen-4-0",
)
CATALOG: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(OFFICIAL, max_batch=4, quality=True, background=True, moderation=True, mask=True),
        ModelSpec("gpt-image-2"),
        ModelSpec("gemini-2.5-flash-image-preview"),
        ModelSpec("gemini-3-pro-image-preview"),
        ModelSpec("gemini-3.1-flash-image-preview"),
        ModelSpec("doubao-seedream-5-0-lite"),
        *(ModelSpec(model) for model in NAVIGATION_MODELS),
    )
}  # fmt: skip

#: OpenAI's image ids -> what they mean on reAPI. dall-e-2 is the cheap channel, but a masked edit of it
#: (classic inpainting) goes to the channel that takes masks.
ALIASES: dict[str, Alias] = {
    "dall-e-2": Alias("gpt-image-2", masked_model=OFFICIAL),
    "dall-e-3": Alias(OFFICIAL, (("quality", "standard"),)),
    "gpt-image-1": Alias(OFFICIAL),
    "gpt-image-1-mini": Alias(OFFICIAL),
    "gpt-image-1.5": Alias(OFFICIAL),
    "chatgpt-image-latest": Alias(OFFICIAL),
}
#: gpt-image-2.x-* (dated or suffixed variants of OpenAI's newest id) go to the official channel too.
ALIAS_PATTERNS = ((re.compile(r"^gpt-image-2\.[0-9]+(-[a-z0-9][a-z0-9.-]*)?$"), Alias(OFFICIAL)),)

#: "size ... One of these 14 values (or auto ...)" (gpt-image-2-official): auto and the 13 common ratios.
RATIOS: tuple[str, ...] = COMMON_RATIOS
WIDESCREEN = ("16:9", "9:16", "2:1", "1:2", "21:9", "9:21")
TIERS = ("1k", "2k", "4k")
_LANDSCAPE: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"1k": (1024, 1024), "2k": (2048, 2048)},
    "3:2": {"1k": (1536, 1024), "2k": (2048, 1360)},
    "4:3": {"1k": (1024, 768), "2k": (2048, 1536)},
    "5:4": {"1k": (1280, 1024), "2k": (2560, 2048)},
    "16:9": {"1k": (1536, 864), "2k": (2048, 1152), "4k": (3840, 2160)},
    "2:1": {"1k": (2048, 1024), "2k": (2688, 1344), "4k": (3840, 1920)},
    "21:9": {"1k": (2016, 864), "2k": (2688, 1152), "4k": (3840, 1648)},
}


def _portrait(ratio: str) -> str:
    w, h = ratio.split(":")
    return f"{h}:{w}"


#: ratio -> tier -> (width, height), the document's size table with portrait cells swapped.
PIXELS: dict[str, dict[str, tuple[int, int]]] = {
    **_LANDSCAPE,
    **{_portrait(r): {t: (h, w) for t, (w, h) in cells.items()} for r, cells in _LANDSCAPE.items() if r != "1:1"},
}

#: Documented end-to-end latencies (seconds) by quality x resolution; the scheduler learns the rest.
_PRIOR_TABLE = {
    ("low", "1k"): (20, 40), ("medium", "1k"): (30, 60), ("high", "1k"): (40, 80),
    ("low", "2k"): (30, 60), ("medium", "2k"): (45, 90), ("high", "2k"): (60, 120),
    ("low", "4k"): (60, 120), ("medium", "4k"): (90, 150), ("high", "4k"): (120, 180),
}  # fmt: skip


def priors(catalog: Mapping[str, ModelSpec]) -> dict[str, LatencyPrior]:
    """The latency priors of a catalog's models: a declared `latency` (or near zero for a synchronous model)
    for every class of the model, else the documented table (cheap channels read its low cells). An id
    outside the catalog (pass-through) has none: it borrows from its relatives, else the whole range."""
    found: dict[str, LatencyPrior] = {}
    for model, spec in catalog.items():
        declared = spec.latency or (SYNCHRONOUS_PRIOR if spec.synchronous else None)
        if declared is not None:
            found[f"reapi/{model}"] = declared
            continue
        for (quality, tier), (low, high) in _PRIOR_TABLE.items():
            found[f"reapi/{model}/{quality}/{tier}"] = LatencyPrior(low, high)
    return {**found, **reapi_video.PRIORS}


PRIORS = priors(CATALOG)


def latency_class(
    model: str, quality: str | None, resolution: str | None, catalog: Mapping[str, ModelSpec] = CATALOG
) -> str:
    spec = catalog.get(model)
    tier = (resolution or "1k").lower()
    if spec is None or not spec.quality:
        return f"reapi/{model}/low/{tier}"  # the cheap channels run like low quality
    q = quality if quality in ("low", "medium", "high") else "high"  # auto runs at high
    return f"reapi/{model}/{q}/{tier}"


def _allowed_tiers(ratio: str) -> tuple[str, ...]:
    return TIERS if ratio in WIDESCREEN else TIERS[:2]


def _require_4k_widescreen(ratio: str | None, resolution: str | None) -> None:
    if resolution == "4k" and ratio not in WIDESCREEN:
        raise errors.InvalidRequest(
            "Invalid value for 'resolution': 4k requires an explicit size with one of the ratios "
            f"{', '.join(WIDESCREEN)} (e.g. size '16:9' or '3840x2160').",
            param="resolution",
            code="invalid_value",
        )


def map_size(size: str | None, resolution: str | None) -> tuple[str | None, str | None, str]:
    """OpenAI size (+ optional reAPI resolution) -> (upstream size, upstream resolution, reported size).

    WxH goes out as the nearest ratio with a tier, on every channel: the tier is the given resolution, else
    the smallest tier whose cell is not smaller than the request (4k only for the six widescreen ratios).
    The official channel also takes a pixel string, but the document says 4k "requires size to be one of
    16:9, 9:16, 2:1, 1:2, 21:9, or 9:21" and does not say how a pixel string and a resolution combine; a
    ratio with a tier is valid under every reading and names exactly the documented cell.
    """
    if size is None or size == "auto":
        _require_4k_widescreen(None, resolution)
        tier = resolution or "1k"
        return size, resolution, "auto" if size == "auto" else "x".join(map(str, PIXELS["1:1"][tier]))
    pixels = parse_pixels(size)
    if pixels is None:  # a ratio
        _require_4k_widescreen(size, resolution)
        tier = resolution or "1k"
        return size, resolution, "x".join(map(str, PIXELS[size][tier]))
    width, height = pixels
    ratio = nearest_ratio(width, height, RATIOS)
    if resolution is not None:
        _require_4k_widescreen(ratio, resolution)
        tier = resolution
    else:
        allowed = _allowed_tiers(ratio)
        fitting = [t for t in allowed if PIXELS[ratio][t][0] >= width and PIXELS[ratio][t][1] >= height]
        tier = fitting[0] if fitting else allowed[-1]
    cell = PIXELS[ratio][tier]
    return ratio, tier, "x".join(map(str, cell))


def wire_size(
    model: ModelSpec, size: str | None, resolution: str | None
) -> tuple[str | None, str | None, str | None, str]:
    """(upstream size, upstream resolution, reported size, tier) for `model`: `map_size`, except that a model
    declared to take pixels (`pixel_sizes`) gets a WxH as given, with no resolution and no reported size (its
    output pixels are not documented), unless the request names a resolution (how the two combine is not
    documented) or needs 4k (which "requires size to be one of" the six widescreen ratios)."""
    sent, tier, reported = map_size(size, resolution)
    if model.pixel_sizes and size is not None and parse_pixels(size) and resolution is None and tier != "4k":
        return size, None, None, tier or "1k"
    return sent, tier, reported, tier or "1k"


def _batches(n: int, max_batch: int) -> list[int]:
    full, rest = divmod(n, max_batch)
    return [max_batch] * full + ([rest] if rest else [])


def _unsupported(field: str, model: str, param: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(
        f"'{field}' is not supported by model '{model}'. Use gpt-image-2-official "
        "(or its alias gpt-image-1) for masks.",
        param=param,
        code="unsupported_parameter",
    )


#: "prompt — string, 1–4,000 characters" (gpt-image-2-official); applied to every reAPI channel.
MAX_PROMPT = 4000
#: OpenAI quality -> reAPI's tier: standard/hd are DALL-E 3's words; xhigh/max ask for the best there is.
QUALITY_TIERS = {"standard": "medium", "hd": "high", "xhigh": "high", "max": "high"}


def check(spec: Spec, catalog: Mapping[str, ModelSpec] = CATALOG) -> None:
    """What reAPI cannot take, refused before anything is stored or spent (an id outside `catalog`, passed
    through, is held to the conservative profile; a video goes to the video codec)."""
    if not isinstance(spec, ImageSpec):
        reapi_video.check(spec)
        return
    if spec.route.upstream_model in reapi_video.VIDEO_CATALOG:
        raise errors.InvalidRequest(
            f"Model '{spec.route.public_id}' makes videos: use POST /v1/videos.", param="model", code="invalid_value"
        )
    model = spec_of(catalog, spec.route.upstream_model)
    if len(spec.prompt) > MAX_PROMPT:
        raise errors.PromptTooLong(len(spec.prompt), MAX_PROMPT, spec.route.public_id)
    if spec.size is not None and ":" in spec.size and spec.size not in RATIOS:
        raise errors.InvalidRequest(
            f"Invalid value for 'size': {spec.size!r} is not a ratio model '{spec.route.public_id}' takes "
            f"({', '.join(RATIOS)}).",
            param="size",
            code="invalid_value",
        )
    if spec.mask_url and not model.mask:
        raise _unsupported("mask", spec.route.public_id, "mask")
    if len(spec.image_urls) > model.max_image_urls:
        raise errors.InvalidRequest(
            f"Model '{spec.route.public_id}' accepts at most {model.max_image_urls} input images.",
            param="image",
            code="invalid_value",
        )
    map_size(spec.size, spec.resolution)  # the 4K rule


def plan(spec: Spec, catalog: Mapping[str, ModelSpec] = CATALOG) -> list[Submission]:
    """The reAPI submissions for a job: batches of up to a model's max_batch (4 on the official channel), n
    tasks of one elsewhere; a video is one task."""
    if not isinstance(spec, ImageSpec):
        return reapi_video.plan(spec)
    check(spec, catalog)
    return _plan_images(spec, catalog)


def _plan_images(job: ImageSpec, catalog: Mapping[str, ModelSpec]) -> list[Submission]:
    model = job.route.upstream_model
    spec = spec_of(catalog, model)
    size, resolution, reported, size_tier = wire_size(spec, job.size, job.resolution)
    body: dict[str, Any] = {"model": model, "prompt": job.prompt}
    if size is not None:
        body["size"] = size
    if resolution is not None:
        body["resolution"] = resolution
    quality = None
    if spec.quality:
        tier = QUALITY_TIERS.get(job.quality, job.quality) if job.quality else None
        quality = tier or "auto"
        if tier:
            body["quality"] = tier
    if spec.background and job.background:
        body["background"] = job.background
    if spec.moderation and job.moderation:
        body["moderation"] = job.moderation
    if job.image_urls:
        body["image_urls"] = list(job.image_urls)
    if job.mask_url:
        body["mask_url"] = job.mask_url
    klass = latency_class(model, quality, size_tier, catalog)
    submissions = []
    for count in _batches(job.n, spec.max_batch):
        sub_body = dict(body, n=count) if spec.max_batch > 1 else body
        submissions.append(Submission(sub_body, count, klass, reported, quality, "opaque"))
    return submissions


#: Statuses the documents do not name but that plainly mean "still running".
_RUNNING = frozenset({"processing", "pending", "queued", "running", "in_progress"})


def parse_submitted(payload: Mapping[str, Any]) -> Task:
    """A submit's answer -> Task (SubmitOutcomeUnknown for an id we cannot keep)."""
    return parse_task(payload, submitted_id(payload.get("id")))


def parse_task(payload: Mapping[str, Any], task_id: str) -> Task:
    """A reAPI task envelope -> Task (named `task_id`, whatever id the answer carries).

    Documented statuses: processing, completed (output filled), failed (error filled, already refunded). An
    undocumented status is not a failure: with result URLs it is a completion (the images are paid for),
    without them the poll is repeated (UpstreamTransient). So is "completed" with no usable URL, until it
    has been said three times in a row.
    """
    raw_status = payload.get("status")
    media, urls, extras = _results(payload.get("output"))
    status = raw_status if isinstance(raw_status, str) else ""
    if status in _RUNNING or raw_status is None:
        return Task(task_id, "processing")
    if status == "failed":
        error = payload.get("error")
        error = error if isinstance(error, Mapping) else {}
        code, message = error.get("code"), error.get("message")
        return Task(
            task_id,
            "failed",
            error_code=None if code is None else printable(code, 40),
            error_message=None if message is None else printable(message, 500),
        )
    if urls:
        return Task(task_id, "completed", urls=urls, media=media, extras=extras)
    if status == "completed":
        raise errors.UpstreamTransient(
            "completed without result URLs",
            final=errors.UpstreamError(
                f"The upstream reports task {printable(task_id, 100)} completed but gives no usable result URL; "
                "it may have been charged: check the upstream dashboard."
            ),
        )
    raise errors.UpstreamTransient(f"unknown task status {printable(raw_status, 40)!r}")


def _results(output: object) -> tuple[MediaKind, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """N "`output` by media kind: images `image_urls: string[]`, videos `video_urls: string[]` (some video
    models add `last_frame_url`)": the kind, its usable URLs and the named extras."""
    if not isinstance(output, Mapping):
        return "image", (), ()
    videos = url_strings(output.get("video_urls"))
    if not videos:
        return "image", url_strings(output.get("image_urls")), ()
    last_frame = url_strings(output.get("last_frame_url"))[:1]
    return "video", videos, tuple(("last_frame_url", url) for url in last_frame)


def task_failure(task: Task) -> errors.ShimError:
    """The client-facing error for a task that ended failed (the upstream has already refunded it)."""
    code = task.error_code or "unknown"
    detail = f"upstream task {task.id} failed with reAPI code {code}: {task.error_message or 'no message'}"
    if "moderat" in (task.error_message or "").lower():
        return errors.ContentPolicyViolation(
            f"Your request was rejected by the upstream's safety system ({detail}). Credits were refunded."
        )
    status = 504 if code == "80002" else 502
    return errors.TaskFailed(
        f"{detail}. Credits were refunded.", status=status, task_id=task.id, upstream_code=task.error_code
    )


_PARAMS = (
    "prompt", "size", "resolution", "duration", "quality", "background", "moderation", "image_urls", "mask_url", "n",
)  # fmt: skip
#: The moderation code is not in our documents; 20010 is what the emulator uses (see README, limitations).
MODERATION_CODES = frozenset({20010})
#: Nor is the unknown-model code: 20004 is the emulator's; any 2xxxx (or bare 400) whose message says the
#: model is unknown or invalid counts too, whatever its code.
UNKNOWN_MODEL_CODES = frozenset({20004})
_UNKNOWN_MODEL = re.compile(
    r"\b(?:unknown|invalid|unsupported|unrecognized)\s+model\b"
    r"|\bmodel\b\W+(?:\S+\W+)?(?:is\s+)?(?:not\s+found|does\s+not\s+exist|not\s+supported|unknown|invalid)",
    re.IGNORECASE,
)


def unknown_model(code: int, message: str) -> bool:
    """Whether a validation error says the upstream does not know the model (see UNKNOWN_MODEL_CODES)."""
    return code in UNKNOWN_MODEL_CODES or _UNKNOWN_MODEL.search(message) is not None


def _param_of(message: str) -> str | None:
    lowered = message.lower()
    for name in _PARAMS:
        if name in lowered:
            return {"image_urls": "image", "mask_url": "mask"}.get(name, name)
    return None


def map_error(status: int, payload: object, retry_after: float) -> Exception:
    """An upstream error reply -> our error. Matches on reAPI's code first, the HTTP status second."""
    error = payload.get("error") if isinstance(payload, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else 0
    message = printable(error.get("message") or f"HTTP {status}", 500)
    raw_request_id = error.get("request_id")
    request_id = printable(raw_request_id, 100) if isinstance(raw_request_id, str) and raw_request_id else None
    kind = code // 10000 if code else 0
    upstream = f"reAPI {code or status}: {message}"
    if code == 50001 or status == 429:
        return errors.UpstreamRateLimited(retry_after)
    if kind == 1 or status in (401, 403):
        return errors.AuthenticationFailed(
            f"Incorrect API key provided: the upstream rejected it ({upstream}).",
            upstream_request_id=request_id,
        )
    if code in MODERATION_CODES or (kind == 2 and "moderat" in message.lower()):
        return errors.ContentPolicyViolation(
            f"Your request was rejected by the upstream's safety system ({upstream}). No credits were charged.",
            upstream_request_id=request_id,
        )
    if (kind == 2 or status == 400) and unknown_model(code, message):
        return errors.ModelNotFound(
            f"The model does not exist upstream or you do not have access to it ({upstream}).",
            param="model",
            upstream_request_id=request_id,
        )
    if kind == 2 or status == 400:
        return errors.InvalidRequest(
            f"The upstream rejected the request ({upstream}).",
            param=_param_of(message),
            code="invalid_value",
            upstream_request_id=request_id,
        )
    if kind == 3 or status == 402:
        return errors.InsufficientQuota(
            "You exceeded your current quota: the upstream account has insufficient credits "
            f"({upstream}). Top up the reAPI balance; retrying will not help.",
            upstream_request_id=request_id,
        )
    if status == 404:
        return errors.UpstreamError(f"The upstream does not know this task ({upstream}).")
    return errors.UpstreamTransient(upstream)
