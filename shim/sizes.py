"""Image size vocabulary, provider-neutral: WxH and ratio parsing, the nearest ratio, and which size strings
an OpenAI request may carry. Pure functions, no I/O; each provider checks what its upstream takes."""

from __future__ import annotations

import math
import re

#: The aspect ratios image APIs commonly take (reAPI's documented list is the same set); an upstream that
#: documents none is sent the nearest of these for a WxH size.
COMMON_RATIOS: tuple[str, ...] = (
    "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "2:1", "1:2", "21:9", "9:21",
)  # fmt: skip
CLASSIC_SIZES: tuple[str, ...] = (
    "256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536",
)  # fmt: skip
MAX_SIDE = 3840
MAX_RATIO = 3.0
#: A ratio string an OpenAI-side request may carry ("16:9"); whether an upstream takes it is its own affair.
MAX_RATIO_STRING = 4.0

_PIXELS = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
_RATIO = re.compile(r"^([1-9][0-9]{0,2}):([1-9][0-9]{0,2})$")


def parse_pixels(size: str) -> tuple[int, int] | None:
    """'1024x768' -> (1024, 768); anything else -> None."""
    match = _PIXELS.match(size)
    return (int(match[1]), int(match[2])) if match else None


def parse_ratio(size: str) -> tuple[int, int] | None:
    """'16:9' -> (16, 9); anything else -> None."""
    match = _RATIO.match(size)
    return (int(match[1]), int(match[2])) if match else None


def ratio_value(ratio: str) -> float:
    w, h = ratio.split(":")
    return int(w) / int(h)


def nearest_ratio(width: int, height: int, choices: tuple[str, ...]) -> str:
    """The ratio among `choices` closest to width:height on a log scale (so 2:1 and 1:2 are symmetric)."""
    target = math.log(width / height)
    return min(choices, key=lambda r: abs(math.log(ratio_value(r)) - target))


def size_problem(size: str) -> str | None:
    """Why `size` is not an acceptable OpenAI-side size, or None when it is.

    Accepted: "auto", the classic OpenAI sizes, an aspect ratio ("16:9", within 1:4..4:1), or any WxH whose
    sides are multiples of 16, at most 3840, with an aspect ratio within 1:3..3:1.
    """
    if size == "auto" or size in CLASSIC_SIZES:
        return None
    ratio = parse_ratio(size)
    if ratio is not None:
        if max(ratio) / min(ratio) > MAX_RATIO_STRING:
            return f"Invalid value for 'size': {size!r}. An aspect ratio must be between 1:4 and 4:1."
        return None
    pixels = parse_pixels(size)
    if pixels is None:
        return (
            f"Invalid value for 'size': {size!r}. Use 'auto', a size such as '1024x1024' "
            f"(WIDTHxHEIGHT, multiples of 16), or an aspect ratio such as '16:9'."
        )
    width, height = pixels
    if width % 16 or height % 16:
        return f"Invalid value for 'size': {size!r}. Width and height must be multiples of 16."
    if max(width, height) > MAX_SIDE:
        return f"Invalid value for 'size': {size!r}. Width and height must be at most {MAX_SIDE} pixels."
    if max(width, height) / min(width, height) > MAX_RATIO:
        return f"Invalid value for 'size': {size!r}. The aspect ratio must be between 1:3 and 3:1."
    return None
