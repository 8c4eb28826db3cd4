"""The logging exporter of the core's events: one line each, ids and outcomes only (never a credential)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger("shim")


def log_event(name: str, data: Mapping[str, object]) -> None:
    log.info("%s %s", name, " ".join(f"{k}={v}" for k, v in data.items()))
