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
from collections.abc import Callable, Iterable
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

    async def release(self, urls: Iterable[str], *, owner: str) -> None:
        """The upstream no longer needs these uploads of `owner` (their job is over): free their space now.
        URLs that are not this store's, or not the owner's, are ignored. A later `put` of the same bytes by
        the same owner brings the same URL back to life."""
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


@dataclass(frozen=True, slots=True)
class _Entry:
    owner: str
    size: int
    expires: float


class LocalStore:
    """Media kept by the shim and served by `serve_media`: in memory, or files in `directory`.

    Files carry their creation time as their mtime, so a directory survives restarts with expiry intact.
    Live media is capped at `max_total_bytes`, and each owner (credential) at `max_owner_bytes`, in memory
    and on disk alike: past the owner's share a put is a retryable 429, past the total a retryable 503
    (evicting a live upload would break a task that has not fetched it yet). Uploads are released as soon as
    their job is over, so the caps bound the uploads of jobs in flight.
    """

    def __init__(
        self,
        *,
        public_url: str | None,
        ttl: float = 3600.0,
        max_bytes: int = 50 << 20,
        max_total_bytes: int = 512 << 20,
        max_owner_bytes: int | None = None,
        directory: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.publishes = self.public_url is not None
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self.max_owner_bytes = max_owner_bytes or max_total_bytes
        self.directory = directory
        self.clock = clock
        self._memory: dict[str, bytes] = {}
        self._live: dict[str, _Entry] = {}
        self._total = 0
        self._by_owner: dict[str, int] = {}
        self._recent = RecentUploads(ttl)
        self._swept = clock()
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
            self._index_directory()

    async def put(self, data: bytes, content_type: str, ext: str, *, owner: str) -> str:
        if self.public_url is None:
            raise no_public_url()
        if len(data) > self.max_bytes:
            raise errors.PayloadTooLarge(f"An uploaded file is larger than {self.max_bytes} bytes.")
        now = self.clock()
        self._expire(now)
        digest = hashlib.sha256(data).hexdigest()
        reused = self._recent.find(owner, digest, now)
        if reused is not None:
            name = reused.rpartition("/")[2]
            if name not in self._live:  # released: the same name comes back, for the retry's fingerprint
                await self._store(name, data, owner, now)
            return reused
        name = f"{secrets.token_urlsafe(32)}.{ext}"
        await self._store(name, data, owner, now)
        url = f"{self.public_url}/media/{name}"
        self._recent.add(owner, digest, url, now + self.ttl)
        return url

    async def get(self, name: str) -> Media | None:
        match = NAME.match(name)
        entry = self._live.get(name) if match is not None else None
        if match is None or entry is None:
            return None
        now = self.clock()
        if entry.expires <= now:
            await self._drop(name)
            return None
        if self.directory is None:
            return Media(self._memory[name], CONTENT_TYPES[match[2]], int(entry.expires - now))
        data = await asyncio.to_thread(self._read, name)
        return None if data is None else Media(data, CONTENT_TYPES[match[2]], int(entry.expires - now))

    async def release(self, urls: Iterable[str], *, owner: str) -> None:
        prefix = f"{self.public_url}/media/"
        for url in urls:
            name = url[len(prefix) :] if self.public_url and url.startswith(prefix) else ""
            entry = self._live.get(name)
            if entry is not None and entry.owner == owner:
                await self._drop(name)

    def used(self, owner: str | None = None) -> int:
        """Bytes of live media, of one owner or in all."""
        return self._total if owner is None else self._by_owner.get(owner, 0)

    # --- inside ------------------------------------------------------------------------------------

    async def _store(self, name: str, data: bytes, owner: str, now: float) -> None:
        size = len(data)
        if self._by_owner.get(owner, 0) + size > self.max_owner_bytes:
            raise errors.UploadQuotaExceeded(
                f"This API key's uploads still in use fill its share of the shim's media store "
                f"({self.max_owner_bytes} bytes); retry once its running edits finish.",
                retry_after=self._retry_after(now, owner),
            )
        if self._total + size > self.max_total_bytes:
            raise errors.MediaStoreFull(
                f"The shim's media store is full ({self._total} bytes of uploads still in use); retry shortly.",
                retry_after=self._retry_after(now, None),
            )
        if self.directory is None:
            self._memory[name] = data
        else:
            await asyncio.to_thread(self._write, name, data, now)
        self._account(name, _Entry(owner, size, now + self.ttl))
        if self.directory is not None and now - self._swept > min(self.ttl, 300.0):
            self._swept = now
            await asyncio.to_thread(self._sweep, now)

    def _retry_after(self, now: float, owner: str | None) -> float:
        """Until the first of the relevant uploads expires, at most 30 s: uploads are mostly released earlier,
        when their job ends."""
        expiries = [e.expires for e in self._live.values() if owner is None or e.owner == owner]
        return min(max(1.0, min(expiries, default=now + 1.0) - now), 30.0)

    def _account(self, name: str, entry: _Entry) -> None:
        self._live[name] = entry
        self._total += entry.size
        self._by_owner[entry.owner] = self._by_owner.get(entry.owner, 0) + entry.size

    async def _drop(self, name: str) -> None:
        entry = self._live.pop(name, None)
        if entry is None:
            return
        self._total -= entry.size
        left = self._by_owner.get(entry.owner, 0) - entry.size
        if left > 0:
            self._by_owner[entry.owner] = left
        else:
            self._by_owner.pop(entry.owner, None)
        if self.directory is None:
            self._memory.pop(name, None)
        else:
            await asyncio.to_thread(self._unlink, name)

    def _expire(self, now: float) -> None:
        """Forget expired entries (their bytes go with them in memory; files go at the next sweep)."""
        for name in [n for n, e in self._live.items() if e.expires <= now]:
            entry = self._live.pop(name)
            self._total -= entry.size
            left = self._by_owner.get(entry.owner, 0) - entry.size
            if left > 0:
                self._by_owner[entry.owner] = left
            else:
                self._by_owner.pop(entry.owner, None)
            self._memory.pop(name, None)
        self._recent.purge(now)

    def _path(self, name: str) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, name)

    def _index_directory(self) -> None:
        """Account the live files an earlier process left (owner unknown: they count toward the total only)."""
        assert self.directory is not None
        now = self.clock()
        with os.scandir(self.directory) as entries:
            for item in entries:
                if NAME.match(item.name):
                    stat = item.stat()
                    if stat.st_mtime + self.ttl > now:
                        self._account(item.name, _Entry("", stat.st_size, stat.st_mtime + self.ttl))

    def _write(self, name: str, data: bytes, now: float) -> None:
        path = self._path(name)
        temporary = path + ".part"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.utime(temporary, (now, now))
        os.replace(temporary, path)

    def _read(self, name: str) -> bytes | None:
        try:
            with open(self._path(name), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))

    def _sweep(self, now: float) -> None:
        """Delete expired files (only names this store writes)."""
        assert self.directory is not None
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
        max_total_bytes=settings.media_max_bytes,
        max_owner_bytes=settings.media_max_bytes_per_key,
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
