"""reAPI's image catalog as plain data: models, sizes, pixel table, prices, latencies, and request validation.

Pure: `parse_request(raw)` turns a submit body into (body, `ImageSpec`) or raises `ReapiError` with the
documented code and message (reapi-gpt-image-2-official.txt, "Validation errors"). No clock, no network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import urlsplit

Resolution = Literal["1k", "2k", "4k"]
Quality = Literal["auto", "low", "medium", "high"]

OFFICIAL = "gpt-image-2-official"
# Models with `n` fixed at 1, ratio sizes only, no quality / mask / background / moderation.
# Flat credits per image by resolution; gpt-image-2 is documented, the others are our guesses.
FLAT_PRICES: dict[str, dict[Resolution, int]] = {
    "gpt-image-2": {"1k": 7, "2k": 14, "4k": 20},
    "gemini-2.5-flash-image-preview": {"1k": 39, "2k": 39, "4k": 39},
    "gemini-3-pro-image-preview": {"1k": 134, "2k": 134, "4k": 240},
    "gemini-3.1-flash-image-preview": {"1k": 67, "2k": 101, "4k": 151},
    "doubao-seedream-5-0-lite": {"1k": 35, "2k": 35, "4k": 35},
    # The rest of the 13 image models in G's navigation: named there, described nowhere, so they keep the
    # cheap channel's rules (strict: the narrowest documented surface); their prices are ours.
    "midjourney-v8": {"1k": 80, "2k": 80, "4k": 120},
    "flux-2": {"1k": 30, "2k": 45, "4k": 60},
    "z-image": {"1k": 10, "2k": 15, "4k": 20},
    "qwen-image-2": {"1k": 25, "2k": 25, "4k": 40},
    "midjourney-v7": {"1k": 60, "2k": 60, "4k": 90},
    "wan-2-7-image": {"1k": 30, "2k": 30, "4k": 45},
    "imagen-4-0": {"1k": 40, "2k": 40, "4k": 60},
}
MODELS = frozenset({OFFICIAL, *FLAT_PRICES})
# Ours: models reAPI adds after our documents (for tests of a shim that has never heard of them). An id
# starting "future-lite-" has the cheap channel's rules and gpt-image-2's prices; any other "future-<x>" has
# gpt-image-2-official's surface (n 1-4, pixel strings, quality, mask, background, moderation) and prices.
FUTURE = "future-"
FUTURE_LITE = "future-lite-"


def full_surface(model: str) -> bool:
    """Whether a model takes what gpt-image-2-official takes (batches, pixel sizes, quality, mask...)."""
    future = model.startswith(FUTURE) and len(model) > len(FUTURE) and not model.startswith(FUTURE_LITE)
    return model == OFFICIAL or future


def _lite(model: str) -> bool:
    return model.startswith(FUTURE_LITE) and len(model) > len(FUTURE_LITE)


def flat_prices(model: str) -> dict[Resolution, int] | None:
    """A cheap-channel model's credits per image by resolution; None for a full-surface or unknown one."""
    return FLAT_PRICES.get(model) or (FLAT_PRICES["gpt-image-2"] if _lite(model) else None)


def known_model(model: str) -> bool:
    return full_surface(model) or flat_prices(model) is not None


# gpt-image-2-official per-image credits at 1k (our guess; the doc defers to the live model page);
# 2k costs x2, 4k x3, and the widest ratios cost 10% more at 2k/4k ("slightly more for the widest ratios").
OFFICIAL_1K: dict[Literal["low", "medium", "high"], int] = {"low": 6, "medium": 15, "high": 40}
RESOLUTION_FACTOR: dict[Resolution, int] = {"1k": 1, "2k": 2, "4k": 3}
WIDEST = frozenset({"2:1", "1:2", "21:9", "9:21"})
WIDE_SURCHARGE = Fraction(11, 10)

# Unscaled latency bounds in seconds. Documented cells: low/1k, medium/1k, high/2k, high/4k; the rest are
# interpolated (2k ~1.5x, 4k ~3x of 1k). `auto` runs as high. Flat-priced models behave like `low`.
LATENCY: dict[tuple[Literal["low", "medium", "high"], Resolution], tuple[float, float]] = {
    ("low", "1k"): (20, 40),
    ("low", "2k"): (30, 60),
    ("low", "4k"): (60, 120),
    ("medium", "1k"): (30, 60),
    ("medium", "2k"): (45, 90),
    ("medium", "4k"): (90, 180),
    ("high", "1k"): (40, 80),
    ("high", "2k"): (60, 120),
    ("high", "4k"): (120, 180),
}


Cells = dict[Resolution, tuple[int, int]]


