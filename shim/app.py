"""The ASGI application: wiring only. `create_app` checks the configuration (failing at start-up), and its
lifespan builds what the endpoints use (`state.ShimState`): the process's httpx clients, the providers, the
per-key pacers, the job registry and its journal, the worker pool and the media store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from .config import ConfigurationError, Settings
from .events import Events
from .jobs.job import Job
from .jobs.journal import Journal
from .jobs.registry import Jobs
from .logs import log_event
from .media import build_media_store
from .media.base import MediaStore
from .media.results import Downloader
from .media.url_guard import AddressPolicy, GuardedTransport
from .metrics import Metrics
from .pacing.pacers import Pacers
from .providers import builtin_providers
from .providers.base import Provider, ProviderContext, ProviderFactory
from .routing import Router
from .routing_config import build_router
from .state import ShimState
from .web import middleware
from .web.errors import HANDLERS
from .web.routes import routes
from .workers import FairPool

log = logging.getLogger("shim")


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wall: Callable[[], float] = time.time,
    providers: Mapping[str, ProviderFactory] | None = None,
) -> Starlette:
    """The shim as an ASGI app. Bad configuration raises ConfigurationError here, at start-up."""
    settings = settings or Settings()
    _check_state_dir(settings)
    factories = dict(providers or builtin_providers())
    router = build_router(factories, config_file=settings.config_file, passthrough=settings.passthrough)
    metrics = Metrics()  # a registry of this app's own: several apps in one process never collide

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _runtime(settings, router, factories, transport, clock=clock, sleep=sleep, wall=wall) as state:
            state.events.subscribe(metrics)
            metrics.watch(state.pacers)
            app.state.shim = state
            async with _sweeping(state.jobs, settings.result_ttl_seconds, sleep):
                yield

    table = [*routes(), Route("/metrics", metrics.endpoint, methods=["GET"])]
    app = Starlette(routes=table, lifespan=lifespan, exception_handlers=HANDLERS)
    middleware.install(app)
    app.state.settings = settings
    return app


@contextlib.asynccontextmanager
async def _runtime(
    settings: Settings,
    router: Router,
    factories: Mapping[str, ProviderFactory],
    transport: httpx.AsyncBaseTransport | None,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    wall: Callable[[], float],
) -> AsyncIterator[ShimState]:
    """Everything with a lifetime, opened in order and closed in reverse."""
    upstreams = {name: settings.upstream(name, factory.defaults) for name, factory in factories.items()}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    policy = AddressPolicy([u.base_url for u in upstreams.values()], allow=settings.fetch_allow)
    guarded = GuardedTransport(
        transport or httpx.AsyncHTTPTransport(limits=limits), policy, owns_inner=transport is None
    )
    workers = FairPool(max(2, os.cpu_count() or 2))
    async with (
        httpx.AsyncClient(transport=transport, limits=limits) as http,
        httpx.AsyncClient(transport=guarded, follow_redirects=True, max_redirects=3) as download_http,
    ):
        events = Events(log_event)
        built = {
            name: factory(
                ProviderContext(
                    http, upstreams[name], settings.upstream_timeout, router.doors[name].declared, events=events
                )
            )
            for name, factory in factories.items()
        }
        pacers = {name: _pacers(settings, provider, clock, sleep) for name, provider in built.items()}
        media = build_media_store(settings, http=http)
        journal = open_journal(settings, wall)  # last thing that may fail: the finally below closes it
        jobs = Jobs(
            events=events,
            on_finish=releaser(media),
            providers=built,
            pacers=pacers,
            result_ttl=settings.result_ttl_seconds,
            max_task_seconds=settings.max_task_seconds,
            journal=journal,
            clock=clock,
            wall=wall,
        )
        downloader = Downloader(
            download_http, workers, settings.max_image_bytes, settings.max_image_pixels, settings.download_timeout,
            events=events,
        )  # fmt: skip
        try:
            yield ShimState(settings, router, pacers, jobs, workers, downloader, media, events)
        finally:
            await jobs.settle_submits(timeout=min(settings.upstream_timeout, 10.0))
            await jobs.aclose()
            for pacer_set in pacers.values():
                await pacer_set.aclose()
            if journal is not None:
                journal.close()
            workers.close()


@contextlib.asynccontextmanager
async def _sweeping(jobs: Jobs, result_ttl: float, sleep: Callable[[float], Awaitable[None]]) -> AsyncIterator[None]:
    """Expired results leave the registry on time (and are counted) even when no new job comes along."""

    async def sweep() -> None:
        while True:
            await sleep(min(max(result_ttl / 4, 0.05), 30.0))
            jobs.sweep()

    sweeper = asyncio.get_running_loop().create_task(sweep())
    try:
        yield
    finally:
        sweeper.cancel()


def _pacers(
    settings: Settings, provider: Provider, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> Pacers:
    return Pacers(
        rate=provider.rate_limit,
        latency_scale=settings.latency_scale,
        priors=provider.priors,
        max_task_seconds=settings.max_task_seconds,
        clock=clock,
        sleep=sleep,
    )


def _check_state_dir(settings: Settings) -> None:
    """Fail here, where the CLI reports it cleanly, rather than in the lifespan."""
    if not settings.state_dir:
        return
    try:
        os.makedirs(settings.state_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"SHIM_STATE_DIR {settings.state_dir!r} cannot be created: {exc}") from None
    if not os.access(settings.state_dir, os.W_OK):
        raise ConfigurationError(f"SHIM_STATE_DIR {settings.state_dir!r} is not writable")


def open_journal(settings: Settings, wall: Callable[[], float]) -> Journal | None:
    """The journal of paid tasks in SHIM_STATE_DIR (None when unset); an unusable directory stops start-up."""
    if not settings.state_dir:
        return None
    try:
        journal = Journal(
            settings.state_dir, horizon=settings.max_task_seconds + settings.result_ttl_seconds, wall=wall
        )
    except OSError as exc:
        raise ConfigurationError(
            f"SHIM_STATE_DIR {settings.state_dir!r} is unusable (or another shim holds it): {exc}"
        ) from None
    recovered = journal.recovered()
    log.info(
        "journal %s: %d unfinished jobs recovered, %d unreadable lines skipped",
        journal.path,
        len(recovered),
        journal.skipped,
    )
    return journal


def releaser(media: MediaStore) -> Callable[[Job], None]:
    """The job registry's finish hook: a finished job's uploads are freed (its tasks fetched them already)."""
    pending: set[asyncio.Task[None]] = set()

    def release(job: Job) -> None:
        urls = job.spec.input_urls
        if urls:
            task = asyncio.get_running_loop().create_task(media.release(urls, owner=job.credential))
            pending.add(task)
            task.add_done_callback(pending.discard)

    return release
