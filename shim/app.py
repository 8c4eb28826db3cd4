"""The ASGI application: wiring only. `create_app` checks the configuration (failing at start-up), and its
lifespan builds what the endpoints use (`state.ShimState`): the process's httpx clients, the providers, the
per-key pacers, the job registry and its journal, the video resources and their index, the worker pool and
the media store."""

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

from .config import ConfigurationError, Settings, UpstreamSettings
from .events import Events
from .jobs.job import Job
from .jobs.journal import Journal
from .jobs.registry import Jobs
from .jobs.video_index import VideoIndex
from .jobs.videos import RESULT_SECONDS, Videos
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
    router = build_router(
        factories,
        config_file=settings.config_file,
        passthrough=settings.passthrough,
        default_video_model=settings.default_video_model,
    )
    _check_default_video_model(router)
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
        built = _providers(settings, router, factories, upstreams, http, events)
        pacers = {name: _pacers(settings, provider, clock, sleep) for name, provider in built.items()}
        media = build_media_store(settings, http=http)
        journal, video_index = open_state(settings, wall)  # the last that may fail: the finally closes them
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
        videos = _videos(settings, jobs, events, pacers, video_index, wall)
        try:
            yield ShimState(settings, router, pacers, jobs, workers, downloader, media, events, videos)
        finally:
            await jobs.settle_submits(timeout=min(settings.upstream_timeout, 10.0))
            await jobs.aclose()
            videos.close()
            for pacer_set in pacers.values():
                await pacer_set.aclose()
            if journal is not None:
                journal.close()
            workers.close()


def _providers(
    settings: Settings,
    router: Router,
    factories: Mapping[str, ProviderFactory],
    upstreams: Mapping[str, UpstreamSettings],
    http: httpx.AsyncClient,
    events: Events,
) -> dict[str, Provider]:
    """Every adapter, built on the shared API client."""
    timeout = settings.upstream_timeout
    return {
        name: factory(ProviderContext(http, upstreams[name], timeout, router.doors[name].declared, events=events))
        for name, factory in factories.items()
    }


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


def _videos(
    settings: Settings,
    jobs: Jobs,
    events: Events,
    pacers: Mapping[str, Pacers],
    index: VideoIndex | None,
    wall: Callable[[], float],
) -> Videos:
    """The video resources: progress is read from what each upstream's pacers learned of a latency class."""
    return Videos(
        jobs,
        events,
        estimate=lambda provider, latency_class: pacers[provider].learner.model(latency_class),
        index=index,
        max_task_seconds=settings.max_task_seconds,
        wall=wall,
    )


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


def open_state(settings: Settings, wall: Callable[[], float]) -> tuple[Journal | None, VideoIndex | None]:
    """The journal and the video index of SHIM_STATE_DIR (both None when unset)."""
    journal = open_journal(settings, wall)
    try:
        return journal, open_video_index(settings, wall)
    except ConfigurationError:
        if journal is not None:
            journal.close()
        raise


def open_video_index(settings: Settings, wall: Callable[[], float]) -> VideoIndex | None:
    """The video index in SHIM_STATE_DIR (None when unset), beside the journal (whose lock holds the directory)."""
    if not settings.state_dir:
        return None
    try:
        return VideoIndex(settings.state_dir, horizon=settings.max_task_seconds + RESULT_SECONDS, now=wall())
    except OSError as exc:
        raise ConfigurationError(f"SHIM_STATE_DIR {settings.state_dir!r}: the video index is unusable: {exc}") from None


def _check_default_video_model(router: Router) -> None:
    """SHIM_DEFAULT_VIDEO_MODEL must name a video model (sora-2 means it: it cannot name sora-2)."""
    default = router.default_video_model
    if default is None:
        return
    if not router.is_video_model(default):
        raise ConfigurationError(f"SHIM_DEFAULT_VIDEO_MODEL {default!r} is not a video model the shim routes")


def releaser(media: MediaStore) -> Callable[[Job], None]:
    """The job registry's finish hook: a finished job's uploads are freed (its tasks fetched them already),
    unless they outlive it (a video's reference serves its remixes: freed when it is deleted, or expired)."""
    pending: set[asyncio.Task[None]] = set()

    def release(job: Job) -> None:
        urls = job.spec.input_urls
        if urls and not job.spec.inputs_outlive_job:
            task = asyncio.get_running_loop().create_task(media.release(urls, owner=job.credential))
            pending.add(task)
            task.add_done_callback(pending.discard)

    return release