def _with_portraits(table: dict[str, Cells]) -> dict[str, Cells]:
    full = dict(table)
    for ratio, cells in table.items():
        a, b = ratio.split(":")
        if a != b:
            full[f"{b}:{a}"] = {res: (h, w) for res, (w, h) in cells.items()}
    return full


# The documented pixel table ("4K constraint"); portrait ratios mirror their landscape twins.
DIMENSIONS: dict[str, Cells] = _with_portraits(
    {
        "1:1": {"1k": (1024, 1024), "2k": (2048, 2048)},
        "3:2": {"1k": (1536, 1024), "2k": (2048, 1360)},
        "4:3": {"1k": (1024, 768), "2k": (2048, 1536)},
        "5:4": {"1k": (1280, 1024), "2k": (2560, 2048)},
        "16:9": {"1k": (1536, 864), "2k": (2048, 1152), "4k": (3840, 2160)},
        "2:1": {"1k": (2048, 1024), "2k": (2688, 1344), "4k": (3840, 1920)},
        "21:9": {"1k": (2016, 864), "2k": (2688, 1152), "4k": (3840, 1648)},
    }
)
RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "2:1", "1:2", "21:9", "9:21")
WIDESCREEN = ("16:9", "9:16", "2:1", "1:2", "21:9", "9:21")
RESOLUTIONS: dict[str, Resolution] = {"1k": "1k", "2k": "2k", "4k": "4k"}
QUALITIES: dict[str, Quality] = {"auto": "auto", "low": "low", "medium": "medium", "high": "high"}
BACKGROUNDS = ("auto", "opaque", "transparent")
MODERATIONS = ("auto", "low")
PROMPT_MAX = 4000
IMAGE_URLS_MAX = 16
_PIXELS = re.compile(r"(\d{1,5})[xX](\d{1,5})")


class ReapiError(Exception):
    """One reAPI error reply: HTTP status, 5-digit code, message, extra headers."""

    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> ReapiError:
    """A 400 validation error with code 20003."""
    return ReapiError(400, 20003, message)


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """A validated submit. `ratio` None means the upstream picks (size auto, or omitted with references)."""

    model: str
    prompt: str
    ratio: str | None
    resolution: Resolution
    quality: Quality = "auto"
    n: int = 1
    image_urls: tuple[str, ...] = ()
    mask_url: str | None = None


def parse_common(raw: bytes, known: Callable[[str], bool]) -> tuple[dict[str, Any], str, str]:
    """What every submit checks first, in the documented order: the JSON body, its `model` (one `known`
    says it has) and `prompt`. Returns (body, model, prompt) or raises `ReapiError`."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ReapiError(400, 20001, "invalid JSON body") from None
    if not isinstance(body, dict):
        raise ReapiError(400, 20001, "invalid JSON body")
    model, prompt = body.get("model"), body.get("prompt")
    if model is None or model == "":
        raise ReapiError(400, 20002, "Both `model` and `prompt` are required")
    if not isinstance(model, str):
        raise invalid("model must be a string")
    if not known(model):
        raise ReapiError(400, 20004, f"unknown model {_show(model)}")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise ReapiError(400, 20002, "prompt is required")
    if not isinstance(prompt, str):
        raise invalid("prompt must be a string")
    if len(prompt) > PROMPT_MAX:
        raise ReapiError(400, 20007, f"prompt must be at most {PROMPT_MAX} characters")
    return body, model, prompt


def parse_request(raw: bytes) -> tuple[dict[str, Any], ImageSpec]:
    """Validate a submit body in the documented order; return (body, spec) or raise `ReapiError`."""
    body, model, prompt = parse_common(raw, known_model)
    official = full_surface(model)
    if not official:
        for name in ("quality", "mask_url", "background", "moderation"):
            if body.get(name) is not None:
                raise invalid(f"{name} is not supported by {model}")
    ratio, snapped = _parse_size(body.get("size"), official)
    resolution = _parse_resolution(body.get("resolution"))
    # "resolution: "4k" requires size to be one of 16:9, 9:16, 2:1, 1:2, 21:9, or 9:21": the strictest reading
    # holds the size string itself to the six ratios, so a pixel string with 4k is refused, even 3840x2160.
    if resolution == "4k" and body.get("size") not in WIDESCREEN:
        raise invalid("4K requires an explicit size in {" + ", ".join(WIDESCREEN) + "}")
    n = _parse_n(body.get("n"), official)
    image_urls = parse_image_urls(body.get("image_urls"))
    mask_url = _parse_mask_url(body.get("mask_url"), image_urls)
    quality = QUALITIES[_parse_enum(body, "quality", tuple(QUALITIES))]
    _parse_enum(body, "background", BACKGROUNDS)
    _parse_enum(body, "moderation", MODERATIONS)
    if body.get("size") is None and not image_urls:
        ratio = "1:1"
    return body, ImageSpec(
        model=model,
        prompt=prompt,
        ratio=ratio,
        resolution=snapped or resolution,
        quality=quality,
        n=n,
        image_urls=image_urls,
        mask_url=mask_url,
    )


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _parse_size(size: object, official: bool) -> tuple[str | None, Resolution | None]:
    """Return (ratio, snapped resolution); ratio None for auto/omitted, resolution only for WxH."""
    if size is None or size == "auto":
        return None, None
    if isinstance(size, str) and size in RATIOS:
        return size, None
    match = _PIXELS.fullmatch(size) if isinstance(size, str) and official else None
    if match and int(match[1]) > 0 and int(match[2]) > 0:
        return snap_pixels(int(match[1]), int(match[2]))
    allowed = ", ".join((*RATIOS, "auto")) + (", or WxH pixels" if official else "")
    raise invalid(f"invalid size {_show(size)} (allowed: {allowed})")


def _parse_resolution(value: object) -> Resolution:
    if value is None:
        return "1k"
    if isinstance(value, str) and value.lower() in RESOLUTIONS:
        return RESOLUTIONS[value.lower()]
    raise invalid(f"invalid resolution {_show(value)} (allowed: {', '.join(RESOLUTIONS)})")


def _parse_n(value: object, official: bool) -> int:
    if value is None:
        return 1
    count = value if isinstance(value, int) and not isinstance(value, bool) else None
    if not official:
        if count == 1:
            return 1
        raise invalid("n must be 1 for this model")
    if count is not None and 1 <= count <= 4:
        return count
    raise invalid("n must be between 1 and 4")


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def parse_image_urls(value: object, *, limit: int = IMAGE_URLS_MAX) -> tuple[str, ...]:
    """`image_urls` as a tuple: at most `limit` public http(s) URLs, no data: URIs, else 20003."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("image_urls must be an array of public http(s) URLs")
    if len(value) > limit:
        raise invalid(f"image_urls accepts at most {limit} entries")
    for url in value:
        if isinstance(url, str) and url.strip().lower().startswith("data:"):
            raise invalid("image URL must be a public http(s) URL — data: URIs are rejected")
        if not isinstance(url, str) or not _is_http_url(url):
            raise invalid("image URL must be a public http(s) URL")
    return tuple(value)


