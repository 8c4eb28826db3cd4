"""The S3-compatible media store (AWS S3, Cloudflare R2, MinIO): uploads are PUT with SigV4 over the shared
httpx client and handed to the upstream as presigned GET URLs. No SDK: the signing below is pure functions,
checked against the examples in AWS's SigV4 documentation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httpx

from .. import errors
from ..config import ConfigurationError
from .base import RecentUploads

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_SECONDS = 604800


@dataclass(frozen=True, slots=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    service: str = "s3"


def amz_date(epoch: float) -> str:
    """`20130524T000000Z` for a Unix time."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 percent-encoding as SigV4 wants it: only A-Z a-z 0-9 - _ . ~ stay (and `/` in paths)."""
    return quote(text, safe="/" if keep_slash else "")


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((uri_encode(k), uri_encode(v)) for k, v in query))


def canonical_request(
    method: str, path: str, query: Sequence[tuple[str, str]], headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """(canonical request, signed header names) for a raw (not yet encoded) path."""
    normalized = {name.lower().strip(): " ".join(value.split()) for name, value in headers.items()}
    names = sorted(normalized)
    lines = "".join(f"{name}:{normalized[name]}\n" for name in names)
    signed = ";".join(names)
    request = "\n".join(
        [
            method.upper(),
            uri_encode(path or "/", keep_slash=True),
            canonical_query(query),
            lines,
            signed,
            payload_hash,
        ]
    )
    return request, signed


def scope(credentials: S3Credentials, date: str) -> str:
    return f"{date[:8]}/{credentials.region}/{credentials.service}/aws4_request"


def signing_key(credentials: S3Credentials, date: str) -> bytes:
    key = ("AWS4" + credentials.secret_key).encode()
    for part in (date[:8], credentials.region, credentials.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(credentials: S3Credentials, date: str, canonical: str) -> str:
    """The hex signature of a canonical request made at `date` (an amz date)."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join([ALGORITHM, date, scope(credentials, date), digest])
    return hmac.new(signing_key(credentials, date), to_sign.encode(), hashlib.sha256).hexdigest()


def presign_url(
    credentials: S3Credentials,
    *,
    method: str,
    scheme: str,
    host: str,
    path: str,
    date: str,
    expires: int,
) -> str:
    """A query-string-authenticated URL (only `host` signed, payload unsigned), valid `expires` seconds."""
    query = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{credentials.access_key}/{scope(credentials, date)}"),
        ("X-Amz-Date", date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    canonical, _ = canonical_request(method, path, query, {"host": host}, UNSIGNED_PAYLOAD)
    sig = signature(credentials, date, canonical)
    return f"{scheme}://{host}{uri_encode(path, keep_slash=True)}?{canonical_query(query)}&X-Amz-Signature={sig}"


def sign_headers(
    credentials: S3Credentials,
    *,
    method: str,
    host: str,
    path: str,
    date: str,
    payload_hash: str,
    headers: Mapping[str, str] | None = None,
    query: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """The headers to send (the given ones plus x-amz-date, x-amz-content-sha256, Authorization)."""
    signed_headers = {**(headers or {}), "x-amz-date": date, "x-amz-content-sha256": payload_hash}
    canonical, names = canonical_request(method, path, query, {**signed_headers, "host": host}, payload_hash)
    sig = signature(credentials, date, canonical)
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope(credentials, date)},"
        f"SignedHeaders={names},Signature={sig}"
    )
    return {**signed_headers, "authorization": authorization}


def _host_of(scheme: str, netloc_host: str, port: int | None) -> str:
    """The Host header httpx sends: default ports left out."""
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return netloc_host
    return f"{netloc_host}:{port}"


class S3Store:
    """Uploads as objects under `prefix` with random names; the upstream gets presigned GET URLs.

    Objects are not deleted by the shim: give the bucket a lifecycle rule (expire after a day) instead.
    """

    publishes = True

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        bucket: str,
        credentials: S3Credentials,
        endpoint: str | None = None,
        ttl: float = 3600.0,
        max_bytes: int = 50 << 20,
        prefix: str = "shim-media/",
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if endpoint:  # path style: MinIO, R2 and most S3-compatibles
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(f"SHIM_S3_ENDPOINT must be an http(s) URL, got {endpoint!r}")
            self._scheme = parts.scheme
            self._host = _host_of(parts.scheme, parts.hostname, parts.port)
            self._base_path = f"{parts.path.rstrip('/')}/{bucket}/"
        else:  # AWS virtual-hosted style
            if credentials.region == "auto":
                raise ConfigurationError("SHIM_S3_REGION must name the bucket's AWS region (no SHIM_S3_ENDPOINT)")
            self._scheme, self._host = "https", f"{bucket}.s3.{credentials.region}.amazonaws.com"
            self._base_path = "/"
        self.http = http
        self.bucket = bucket
        self.credentials = credentials
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.timeout = timeout
        self.clock = clock
        self._recent = RecentUploads(min(ttl, MAX_PRESIGN_SECONDS))

    async def put(self, data: bytes, content_type: str, ext: str, *, owner: str) -> str:
        """Store `data` and return a presigned URL valid for the TTL (the same one for a repeat upload)."""
        if len(data) > self.max_bytes:
            raise errors.PayloadTooLarge(f"An uploaded file is larger than {self.max_bytes} bytes.")
        digest = hashlib.sha256(data).hexdigest()
        now = self.clock()
        reused = self._recent.find(owner, digest, now)
        if reused is not None:
            return reused
        path = f"{self._base_path}{self.prefix}{secrets.token_urlsafe(32)}.{ext}"
        date = amz_date(now)
        headers = sign_headers(
            self.credentials,
            method="PUT",
            host=self._host,
            path=path,
            date=date,
            payload_hash=digest,
            headers={"content-type": content_type},
        )
        url = f"{self._scheme}://{self._host}{uri_encode(path, keep_slash=True)}"
        try:
            response = await self.http.put(url, content=data, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise errors.UpstreamUnavailable(
                f"Could not store the upload in S3 bucket {self.bucket!r} ({type(exc).__name__})."
            ) from None
        if response.status_code != 200:
            raise errors.UpstreamError(
                f"S3 bucket {self.bucket!r} refused the upload: HTTP {response.status_code} "
                f"{response.text[:200]!r}. Check SHIM_S3_* settings."
            )
        expires = int(min(self.ttl, MAX_PRESIGN_SECONDS))
        presigned = presign_url(
            self.credentials,
            method="GET",
            scheme=self._scheme,
            host=self._host,
            path=path,
            date=date,
            expires=expires,
        )
        self._recent.add(owner, digest, presigned, now + expires)
        return presigned

    async def get(self, name: str) -> None:
        """Nothing is served by the shim itself: the bucket serves the presigned URLs."""
        return None

    def expiry(self, url: str) -> float | None:
        return self._recent.expiry(url)

    async def release(self, urls: Iterable[str], *, owner: str) -> None:
        """Objects stay until the bucket's lifecycle rule deletes them (the shim holds no delete permission)."""
