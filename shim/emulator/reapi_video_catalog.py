"""reAPI's video catalog as plain data, and `parse_video_request(raw)`: a submit body to (body, `VideoSpec`).

Pure: no clock, no network. Rules, each with the sentence of ../shared/upstream/ it implements ("ours" where
the documents are silent; "strict" where they are ambiguous and the emulator refuses most). N =
reapi-notes.md, O = reapi-overview.txt, G = reapi-gpt-image-2-official.txt, Q = reapi-quickstart.txt.

  endpoint, body               N "`POST /api/v1/videos/generations` with `model`, `prompt`, `resolution`
                               (480p/720p/1080p/4k), `size` (ratio such as 16:9), `duration` (seconds,
                               4-15), optional `image_urls`"
  auth, rate limit, credits, markers, 402, polling, task replies, 80001-80003
                               as for images (the table in reapi.py): O "Every request must carry an API
                               key", "Polling ... shares the same limit", "Each call deducts credits",
                               "Failed tasks are automatically refunded"; N "one polling endpoint for every
                               media kind"
  model ids                    the Video sections of G's and Q's navigation: every id there that names a
                               generation model. "Veo 3.1" is a display name only: `veo-3.1` is ours.
                               Left out: the tools (topaz-video-upscaler, kling-motion-control,
                               enhance-video-1.0, music-video-1-0: they transform given media), "Seedance
                               2.5" (no wire id shown) and gemini-omni (its kind is not shown): strict
  unknown model 20004          ours, as for images (image models are unknown here, video models there)
  model or prompt missing 20002, prompt empty 20002, > 4000 20007, non-string 20003
                               O "Both `model` and `prompt` are required" (20002); the 4000 limit and its
                               20007 are G's for images, applied here: ours
  resolution / size / duration missing 20002
                               strict: N marks only `image_urls` optional, so the other three are required
  resolution 480p/720p/1080p/4k exactly, else 20003
                               N "(480p/720p/1080p/4k)"; strict: lower case only (G's "Case-insensitive" is
                               said of the image tiers)
  size: a ratio of 16:9 9:16 1:1 4:3 3:4 21:9, else 20003
                               N "ratio such as 16:9"; the list is ours; strict: no WxH, no auto
  4k only with 16:9 / 9:16     ours (after G's "4K is widescreen-only"; keeps 4K inside H.264 level 5.1)
  duration: an integer 4-15, else 20003
                               N "duration (seconds, 4-15)"; strict: integers only ("5", 5.5 are 20003)
  per-model durations, resolutions, image_urls limits (20003)
                               ours (MODELS below); the notes say nothing per model
  image_urls http(s), no data: URIs (20003)
                               G "Public HTTP(S) URLs only. No data: URIs. reAPI rejects base64 inputs
                               platform-wide" and its validation messages
  image fields (n, quality, mask_url, background, moderation) 20003
                               strict: not in N's video body, so refused rather than ignored
  references fetched; unusable -> failed 80003, refunded
                               as for images; an image of any ratio is accepted (ours: `size` decides)
  price                        ours: ceil(credits per second at 720p x duration x 1/2 / 1 / 2 / 4 for 480p /
                               720p / 1080p / 4k); the notes price images only ("1 credit = $0.001")
  latency                      ours: 60-180 s for 5 s at 720p (x duration / 5, x 0.6 / 1 / 1.5 / 3 for
                               480p / 720p / 1080p / 4k, x 0.5 for the fast / turbo / mini models), times the
                               time scale; [latency=S] is exact
  output                       N "videos `video_urls: string[]` (some video models add `last_frame_url`)":
                               one MP4 in `video_urls`; `last_frame_url` (a PNG) from the Seedance ids: ours
  pixel size                   ours: the tier is the short side (480 / 720 / 1080 / 2160), the long side is
                               the ratio's, rounded to even: 16:9 480p is 854x480, 1080p 1920x1080, 4k
                               3840x2160; 1:1 is the short side squared
  MP4                          ours: H.264 Constrained Baseline at 24 fps, exactly `duration` seconds, one
                               solid colour (shim/emulator/h264.py, mp4.py); N "Result URLs stay valid for 7
                               days" (Cache-Control as for images); Range requests answered 206 (ours)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from .reapi_catalog import ReapiError, invalid, parse_common, parse_image_urls

VideoResolution = Literal["480p", "720p", "1080p", "4k"]

RESOLUTIONS: tuple[VideoResolution, ...] = ("480p", "720p", "1080p", "4k")
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
RATIOS_4K = ("16:9", "9:16")
DURATION_RANGE = range(4, 16)
SHORT_SIDE: dict[VideoResolution, int] = {"480p": 480, "720p": 720, "1080p": 1080, "4k": 2160}
PRICE_FACTOR: dict[VideoResolution, Fraction] = {
    "480p": Fraction(1, 2),
    "720p": Fraction(1),
    "1080p": Fraction(2),
    "4k": Fraction(4),
}
LATENCY_720P_5S = (60.0, 180.0)
LATENCY_FACTOR: dict[VideoResolution, float] = {"480p": 0.6, "720p": 1.0, "1080p": 1.5, "4k": 3.0}
IMAGE_ONLY_FIELDS = ("n", "quality", "mask_url", "background", "moderation")

ALL: tuple[VideoResolution, ...] = RESOLUTIONS
UP_TO_1080P: tuple[VideoResolution, ...] = ("480p", "720p", "1080p")
HD: tuple[VideoResolution, ...] = ("720p", "1080p")
HD_4K: tuple[VideoResolution, ...] = ("720p", "1080p", "4k")
SD_HD: tuple[VideoResolution, ...] = ("480p", "720p")
ANY_DURATION = tuple(DURATION_RANGE)


@dataclass(frozen=True, slots=True)
class VideoModel:
    """One video model's limits (ours, except the 4-15 s range and the four tiers of N)."""

    credits_per_second: int  # at 720p
    resolutions: tuple[VideoResolution, ...] = UP_TO_1080P
    durations: tuple[int, ...] = ANY_DURATION
    max_images: int = 2  # a first and a last frame
    last_frame: bool = False
    speed: float = 1.0  # latency factor


