"""The media store (memory, directory, S3) and its SigV4 signing, without a network: fake clocks,
httpx.MockTransport for the bucket, httpx.ASGITransport for the serving route."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from shim import errors
from shim.config import ConfigurationError, Settings
from shim.errors import MediaStoreFull
from shim.media import build_media_store
from shim.media.local import LocalStore
from shim.media.s3 import (
    S3Credentials,
    S3Store,
    amz_date,
    canonical_request,
    presign_url,
    sign_headers,
)
from shim.web.errors import error_response
from shim.web.media_routes import serve_media

AWS = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")
HOST = "examplebucket.s3.amazonaws.com"
DATE = "20130524T000000Z"
EMPTY = hashlib.sha256(b"").hexdigest()
TOKEN_URL = re.compile(r"^http://shim\.test/media/[A-Za-z0-9_-]{43}\.png$")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


# --- SigV4 against the examples in AWS's documentation (S3 API reference)
def test_presigned_url_matches_aws_example() -> None:
    """The query-string example (GET test.txt, 86400 s) yields AWS's documented URL and signature."""
    url = presign_url(AWS, method="GET", scheme="https", host=HOST, path="/test.txt", date=DATE, expires=86400)
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


@pytest.mark.parametrize(
    ("method", "path", "headers", "payload", "query", "signed", "expected"),
    [
        pytest.param(
            "GET",
            "/test.txt",
            {"Range": "bytes=0-9"},
            b"",
            (),
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            id="get-object",
        ),
        pytest.param(
            "PUT",
            "/test$file.text",
            {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
            b"Welcome to Amazon S3.",
            (),
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            id="put-object",
        ),
        pytest.param(
            "GET",
            "/",
            {},
            b"",
            (("max-keys", "2"), ("prefix", "J")),
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            id="list-objects",
        ),
    ],
)
def test_header_signature_matches_aws_examples(method, path, headers, payload, query, signed, expected) -> None:
    """The Authorization header of AWS's three header-signed S3 examples is reproduced exactly."""
    result = sign_headers(
        AWS,
        method=method,
        host=HOST,
        path=path,
        date=DATE,
        payload_hash=hashlib.sha256(payload).hexdigest(),
        headers=headers,
        query=query,
    )
    assert result["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed},Signature={expected}"
    )
    assert result["x-amz-date"] == DATE


def test_canonical_request_encodes_path_and_trims_headers() -> None:
    """The canonical request percent-encodes the path (keeping slashes) and folds header whitespace."""
    canonical, signed = canonical_request("put", "/a b/$c", [], {"X-Thing": "  a   b "}, EMPTY)
    assert canonical.split("\n")[:4] == ["PUT", "/a%20b/%24c", "", "x-thing:a b"]
    assert signed == "x-thing"


def test_amz_date_is_utc() -> None:
    """A Unix time is formatted as SigV4's compact UTC timestamp."""
    assert amz_date(1369353600) == DATE


# --- the local store
async def test_memory_store_urls_are_random_and_expire() -> None:
    """Each upload gets a 256-bit token URL serving its bytes until the TTL, then nothing."""
    clock = Clock()
    store = LocalStore(public_url="http://shim.test/", ttl=60, clock=clock)
    first = await store.put(b"one", "image/png", "png", owner="a")
    second = await store.put(b"two", "image/png", "png", owner="a")
    assert TOKEN_URL.match(first) and TOKEN_URL.match(second) and first != second
    media = await store.get(name_of(first))
    assert media is not None and (media.data, media.content_type, media.max_age) == (b"one", "image/png", 60)
    clock.now += 60
    assert await store.get(name_of(first)) is None


async def test_reupload_reuses_url_per_owner_only() -> None:
    """The same bytes from the same owner get the same URL (a retry attaches); another owner gets its own."""
    clock = Clock()
    store = LocalStore(public_url="http://shim.test", ttl=100, clock=clock)
    url = await store.put(b"same", "image/png", "png", owner="a")
    assert await store.put(b"same", "image/png", "png", owner="a") == url
    assert await store.put(b"same", "image/png", "png", owner="b") != url
    clock.now += 51  # under half its life left: a new URL, so the upstream still has time to fetch
    assert await store.put(b"same", "image/png", "png", owner="a") != url


async def test_a_repeat_upload_tells_the_first_urls_end_of_life() -> None:
    """A repeat upload gets the first URL, which ends when the first one does, not a TTL after the repeat:
    what a video's remix checks before it hands the reference to the upstream again."""
    clock = Clock()
    store = LocalStore(public_url="http://shim.test", ttl=100, clock=clock)
    url = await store.put(b"same", "image/png", "png", owner="a")
    clock.now += 40
    assert await store.put(b"same", "image/png", "png", owner="a") == url
    assert store.expiry(url) == 1_700_000_000.0 + 100
    assert store.expiry("http://elsewhere.test/media/x.png") is None


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("A" * 43 + ".png", id="unknown-token"),
        pytest.param("../etc/passwd", id="traversal"),
        pytest.param("short.png", id="short"),
        pytest.param("A" * 43 + ".exe", id="extension"),
    ],
)
async def test_unknown_names_are_none(name) -> None:
    """Unknown, malformed and traversal names are simply absent."""
    store = LocalStore(public_url="http://shim.test")
    await store.put(b"x", "image/png", "png", owner="a")
    assert await store.get(name) is None


