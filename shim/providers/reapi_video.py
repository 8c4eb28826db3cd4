"""reAPI's video wire format, pure: a `VideoSpec` to the submissions of `POST /api/v1/videos/generations`, and
the video ids reAPI answers for (its own, bare or prefixed, and OpenAI's Sora ids).

reapi-notes.md: "`POST /api/v1/videos/generations` with `model`, `prompt`, `resolution` (480p/720p/1080p/4k),
`size` (ratio such as 16:9), `duration` (seconds, 4-15), optional `image_urls`". Nothing documents a model's
own limits, so none is assumed: a duration the model refuses (a 2xxxx validation refusal naming it, which
creates nothing) is tried again with the next nearest (`Submission.fallbacks`); any other refusal is the
client's 400.
"""

from __future__ import annotations

import dataclasses
import re

from .. import errors
from ..sizes import nearest_ratio, parse_pixels, parse_ratio
from ..types import LatencyPrior, Submission, VideoSpec
from .base import Alias, ModelSpec

#: The Video sections of the documents' navigation, every id that names a generation model (not the tools
#: that transform given media). "Veo 3.1" is shown as a display name only: `veo-3.1` is our guess at its id.
VIDEO_MODELS: tuple[str, ...] = (
    "doubao-seedance-2.0", "doubao-seedance-2.0-official", "seedance-2.0-beta", "seedance-2.0-fast-beta",
    "seedance-2-0-mini", "kling-3-0", "kling-3-0-turbo", "wan-2-7-video", "viduq3", "happyhorse-1.0",
    "happyhorse-1.0-official", "happyhorse-1-1", "grok-imagine-1.0-video", "grok-imagine-video-1.5-beta",
    "pixverse-v6", "veo-3.1",
)  # fmt: skip
VIDEO_CATALOG: dict[str, ModelSpec] = {model: ModelSpec(model, max_image_urls=1) for model in VIDEO_MODELS}

#: OpenAI's Sora ids: sora-2 is the default channel (SHIM_DEFAULT_VIDEO_MODEL may name another), sora-2-pro
#: the "-official" one, as gpt-image-2-official is reAPI's full channel beside the cheap gpt-image-2.
DEFAULT_VIDEO_MODEL = "doubao-seedance-2.0"
PRO_VIDEO_MODEL = "doubao-seedance-2.0-official"
VIDEO_ALIASES: dict[str, Alias] = {"sora-2": Alias(DEFAULT_VIDEO_MODEL), "sora-2-pro": Alias(PRO_VIDEO_MODEL)}
#: OpenAI's dated snapshots (sora-2-2025-10-06, sora-2-pro-2025-10-06, sora-2-2025-12-08).
VIDEO_ALIAS_PATTERNS = (
    (re.compile(r"^sora-2-\d{4}-\d{2}-\d{2}$"), Alias(DEFAULT_VIDEO_MODEL)),
    (re.compile(r"^sora-2-pro-\d{4}-\d{2}-\d{2}$"), Alias(PRO_VIDEO_MODEL)),
)

#: N "(480p/720p/1080p/4k)", by the short side of the frame they name.
TIERS: dict[int, str] = {480: "480p", 720: "720p", 1080: "1080p", 2160: "4k"}
RESOLUTIONS: tuple[str, ...] = tuple(TIERS.values())
DEFAULT_RESOLUTION = "720p"
#: N "size (ratio such as 16:9)": a WxH goes as the nearest of the ratios video models commonly take.
VIDEO_RATIOS: tuple[str, ...] = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21")
#: N "duration (seconds, 4-15)".
DURATIONS = range(4, 16)
#: The documents give no prompt cap for video; the image channel's ("1-4,000 characters") is applied.
MAX_PROMPT = 4000
#: Nothing documents video latencies: a wide guess, the same for every class, so that what the upstream is
#: observed to do (learned per model, tier and duration) decides, not this table.
PRIORS: dict[str, LatencyPrior] = {"reapi-video": LatencyPrior(30.0, 600.0)}


def _invalid(message: str, param: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code="invalid_value")


def map_size(size: str, resolution: str | None) -> tuple[str, str]:
    """OpenAI's size (WxH, or a ratio) + an optional reAPI tier -> (ratio, resolution) to send.

    WxH: the nearest ratio of VIDEO_RATIOS, and the smallest tier whose short side is not shorter than the
    request's (720x1280 -> 9:16 720p, 1792x1024 -> 16:9 1080p). An explicit `resolution` wins.
    """
    pixels = parse_pixels(size)
    if pixels is not None:
        width, height = pixels
        ratio = nearest_ratio(width, height, VIDEO_RATIOS)
        short = min(width, height)
        tier = next((name for side, name in TIERS.items() if side >= short), RESOLUTIONS[-1])
        return ratio, resolution or tier
    if parse_ratio(size) is None:
        raise _invalid(f"Invalid value for 'size': {size!r}. Use WxH (such as 1280x720) or a ratio (16:9).", "size")
    return size, resolution or DEFAULT_RESOLUTION


def durations(seconds: int) -> list[int]:
    """The durations to send for `seconds`, in the order to try them: the documented range's nearest first
    (between two equally near, the shorter: never pay for more than was asked when less is as near)."""
    return sorted(DURATIONS, key=lambda d: (abs(d - seconds), d))


def check(spec: VideoSpec) -> None:
    """What reAPI's video endpoint cannot take, refused before anything is stored or spent."""
    if spec.route.upstream_model not in VIDEO_CATALOG:
        raise _invalid(f"Model '{spec.route.public_id}' makes images, not videos.", "model")
    if len(spec.prompt) > MAX_PROMPT:
        raise errors.PromptTooLong(len(spec.prompt), MAX_PROMPT, spec.route.public_id)
    if spec.resolution is not None and spec.resolution not in RESOLUTIONS:
        raise _invalid(
            f"Invalid value for 'resolution': {spec.resolution!r}. Supported values are: {', '.join(RESOLUTIONS)}.",
            "resolution",
        )
    map_size(spec.size, spec.resolution)


def latency_class(model: str, resolution: str, duration: int) -> str:
    """Video classes learn among themselves (`reapi-video/...`): an image's speed says nothing of a video's."""
    return f"reapi-video/{model}/{resolution}/{duration}s"


def plan(spec: VideoSpec) -> list[Submission]:
    """One task per video; the other durations of the documented range as its fallbacks, nearest first."""
    check(spec)
    model = spec.route.upstream_model
    ratio, resolution = map_size(spec.size, spec.resolution)
    body: dict[str, object] = {"model": model, "prompt": spec.prompt, "resolution": resolution, "size": ratio}
    if spec.reference_url:
        body["image_urls"] = [spec.reference_url]

    def submission(duration: int) -> Submission:
        return Submission(
            {**body, "duration": duration},
            1,
            latency_class(model, resolution, duration),
            size=spec.size,
            media="video",
            duration=duration,
        )

    first, *rest = durations(spec.seconds)
    fallbacks = tuple(submission(d) for d in rest)
    return [dataclasses.replace(submission(first), fallbacks=fallbacks, refit_param="seconds")]


#: What a video submit's refusal names, in OpenAI's words (the codec reads the upstream's field names).
VIDEO_PARAMS: dict[str, str | None] = {
    "duration": "seconds",
    "resolution": "size",
    "image": "input_reference",
    "n": None,
    "quality": None,
    "mask": None,
    "background": None,
    "moderation": None,
}