def _parse_mask_url(value: object, image_urls: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not image_urls:
        raise invalid("mask_url requires at least one entry in image_urls")
    if isinstance(value, str) and value.strip().lower().startswith("data:"):
        raise invalid("mask_url must be a public http(s) URL — data: URIs are rejected")
    if not isinstance(value, str) or not _is_http_url(value):
        raise invalid("mask_url must be a public http(s) URL")
    return value


def _parse_enum(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = body.get(name)
    if value is None:
        return "auto"
    if isinstance(value, str) and value in allowed:
        return value
    raise invalid(f"invalid {name} {_show(value)} (allowed: {', '.join(allowed)})")


def nearest_ratio(width: int, height: int) -> str:
    """The ratio of the 14 whose aspect is closest (in log space) to `width` x `height`."""
    target = math.log(width / height)
    return min(RATIOS, key=lambda r: abs(math.log(_aspect(r)) - target))


def snap_pixels(width: int, height: int) -> tuple[str, Resolution]:
    """Snap a WxH request to a table cell: nearest aspect ratio first, then nearest area."""
    ratio = nearest_ratio(width, height)
    area = math.log(width * height)
    cells = DIMENSIONS[ratio]
    resolution = min(cells, key=lambda res: abs(math.log(cells[res][0] * cells[res][1]) - area))
    return ratio, resolution


def _aspect(ratio: str) -> float:
    a, b = ratio.split(":")
    return int(a) / int(b)


def dimensions(ratio: str, resolution: Resolution) -> tuple[int, int]:
    """Output pixels of one documented cell."""
    return DIMENSIONS[ratio][resolution]


def price(spec: ImageSpec) -> int:
    """Credits charged on submit: ceil(per-image rate x n); auto/omitted size bills the dearest ratio."""
    flat = flat_prices(spec.model)
    if flat is not None:
        return flat[spec.resolution] * spec.n
    tier = "high" if spec.quality == "auto" else spec.quality
    per_image = Fraction(OFFICIAL_1K[tier] * RESOLUTION_FACTOR[spec.resolution])
    if spec.resolution != "1k" and (spec.ratio is None or spec.ratio in WIDEST):
        per_image *= WIDE_SURCHARGE
    return math.ceil(per_image * spec.n)


def latency_bounds(spec: ImageSpec) -> tuple[float, float]:
    """Unscaled (min, max) seconds from submit to a terminal state."""
    tier = "low" if not full_surface(spec.model) else ("high" if spec.quality == "auto" else spec.quality)
    return LATENCY[(tier, spec.resolution)]
