"""Media in both directions: uploads out to the upstream (`base` seam, `local` and `s3` stores, `checks`),
results in from it (`results`, through `url_guard`)."""

from __future__ import annotations

import httpx

from ..config import ConfigurationError, Settings
from .base import MediaStore
from .local import LocalStore
from .s3 import S3Credentials, S3Store


def build_media_store(settings: Settings, *, http: httpx.AsyncClient) -> MediaStore:
    """The store the settings ask for: S3 when SHIM_S3_BUCKET is set, else the local one."""
    if settings.s3_bucket:
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
