"""Turning upstream result URLs into what the client asked for: the URL itself, or base64 of the bytes.

Result URLs are untrusted: they are fetched through a `url_guard.GuardedTransport` client (public addresses
only, every redirect re-checked), with a byte cap and a total deadline per attempt, and the bytes must decode
as an image within the pixel cap before anything is converted or encoded. Decoding, conversion and base64 run
in the fair worker pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from PIL import Image as PILImage

from .. import errors
from ..events import Events
from ..providers.transport import describe
from ..types import Image, ImageResult, ImageSpec, Outcome
from ..workers import FairPool
from .url_guard import UnsafeUrl

#: output_format -> Pillow format name.
FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
#: What an upstream may hand back as a result image.
DECODABLE = frozenset({"PNG", "JPEG", "WEBP"})
ATTEMPTS = 3


def _paid_but_undeliverable(detail: str) -> errors.UpstreamError:
    return errors.UpstreamError(
        f"The image was generated and paid for, but the shim could not deliver it: {detail}. Retry the request: "
        "it will collect the same task without paying again."
    )


@dataclass(frozen=True, slots=True)
class Downloader:
    """Fetches result images (see the module docstring). `http` must be the guarded download client. Every
    attempt is reported as an `upstream_request` event of kind `download`."""

    http: httpx.AsyncClient
    pool: FairPool
    max_bytes: int
    max_pixels: int
    timeout: float
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    events: Events = field(default_factory=Events)

    async def fetch(self, url: str, *, provider: str = "") -> bytes:
        """GET one result URL: at most `max_bytes`, `timeout` seconds per attempt in all (a slow drip counts),
        a few attempts (a result URL is safe to fetch again); a refused address is never retried."""
        last = "HTTP error"
        for attempt in range(ATTEMPTS):
            if attempt:
                await self.sleep(0.25 * 2**attempt)
            status = ["error"]  # the HTTP status, once one is read
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._get(url, status)
            except UnsafeUrl as exc:
                status[0] = "refused"
                raise _paid_but_undeliverable(f"its URL was refused ({exc})") from None
            except errors.UpstreamTransient as exc:
                last = str(exc)
            except TimeoutError:
                status[0] = "timeout"
                last = f"the download took longer than {self.timeout:g}s"
            except httpx.HTTPError as exc:
                last = describe(exc)
            finally:
                self.events.emit("upstream_request", provider=provider, kind="download", status=status[0])
        raise _paid_but_undeliverable(f"downloading it from the upstream failed ({last})")

    async def _get(self, url: str, status: list[str]) -> bytes:
        async with self.http.stream("GET", url) as response:
            status[0] = str(response.status_code)
            if response.status_code >= 500 or response.status_code == 429:
                raise errors.UpstreamTransient(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise _paid_but_undeliverable(f"the result URL answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large()
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > self.max_bytes:
                    raise self._too_large()
                chunks.append(chunk)
            return b"".join(chunks)

    def _too_large(self) -> errors.UpstreamError:
        return _paid_but_undeliverable(f"the result is larger than the cap of {self.max_bytes} bytes")

    async def encoded(
        self, owner: str, url: str, output_format: str, compression: int | None, *, provider: str = ""
    ) -> tuple[str, str]:
        """(base64 of the result in `output_format`, its WxH), decoded and re-encoded in the worker pool."""
        data = await self.fetch(url, provider=provider)
        return await self.pool.run(owner, encode_image, data, output_format, compression, self.max_pixels)


def encode_image(data: bytes, output_format: str, compression: int | None, max_pixels: int) -> tuple[str, str]:
    """Pure CPU work: check that `data` decodes as an image of at most `max_pixels`, convert it to
    `output_format` when it is in another format, and base64 it. Returns (base64, 'WxH')."""
    target = FORMATS.get(output_format, "PNG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if opened.format not in DECODABLE:
                    raise _paid_but_undeliverable(f"the upstream's result is not a PNG, JPEG or WEBP ({opened.format})")
                if width * height > max_pixels:
                    raise _paid_but_undeliverable(
                        f"the result is {width}x{height}, more than the cap of {max_pixels} pixels"
                    )
                opened.load()  # truncated or corrupt pixel data shows only when decoding
                if opened.format != target:
                    data = _convert(opened, target, compression)
    except errors.ShimError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise _paid_but_undeliverable(f"the result has more than the cap of {max_pixels} pixels") from None
    except Exception:  # Pillow raises many types for bytes that are not an image
        raise _paid_but_undeliverable("the upstream's result is not a readable image") from None
    return base64.b64encode(data).decode("ascii"), f"{width}x{height}"


def _convert(image: PILImage.Image, target: str, compression: int | None) -> bytes:
    if target == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format=target, quality=compression if compression is not None else 90)
    return out.getvalue()


async def build_result(spec: ImageSpec, outcome: Outcome, *, downloader: Downloader, owner: str) -> ImageResult:
    """A finished job's images as the client asked: upstream URLs, or base64 downloads."""
    urls = [url for sub, task in outcome.tasks for url in task.urls[: sub.count]]
    first = outcome.tasks[0][0]
    size = first.size
    if spec.response_format == "b64_json":
        fmt, compression, provider = spec.output_format, spec.output_compression, spec.route.provider
        encoded = await asyncio.gather(
            *(downloader.encoded(owner, url, fmt, compression, provider=provider) for url in urls)
        )
        images = tuple(Image(url=u, b64_json=b) for u, (b, _) in zip(urls, encoded, strict=True))
        size = next((s for _, s in encoded if s), size)
    else:
        images = tuple(Image(url=u) for u in urls)
    credits = [task.credits for _, task in outcome.tasks if task.credits is not None]
    return ImageResult(
        images=images,
        size=size,
        quality=first.quality,
        background=first.background,
        output_format=spec.output_format if spec.response_format == "b64_json" else "png",
        task_ids=tuple(task.id for _, task in outcome.tasks),
        credits=sum(credits) if credits else None,
        created=int(time.time()),
    )
