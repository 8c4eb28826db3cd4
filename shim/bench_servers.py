"""The servers a benchmark runs: an ASGI app under uvicorn in a thread of this process (the emulator), and
the shim as a child process (`python -m shim serve`) whose CPU time and RSS are read from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds the `shim` package
_TICKS = os.sysconf("SC_CLK_TCK")


class ThreadServer:
    """An ASGI app served by uvicorn on an ephemeral 127.0.0.1 port, in a daemon thread with its own loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", backlog=4096)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="bench-emulator", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    @property
    def url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ShimProcess:
    """`python -m shim serve` in a child process, configured only by the SHIM_* variables given here (any
    inherited SHIM_* variable is dropped, so a bench run does not depend on the caller's environment)."""

    def __init__(self, env: dict[str, str]) -> None:
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
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"the shim exited with {self._proc.returncode}:\n{self.log_tail()}")
                try:
                    if (await http.get(self.url + "/healthz", timeout=1.0)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the shim did not become healthy:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
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
