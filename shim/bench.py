"""`shim bench`: the shim's pacing against reAPI's documented naive polling loop, on the emulator.

Scenarios (each with a fresh shim process, so its CPU time and peak RSS are its own):
  concurrent  N SDK clients at once on one key, then the naive loop (polling every 1.5 s as documented, and
              every 1.5 s x time scale) on other keys of the same emulator, one after another
  low load    5 SDK clients asking one image after another, then the same with the naive loops
  held        thousands of raw requests held open on slow tasks: memory per held request, CPU while held
Servers: the emulator (`python -m shim emulator`) and the shim (`python -m shim serve`) are child processes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from .bench_clients import naive_client, open_sdk, run_clients, sdk_client
from .bench_held import hold_requests
from .bench_report import Target, collect, held_table, run_table, summarize
from .bench_servers import EmulatorProcess, ShimProcess

#: The documented interval of the quickstart's loop (seconds, real time).
DOCUMENTED_POLL_INTERVAL = 1.5


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of a bench run. Emulated latencies are the documented ones x time scale."""

    tasks: int = 60
    time_scale: float = 0.1  # low x 1k: 20-40 s documented -> 2-4 s
    rate: int = 10
    low_concurrency: int = 5
    low_rounds: int = 4
    held: int = 2000
    held_time_scale: float = 0.5  # high x 1k: 40-80 s -> 20-40 s
    held_rate: int = 2000
    held_window: float = 5.0


FULL = Plan()
QUICK = Plan(tasks=10, time_scale=0.05, low_rounds=1, held=200, held_time_scale=0.05, held_window=0.5)

CONCURRENT_TARGETS: list[Target] = [
    ("tasks ok", "all", lambda s: s["ok"] == s["tasks"]),
    ("upstream requests per ok task", "<= 2.5", lambda s: s["requests_per_ok_task"] <= 2.5),
    ("429s received", "0", lambda s: s["rate_limited"] == 0),
    (
        "done -> client answer p50 / p90 (s)",
        "p50 <= 0.9, p90 <= 2.0",
        lambda s: s["answer_p50"] <= 0.9 and s["answer_p90"] <= 2.0,
    ),
    ("throughput (tasks/s, % of rate/2)", ">= 80%", lambda s: s["throughput"] >= 0.8 * s["limit"]),
]
LOW_LOAD_TARGETS: list[Target] = [
    ("tasks ok", "all", lambda s: s["ok"] == s["tasks"]),
    ("done -> client answer p50 / p90 (s)", "p50 <= 0.5", lambda s: s["answer_p50"] <= 0.5),
]
HELD_TARGETS: list[Target] = [
    ("requests completed", "all", lambda f: f["ok"] == f["requests"]),
    ("shim peak RSS while held (MB)", "<= 300", lambda f: f["held_peak_rss_mb"] <= 300),
    ("shim CPU while held (CPU s per s)", "near idle (< 0.1)", lambda f: f["held_cpu_per_second"] < 0.1),
]


def run_bench(*, quick: bool = False, json_path: str | None = None, command: str = "shim bench") -> int:
    """Run every scenario, print the tables (and write the numbers to `json_path`); 0 when it ran."""
    plan = QUICK if quick else FULL
    _raise_open_files(4 * plan.held + 512)
    started = time.monotonic()
    results = asyncio.run(_bench(plan))
    results["seconds"] = time.monotonic() - started
    print(_render(command, plan, results), flush=True)
    if json_path:
        document = {"command": command, "plan": asdict(plan), **results}
        Path(json_path).write_text(json.dumps(_finite(document), indent=2) + "\n")
    return 0


async def _bench(plan: Plan) -> dict[str, Any]:
    async with EmulatorProcess(time_scale=plan.time_scale, rate=plan.rate) as emulator:
        concurrent = await _compare(emulator, plan, concurrency=plan.tasks, rounds=1, tag="concurrent")
        low = await _compare(emulator, plan, concurrency=plan.low_concurrency, rounds=plan.low_rounds, tag="low")
    async with EmulatorProcess(time_scale=plan.held_time_scale, rate=plan.held_rate) as emulator:
        env = _shim_env(emulator, time_scale=plan.held_time_scale, rate=plan.held_rate)
        held = await hold_requests(emulator, env, key=_key("held"), n=plan.held, window=plan.held_window)
    return {"concurrent": concurrent, "low_load": low, "held": held}


