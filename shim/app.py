"""The ASGI application: wiring only. `create_app` checks the configuration (failing at start-up), and its
lifespan builds what the endpoints use (`state.ShimState`): the process's httpx clients, the providers, the
per-key pacers, the job registry and its journal, the video resources and their index, the worker pool and
the media store. With SHIM_REDIS_URL, the budgets and the job registry are the ones every replica shares
(Redis is imported only then)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

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
from .pacing.budget import Budget
from .pacing.pacers import Pacers
from .pacing.window import SlidingWindow
from .providers import builtin_providers
from .providers.base import Provider, ProviderContext, ProviderFactory
from .redis_link import RedisLink
from .routing import Router
from .routing_config import build_router
from .state import ShimState
from .web import middleware
from .web.errors import HANDLERS
from .web.routes import routes
from .workers import FairPool

if TYPE_CHECKING:  # redis is imported only when SHIM_REDIS_URL is set
    from .jobs.redis_jobs import RedisJobs
    from .pacing.redis_learning import SharedLearning

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
        shared = _shared_jobs(settings, clock=clock, wall=wall)
        link = shared.link if shared is not None else None
        pacers = {name: _pacers(settings, provider, clock, sleep, link) for name, provider in built.items()}
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
            shared=shared,
        )
        downloader = Downloader(
            download_http, workers, settings.max_image_bytes, settings.max_image_pixels, settings.download_timeout,
            events=events,
        )  # fmt: skip
        videos = _videos(settings, jobs, events, pacers, video_index, wall)
        state = ShimState(settings, router, pacers, jobs, workers, downloader, media, events, videos)
        if shared is not None:
            state.readiness["redis"] = shared.problem
        sharing = _shared_learning(pacers, link)
        try:
            yield state
        finally:
            await _close(state, journal, shared, sharing)


async def _close(
    state: ShimState, journal: Journal | None, shared: RedisJobs | None, sharing: list[SharedLearning]
) -> None:
    """The runtime's end, in reverse order: submits on the wire get their answer, jobs stop, records are written."""
    await state.jobs.settle_submits(timeout=min(state.settings.upstream_timeout, 10.0))
    await state.jobs.aclose()
    state.videos.close()
    for pacer_set in state.pacers.values():
        await pacer_set.aclose()
    if journal is not None:
        journal.close()
    for learning in sharing:
        await learning.aclose()
    if shared is not None:
        await shared.aclose()  # the leases of jobs cut short are released: another replica adopts them
        await shared.link.aclose()
    state.workers.close()


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
    settings: Settings,
    provider: Provider,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    link: RedisLink | None,
) -> Pacers:
    shared: Callable[[str, SlidingWindow], Budget] | None = None
    if link is not None:
        from .pacing.redis_budget import RedisBudget

        def shared(credential: str, window: SlidingWindow) -> Budget:
            return RedisBudget(
                link, provider.name, credential, window, clock=clock, max_out=settings.upstream_timeout + 5.0
            )

    return Pacers(
        budget=shared,
        rate=provider.rate_limit,
        latency_scale=settings.latency_scale,
        priors=provider.priors,
        max_task_seconds=settings.max_task_seconds,
        clock=clock,
        sleep=sleep,
    )


def _shared_learning(pacers: Mapping[str, Pacers], link: RedisLink | None) -> list[SharedLearning]:
    """With Redis, each upstream's learner learns every replica's completions (see `redis_learning`)."""
    if link is None:
        return []
    from .pacing.redis_learning import SharedLearning

    sharing = [SharedLearning(link, name, pacer_set.learner) for name, pacer_set in pacers.items()]
    for learning in sharing:
        learning.start()
    return sharing


def _shared_jobs(settings: Settings, *, clock: Callable[[], float], wall: Callable[[], float]) -> RedisJobs | None:
    """The job registry every replica shares, on its link to Redis (None without SHIM_REDIS_URL)."""
    if not settings.redis_url:
        return None
    from .jobs.redis_jobs import RedisJobs

    log.info("shared state on Redis: the replicas share budgets, jobs and their records")
    return RedisJobs(
        RedisLink(settings.redis_url, prefix=settings.redis_prefix),
        lease_seconds=settings.redis_lease_seconds,
        running_ttl=settings.max_task_seconds + 600.0,
        result_ttl=settings.result_ttl_seconds,
        wall=wall,
        clock=clock,
    )


def _check_state_dir(settings: Settings) -> None:
    """Fail here, where the CLI reports it cleanly, rather than in the lifespan."""
    if settings.state_dir and settings.redis_url:
        raise ConfigurationError(
            "SHIM_STATE_DIR and SHIM_REDIS_URL are both set: with Redis, Redis is the journal (unset SHIM_STATE_DIR)"
        )
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
