"""The local media store: uploads kept by the shim itself, in memory or in a directory (SHIM_MEDIA_DIR), and
served at `GET {SHIM_PUBLIC_URL}/media/{token}.{ext}` (`web.media_routes`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .. import errors
from .base import CONTENT_TYPES, NAME, Media, RecentUploads, no_public_url


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

    def expiry(self, url: str) -> float | None:
        entry = self._live.get(self._name(url))
        return None if entry is None else entry.expires

    async def release(self, urls: Iterable[str], *, owner: str) -> None:
        for url in urls:
            name = self._name(url)
            entry = self._live.get(name)
            if entry is not None and entry.owner == owner:
                await self._drop(name)

    def used(self, owner: str | None = None) -> int:
        """Bytes of live media, of one owner or in all."""
        return self._total if owner is None else self._by_owner.get(owner, 0)

    # --- inside ------------------------------------------------------------------------------------

    def _name(self, url: str) -> str:
        """The media name of one of this store's URLs ("" for any other URL)."""
        prefix = f"{self.public_url}/media/"
        return url[len(prefix) :] if self.public_url and url.startswith(prefix) else ""

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

    def _unaccount(self, name: str) -> bool:
        """Forget one live entry (its bytes too, in memory); False when there was none."""
        entry = self._live.pop(name, None)
        if entry is None:
            return False
        self._total -= entry.size
        left = self._by_owner.get(entry.owner, 0) - entry.size
        if left > 0:
            self._by_owner[entry.owner] = left
        else:
            self._by_owner.pop(entry.owner, None)
        self._memory.pop(name, None)
        return True

    async def _drop(self, name: str) -> None:
        if self._unaccount(name) and self.directory is not None:
            await asyncio.to_thread(self._unlink, name)

    def _expire(self, now: float) -> None:
        """Forget expired entries (their bytes go with them in memory; files go at the next sweep)."""
        for name in [n for n, e in self._live.items() if e.expires <= now]:
            self._unaccount(name)
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
