"""Settings: every knob is a SHIM_* environment variable, read once into a frozen value at start-up."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from .errors import ShimError


class ConfigurationError(ShimError):
    """Bad configuration: raised at start-up, never at request time."""


def _float(environ: Mapping[str, str], name: str, default: float | None, *, minimum: float = 0.0) -> float | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigurationError(f"{name} must be a finite number >= {minimum:g}, got {raw!r}")
    return value


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the shim reads from its environment. `Settings.from_env(os.environ)` in production."""

    reapi_base_url: str = "https://reapi.ai"
    reve2img_base_url: str = "https://reve2img.com"
    default_model: str = "gpt-image-2"
    default_response_format: str | None = None
    reapi_rate_limit: float = 10.0
    reve2img_rate_limit: float = 10.0
    reve2img_max_in_flight: int = 8
    latency_scale: float = 1.0
    max_task_seconds: float = 3600.0
    result_ttl_seconds: float = 900.0
    hold_seconds: float | None = None
    drain_seconds: float = 60.0
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 50 << 20
    max_image_bytes: int = 64 << 20
    max_image_pixels: int = 50_000_000
    upstream_timeout: float = 30.0
    download_timeout: float = 60.0
    public_url: str | None = None
    media_ttl_seconds: float = 3600.0
    media_dir: str | None = None
    media_max_bytes: int = 512 << 20
    media_max_bytes_per_key: int = 128 << 20
    fetch_allow: tuple[str, ...] = ()
    header_timeout: float = 10.0
    body_timeout: float = 120.0
    max_connections: int = 10_000
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "auto"
    s3_access_key: str | None = field(default=None, repr=False)
    s3_secret_key: str | None = field(default=None, repr=False)
    config_file: str | None = None
    state_dir: str | None = None
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        def text(name: str, default: str | None) -> str | None:
            raw = environ.get(name, "").strip()
            return raw or default

        response_format = text("SHIM_DEFAULT_RESPONSE_FORMAT", None)
        if response_format not in (None, "url", "b64_json"):
            raise ConfigurationError(f"SHIM_DEFAULT_RESPONSE_FORMAT must be url or b64_json, got {response_format!r}")
        hold = _float(environ, "SHIM_HOLD_SECONDS", None)
        d = cls()  # the defaults (class attributes are slot descriptors)
        return cls(
            reapi_base_url=(text("SHIM_REAPI_BASE_URL", d.reapi_base_url) or "").rstrip("/"),
            reve2img_base_url=(text("SHIM_REVE2IMG_BASE_URL", d.reve2img_base_url) or "").rstrip("/"),
            default_model=text("SHIM_DEFAULT_MODEL", d.default_model) or d.default_model,
            default_response_format=response_format,
            reapi_rate_limit=_float(environ, "SHIM_REAPI_RATE_LIMIT", 10.0, minimum=0.1) or 10.0,
            reve2img_rate_limit=_float(environ, "SHIM_REVE2IMG_RATE_LIMIT", 10.0, minimum=0.1) or 10.0,
            reve2img_max_in_flight=_int(environ, "SHIM_REVE2IMG_MAX_IN_FLIGHT", 8, minimum=1),
            latency_scale=_float(environ, "SHIM_LATENCY_SCALE", 1.0, minimum=0.0001) or 1.0,
            max_task_seconds=_float(environ, "SHIM_MAX_TASK_SECONDS", 3600.0, minimum=1) or 3600.0,
            result_ttl_seconds=_float(environ, "SHIM_RESULT_TTL_SECONDS", 900.0, minimum=1) or 900.0,
            hold_seconds=hold if hold else None,
            drain_seconds=_float(environ, "SHIM_DRAIN_SECONDS", 60.0) or 0.0,
            max_body_bytes=_int(environ, "SHIM_MAX_BODY_BYTES", 1 << 20, minimum=1024),
            max_upload_bytes=_int(environ, "SHIM_MAX_UPLOAD_BYTES", 50 << 20, minimum=1024),
            max_image_bytes=_int(environ, "SHIM_MAX_IMAGE_BYTES", 64 << 20, minimum=1024),
            max_image_pixels=_int(environ, "SHIM_MAX_IMAGE_PIXELS", 50_000_000, minimum=1024),
            upstream_timeout=_float(environ, "SHIM_UPSTREAM_TIMEOUT", 30.0, minimum=0.1) or 30.0,
            download_timeout=_float(environ, "SHIM_DOWNLOAD_TIMEOUT", 60.0, minimum=0.1) or 60.0,
            public_url=(text("SHIM_PUBLIC_URL", None) or "").rstrip("/") or None,
            media_ttl_seconds=_float(environ, "SHIM_MEDIA_TTL_SECONDS", 3600.0, minimum=1) or 3600.0,
            media_dir=text("SHIM_MEDIA_DIR", None),
            media_max_bytes=_int(environ, "SHIM_MEDIA_MAX_BYTES", 512 << 20, minimum=1 << 20),
            media_max_bytes_per_key=_int(environ, "SHIM_MEDIA_MAX_BYTES_PER_KEY", 128 << 20, minimum=1 << 20),
            fetch_allow=tuple(e.strip() for e in environ.get("SHIM_FETCH_ALLOW", "").split(",") if e.strip()),
            header_timeout=_float(environ, "SHIM_HEADER_TIMEOUT", 10.0, minimum=0.1) or 10.0,
            body_timeout=_float(environ, "SHIM_BODY_TIMEOUT", 120.0, minimum=0.1) or 120.0,
            max_connections=_int(environ, "SHIM_MAX_CONNECTIONS", 10_000, minimum=16),
            s3_endpoint=text("SHIM_S3_ENDPOINT", None),
            s3_bucket=text("SHIM_S3_BUCKET", None),
            s3_region=text("SHIM_S3_REGION", "auto") or "auto",
            s3_access_key=text("SHIM_S3_ACCESS_KEY", None),
            s3_secret_key=text("SHIM_S3_SECRET_KEY", None),
            config_file=text("SHIM_CONFIG", None),
            state_dir=text("SHIM_STATE_DIR", None),
            log_level=(text("SHIM_LOG_LEVEL", "info") or "info").lower(),
        )

    def replace(self, **changes: object) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)
