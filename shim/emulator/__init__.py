"""Upstream emulators: Starlette apps speaking an upstream's wire format, for tests, sandbox and bench.

They import nothing from the shim's request path: an emulator is an independent upstream.
"""

from __future__ import annotations

from .reapi import create_reapi_app

__all__ = ["create_reapi_app"]
