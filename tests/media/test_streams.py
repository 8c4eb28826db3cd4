"""Relaying a result file from its upstream URL (media/streams.py) through the guarded client, against
`httpx.MockTransport` upstreams: Range passed on, headers kept honest, caps, stalls, refusals and retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from shim import errors
from shim.media.streams import RangeNotSatisfiable, range_of, relay
from shim.media.url_guard import AddressPolicy, GuardedTransport

DATA = bytes(range(256)) * 40
CDN = "https://cdn.example/tasks/1/0.mp4"


async def public(host: str, port: int) -> list[str]:
    return {"cdn.example": ["93.184.216.34"], "inside.example": ["10.0.0.5"]}[host]


def client(handler, policy: AddressPolicy | None = None) -> httpx.AsyncClient:
    guarded = GuardedTransport(httpx.MockTransport(handler), policy or AddressPolicy(resolve=public))
    return httpx.AsyncClient(transport=guarded, follow_redirects=True, max_redirects=3)


def ranged(request: httpx.Request) -> httpx.Response:
    header = request.headers.get("range")
    if header is None:
        return httpx.Response(200, content=DATA, headers={"accept-ranges": "bytes", "content-type": "text/html"})
    first, _, last = header.removeprefix("bytes=").partition("-")
    start, end = int(first), int(last or len(DATA) - 1)
    if start >= len(DATA):
        return httpx.Response(416, headers={"content-range": f"bytes */{len(DATA)}"})
    headers = {"content-range": f"bytes {start}-{end}/{len(DATA)}", "accept-ranges": "bytes"}
    return httpx.Response(206, content=DATA[start : end + 1], headers=headers)


async def body(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def no_sleep(_: float) -> None:
    return None


async def test_whole_file_and_a_range_are_relayed() -> None:
    """The whole file comes with its length; a Range goes upstream and its 206 comes back with Content-Range;
    the content type is ours (never the upstream's)."""
    async with client(ranged) as http:
        whole = await relay(http, CDN, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=5)
        assert (whole.status, await body(whole.body)) == (200, DATA)
        part = await relay(http, CDN, range_header="bytes=10-19", media_type="video/mp4", max_bytes=1 << 20, timeout=5)
        assert (part.status, await body(part.body)) == (206, DATA[10:20])
    assert whole.headers == {
        "content-type": "video/mp4", "x-content-type-options": "nosniff", "cache-control": "private",
        "content-length": str(len(DATA)), "accept-ranges": "bytes",
    }  # fmt: skip
    assert part.headers["content-range"] == f"bytes 10-19/{len(DATA)}" and part.headers["content-length"] == "10"


async def test_unsatisfiable_range_is_a_416() -> None:
    """A range past the end is the client's 416, not an upstream error."""
    async with client(ranged) as http:
        with pytest.raises(RangeNotSatisfiable):
            await relay(http, CDN, range_header="bytes=99999-", media_type="video/mp4", max_bytes=1 << 20, timeout=5)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", "bytes=0-99"),
        (" bytes=100- ", "bytes=100-"),
        ("bytes=-500", "bytes=-500"),
        ("bytes=0-1, 5-9", "bytes=0-1, 5-9"),
        ("items=0-5", None),
        ("bytes=0-1\r\nX-Evil: 1", None),
        ("bytes=" + "1" * 300, None),
        (None, None),
    ],
)
def test_only_plain_byte_ranges_are_passed_on(header, expected) -> None:
    """A Range header is passed on only when it is a plain byte range (others are ignored, as RFC 9110 allows)."""
    assert range_of(header) == expected


async def test_declared_size_over_the_cap_is_refused_before_streaming() -> None:
    """A Content-Length over the cap is an upstream error before any byte is sent."""
    async with client(ranged) as http:
        with pytest.raises(errors.UpstreamError, match="cap"):
            await relay(http, CDN, range_header=None, media_type="video/mp4", max_bytes=100, timeout=5)


async def test_undeclared_size_over_the_cap_breaks_the_stream() -> None:
    """Without a Content-Length, the stream stops with an error once it passes the cap (the client's
    connection breaks: a cut file never looks whole)."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 100

    async with client(lambda request: httpx.Response(200, content=chunks())) as http:
        relayed = await relay(http, CDN, range_header=None, media_type="video/mp4", max_bytes=450, timeout=5)
        assert "content-length" not in relayed.headers
        with pytest.raises(errors.UpstreamError, match="cap"):
            await body(relayed.body)


async def test_a_stalled_upstream_is_cut() -> None:
    """A pause between chunks longer than the timeout ends the stream with an error."""

    async def stalls() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(5)
        yield b"never"

    async with client(lambda request: httpx.Response(200, content=stalls())) as http:
        relayed = await relay(http, CDN, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=0.2)
        with pytest.raises(TimeoutError):
            await body(relayed.body)


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_forgotten_file_is_not_found(status) -> None:
    """An upstream that no longer serves the file (403, 404, 410) is the client's 404, asked once."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(status)

    async with client(handler) as http:
        with pytest.raises(errors.NotFound, match="7 days"):
            await relay(http, CDN, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=5)
    assert len(calls) == 1


async def test_server_errors_are_retried_then_reported() -> None:
    """5xx answers are retried a few times (nothing was sent to the client yet), then a 502."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, content=b"ok")

    async with client(handler) as http:
        relayed = await relay(
            http, CDN, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=5, sleep=no_sleep
        )
        assert await body(relayed.body) == b"ok"
    calls.clear()
    async with client(lambda request: (calls.append(1), httpx.Response(500))[1]) as http:
        with pytest.raises(errors.UpstreamError, match="HTTP 500"):
            await relay(
                http, CDN, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=5, sleep=no_sleep
            )
    assert len(calls) == 3


@pytest.mark.parametrize(
    "url", ["https://inside.example/0.mp4", "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/x"]
)
async def test_internal_addresses_are_refused(url) -> None:
    """A result URL to a non-public address (by name or literal) is refused, never fetched."""
    calls: list[str] = []
    async with client(lambda request: (calls.append(str(request.url)), httpx.Response(200))[1]) as http:
        with pytest.raises(errors.UpstreamError, match="refused"):
            await relay(http, url, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=5)
    assert calls == []


async def test_redirect_to_an_internal_address_is_refused() -> None:
    """A redirect hop to a private address is checked like the first URL, and refused."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://10.1.2.3/secret"})

    async with client(handler) as http:
        with pytest.raises(errors.UpstreamError, match="refused"):
            await relay(http, CDN, range_header=None, media_type="video/mp4", max_bytes=1 << 20, timeout=5)
