"""`shim bench --repeat SCENARIO --runs N`: one scenario, N times in a row, a line of figures per run: what a
comparison side by side needs (run it in each checkout, alternating), without the whole bench's five minutes.

  fast      the fast scenario's shim run alone (60 SDK clients at once, tasks ten times faster than documented)
  replicas  the same 60 clients over 3 shims on one Redis (needs `redis-server`)
  b64-load  the b64 load (1,000 b64_json requests at once over 20 keys)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from .run import FULL, QUICK, Plan, base_env, load_figures, raise_open_files, replicas_figures, shim_figures
from .servers import EmulatorProcess

#: The figures of a run's line, in order (rounded to 2 places).
FIGURES = {
    "fast": ("ok", "requests_per_ok_task", "rate_limited", "answer_p50", "answer_p90", "throughput", "elapsed"),
    "replicas": ("ok", "requests_per_ok_task", "rate_limited", "answer_p50", "answer_p90", "throughput", "elapsed"),
    "b64-load": ("ok", "upstream_requests", "rate_limited", "answer_p50", "answer_p90", "elapsed", "cpu_seconds"),
}


async def _fast(plan: Plan) -> dict[str, Any]:
    async with EmulatorProcess(time_scale=plan.fast_scale, rate=plan.rate) as emulator:
        env = {**base_env(plan), "SHIM_REAPI_BASE_URL": emulator.url}
        return await shim_figures(emulator, env, plan, tag="fast", concurrency=plan.tasks)


async def _replicas(plan: Plan) -> dict[str, Any]:
    async with EmulatorProcess(time_scale=plan.fast_scale, rate=plan.rate) as emulator:
        return await replicas_figures(emulator, {**base_env(plan), "SHIM_REAPI_BASE_URL": emulator.url}, plan)


async def _load(plan: Plan) -> dict[str, Any]:
    return await load_figures(plan, base_env(plan))


SCENARIOS: dict[str, Callable[[Plan], Coroutine[Any, Any, dict[str, Any]]]] = {
    "fast": _fast, "replicas": _replicas, "b64-load": _load,
}  # fmt: skip


def run_repeated(scenario: str, runs: int, *, quick: bool = False) -> int:
    """Run `scenario` `runs` times, printing one line per run as it ends; 0 when all ran."""
    plan = QUICK if quick else FULL
    raise_open_files(4 * plan.load_requests + 512)
    names = FIGURES[scenario]
    print("run  " + "  ".join(names), flush=True)
    for n in range(1, runs + 1):
        figures = asyncio.run(SCENARIOS[scenario](plan))
        cells = [_cell(figures.get(name)).rjust(len(name)) for name in names]
        print(f"{n:<4} " + "  ".join(cells), flush=True)
    return 0


def _cell(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
