"""Real media for emulated video results: MP4 clips and their last frame as PNG, cached once encoded.

Owns no HTTP. A clip is one solid colour (picked by a seed from the image palette) for its whole duration,
encoded by `h264.encode_solid` and wrapped by `mp4.write_mp4`; its last frame is a PNG of that colour.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image

from .h264 import encode_solid
from .images import Colour, pick_colour
from .mp4 import write_mp4

FPS = 24


def render_mp4(width: int, height: int, seconds: int, seed: str) -> bytes:
    """An MP4 of exactly `width` x `height` and `seconds` seconds whose colour depends on `seed`."""
    return encode_mp4(width, height, seconds, pick_colour(seed))


def render_last_frame(width: int, height: int, seed: str) -> bytes:
    """The last frame of `render_mp4(width, height, _, seed)` as an RGB PNG."""
    return encode_frame_png(width, height, pick_colour(seed))


@lru_cache(maxsize=64)
def encode_mp4(width: int, height: int, seconds: int, colour: Colour) -> bytes:
    """Encode a solid-colour clip at `FPS` frames per second; cached (a 4K 15 s clip is about 30 kB)."""
    return write_mp4(encode_solid(width, height, colour, frames=seconds * FPS, fps=FPS))


@lru_cache(maxsize=16)
def encode_frame_png(width: int, height: int, colour: Colour) -> bytes:
    """Encode a solid `colour` PNG; cached by arguments."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG", compress_level=6)
    return out.getvalue()
