"""`shim bench`: the shim's pacing on the emulator, which runs at speeds the shim is never told about.

Every run starts a fresh shim (`python -m shim serve`, so its CPU time and peak RSS are its own) with no
SHIM_LATENCY_SCALE: it knows only the documented table (low x 1k: 20-40 s) and has to learn. 10 warm-up
tasks on a key of their own come first, then the measured clients on another key (learning is pooled):
  fast      60 SDK clients at once, tasks ten times faster than documented; then reAPI's documented naive
            loop (polling every 1.5 s, and every 1.5 s x time scale) on other keys of the same emulator
  replicas  the fast run's 60 clients spread round-robin over 3 shims on one Redis (SHIM_REDIS_URL): one
            budget for the key across them; each replica warmed up with as many tasks as the single shim (its
            learner is its own) (skipped without a `redis-server`)
  low load  5 SDK clients asking one image after another; then the naive loops
  slow      60 at once, three times slower than documented (four minutes, run beside the others: it
            needs about 4 requests/s)
  drift     60 clients, 6 images each: the emulator slows down 3x after 100 answers, and recovers 120
            answers later (by then about 60 of the slow tasks have completed)
  mixed     60 at once over four classes (two models, three qualities, two tiers); only one was warmed up
  idle key  one 1 s task on an idle key while another key has 80 queued
  held      thousands of raw requests held open on slow tasks: memory per held request, CPU while held
Servers: the emulator (`python -m shim emulator`), the shims and Redis are child processes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from .clients import Ask, naive_client, run_clients
from .held import hold_requests
from .load import b64_load
from .report import Target, collect, convergence, held_table, load_table, rank, run_table, scenario_table, summarize
from .servers import EmulatorProcess, RedisProcess, key_fingerprint
from .truth import fewest, laws_of
from .untold import ShimRun, bench_key, run_idle_key, run_replicas, run_untold

#: The documented interval of the quickstart's loop (seconds, real time).
DOCUMENTED_POLL_INTERVAL = 1.5


@dataclass(frozen=True, slots=True)
class Plan:
    """The sizes of a bench run. Emulated latencies are the documented ones x time scale."""

    tasks: int = 60
    rate: int = 10
    warmup: int = 10
    fast_scale: float = 0.1  # low x 1k: 20-40 s documented -> 2-4 s
    slow_scale: float = 3.0  # -> 60-120 s
    slow: bool = True  # the slow run takes two minutes or more
    drift_rounds: int = 6
    drift_factor: float = 3.0
    idle_scale: float = 0.05  # -> 1-2 s
    backlog: int = 80
    low_concurrency: int = 5
    low_rounds: int = 4
    held: int = 2000
    held_time_scale: float = 0.5  # high x 1k: 40-80 s -> 20-40 s
    held_rate: int = 2000
    held_window: float = 5.0
    load_requests: int = 1000
    load_keys: int = 20
    load_scale: float = 0.1  # low x 1k: 2-4 s
    replicas: int = 3


FULL = Plan()
QUICK = Plan(
    tasks=10, warmup=3, fast_scale=0.02, slow=False, drift_rounds=2, idle_scale=0.02, backlog=10, low_rounds=1,
    held=200, held_time_scale=0.02, held_window=0.5, load_requests=60, load_keys=3, load_scale=0.02,
)  # fmt: skip

#: The four classes of the mixed run; the warm-up asks only the first.
MIXED = (
    Ask("gpt-image-1", "low"),  # gpt-image-2-official low x 1k: 20-40 s documented
    Ask("gpt-image-1", "medium", "2048x2048"),  # medium x 2k: 45-90 s
    Ask("gpt-image-1", "high"),  # high x 1k: 40-80 s
    Ask("dall-e-2", None),  # the cheap gpt-image-2 channel, runs like low x 1k
)

#: (row, target text, met?) for the scenario table; a scenario lists the rows that apply to it.
CHECKS: dict[str, tuple[str, Callable[[Mapping[str, Any]], bool]]] = {
    "ok": ("all tasks ok", lambda s: s["ok"] == s["tasks"]),
    "429": ("0 429s", lambda s: s["rate_limited"] == 0),
    "requests": ("<= 2.5 req/task", lambda s: s["requests_per_ok_task"] <= 2.5),
    "delay": ("p50 <= 0.7 s, p90 <= 1.5 s", lambda s: s["answer_p50"] <= 0.7 and s["answer_p90"] <= 1.5),
    "low delay": ("p50 <= 0.4 s", lambda s: s["answer_p50"] <= 0.4),
    "throughput": (">= 4.3 tasks/s", lambda s: s["throughput"] >= 4.3),
    "learned": ("within 20% in <= 10", lambda s: max(map(rank, s["learning"].values()), default=math.inf) <= 10),
    "lone": ("idle key's 1 s task answered within 2 s", lambda s: s["lone_seconds"] <= 2.0),
}
BUDGET_BOUND = ("ok", "429", "requests", "delay", "throughput", "learned")
#: Why a target does not apply to a scenario (said in the report rather than fudged).
NOT_APPLICABLE = {
    "low load": "requests and throughput: 5 clients leave the budget idle, so the shim spends it on prompt "
    "answers (no target but the delay)",
    "slow": "delay, requests, throughput: 60-120 s tasks spread over a minute; 60 of them at once need more "
    "polls than 10 req/s allow for sub-second answers, and finish at latency's pace, not the budget's",
    "mixed": "throughput: the 2k tasks take up to 9 s, so the run ends at latency's pace",
}

CONCURRENT_TARGETS: list[Target] = [
    ("tasks ok", "all", lambda s: s["ok"] == s["tasks"]),
    ("upstream requests per ok task", "<= 2.5", lambda s: s["requests_per_ok_task"] <= 2.5),
    ("429s received", "0", lambda s: s["rate_limited"] == 0),
    (
        "done -> client answer p50 / p90 (s)",
        "p50 <= 0.7, p90 <= 1.5",
        lambda s: s["answer_p50"] <= 0.7 and s["answer_p90"] <= 1.5,
    ),
    ("throughput (tasks/s, % of rate/2)", ">= 4.3/s", lambda s: s["throughput"] >= 4.3),
]
LOW_LOAD_TARGETS: list[Target] = [
    ("tasks ok", "all", lambda s: s["ok"] == s["tasks"]),
    ("done -> client answer p50 / p90 (s)", "p50 <= 0.4", lambda s: s["answer_p50"] <= 0.4),
]
HELD_TARGETS: list[Target] = [
    ("requests completed", "all", lambda f: f["ok"] == f["requests"]),
    ("shim peak RSS while held (MB)", "<= 300", lambda f: f["held_peak_rss_mb"] <= 300),
    ("shim CPU while held (CPU s per s)", "near idle (< 0.1)", lambda f: f["held_cpu_per_second"] < 0.1),
]


def run_bench(*, quick: bool = False, json_path: str | None = None, command: str = "shim bench") -> int:
    """Run every scenario, print the tables (and write the numbers to `json_path`); 0 when it ran."""
    plan = QUICK if quick else FULL
    raise_open_files(4 * plan.held + 512)
    started = time.monotonic()
    results = asyncio.run(_bench(plan))
    results["seconds"] = time.monotonic() - started
    print(_render(command, plan, results), flush=True)
    if json_path:
        document = {"command": command, "plan": asdict(plan), **results}
        Path(json_path).write_text(json.dumps(_finite(document), indent=2, default=str) + "\n")
    return 0


async def _bench(plan: Plan) -> dict[str, Any]:
    env = base_env(plan)
    scenarios: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name], clock = time.monotonic() - clock, time.monotonic()

    slow = asyncio.ensure_future(_slow(plan, env)) if plan.slow else None  # four minutes, light: beside the rest
    async with EmulatorProcess(time_scale=plan.fast_scale, rate=plan.rate) as emulator:
        shim_env = {**env, "SHIM_REAPI_BASE_URL": emulator.url}
        concurrent = await _compare(emulator, shim_env, plan, concurrency=plan.tasks, rounds=1, tag="fast")
        scenarios["fast"] = concurrent[0]
        lap("fast")
        if RedisProcess.available():
            scenarios["replicas"] = await replicas_figures(emulator, shim_env, plan)
            lap("replicas")
        low = await _compare(emulator, shim_env, plan, concurrency=plan.low_concurrency, rounds=plan.low_rounds,
                             tag="low")  # fmt: skip
        scenarios["low load"] = low[0]
        lap("low load")
        run = await run_untold(emulator, shim_env, tag="mixed", asks=MIXED, concurrency=plan.tasks,
                               warmup=plan.warmup)  # fmt: skip
        scenarios["mixed"] = figures_of(emulator, run, plan)
        lap("mixed")
        if plan.idle_scale == plan.fast_scale:
            scenarios["idle key"] = await _idle_key(emulator, shim_env, plan)
            lap("idle key")
    if "idle key" not in scenarios:
        async with EmulatorProcess(time_scale=plan.idle_scale, rate=plan.rate) as emulator:
            scenarios["idle key"] = await _idle_key(emulator, {**env, "SHIM_REAPI_BASE_URL": emulator.url}, plan)
        lap("idle key")
    scenarios["drift"] = await _drift(plan, env)
    lap("drift")
    if slow is not None:
        scenarios["slow"] = await slow
        lap("slow (the rest of it)")
    async with EmulatorProcess(time_scale=plan.held_time_scale, rate=plan.held_rate) as emulator:
        held_env = {"SHIM_REAPI_BASE_URL": emulator.url, "SHIM_REAPI_RATE_LIMIT": str(plan.held_rate)}
        held = await hold_requests(emulator, held_env, key=bench_key("held"), n=plan.held, window=plan.held_window)
        lap("held")
    load = await load_figures(plan, env)
    lap("b64 load")
    return {
        "scenarios": scenarios, "concurrent": concurrent, "low_load": low, "held": held, "load": load,
        "timings": timings,
    }  # fmt: skip


async def _drift(plan: Plan, env: dict[str, str]) -> dict[str, Any]:
    """The upstream slows down mid-run, then recovers (the shim is told neither)."""
    async with EmulatorProcess(time_scale=plan.fast_scale, rate=plan.rate) as emulator:
        # 60 clients keep 60 tasks in flight: of 360 answers, the slow phase runs from the 100th to the 220th,
        # by when about 60 of its own tasks have completed
        total = plan.tasks * plan.drift_rounds
        switches = [(total * 5 // 18, plan.fast_scale * plan.drift_factor), (total * 11 // 18, plan.fast_scale)]
        run = await run_untold(emulator, {**env, "SHIM_REAPI_BASE_URL": emulator.url}, tag="drift",
                               concurrency=plan.tasks, rounds=plan.drift_rounds, warmup=plan.warmup,
                               switches=switches)  # fmt: skip
        return figures_of(emulator, run, plan)


async def _slow(plan: Plan, env: dict[str, str]) -> dict[str, Any]:
    async with EmulatorProcess(time_scale=plan.slow_scale, rate=plan.rate) as emulator:
        env = {**env, "SHIM_REAPI_BASE_URL": emulator.url}
        run = await run_untold(emulator, env, tag="slow", concurrency=plan.tasks, warmup=plan.warmup)
        return figures_of(emulator, run, plan)


async def _idle_key(emulator: EmulatorProcess, env: dict[str, str], plan: Plan) -> dict[str, Any]:
    run = await run_idle_key(
        env, tag="idle", backlog=plan.backlog, warmup=plan.warmup, lone=Ask(marker="[latency=1.0]")
    )
    return figures_of(emulator, run, plan)


async def _compare(
    emulator: EmulatorProcess, env: dict[str, str], plan: Plan, *, concurrency: int, rounds: int, tag: str
) -> list[dict[str, Any]]:
    """The shim (warmed up, untold) and then the naive loops, each on its own key of the same emulator."""
    results = [await shim_figures(emulator, env, plan, tag=tag, concurrency=concurrency, rounds=rounds)]
    scaled = DOCUMENTED_POLL_INTERVAL * plan.fast_scale
    for interval, label in ((DOCUMENTED_POLL_INTERVAL, "naive 1.5 s"), (scaled, f"naive {scaled:g} s")):
        key = bench_key(f"{tag}_naive")
        limits = httpx.Limits(max_connections=concurrency + 16)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
            one = naive_client(http, emulator.url, key, quality="low", interval=interval, tag=key)
            started = time.monotonic()
            answers = await run_clients(one, concurrency=concurrency, rounds=rounds)
        results.append(summarize(collect(emulator.state, label, key, answers, started), rate=plan.rate))
    return results


def base_env(plan: Plan) -> dict[str, str]:
    """A bench shim's settings: the rate, and (added per emulator) the emulator's address; nothing else about it."""
    return {"SHIM_REAPI_RATE_LIMIT": str(plan.rate)}


async def shim_figures(
    emulator: EmulatorProcess, env: dict[str, str], plan: Plan, *, tag: str, concurrency: int, rounds: int = 1
) -> dict[str, Any]:
    """A fresh shim, warmed up and untold, with `concurrency` clients making `rounds` requests each."""
    run = await run_untold(emulator, env, tag=tag, concurrency=concurrency, rounds=rounds, warmup=plan.warmup)
    return figures_of(emulator, run, plan)


async def replicas_figures(emulator: EmulatorProcess, env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """The fast scenario's clients over `plan.replicas` shims on one Redis, each warmed up as one shim is."""
    run = await run_replicas(env, tag="replicas", replicas=plan.replicas, concurrency=plan.tasks,
                             warmup=plan.warmup * plan.replicas)  # fmt: skip
    return figures_of(emulator, run, plan)


