"""Settings: every knob is a SHIM_* environment variable, read once into a frozen value at start-up.

The gateway's own settings are fields of `Settings`; each upstream's (`SHIM_<NAME>_BASE_URL`, `_RATE_LIMIT`,
`_MAX_IN_FLIGHT`) are read by one loop over the adapters' declared defaults, so this module names no upstream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

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


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One upstream's settings: where it is, its rate limit per key, and its cap on a key's tasks in flight."""

    base_url: str
    rate_limit: float = 10.0
    max_in_flight: int | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the shim reads from its environment. `Settings.from_env(os.environ, defaults)` in production;
    `upstreams` holds the upstreams whose settings differ from their adapter's defaults."""

    upstreams: Mapping[str, UpstreamSettings] = field(default_factory=dict)
    default_model: str = "gpt-image-2"
    default_video_model: str | None = None
    default_response_format: str | None = None
    latency_scale: float = 1.0
    max_task_seconds: float = 3600.0
    result_ttl_seconds: float = 900.0
    hold_seconds: float | None = None
    drain_seconds: float = 60.0
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 50 << 20
    max_image_bytes: int = 64 << 20
    max_image_pixels: int = 50_000_000
    max_video_bytes: int = 1 << 30
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
    #: `<provider>/<id>` for an id outside the provider's catalog reaches the upstream (which validates it).
    passthrough: bool = True
    state_dir: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    redis_url: str | None = field(default=None, repr=False)  # may carry a password
    redis_prefix: str = "shim"
    redis_lease_seconds: float = 10.0

    def upstream(self, name: str, default: UpstreamSettings) -> UpstreamSettings:
        """The settings of upstream `name`: as configured, else its adapter's `default`."""
        return self.upstreams.get(name, default)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], upstreams: Mapping[str, UpstreamSettings] | None = None) -> Settings:
        """Read `environ`; `upstreams` are the adapters' defaults, by name (each read as SHIM_<NAME>_*)."""

        def text(name: str, default: str | None) -> str | None:
            raw = environ.get(name, "").strip()
            return raw or default

        response_format = text("SHIM_DEFAULT_RESPONSE_FORMAT", None)
        if response_format not in (None, "url", "b64_json"):
            raise ConfigurationError(f"SHIM_DEFAULT_RESPONSE_FORMAT must be url or b64_json, got {response_format!r}")
        hold = _float(environ, "SHIM_HOLD_SECONDS", None)
        log_format = (text("SHIM_LOG_FORMAT", "text") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigurationError(f"SHIM_LOG_FORMAT must be text or json, got {log_format!r}")
        d = cls()  # the defaults (class attributes are slot descriptors)
        return cls(
            upstreams={name: _upstream(environ, name, default) for name, default in (upstreams or {}).items()},
            default_model=text("SHIM_DEFAULT_MODEL", d.default_model) or d.default_model,
            default_response_format=response_format,
            default_video_model=text("SHIM_DEFAULT_VIDEO_MODEL", None),
            latency_scale=_float(environ, "SHIM_LATENCY_SCALE", 1.0, minimum=0.0001) or 1.0,
            max_task_seconds=_float(environ, "SHIM_MAX_TASK_SECONDS", 3600.0, minimum=1) or 3600.0,
            result_ttl_seconds=_float(environ, "SHIM_RESULT_TTL_SECONDS", 900.0, minimum=1) or 900.0,
            hold_seconds=hold if hold else None,
            drain_seconds=_float(environ, "SHIM_DRAIN_SECONDS", 60.0) or 0.0,
            max_body_bytes=_int(environ, "SHIM_MAX_BODY_BYTES", 1 << 20, minimum=1024),
            max_upload_bytes=_int(environ, "SHIM_MAX_UPLOAD_BYTES", 50 << 20, minimum=1024),
            max_image_bytes=_int(environ, "SHIM_MAX_IMAGE_BYTES", 64 << 20, minimum=1024),
            max_image_pixels=_int(environ, "SHIM_MAX_IMAGE_PIXELS", 50_000_000, minimum=1024),
            max_video_bytes=_int(environ, "SHIM_MAX_VIDEO_BYTES", 1 << 30, minimum=1024),
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
            passthrough=_flag(environ, "SHIM_PASSTHROUGH", True),
            state_dir=text("SHIM_STATE_DIR", None),
            log_level=(text("SHIM_LOG_LEVEL", "info") or "info").lower(),
            log_format=log_format,
            redis_url=_redis_url(text("SHIM_REDIS_URL", None)),
            redis_prefix=text("SHIM_REDIS_PREFIX", "shim") or "shim",
            redis_lease_seconds=_float(environ, "SHIM_REDIS_LEASE_SECONDS", 10.0, minimum=0.5) or 10.0,
        )


def _redis_url(url: str | None) -> str | None:
    """SHIM_REDIS_URL, checked for its scheme (the URL itself is never echoed: it may carry a password)."""
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError("SHIM_REDIS_URL must be a redis://, rediss:// or unix:// URL")
    return url


def _upstream(environ: Mapping[str, str], name: str, default: UpstreamSettings) -> UpstreamSettings:
    prefix = f"SHIM_{name.upper()}_"
    base_url = environ.get(prefix + "BASE_URL", "").strip().rstrip("/") or default.base_url
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{prefix}BASE_URL must be an http(s) URL, got {base_url!r}")
    rate = _float(environ, prefix + "RATE_LIMIT", default.rate_limit, minimum=0.1) or default.rate_limit
    in_flight = default.max_in_flight
    if environ.get(prefix + "MAX_IN_FLIGHT", "").strip():
        in_flight = _int(environ, prefix + "MAX_IN_FLIGHT", in_flight or 1, minimum=1)
    return UpstreamSettings(base_url, rate, in_flight)
