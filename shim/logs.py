"""The logging exporter of the core's events (one line each, ids and outcomes only, never a credential), and
the two line formats: plain text (the default) or, with SHIM_LOG_FORMAT=json, one JSON object per line for
the shim's lines and uvicorn's alike."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from . import events

log = logging.getLogger("shim")

#: Events logged at another level than INFO: the chatty ones at DEBUG, a paid result lost at WARNING.
LEVELS = {
    "upstream_request": logging.DEBUG,
    "request_finished": logging.DEBUG,
    "job_expired": logging.WARNING,
}
#: Event fields under the names of the JSON lines.
RENAMED = {"job": "job_id", "task": "task_ids", "tasks": "task_ids", "resumed_tasks": "resumed_task_ids"}
TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"


def log_event(name: str, data: Mapping[str, object]) -> None:
    level = LEVELS.get(name, logging.INFO)
    if log.isEnabledFor(level):
        text = " ".join(f"{k}={v}" for k, v in data.items())
        log.log(level, "%s %s", name, text, extra={"shim_event": name, "shim_fields": dict(data)})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, then the event and its fields (job_id,
    task_ids, provider, model, status, seconds...) for the shim's event lines, or the message for any other
    line (uvicorn's access lines also as client, method, path, status); request_id when one is being served."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": _timestamp(record.created), "level": record.levelname.lower()}
        entry["logger"] = record.name
        name = getattr(record, "shim_event", None)
        if isinstance(name, str):
            entry["event"] = name
            entry.update(_fields(getattr(record, "shim_fields", {})))
        else:
            entry["message"] = record.getMessage()
            if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
                client, method, path, _, status = record.args
                entry.update(client=client, method=method, path=path, status=status)
        request_id = events.request_id.get()
        if request_id is not None:
            entry.setdefault("request_id", request_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def _fields(data: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        name = RENAMED.get(key, key)
        if name.endswith("_ids") and isinstance(value, str):
            out[name] = [v for v in value.split(",") if v]
        else:
            out[name] = value
    return out


def configure(level: str, fmt: str) -> None:
    """The root logger's handler (the shim's lines): plain text, or JSON lines on stderr."""
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    # httpx logs every request's full URL at INFO: upstream result URLs may carry signed query tokens, and the
    # shim's own lines already say what was called (ids and outcomes only).
    for name in ("httpx", "httpcore", "httpx2"):  # httpx2: the openai SDK's client, in `shim bench`
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def uvicorn_log_config(fmt: str) -> dict[str, Any] | None:
    """uvicorn's logging configuration in JSON mode (its own handlers, JSON lines); None: uvicorn's default."""
    if fmt != "json":
        return None
    formatter = {"()": f"{__name__}.JsonFormatter"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
