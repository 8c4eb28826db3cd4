"""Turning upstream result URLs into what the client asked for: the URL itself, or base64 of the bytes
(downloaded with a size cap and a timeout, converted to jpeg/webp when asked)."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import TYPE_CHECKING

import httpx

from . import errors
from .types import Image, ImageJob, JobResult

if TYPE_CHECKING:
    from .jobs import Outcome

CONVERTIBLE = {"jpeg": "JPEG", "webp": "WEBP"}


async def download(http: httpx.AsyncClient, url: str, *, max_bytes: int, timeout: float) -> bytes:
    """GET one result URL; at most `max_bytes`; a few tries, since a result URL is safe to fetch again."""
    last: Exception | None = None
    for attempt in range(3):
        if attempt:
            await asyncio.sleep(0.25 * 2**attempt)
        try:
            async with http.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
                if response.status_code >= 500:
                    last = errors.UpstreamTransient(f"HTTP {response.status_code}")
                    continue
                if response.status_code != 200:
                    break
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise errors.UpstreamError(f"A result image is larger than the cap of {max_bytes} bytes.")
                chunks, total = [], 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise errors.UpstreamError(f"A result image is larger than the cap of {max_bytes} bytes.")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            last = exc
    raise errors.UpstreamError(
        "The image was generated and paid for, but downloading it from the upstream failed "
        f"({type(last).__name__ if last else 'HTTP error'}). Retry the request: it will collect the same "
        "image without paying again."
    )


def convert(data: bytes, output_format: str, compression: int | None) -> bytes:
    """PNG bytes -> jpeg/webp bytes (png and unknown formats pass through). CPU work: run it in a thread."""
    target = CONVERTIBLE.get(output_format)
    if target is None:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image: Image.Image = opened
        if target == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, format=target, quality=compression if compression is not None else 90)
        return out.getvalue()


def image_size(data: bytes) -> str | None:
    """'WxH' read from the image header, or None when it can't be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"{image.width}x{image.height}"
    except (UnidentifiedImageError, OSError):
        return None


async def to_b64(
    http: httpx.AsyncClient,
    url: str,
    *,
    output_format: str,
    compression: int | None,
    max_bytes: int,
    timeout: float,
) -> tuple[str, str | None]:
    """(base64 of the image in `output_format`, its WxH)."""
    data = await download(http, url, max_bytes=max_bytes, timeout=timeout)
    size = image_size(data)
    if output_format in CONVERTIBLE:
        data = await asyncio.to_thread(convert, data, output_format, compression)
    return base64.b64encode(data).decode("ascii"), size


async def build_result(
    spec: ImageJob, outcome: Outcome, *, http: httpx.AsyncClient, max_bytes: int, timeout: float
) -> JobResult:
    """A finished job's images as the client asked: upstream URLs, or base64 downloads."""
    urls = [url for sub, task in outcome.tasks for url in task.image_urls[: sub.count]]
    first = outcome.tasks[0][0]
    size = first.size
    if spec.response_format == "b64_json":
        encoded = await asyncio.gather(
            *(
                to_b64(
                    http,
                    url,
                    output_format=spec.output_format,
                    compression=spec.output_compression,
                    max_bytes=max_bytes,
                    timeout=timeout,
                )
                for url in urls
            )
        )
        images = tuple(Image(url=u, b64_json=b) for u, (b, _) in zip(urls, encoded, strict=True))
        size = next((s for _, s in encoded if s), size)
    else:
        images = tuple(Image(url=u) for u in urls)
    credits = [task.credits for _, task in outcome.tasks if task.credits is not None]
    return JobResult(
        images=images,
        size=size,
        quality=first.quality,
        background=first.background,
        output_format=spec.output_format if spec.response_format == "b64_json" else "png",
        task_ids=tuple(task.id for _, task in outcome.tasks),
        credits=sum(credits) if credits else None,
        created=int(time.time()),
    )
