"""Checking uploaded images before anything is stored or spent: each file must decode as PNG, JPEG or WEBP
within the pixel cap (read from the header, so a decompression bomb costs nothing), and a mask must be a PNG
with transparent pixels and the first image's size. CPU work: callers run it in the worker pool."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from .. import errors

#: Pillow format -> (content type, extension): the formats the upstream accepts.
FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"), "WEBP": ("image/webp", "webp")}

Input = bytes | str  # an uploaded file, or an image URL passed through (unchecked: the upstream fetches it)


def _invalid(message: str, param: str | None) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code="invalid_value")


@dataclass(frozen=True, slots=True)
class Checked:
    """A file that decoded as an accepted image."""

    data: bytes
    content_type: str
    ext: str
    size: tuple[int, int]


def check_inputs(
    images: tuple[Input, ...], mask: Input | None, max_pixels: int
) -> tuple[list[Checked | str], Checked | str | None]:
    """Decode every uploaded file (PNG, JPEG or WEBP, at most `max_pixels`); the mask must be a PNG with
    transparent pixels and the first image's size. URLs pass through unchecked (they are the upstream's to
    fetch). CPU work: run it in the worker pool."""
    checked: list[Checked | str] = [
        check_image(item, "image", max_pixels) if isinstance(item, bytes) else item for item in images
    ]
    if not isinstance(mask, bytes):
        return checked, mask
    with _opened(mask, "mask", max_pixels) as image:
        fmt, size = image.format, image.size
        alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        opaque = alpha and image.convert("RGBA").getchannel("A").getextrema()[0] == 255
    if fmt != "PNG":
        raise _invalid("The mask must be a PNG image with an alpha channel.", "mask")
    if not alpha:
        raise _invalid(
            "The mask has no alpha channel: it must be a PNG whose transparent pixels mark the area to edit.",
            "mask",
        )
    if opaque:
        raise _invalid("The mask is fully opaque: its transparent pixels must mark the area to edit.", "mask")
    first = checked[0]
    if isinstance(first, Checked) and first.size != size:
        raise _invalid(
            f"The mask is {size[0]}x{size[1]} but the first image is {first.size[0]}x{first.size[1]}: "
            "they must have the same dimensions.",
            "mask",
        )
    return checked, Checked(mask, *FORMATS["PNG"], size)


def check_image(data: bytes, param: str, max_pixels: int) -> Checked:
    with _opened(data, param, max_pixels) as image:
        return Checked(data, *FORMATS[str(image.format)], image.size)


@contextlib.contextmanager
def _opened(data: bytes, param: str, max_pixels: int) -> Iterator[Image.Image]:
    """A PNG, JPEG or WEBP image of at most `max_pixels`, verified and fully decoded, or a 400 naming `param`.
    The pixel count is read from the header, so a decompression bomb costs nothing to refuse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:  # reads the header only
                if probe.format not in FORMATS:
                    raise _invalid(
                        f"Invalid '{param}': {probe.format} is not supported; send PNG, JPEG or WEBP.",
                        param,
                    )
                width, height = probe.size
                if width * height > max_pixels:
                    raise _invalid(
                        f"Invalid '{param}': the image is {width}x{height}, more than {max_pixels} pixels.", param
                    )
                probe.verify()  # structure and checksums; the image is unusable afterwards
            image = Image.open(io.BytesIO(data))
            try:
                image.load()  # truncated pixel data shows only when decoding
            except BaseException:
                image.close()
                raise
    except errors.InvalidRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _invalid(f"Invalid '{param}': the image has too many pixels.", param) from None
    except Exception:
        raise _invalid(f"Invalid '{param}': the file is not a valid PNG, JPEG or WEBP image.", param) from None
    with image:
        yield image
