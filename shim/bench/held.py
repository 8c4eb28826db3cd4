"""The held-requests scenario of `shim bench`: thousands of requests open at once on slow tasks, and what
holding them costs the shim (RSS per held request, CPU while nothing is due)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from .clients import Answer, held_client
from .report import collect, completed, count_errors, delays, quantile
from .servers import EmulatorProcess, ShimProcess


async def hold_requests(
    server: EmulatorProcess, env: dict[str, str], *, key: str, n: int, window: float
) -> dict[str, Any]:
    """Open `n` requests at once on a fresh shim; once all are submitted upstream, sample the shim for
    `window` seconds (RSS every 0.2 s, CPU over the window); then wait for every answer."""
    emulator = server.state
    figures: dict[str, Any] = {"requests": n}
    async with ShimProcess(env) as shim:
        figures["baseline_rss_mb"] = shim.memory_mb()[0]
        cpu_before = shim.cpu_seconds()
        one = held_client(shim.url, key, quality="high", tag=key)
        started = time.monotonic()
        pending = [asyncio.create_task(one(i)) for i in range(n)]
        while not all(t.done() for t in pending):
            if await asyncio.to_thread(lambda: emulator.counters(key)["submits"]) >= n:
                break
            await asyncio.sleep(0.25)
        figures["submit_seconds"] = time.monotonic() - started
        figures.update(await _sample(shim, emulator, key, pending, window))
        cpu_at, at = shim.cpu_seconds(), time.monotonic()
        answers: list[Answer] = list(await asyncio.gather(*pending))
        figures["completing_seconds"] = time.monotonic() - at
        figures["completing_cpu_per_second"] = (shim.cpu_seconds() - cpu_at) / max(figures["completing_seconds"], 1e-9)
        figures["cpu_seconds"] = shim.cpu_seconds() - cpu_before
        figures["peak_rss_mb"] = shim.memory_mb()[1]
    figures["rss_per_request_kb"] = (figures["held_peak_rss_mb"] - figures["baseline_rss_mb"]) * 1024 / n
    run = collect(emulator, "shim", key, answers, started)
    ok = completed(run)
    noticed, answered = delays(run, ok)
    return {
        **figures,
        "ok": len(ok),
        "errors": count_errors(answers),
        "requests_per_task": run.counters["requests"] / len(ok) if ok else math.nan,
        "rate_limited": run.counters["rate_limited"],
        "noticed_p50": quantile(noticed, 0.5),
        "noticed_p90": quantile(noticed, 0.9),
        "answer_p50": quantile(answered, 0.5),
        "answer_p90": quantile(answered, 0.9),
    }


async def _sample(
    shim: ShimProcess, emulator: Any, key: str, pending: list[asyncio.Task[Answer]], window: float
) -> dict[str, Any]:
    start, cpu_start = time.monotonic(), shim.cpu_seconds()
    requests_start = emulator.counters(key)["requests"]
    peak = 0.0
    while time.monotonic() - start < window:
        peak = max(peak, shim.memory_mb()[0])
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - start
    return {
        "held_cpu_per_second": (shim.cpu_seconds() - cpu_start) / elapsed,
        "held_upstream_per_second": (emulator.counters(key)["requests"] - requests_start) / elapsed,
        "held_in_window": sum(not t.done() for t in pending),
        "held_peak_rss_mb": max(peak, shim.memory_mb()[1]),  # VmHWM: the peak of the submit phase too
    }
