"""The media store: uploaded images become short-lived URLs the upstream can fetch.

Built in: a local store (memory, or a directory with SHIM_MEDIA_DIR) served by the shim itself at
`GET {SHIM_PUBLIC_URL}/media/{token}.{ext}`; with SHIM_S3_BUCKET, an S3-compatible bucket (`media_s3`).
A token is 256 random bits: URLs cannot be guessed or listed, an unknown and an expired token get the same
404, and one credential can never be handed another's file (reuse of an upload is keyed by credential).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import Response

from . import errors

if TYPE_CHECKING:
    import httpx

    from .config import Settings

#: ext -> content type: the only things stored.
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
NAME = re.compile(r"^([A-Za-z0-9_-]{43})\.(png|jpg|webp)$")


def no_public_url() -> errors.InvalidRequest:
    return errors.InvalidRequest(
        "Uploaded images must reach the upstream as URLs, and this shim has no public address: set "
        "SHIM_PUBLIC_URL to the URL where the upstream can reach this shim (or SHIM_S3_BUCKET for an "
        "S3-compatible bucket), or send a JSON body with image URLs instead of files.",
        param="image",
        code="media_store_unavailable",
    )


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    content_type: str
    max_age: int  # seconds of life left


@dataclass(frozen=True, slots=True)
class _Held:
    data: bytes
    content_type: str
    expires: float


class MediaStore(Protocol):
    #: False when uploads cannot be given a URL the upstream can reach (no SHIM_PUBLIC_URL, no S3).
    publishes: bool

    async def put(self, data: bytes, content_type: str, ext: str, *, owner: str) -> str:
        """Keep `data` for the TTL and return its URL. The same bytes from the same owner, uploaded again
        while the first URL still has at least half its life, get that URL again (so a client's retry is
        the same request and attaches to the same job instead of paying twice)."""
        ...

    async def get(self, name: str) -> Media | None:
        """The live media called `name` (`{token}.{ext}`), or None: unknown, expired, malformed alike."""
        ...


class RecentUploads:
    """(owner, sha256) -> the URL already handed out for those bytes, while it has at least half its TTL."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._urls: dict[tuple[str, str], tuple[str, float]] = {}

    def find(self, owner: str, digest: str, now: float) -> str | None:
        found = self._urls.get((owner, digest))
        if found is None:
            return None
        url, expires = found
        if expires - now < self.ttl / 2:
            del self._urls[(owner, digest)]
            return None
        return url

    def add(self, owner: str, digest: str, url: str, expires: float) -> None:
        self._urls[(owner, digest)] = (url, expires)

    def purge(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._urls.items() if expires <= now]:
            del self._urls[key]


