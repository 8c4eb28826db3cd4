"""`shim sandbox`: the shim and both upstream emulators in one process on one port, any key works."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from .app import create_app
from .config import Settings
from .emulator.reapi import create_reapi_app
from .emulator.reve2img import create_reve2img_app

REAPI_PREFIX = "/_upstream/reapi"
REVE2IMG_PREFIX = "/_upstream/reve2img"


def sandbox_settings(settings: Settings, base_url: str, time_scale: float) -> Settings:
    return settings.replace(
        reapi_base_url=base_url + REAPI_PREFIX,
        reve2img_base_url=base_url + REVE2IMG_PREFIX,
        latency_scale=time_scale,
        public_url=settings.public_url or base_url,  # uploads for edits are served by the sandbox itself
    )


def create_sandbox_app(settings: Settings, *, base_url: str, time_scale: float) -> Starlette:
    """The shim at /, the reAPI emulator at /_upstream/reapi, the reve2img emulator at /_upstream/reve2img."""
    shim = create_app(sandbox_settings(settings, base_url, time_scale))
    reapi = create_reapi_app(time_scale=time_scale)
    reve2img = create_reve2img_app(time_scale=time_scale)

    async def shim_app(scope: Scope, receive: Receive, send: Send) -> None:
        await shim(scope, receive, send)

    outer = Starlette(
        routes=[Mount(REAPI_PREFIX, app=reapi), Mount(REVE2IMG_PREFIX, app=reve2img), Mount("", app=shim_app)],
        lifespan=_nested_lifespan(shim),
    )
    return outer


def _nested_lifespan(inner: Starlette) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with inner.router.lifespan_context(inner):
            yield

    return lifespan
