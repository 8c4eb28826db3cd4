"""Relaying a result file (a video, its last frame) from its upstream URL to the client without holding it whole:
through the same guarded client as result downloads (public addresses only, every redirect re-checked), with
the client's Range passed on, a byte cap, and a deadline on the answer's head and on each pause between
chunks (a slow client is read at its own pace; a stalled upstream is cut).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx

from .. import errors
from ..providers.transport import describe
from ..untrusted import printable
from .url_guard import UnsafeUrl

ATTEMPTS = 3
#: A Range header passed on: one or more byte ranges (RFC 9110), nothing else.
_RANGE = re.compile(r"^bytes=\s*(\d*-\d*)(\s*,\s*\d*-\d*){0,7}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+-\d+|\*)/(\d+|\*)$")


class RangeNotSatisfiable(errors.InvalidRequest):
    status = 416
    code = "range_not_satisfiable"


@dataclass(frozen=True, slots=True)
class Relayed:
    """An opened upstream answer: its status (200, 206), the headers to pass on, and its body."""

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


def range_of(header: str | None) -> str | None:
    """The client's Range header if it is a plain byte range (anything else is ignored, as RFC 9110 allows)."""
    if header is None or len(header) > 200:
        return None
    header = header.strip()
    return header if _RANGE.match(header) else None


def _gone(detail: str) -> errors.NotFound:
    return errors.NotFound(f"The upstream no longer serves this file ({detail}); its result URLs last 7 days.")


async def relay(
    http: httpx.AsyncClient,
    url: str,
    *,
    range_header: str | None,
    media_type: str,
    max_bytes: int,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Relayed:
    """Open `url` (a few attempts while nothing has been sent to the client) and hand back its body to stream.
    Raises NotFound (the upstream forgot it), RangeNotSatisfiable, or UpstreamError."""
    last = "HTTP error"
    for attempt in range(ATTEMPTS):
        if attempt:
            await sleep(0.25 * 2**attempt)
        try:
            response = await _open(http, url, range_header, timeout)
        except UnsafeUrl as exc:
            raise errors.UpstreamError(f"The result's URL was refused ({exc}).") from None
        except (httpx.HTTPError, TimeoutError) as exc:
            last = f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError) else describe(exc)
            continue
        status = response.status_code
        if status in (200, 206):
            return await _relayed(response, media_type, max_bytes, timeout)
        await response.aclose()
        if status == 416:
            raise RangeNotSatisfiable("The requested range is not satisfiable.", param="range")
        if status in (403, 404, 410):
            raise _gone(f"HTTP {status}")
        last = f"HTTP {status}"
        if status < 500 and status != 429:
            break
    raise errors.UpstreamError(f"The result could not be fetched from the upstream ({last}); retry the download.")


async def _open(http: httpx.AsyncClient, url: str, range_header: str | None, timeout: float) -> httpx.Response:
    headers = {"Range": range_header} if range_header else {}
    request = http.build_request("GET", url, headers=headers, timeout=timeout)
    async with asyncio.timeout(timeout):
        return await http.send(request, stream=True)


async def _relayed(response: httpx.Response, media_type: str, max_bytes: int, timeout: float) -> Relayed:
    declared = response.headers.get("content-length", "")
    length = int(declared) if declared.isascii() and declared.isdigit() and len(declared) <= 15 else None
    if length is not None and length > max_bytes:
        await response.aclose()
        raise errors.UpstreamError(f"The result is larger than the gateway's cap of {max_bytes} bytes.")
    headers = {"content-type": media_type, "x-content-type-options": "nosniff", "cache-control": "private"}
    encoded = response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    if length is not None and not encoded:  # decoded bytes are relayed: an encoded length would not match
        headers["content-length"] = str(length)
    content_range = printable(response.headers.get("content-range", ""), 100)
    if response.status_code == 206 and _CONTENT_RANGE.match(content_range) and not encoded:
        headers["content-range"] = content_range
    if response.headers.get("accept-ranges", "").strip().lower() == "bytes":
        headers["accept-ranges"] = "bytes"
    return Relayed(response.status_code, headers, _body(response, max_bytes, timeout))


async def _body(response: httpx.Response, max_bytes: int, timeout: float) -> AsyncIterator[bytes]:
    """The upstream's bytes as they come, at most `max_bytes`, no pause longer than `timeout`; closed at the end
    (a failure mid-way breaks the client's connection, so a cut file never looks whole)."""
    total = 0
    chunks = response.aiter_bytes()
    try:
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            total += len(chunk)
            if total > max_bytes:
                raise errors.UpstreamError(f"The result is larger than the gateway's cap of {max_bytes} bytes.")
            yield chunk
    finally:
        await response.aclose()