class LocalStore:
    """Media kept by the shim and served by `serve_media`: in memory, or files in `directory`.

    Files carry their creation time as their mtime, so a directory survives restarts with expiry intact.
    Memory is capped at `max_total_bytes` of live media; past that a put is a retryable 503 (evicting a live
    upload would break a task that has not fetched it yet).
    """

    def __init__(
        self,
        *,
        public_url: str | None,
        ttl: float = 3600.0,
        max_bytes: int = 50 << 20,
        max_total_bytes: int = 512 << 20,
        directory: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.publishes = self.public_url is not None
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self.directory = directory
        self.clock = clock
        self._memory: dict[str, _Held] = {}
        self._recent = RecentUploads(ttl)
        self._swept = clock()
        if directory is not None:
            os.makedirs(directory, exist_ok=True)

    async def put(self, data: bytes, content_type: str, ext: str, *, owner: str) -> str:
        if self.public_url is None:
            raise no_public_url()
        if len(data) > self.max_bytes:
            raise errors.PayloadTooLarge(f"An uploaded file is larger than {self.max_bytes} bytes.")
        now = self.clock()
        digest = hashlib.sha256(data).hexdigest()
        reused = self._recent.find(owner, digest, now)
        if reused is not None:
            return reused
        name = f"{secrets.token_urlsafe(32)}.{ext}"
        if self.directory is None:
            self._make_room(len(data), now)
            self._memory[name] = _Held(data, CONTENT_TYPES[ext], now + self.ttl)
        else:
            await asyncio.to_thread(self._write, name, data, now)
            if now - self._swept > min(self.ttl, 300.0):
                self._swept = now
                await asyncio.to_thread(self._sweep, now)
        url = f"{self.public_url}/media/{name}"
        self._recent.add(owner, digest, url, now + self.ttl)
        return url

    async def get(self, name: str) -> Media | None:
        match = NAME.match(name)
        if match is None:
            return None
        now = self.clock()
        if self.directory is None:
            entry = self._memory.get(name)
            if entry is None:
                return None
            if entry.expires <= now:
                del self._memory[name]
                return None
            return Media(entry.data, entry.content_type, int(entry.expires - now))
        return await asyncio.to_thread(self._read, name, CONTENT_TYPES[match[2]], now)

    def _make_room(self, size: int, now: float) -> None:
        for name in [n for n, m in self._memory.items() if m.expires <= now]:
            del self._memory[name]
        self._recent.purge(now)
        used = sum(len(m.data) for m in self._memory.values())
        if used + size > self.max_total_bytes:
            wait = min(m.expires for m in self._memory.values()) - now if self._memory else 1.0
            raise errors.MediaStoreFull(
                f"The shim's media store is full ({used} bytes of uploads still live); retry shortly.",
                retry_after=max(1.0, wait),
            )

    def _path(self, name: str) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, name)

    def _write(self, name: str, data: bytes, now: float) -> None:
        path = self._path(name)
        temporary = path + ".part"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.utime(temporary, (now, now))
        os.replace(temporary, path)

    def _read(self, name: str, content_type: str, now: float) -> Media | None:
        path = self._path(name)
        try:
            created = os.stat(path).st_mtime
            if created + self.ttl <= now:
                os.unlink(path)
                return None
            with open(path, "rb") as handle:
                return Media(handle.read(), content_type, int(created + self.ttl - now))
        except FileNotFoundError:
            return None

    def _sweep(self, now: float) -> None:
        """Delete expired files (only names this store writes)."""
        assert self.directory is not None
        self._recent.purge(now)
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if NAME.match(entry.name) and entry.stat().st_mtime + self.ttl <= now:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def build_media_store(settings: Settings, *, http: httpx.AsyncClient) -> MediaStore:
    """The store the settings ask for: S3 when SHIM_S3_BUCKET is set, else the local one."""
    if settings.s3_bucket:
        from .config import ConfigurationError
        from .media_s3 import S3Credentials, S3Store

        if not (settings.s3_access_key and settings.s3_secret_key):
            raise ConfigurationError("SHIM_S3_BUCKET needs SHIM_S3_ACCESS_KEY and SHIM_S3_SECRET_KEY")
        credentials = S3Credentials(settings.s3_access_key, settings.s3_secret_key, settings.s3_region)
        return S3Store(
            http=http,
            bucket=settings.s3_bucket,
            credentials=credentials,
            endpoint=settings.s3_endpoint,
            ttl=settings.media_ttl_seconds,
            max_bytes=settings.max_upload_bytes,
            timeout=settings.upstream_timeout,
        )
    return LocalStore(
        public_url=settings.public_url,
        ttl=settings.media_ttl_seconds,
        max_bytes=settings.max_upload_bytes,
        max_total_bytes=max(512 << 20, 4 * settings.max_upload_bytes),
        directory=settings.media_dir,
    )


async def serve_media(request: Request) -> Response:
    """`GET /media/{name}`: the bytes of a live upload. No listing, no hint whether a token ever existed."""
    store: MediaStore | None = getattr(request.app.state.shim, "media", None)
    media = await store.get(request.path_params["name"]) if store is not None else None
    if media is None:
        raise errors.NotFound("No such media: it never existed or has expired.")
    headers = {
        "cache-control": f"private, max-age={max(0, media.max_age)}",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'",
    }
    return Response(media.data, media_type=media.content_type, headers=headers)
