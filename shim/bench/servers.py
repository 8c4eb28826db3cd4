"""The servers a benchmark runs, each a child process: the emulator (`python -m shim emulator`), read over
its `/_emulator/stats`, the shim (`python -m shim serve`), whose CPU time and RSS are read from /proc, and
Redis (`redis-server`, for the replicas scenario)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds the `shim` package
_TICKS = os.sysconf("SC_CLK_TCK")


class EmulatorProcess:
    """`python -m shim emulator` in a child process, so the upstream has its own interpreter: in a thread of
    the benchmark it would share a GIL with the clients, and the arrival times it stamps would jitter."""

    def __init__(self, *, time_scale: float, rate: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.time_scale = time_scale  # at start (a run may switch it: see `untold`)
        self._args = ["--time-scale", str(time_scale), "--rate-limit", str(int(rate))]
        self._log = tempfile.TemporaryFile()
        self._proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "shim", "emulator", "--port", str(self.port), *self._args]
        env = {**os.environ, "PYTHONPATH": str(_ROOT), "SHIM_LOG_LEVEL": "warning"}
        self._proc = subprocess.Popen(
            command, cwd=_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        await _until_healthy(self._proc, self.url + "/_emulator/stats", "the emulator", self.log_tail)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _stop(self._proc)
        self._log.close()

    @property
    def state(self) -> RemoteEmulator:
        return RemoteEmulator(self.url)

    def log_tail(self, lines: int = 30) -> str:
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])


class RemoteEmulator:
    """The emulator's records, read over `GET /_emulator/stats` (keys appear there only as fingerprints)."""

    COUNTERS = ("submits", "submit_rejected", "polls", "rate_limited", "requests")

    def __init__(self, url: str) -> None:
        self._url = url

    def _stats(self) -> dict[str, Any]:
        response = httpx.get(self._url + "/_emulator/stats", timeout=60.0)
        response.raise_for_status()
        return dict(response.json())

    @property
    def tasks(self) -> dict[str, SimpleNamespace]:
        """Task records by id; `key` is the key's fingerprint."""
        return {t["id"]: SimpleNamespace(**{**t, "key": t["key_fingerprint"]}) for t in self._stats()["tasks"]}

    def counters(self, key: str) -> dict[str, int]:
        found = self._stats()["keys"].get(key_fingerprint(key), {})
        return {name: int(found.get(name, 0)) for name in self.COUNTERS}


def key_fingerprint(key: str) -> str:
    """How the emulator names a key outside its process: the first 12 hex chars of sha256(key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


async def _until_healthy(proc: subprocess.Popen[bytes], url: str, what: str, log_tail: Callable[[], str]) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_tail()}")
            try:
                if (await http.get(url, timeout=1.0)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not become healthy:\n{log_tail()}")
            await asyncio.sleep(0.05)


async def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ShimProcess:
    """`python -m shim serve` in a child process, configured only by the SHIM_* variables given here (any
    inherited SHIM_* variable is dropped, so a bench run does not depend on the caller's environment). It is
    never told how fast the emulator runs: SHIM_LATENCY_SCALE is refused."""

    def __init__(self, env: dict[str, str]) -> None:
        if "SHIM_LATENCY_SCALE" in env:
            raise ValueError("a bench shim learns the emulator's speed; SHIM_LATENCY_SCALE would tell it")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("SHIM_")}
        python_path = os.pathsep.join(p for p in (str(_ROOT), base.get("PYTHONPATH", "")) if p)
        self._env = {**base, "PYTHONPATH": python_path, "SHIM_LOG_LEVEL": "warning", "SHIM_DRAIN_SECONDS": "1"}
        self._env.update(env)
        self._log = tempfile.TemporaryFile()
        self._proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ShimProcess:
        command = [sys.executable, "-m", "shim", "serve", "--port", str(self.port)]
        self._proc = subprocess.Popen(
            command, cwd=_ROOT, env=self._env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        await _until_healthy(self._proc, self.url + "/healthz", "the shim", self.log_tail)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _stop(self._proc)
        self._log.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the shim so far (/proc/<pid>/stat utime + stime)."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text.rpartition(")")[2].split()  # fields[0] is field 3 (state): utime is 14, stime 15
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB: resident now, and the peak since start."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def log_tail(self, lines: int = 30) -> str:
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-lines:])


class RedisProcess:
    """`redis-server` (the machine's own; `available()` says whether there is one) on a free port, without
    persistence, in a temporary directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="shim-bench-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    async def __aenter__(self) -> RedisProcess:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._proc = subprocess.Popen(
            [*command, "--dir", self._dir.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        await _stop(self._proc)
        self._dir.cleanup()