async def test_without_public_url_put_names_the_setting() -> None:
    """A local store with no public URL refuses uploads with a 400 naming SHIM_PUBLIC_URL."""
    store = LocalStore(public_url=None)
    assert store.publishes is False
    with pytest.raises(errors.InvalidRequest) as caught:
        await store.put(b"x", "image/png", "png", owner="a")
    assert "SHIM_PUBLIC_URL" in caught.value.message


async def test_size_caps() -> None:
    """One file over max_bytes is a 413; past an owner's share a retryable 429, past the total a retryable 503."""
    clock = Clock()
    store = LocalStore(
        public_url="http://shim.test", ttl=10, max_bytes=100, max_total_bytes=250, max_owner_bytes=150, clock=clock
    )
    with pytest.raises(errors.PayloadTooLarge):
        await store.put(b"x" * 101, "image/png", "png", owner="a")
    await store.put(b"a" * 100, "image/png", "png", owner="a")
    with pytest.raises(errors.UploadQuotaExceeded) as quota:
        await store.put(b"A" * 100, "image/png", "png", owner="a")
    assert quota.value.status == 429 and quota.value.should_retry is True
    await store.put(b"b" * 100, "image/png", "png", owner="b")
    with pytest.raises(MediaStoreFull) as caught:
        await store.put(b"c" * 100, "image/png", "png", owner="c")
    assert caught.value.status == 503 and caught.value.retry_after == 10
    clock.now += 10
    assert await store.put(b"c" * 100, "image/png", "png", owner="c")
    assert store.used() == 100 and store.used("c") == 100


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "directory"])
async def test_release_frees_space_and_a_reupload_revives_the_same_url(tmp_path, on_disk) -> None:
    """Releasing a finished job's uploads frees their bytes at once (only the owner's may); the same bytes
    uploaded again by the same owner get the same URL back, serving again (a retry keeps its fingerprint)."""
    directory = str(tmp_path) if on_disk else None
    store = LocalStore(public_url="http://shim.test", ttl=600, max_total_bytes=150, directory=directory, clock=Clock())
    url = await store.put(b"p" * 100, "image/png", "png", owner="a")
    await store.release([url], owner="b")  # not b's: kept
    assert store.used() == 100
    await store.release([url, "https://elsewhere.test/media/x.png"], owner="a")
    assert store.used() == 0 and await store.get(name_of(url)) is None
    other = await store.put(b"q" * 100, "image/png", "png", owner="b")  # the space is free again
    await store.release([other], owner="b")
    assert await store.put(b"p" * 100, "image/png", "png", owner="a") == url
    media = await store.get(name_of(url))
    assert media is not None and media.data == b"p" * 100 and store.used("a") == 100


async def test_directory_store_survives_restart_and_sweeps(tmp_path) -> None:
    """Files outlive the store object, keep their expiry, and expired ones are deleted by a later put."""
    clock = Clock()
    store = LocalStore(public_url="http://shim.test", ttl=600, directory=str(tmp_path), clock=clock)
    url = await store.put(b"kept", "image/webp", "webp", owner="a")
    reopened = LocalStore(public_url="http://shim.test", ttl=600, directory=str(tmp_path), clock=clock)
    media = await reopened.get(name_of(url))
    assert media is not None and (media.data, media.content_type) == (b"kept", "image/webp")
    clock.now += 600
    await reopened.put(b"new", "image/png", "png", owner="a")
    assert name_of(url) not in os.listdir(tmp_path)
    assert await reopened.get(name_of(url)) is None


# --- the serving route
def media_client(store: LocalStore) -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/media/{name}", serve_media, methods=["GET"])],
        exception_handlers={errors.ShimError: error_response},
    )
    app.state.shim = SimpleNamespace(media=store)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim.test")