async def load_figures(plan: Plan, env: dict[str, str]) -> dict[str, Any]:
    """The b64 load, on an emulator of its own (`env`: the shim's settings but the emulator's address)."""
    async with EmulatorProcess(time_scale=plan.load_scale, rate=plan.rate) as emulator:
        return await b64_load(
            emulator, {**env, "SHIM_REAPI_BASE_URL": emulator.url}, requests=plan.load_requests, keys=plan.load_keys
        )


def figures_of(emulator: EmulatorProcess, run: ShimRun, plan: Plan) -> dict[str, Any]:
    """The measured key's summary, what the learner did (per class, and per phase when the emulator's speed
    switched), what the poll rule told the truth would need for its tasks (`truth`), and the idle key's
    answer."""
    state = emulator.state
    tasks = state.tasks
    fingerprints = {key_fingerprint(k) for k in run.keys}
    mine = {i: t for i, t in tasks.items() if t.key in fingerprints}
    figures = summarize(collect(state, "shim", run.key, run.answers, run.started, run.server), rate=plan.rate)
    bounds = [-math.inf] + [at for at, _ in run.switches] + [math.inf]
    phases = [convergence(run.samples, mine, since=lo, until=hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    figures["learning"] = phases[0] if len(phases) == 1 else {
        f"{name} ({label})": learned
        for label, phase in zip(["start", *(f"x{scale:g} scale" for _, scale in run.switches)], phases, strict=False)
        for name, learned in phase.items()
    }  # fmt: skip
    figures["switches"] = run.switches
    measured_key = key_fingerprint(run.key)
    measured = [t for t in mine.values() if t.key == measured_key and t.kind == "image"]
    told = fewest(laws_of(measured, [(-math.inf, emulator.time_scale), *run.switches]))
    figures["told"] = None if told is None else asdict(told)
    lone = run.extra.get("lone")
    if lone is not None:
        figures["lone_seconds"] = (lone.answered - lone.started) if lone.answered is not None else math.inf
        lone_task = tasks.get(lone.task_id or "")
        figures["lone_delay"] = lone.answered - lone_task.ready_at if lone_task and lone.answered else math.nan
        figures["lone_ok"] = lone.ok
    return figures


def _scenario_rows(plan: Plan, scenarios: dict[str, dict[str, Any]]) -> list[Any]:
    """The rows of table [1]: each scenario that ran, with the targets that apply to it."""
    faster = f"{1 / plan.fast_scale:g}x faster (x{plan.fast_scale:g})"
    labels = {
        "fast": f"fast: {plan.tasks} at once, {faster}",
        "replicas": f"replicas: {plan.tasks} at once over {plan.replicas} shims on one Redis, {faster}",
        "low load": f"low load: {plan.low_concurrency} clients x {plan.low_rounds}, {faster}",
        "mixed": f"mixed: {plan.tasks} at once, 4 classes, {faster}",
        "drift": f"drift: {plan.tasks} clients x {plan.drift_rounds}, {faster}, {plan.drift_factor:g}x slower, back",
        "idle key": f"idle key: {plan.backlog} at once on key A, {1 / plan.idle_scale:g}x faster; 1 s task on key B",
        "slow": f"slow: {plan.tasks} at once, {plan.slow_scale:g}x slower (x{plan.slow_scale:g})",
    }
    applies = {
        "fast": BUDGET_BOUND,
        "replicas": BUDGET_BOUND,  # the replicas pool what they learn (the first one's learner is shown)
        "low load": ("ok", "429", "low delay", "learned"),
        "mixed": ("ok", "429", "requests", "delay", "learned"),
        "drift": BUDGET_BOUND,
        "idle key": (*BUDGET_BOUND, "lone"),
        "slow": ("ok", "429", "learned"),
    }
    rows = []
    for name in ("fast", "replicas", "low load", "slow", "drift", "mixed", "idle key"):
        if name in scenarios:
            figures = scenarios[name]
            checks = [(CHECKS[c][0], CHECKS[c][1](figures)) for c in applies[name]]
            rows.append((labels[name], figures, checks))
    return rows


def _render(command: str, plan: Plan, results: dict[str, Any]) -> str:
    limit = plan.rate / 2
    scenarios: dict[str, dict[str, Any]] = results["scenarios"]
    rows = _scenario_rows(plan, scenarios)
    naive = (
        f"naive = reAPI quickstart loop straight to the emulator: submit, then poll every 1.5 s (documented) or "
        f"every 1.5 s x {plan.fast_scale:g}; a refused submit loses the task, a refused poll waits a tick."
    )
    sections = [
        f"$ {command}",
        f"shim bench: {os.cpu_count()} CPUs, {results['seconds']:.0f} s ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in results["timings"].items())
        + "); the shim is never told how fast the emulator runs (no SHIM_LATENCY_SCALE): it starts from the "
        "documented table (low x 1k: 20-40 s) and learns.",
        f"Measured after {plan.warmup} warm-up tasks on another key; delays are from the upstream finishing a task "
        f"(emulator ready_at); {plan.rate} req/s per key, rate/2 = {limit:g} tasks/s.",
        "",
        scenario_table(
            "[1] scenarios (told: requests a task would need for p50 <= 0.7 s and p90 <= 1.5 s under the shim's "
            "poll rule told each class's latency law, polls never queued (`bench.truth`); learned: completions "
            "until the learner's median came within 20% of the true one, first / for good; per class, worst shown)",
            rows,
        ),  # fmt: skip
        *(f"  not applicable to {name}: {why}" for name, why in NOT_APPLICABLE.items() if name in scenarios),
        *([] if "replicas" in scenarios else ["  replicas: skipped (no redis-server on this machine)"]),
        "",
        naive,
        run_table(
            f"[2] {plan.tasks} concurrent tasks on one key, {plan.rate} req/s, low x 1k at time scale "
            f"{plan.fast_scale:g} ({20 * plan.fast_scale:g}-{40 * plan.fast_scale:g} s); physical limit {limit:g} "
            "tasks/s",
            results["concurrent"],
            CONCURRENT_TARGETS,
        ),
        "",
        run_table(
            f"[3] low load: {plan.low_concurrency} concurrent clients x {plan.low_rounds} images one after another, "
            f"{plan.rate} req/s, low x 1k at time scale {plan.fast_scale:g}",
            results["low_load"],
            LOW_LOAD_TARGETS,
        ),
        "",
        held_table(
            f"[4] {plan.held} requests held open, {plan.held_rate} req/s, high x 1k at time scale "
            f"{plan.held_time_scale:g} ({40 * plan.held_time_scale:g}-{80 * plan.held_time_scale:g} s; documented "
            f"40-80 s, not told); sampled over {plan.held_window:g} s once all were submitted",
            results["held"],
            HELD_TARGETS,
        ),
        "",
        load_table(
            f"[5] {plan.load_requests} b64_json (jpeg) requests at once over {plan.load_keys} keys, {plan.rate} "
            f"req/s each, low x 1k at time scale {plan.load_scale:g}: CPU work must not delay counted sends",
            results["load"],
        ),
    ]
    return "\n".join(sections)


def raise_open_files(wanted: int) -> None:
    """Thousands of held connections need as many descriptors (the shim child inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def _finite(value: Any) -> Any:
    """NaN and infinities -> null, so that the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
