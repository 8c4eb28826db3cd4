"""Upstream emulators: Starlette apps speaking an upstream's wire format, for tests, sandbox and bench, by the
name of the adapter they stand in for.

They import nothing from the shim's request path: an emulator is an independent upstream.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette

from .reapi import create_reapi_app
from .reve2img import create_reve2img_app

#: name -> factory(time_scale=..., rate_limit=...): the sandbox mounts one per name, `shim emulator` runs one.
EMULATORS: dict[str, Callable[..., Starlette]] = {"reapi": create_reapi_app, "reve2img": create_reve2img_app}