async def test_serve_media_and_expired_is_same_404() -> None:
    """The route serves the bytes with their type; expired and never-issued tokens get one identical 404."""
    clock = Clock()
    store = LocalStore(public_url="http://shim.test", ttl=30, clock=clock)
    url = await store.put(b"\x89PNG...", "image/png", "png", owner="a")
    async with media_client(store) as http:
        ok = await http.get(url)
        assert ok.status_code == 200 and ok.content == b"\x89PNG..."
        assert ok.headers["content-type"] == "image/png" and ok.headers["x-content-type-options"] == "nosniff"
        clock.now += 30
        expired = await http.get(url)
        never = await http.get("/media/" + "B" * 43 + ".png")
    assert expired.status_code == never.status_code == 404
    assert expired.json() == never.json()
    assert never.json()["error"]["type"] == "invalid_request_error"


# --- the S3 store
class FakeBucket:
    """Records the PUTs it receives and answers each with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.puts: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.puts.append(request)
        return httpx.Response(self.status, text="" if self.status == 200 else "<Error>AccessDenied</Error>")


def s3_store(bucket: FakeBucket, clock: Clock, **kw) -> S3Store:
    credentials = S3Credentials("AK", "SECRET", kw.pop("region", "auto"))
    http = httpx.AsyncClient(transport=httpx.MockTransport(bucket))
    return S3Store(http=http, bucket="media", credentials=credentials, clock=clock, ttl=900, **kw)


async def test_s3_put_is_signed_and_returns_presigned_get() -> None:
    """An upload is a SigV4-signed PUT (path style on a custom endpoint) and the URL is a presigned GET."""
    bucket, clock = FakeBucket(), Clock(1369353600)
    store = s3_store(bucket, clock, endpoint="http://minio.test:9000")
    url = await store.put(b"png bytes", "image/png", "png", owner="a")
    (put,) = bucket.puts
    assert put.method == "PUT" and put.content == b"png bytes"
    assert re.fullmatch(r"/media/shim-media/[A-Za-z0-9_-]{43}\.png", put.url.path)
    assert put.headers["x-amz-content-sha256"] == hashlib.sha256(b"png bytes").hexdigest()
    expected = sign_headers(
        store.credentials,
        method="PUT",
        host="minio.test:9000",
        path=put.url.path,
        date=DATE,
        payload_hash=put.headers["x-amz-content-sha256"],
        headers={"content-type": "image/png"},
    )
    assert put.headers["authorization"] == expected["authorization"]
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("minio.test:9000", put.url.path)
    query = parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["900"] and query["X-Amz-Credential"] == ["AK/20130524/auto/s3/aws4_request"]
    clock.now += 300
    assert await store.put(b"png bytes", "image/png", "png", owner="a") == url and len(bucket.puts) == 1
    assert store.expiry(url) == 1369353600 + 900  # the presigned URL's own end, not 900 s after the repeat
    assert await store.get(name_of(url)) is None


async def test_s3_aws_virtual_host_and_refusal() -> None:
    """Without an endpoint the bucket is AWS virtual-hosted; a refused PUT is an error naming the bucket."""
    bucket = FakeBucket(status=403)
    store = s3_store(bucket, Clock(), region="eu-west-1")
    with pytest.raises(errors.UpstreamError) as caught:
        await store.put(b"x", "image/png", "png", owner="a")
    assert bucket.puts[0].url.host == "media.s3.eu-west-1.amazonaws.com"
    assert "'media'" in caught.value.message and "403" in caught.value.message


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        pytest.param({"s3_bucket": "b"}, "SHIM_S3_ACCESS_KEY", id="no-keys"),
        pytest.param({"s3_bucket": "b", "s3_access_key": "a", "s3_secret_key": "s"}, "SHIM_S3_REGION", id="region"),
        pytest.param(
            {"s3_bucket": "b", "s3_access_key": "a", "s3_secret_key": "s", "s3_endpoint": "minio:9000"},
            "SHIM_S3_ENDPOINT",
            id="endpoint",
        ),
    ],
)
async def test_bad_s3_settings_fail_at_start(changes, needle) -> None:
    """Incomplete S3 settings raise ConfigurationError naming the variable when the store is built."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigurationError, match=needle):
            build_media_store(dataclasses.replace(Settings(), **changes), http=http)


async def test_build_picks_store_from_settings(tmp_path) -> None:
    """SHIM_S3_BUCKET selects S3; otherwise the local store, publishing only with SHIM_PUBLIC_URL."""
    async with httpx.AsyncClient() as http:
        s3 = build_media_store(
            dataclasses.replace(
                Settings(), s3_bucket="b", s3_access_key="a", s3_secret_key="s", s3_endpoint="https://r2.test"
            ),
            http=http,
        )
        local = build_media_store(dataclasses.replace(Settings(), media_dir=str(tmp_path / "m")), http=http)
        public = build_media_store(dataclasses.replace(Settings(), public_url="https://shim.example"), http=http)
    assert isinstance(s3, S3Store) and s3.publishes
    assert isinstance(local, LocalStore) and not local.publishes and (tmp_path / "m").is_dir()
    assert public.publishes
