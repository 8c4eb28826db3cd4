"""The media store's seam: uploaded images become short-lived URLs the upstream can fetch.

A token is 256 random bits: URLs cannot be guessed or listed, an unknown and an expired token get the same
404, and one credential can never be handed another's file (reuse of an upload is keyed by credential).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .. import errors

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

    def expiry(self, url: str) -> float | None:
        """When `url`, just handed out by `put`, stops working (wall-clock seconds): a repeat upload's URL is
        the first one's, which may have as little as half its life left. None for a URL not (or no longer)
        known."""
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

    def expiry(self, url: str) -> float | None:
        """When a URL handed out ends (a scan: asked once per video reference stored)."""
        return next((expires for known, expires in self._urls.values() if known == url), None)

    def purge(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._urls.items() if expires <= now]:
            del self._urls[key]
