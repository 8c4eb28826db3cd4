"""Real PNG bytes for emulated results, and a look at fetched input images.

Owns no HTTP: `render_png` makes a cheap solid image (a colour from a small palette picked by a seed, with a
lighter band) and caches the encoded bytes, so a 4K result costs one encode per colour and size.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw

Colour = tuple[int, int, int]

# A small palette keeps the encode cache hot: 16 colours x a handful of sizes.
PALETTE: tuple[Colour, ...] = (
    (230, 57, 70),
    (241, 135, 1),
    (255, 200, 87),
    (106, 153, 78),
    (42, 157, 143),
    (38, 70, 83),
    (69, 123, 157),
    (29, 53, 87),
    (114, 9, 183),
    (181, 23, 158),
    (247, 37, 133),
    (76, 201, 240),
    (128, 128, 128),
    (33, 33, 33),
    (140, 81, 10),
    (0, 109, 119),
)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the emulator needs to know about a fetched image."""

    width: int
    height: int
    has_alpha: bool
    fully_opaque: bool


def pick_colour(seed: str) -> Colour:
    """Return a palette colour chosen deterministically by `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def render_png(width: int, height: int, seed: str) -> bytes:
    """Return a valid RGB PNG of exactly `width` x `height` whose colour depends on `seed`."""
    return encode_png(width, height, pick_colour(seed))


@lru_cache(maxsize=48)
def encode_png(width: int, height: int, colour: Colour) -> bytes:
    """Encode a solid `colour` image with a lighter horizontal band; cached by arguments."""
    image = Image.new("RGB", (width, height), colour)
    band = tuple(min(255, c + 80) for c in colour)
    top = height * 2 // 5
    ImageDraw.Draw(image).rectangle((0, top, width, top + max(1, height // 10)), fill=band)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def inspect_image(data: bytes) -> ImageInfo | None:
    """Decode `data` and describe it, or return None when it is not an image Pillow can read."""
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning means "not an image we accept", not a crash.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or ("transparency" in image.info)
                opaque = True
                if has_alpha:
                    low, _ = image.convert("RGBA").getchannel("A").getextrema()
                    opaque = low == 255
                return ImageInfo(image.width, image.height, has_alpha, opaque)
    except Exception:
        return None
