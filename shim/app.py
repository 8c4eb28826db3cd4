"""The ASGI application: routes, the one error handler, and a lifespan that owns the process's single
httpx.AsyncClient, the providers, the per-credential pacers, the job registry and its journal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api, edits, errors
from .config import ConfigurationError, Settings
from .delivery import Downloader
from .jobs import Job, Jobs
from .journal import Journal
from .media import MediaStore, build_media_store, serve_media
from .openai_wire import render_error
from .pacing import Pacers
from .providers import Provider, ProviderContext, ProviderFactory, builtin_providers
from .routing import Router, load_config
from .url_guard import AddressPolicy, GuardedTransport
from .workers import FairPool

log = logging.getLogger("shim")


@dataclass
class ShimState:
    settings: Settings
    router: Router
    http: httpx.AsyncClient
    providers: Mapping[str, Provider]
    pacers: Mapping[str, Pacers]
    jobs: Jobs
    workers: FairPool
    downloader: Downloader
    media: MediaStore | None = None


class PathTolerance:
    """Forgives the path mistakes clients make with a base URL: empty segments (n8n joins a base ending in
    `/` with `/images/...`), a doubled `/v1` (Dify appends `/v1` to a base that may already end in it) and a
    trailing slash (a redirect would not be followed by a POST)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            while "//" in path:
                path = path.replace("//", "/")
            while path.startswith("/v1/v1/"):
                path = path[3:]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/") or "/"
            if path != scope["path"]:
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Gives every request an id (scope state) and every response an `x-request-id` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def log_event(name: str, data: dict[str, object]) -> None:
    """The logging exporter of the core's events: one line each, ids and outcomes only (never a credential)."""
    log.info("%s %s", name, " ".join(f"{k}={v}" for k, v in data.items()))


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, errors.ClientDisconnected):
        log.info("client disconnected on %s %s", request.method, request.url.path)
    if isinstance(exc, errors.ShimError):
        error = exc
    elif isinstance(exc, HTTPException):
        error = errors.NotFound(f"{request.method} {request.url.path}: {exc.detail}")
        error.status = exc.status_code
        if exc.status_code == 405:
            error.code = "method_not_allowed"
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = errors.ShimError("The server had an error while processing your request.")
    status, body, headers = render_error(error, _request_id(request))
    return JSONResponse(body, status_code=status, headers=headers)


def routes() -> list[Route]:
    table: list[Route] = []
    for prefix in ("/v1", ""):
        table += [
            Route(f"{prefix}/images/generations", api.generations, methods=["POST"]),
            Route(f"{prefix}/images/edits", edits.edits, methods=["POST"]),
            Route(f"{prefix}/images/variations", edits.variations, methods=["POST"]),
            Route(f"{prefix}/models", api.list_models, methods=["GET"]),
            Route(prefix + "/models/{model_id:path}", api.retrieve_model, methods=["GET"]),
        ]
    table += [
        Route("/openai/deployments/{deployment}/images/generations", api.generations, methods=["POST"]),
        Route("/openai/deployments/{deployment}/images/edits", edits.edits, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/media/{name}", serve_media, methods=["GET"]),
    ]
    return table


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
        urls = [*job.spec.image_urls, *([job.spec.mask_url] if job.spec.mask_url else [])]
        if urls:
            task = asyncio.get_running_loop().create_task(media.release(urls, owner=job.credential))
            pending.add(task)
            task.add_done_callback(pending.discard)

    return release


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
    if settings.state_dir:  # fail here, where the CLI reports it cleanly, rather than in the lifespan
        try:
            os.makedirs(settings.state_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"SHIM_STATE_DIR {settings.state_dir!r} cannot be created: {exc}") from None
        if not os.access(settings.state_dir, os.W_OK):
            raise ConfigurationError(f"SHIM_STATE_DIR {settings.state_dir!r} is not writable")
    factories = dict(providers or builtin_providers())
    catalogs = {name: tuple(factory.catalog) for name, factory in factories.items()}
    configured = load_config(settings.config_file, catalogs) if settings.config_file else {}
    router = Router(catalogs, configured)
    base_urls = {"reapi": settings.reapi_base_url, "reve2img": settings.reve2img_base_url}
    rates = {"reapi": settings.reapi_rate_limit, "reve2img": settings.reve2img_rate_limit}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        policy = AddressPolicy(base_urls.values(), allow=settings.fetch_allow)
        guarded = GuardedTransport(
            transport or httpx.AsyncHTTPTransport(limits=limits), policy, owns_inner=transport is None
        )
        workers = FairPool(max(2, os.cpu_count() or 2))
        async with (
            httpx.AsyncClient(transport=transport, limits=limits) as http,
            httpx.AsyncClient(transport=guarded, follow_redirects=True, max_redirects=3) as download_http,
        ):
            downloader = Downloader(
                download_http,
                workers,
                max_bytes=settings.max_image_bytes,
                max_pixels=settings.max_image_pixels,
                timeout=settings.download_timeout,
            )
            built: dict[str, Provider] = {}
            for name, factory in factories.items():
                context = ProviderContext(
                    http=http,
                    base_url=base_urls.get(name, ""),
                    timeout=settings.upstream_timeout,
                    rate_limit=rates.get(name, 10.0),
                    max_in_flight=settings.reve2img_max_in_flight if name == "reve2img" else None,
                )
                built[name] = factory(context)
            pacers = {
                name: Pacers(
                    rate=provider.rate_limit,
                    latency_scale=settings.latency_scale,
                    priors=provider.priors,
                    max_task_seconds=settings.max_task_seconds,
                    clock=clock,
                    sleep=sleep,
                )
                for name, provider in built.items()
            }
            media = build_media_store(settings, http=http)
            journal = open_journal(settings, wall)  # last thing that may fail: the finally below closes it
            jobs = Jobs(
                on_event=log_event,
                on_finish=releaser(media),
                providers=built,
                pacers=pacers,
                result_ttl=settings.result_ttl_seconds,
                max_task_seconds=settings.max_task_seconds,
                journal=journal,
                clock=clock,
                wall=wall,
            )
            app.state.shim = ShimState(settings, router, http, built, pacers, jobs, workers, downloader, media)
            try:
                yield
            finally:
                await jobs.settle_submits(timeout=min(settings.upstream_timeout, 10.0))
                await jobs.aclose()
                for pacer_set in pacers.values():
                    await pacer_set.aclose()
                if journal is not None:
                    journal.close()
                workers.close()

    handlers: dict[Any, Any] = {
        errors.ShimError: error_response,
        HTTPException: error_response,
        Exception: error_response,
    }
    app = Starlette(routes=routes(), lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(PathTolerance)
    app.add_middleware(RequestIdMiddleware)
    # Browser apps call OpenAI-compatible APIs directly with their own key: allow it, as OpenAI does.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["x-request-id", "x-shim-job", "x-upstream-task-ids", "retry-after", "x-should-retry"],
    )
    app.state.settings = settings
    return app