MODELS: dict[str, VideoModel] = {
    "doubao-seedance-2.0": VideoModel(100, ALL, max_images=9, last_frame=True),
    "doubao-seedance-2.0-official": VideoModel(140, ALL, max_images=9, last_frame=True),
    "seedance-2.0-beta": VideoModel(60, max_images=9, last_frame=True),
    "seedance-2.0-fast-beta": VideoModel(40, SD_HD, max_images=9, last_frame=True, speed=0.5),
    "seedance-2-0-mini": VideoModel(25, SD_HD, max_images=9, last_frame=True, speed=0.5),
    "kling-3-0": VideoModel(110, HD, durations=(5, 10)),
    "kling-3-0-turbo": VideoModel(70, HD, durations=(5, 10), speed=0.5),
    "wan-2-7-video": VideoModel(80),
    "viduq3": VideoModel(60),
    "happyhorse-1.0": VideoModel(50),
    "happyhorse-1.0-official": VideoModel(80),
    "happyhorse-1-1": VideoModel(60),
    "grok-imagine-1.0-video": VideoModel(50, SD_HD, durations=(6, 10)),
    "grok-imagine-video-1.5-beta": VideoModel(70, SD_HD),
    "pixverse-v6": VideoModel(60),
    "veo-3.1": VideoModel(400, HD_4K, durations=(4, 6, 8)),
}


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """A validated video submit."""

    model: str
    prompt: str
    ratio: str
    resolution: VideoResolution
    duration: int
    image_urls: tuple[str, ...] = ()


def parse_video_request(raw: bytes) -> tuple[dict[str, Any], VideoSpec]:
    """Validate a video submit body; return (body, spec) or raise `ReapiError` (the rule table above)."""
    body, model, prompt = parse_common(raw, MODELS.__contains__)
    for name in IMAGE_ONLY_FIELDS:
        if body.get(name) is not None:
            raise invalid(f"{name} is not supported by {model}")
    for name in ("resolution", "size", "duration"):
        if body.get(name) is None:
            raise ReapiError(400, 20002, f"{name} is required")
    limits = MODELS[model]
    resolution = _parse_resolution(body["resolution"], model, limits)
    ratio = _parse_size(body["size"], resolution)
    duration = _parse_duration(body["duration"], model, limits)
    image_urls = parse_image_urls(body.get("image_urls"), limit=limits.max_images)
    return body, VideoSpec(model, prompt, ratio, resolution, duration, image_urls)


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _parse_resolution(value: object, model: str, limits: VideoModel) -> VideoResolution:
    tier = next((res for res in RESOLUTIONS if res == value), None)
    if tier is None:
        raise invalid(f"invalid resolution {_show(value)} (allowed: {', '.join(RESOLUTIONS)})")
    if tier not in limits.resolutions:
        allowed = ", ".join(limits.resolutions)
        raise invalid(f"resolution {_show(tier)} is not supported by {model} (allowed: {allowed})")
    return tier


def _parse_size(value: object, resolution: VideoResolution) -> str:
    if not isinstance(value, str) or value not in RATIOS:
        raise invalid(f"invalid size {_show(value)} (allowed: {', '.join(RATIOS)})")
    if resolution == "4k" and value not in RATIOS_4K:
        raise invalid(f"4k requires size {' or '.join(RATIOS_4K)}")
    return value


def _parse_duration(value: object, model: str, limits: VideoModel) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in DURATION_RANGE:
        low, high = DURATION_RANGE[0], DURATION_RANGE[-1]
        raise invalid(f"duration must be an integer number of seconds from {low} to {high}")
    if value not in limits.durations:
        allowed = ", ".join(map(str, limits.durations))
        raise invalid(f"duration {value} is not supported by {model} (allowed: {allowed})")
    return value


def video_pixels(ratio: str, resolution: VideoResolution) -> tuple[int, int]:
    """Output pixels: the tier is the short side, the long side follows the ratio, rounded to even."""
    a, b = (int(part) for part in ratio.split(":"))
    short = SHORT_SIDE[resolution]
    long = 2 * round(short * max(a, b) / min(a, b) / 2)
    return (long, short) if a >= b else (short, long)


def video_price(spec: VideoSpec) -> int:
    """Credits charged on submit: ceil(rate x resolution factor x seconds)."""
    rate = MODELS[spec.model].credits_per_second
    return math.ceil(rate * PRICE_FACTOR[spec.resolution] * spec.duration)


def video_latency_bounds(spec: VideoSpec) -> tuple[float, float]:
    """Unscaled (min, max) seconds from submit to a terminal state."""
    factor = spec.duration / 5 * LATENCY_FACTOR[spec.resolution] * MODELS[spec.model].speed
    low, high = LATENCY_720P_5S
    return low * factor, high * factor
