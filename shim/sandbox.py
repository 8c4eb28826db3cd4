"""`shim sandbox`: the shim and every upstream emulator in one process on one port; any key works."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from .app import create_app
from .config import Settings
from .emulator import EMULATORS
from .providers import builtin_providers

PREFIX = "/_upstream/"


def sandbox_settings(settings: Settings, base_url: str, time_scale: float) -> Settings:
    """Each adapter pointed at its emulator under /_upstream/<name>; uploads served by the sandbox itself; the
    emulators' time scale as the latency hint for the first tasks."""
    factories = builtin_providers()
    upstreams = {
        name: dataclasses.replace(settings.upstream(name, factories[name].defaults), base_url=base_url + PREFIX + name)
        for name in EMULATORS
        if name in factories
    }
    public_url = settings.public_url or base_url
    return dataclasses.replace(settings, upstreams=upstreams, public_url=public_url, latency_scale=time_scale)


def create_sandbox_app(settings: Settings, *, base_url: str, time_scale: float) -> Starlette:
    """The shim at /, each emulator at /_upstream/<name>."""
    shim = create_app(sandbox_settings(settings, base_url, time_scale))

    async def shim_app(scope: Scope, receive: Receive, send: Send) -> None:
        await shim(scope, receive, send)

    mounts = [Mount(PREFIX + name, app=make(time_scale=time_scale)) for name, make in EMULATORS.items()]
    return Starlette(routes=[*mounts, Mount("", app=shim_app)], lifespan=_nested_lifespan(shim))


def _nested_lifespan(inner: Starlette) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with inner.router.lifespan_context(inner):
            yield

    return lifespan