def _shim_env(emulator: EmulatorProcess, *, time_scale: float, rate: float) -> dict[str, str]:
    return {
        "SHIM_REAPI_BASE_URL": emulator.url,
        "SHIM_LATENCY_SCALE": str(time_scale),
        "SHIM_REAPI_RATE_LIMIT": str(rate),
    }


def _key(tag: str) -> str:
    return f"rk_bench_{tag}_{uuid.uuid4().hex[:12]}"


async def _compare(emulator: EmulatorProcess, plan: Plan, *, concurrency: int, rounds: int, tag: str) -> list[Any]:
    """The shim and then the naive loops, each on its own key of the same emulator."""
    key = _key(f"{tag}_shim")
    async with ShimProcess(_shim_env(emulator, time_scale=plan.time_scale, rate=plan.rate)) as shim:
        cpu_before = shim.cpu_seconds()
        async with open_sdk(shim.url, key) as client:
            one = sdk_client(client, quality="low", tag=key)
            started = time.monotonic()
            answers = await run_clients(one, concurrency=concurrency, rounds=rounds)
        server = {"cpu_seconds": shim.cpu_seconds() - cpu_before, "peak_rss_mb": shim.memory_mb()[1]}
    runs = [collect(emulator.state, "shim", key, answers, started, server)]
    scaled = DOCUMENTED_POLL_INTERVAL * plan.time_scale
    for interval, label in ((DOCUMENTED_POLL_INTERVAL, "naive 1.5 s"), (scaled, f"naive {scaled:g} s")):
        key = _key(f"{tag}_naive")
        limits = httpx.Limits(max_connections=concurrency + 16)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
            one = naive_client(http, emulator.url, key, quality="low", interval=interval, tag=key)
            started = time.monotonic()
            answers = await run_clients(one, concurrency=concurrency, rounds=rounds)
        runs.append(collect(emulator.state, label, key, answers, started))
    return [summarize(run, rate=plan.rate) for run in runs]


def _render(command: str, plan: Plan, results: dict[str, Any]) -> str:
    limit = plan.rate / 2
    lo, hi = 20 * plan.time_scale, 40 * plan.time_scale
    naive = (
        f"naive = reAPI quickstart loop straight to the emulator: submit, then poll every 1.5 s (documented) or "
        f"every 1.5 s x {plan.time_scale:g}; a refused submit loses the task, a refused poll waits a tick."
    )
    sections = [
        f"$ {command}",
        f"shim bench: {os.cpu_count()} CPUs, {results['seconds']:.0f} s; one emulator key per column; "
        f"delays are from the upstream finishing a task (emulator ready_at)",
        naive,
        "",
        run_table(
            f"[1] {plan.tasks} concurrent tasks on one key, {plan.rate} req/s, low x 1k at time scale "
            f"{plan.time_scale:g} ({lo:g}-{hi:g} s); physical limit {limit:g} tasks/s",
            results["concurrent"],
            CONCURRENT_TARGETS,
        ),
        "",
        run_table(
            f"[2] low load: {plan.low_concurrency} concurrent clients x {plan.low_rounds} images one after another, "
            f"{plan.rate} req/s, low x 1k at time scale {plan.time_scale:g} ({lo:g}-{hi:g} s)",
            results["low_load"],
            LOW_LOAD_TARGETS,
        ),
        "",
        held_table(
            f"[3] {plan.held} requests held open, {plan.held_rate} req/s, high x 1k at time scale "
            f"{plan.held_time_scale:g} ({40 * plan.held_time_scale:g}-{80 * plan.held_time_scale:g} s); "
            f"sampled over {plan.held_window:g} s once all were submitted",
            results["held"],
            HELD_TARGETS,
        ),
    ]
    return "\n".join(sections)


def _raise_open_files(wanted: int) -> None:
    """Thousands of held connections need as many descriptors (the shim child inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def _finite(value: Any) -> Any:
    """NaN -> null, so that the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
