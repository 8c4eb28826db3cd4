"""Real servers on 127.0.0.1: the upstream emulators and the shim, each served by uvicorn in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from shim.app import create_app
from shim.config import Settings, UpstreamSettings
from shim.emulator.reapi import create_reapi_app
from shim.emulator.reve2img import create_reve2img_app
from shim.providers import builtin_providers
from shim.server import uvicorn_config

#: Emulated latencies are the documented ones times this: low x 1k takes 0.2-0.4 s.
TIME_SCALE = 0.01


class ServedApp:
    """An ASGI app served by uvicorn on an ephemeral 127.0.0.1 port in a background thread; a shim app is
    served exactly as the CLI serves it (`shim.server.uvicorn_config`), with its own settings."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.app = app
        settings = getattr(getattr(app, "state", None), "settings", None)
        if isinstance(settings, Settings):
            config = uvicorn_config(
                app, dataclasses.replace(settings, log_level="warning"), host="127.0.0.1", port=port
            )
        else:
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    def start(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class SelfAddressedShim(ServedApp):
    """A shim served on a socket bound before the app is built, so SHIM_PUBLIC_URL can name its own port
    (the upstream emulators then fetch uploaded edit inputs from it)."""

    def __init__(self, reapi: ServedApp, reve2img: ServedApp, **changes: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        public_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        super().__init__(create_app(shim_settings(reapi, reve2img, public_url=public_url, **changes)))

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        finally:
            self.loop.close()
            self.sock.close()


@contextlib.contextmanager
def served(app: Any, port: int = 0) -> Iterator[ServedApp]:
    server = ServedApp(app, port).start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    """A port free now, for a server whose own URLs must name its port before it starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def reapi_upstream() -> Iterator[ServedApp]:
    with served(create_reapi_app(time_scale=TIME_SCALE)) as server:
        yield server


@pytest.fixture(scope="session")
def reve2img_upstream() -> Iterator[ServedApp]:
    with served(create_reve2img_app(time_scale=TIME_SCALE)) as server:
        yield server


def upstreams(**base_urls: str) -> dict[str, UpstreamSettings]:
    """`Settings.upstreams` pointing the named adapters at these base URLs (their other defaults kept)."""
    factories = builtin_providers()
    return {name: dataclasses.replace(factories[name].defaults, base_url=url) for name, url in base_urls.items()}


def shim_settings(reapi: ServedApp, reve2img: ServedApp, **changes: Any) -> Settings:
    """The shim's settings for tests: the emulators' addresses, and nothing about how fast they run (the
    shim learns that, as it would against the real upstreams)."""
    settings = Settings(upstreams=upstreams(reapi=reapi.url, reve2img=reve2img.url), upstream_timeout=10.0)
    return dataclasses.replace(settings, **changes)


@pytest.fixture(scope="session")
def shim_server(reapi_upstream: ServedApp, reve2img_upstream: ServedApp) -> Iterator[ServedApp]:
    with served(create_app(shim_settings(reapi_upstream, reve2img_upstream))) as server:
        yield server


@pytest.fixture
def key() -> str:
    """A fresh API key per test, so the emulator's per-key counters belong to this test alone."""
    return "rk_test_" + uuid.uuid4().hex


@pytest.fixture
def reapi_state(reapi_upstream: ServedApp) -> Any:
    return reapi_upstream.app.state.emulator


@pytest.fixture
def reve2img_state(reve2img_upstream: ServedApp) -> Any:
    return reve2img_upstream.app.state.emulator


@pytest.fixture
def sdk() -> Iterator[Any]:
    """Makes openai.OpenAI clients for a served shim and closes them after the test."""
    import openai

    clients: list[openai.OpenAI] = []

    def make(server: ServedApp, api_key: str, **kw: Any) -> openai.OpenAI:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class RedisServer:
    """`redis-server` (the machine's Debian package) on a free 127.0.0.1 port, without persistence: started and
    stopped by the tests that need it (a restart keeps the port, and loses every key, as a Redis without
    persistence does)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="shim-redis-")

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            problem = "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
            if os.environ.get("SHIM_REDIS_TESTS") == "skip":
                pytest.skip(f"{problem} (SHIM_REDIS_TESTS=skip)")
            pytest.fail(f"{problem}; set SHIM_REDIS_TESTS=skip only where Redis is not expected", pytrace=False)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._proc = subprocess.Popen(
            [*command, "--dir", self._dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return self
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session's tests (each test uses fresh keys and job ids, so they never meet)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server._dir, ignore_errors=True)
