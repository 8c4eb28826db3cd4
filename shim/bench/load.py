"""The b64 load scenario of `shim bench`: a thousand requests at once over twenty keys, each answered b64_json
in jpeg (downloaded, decoded, converted, base64-encoded: CPU work the shim does off its event loop). The
point: that work never delays a send the pacer already counted, so no key draws an upstream 429."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

from .clients import Answer, held_client
from .report import collect, completed, count_errors, delays, quantile
from .servers import EmulatorProcess, ShimProcess
from .untold import bench_key

#: What every request asks: b64_json in jpeg (a conversion per image), at a 3:2 size.
BODY = {"response_format": "b64_json", "output_format": "jpeg", "size": "1536x1024"}


async def b64_load(emulator: EmulatorProcess, env: dict[str, str], *, requests: int, keys: int) -> dict[str, Any]:
    """`requests` at once spread over `keys` keys, on a fresh shim; figures over all keys together."""
    names = [bench_key(f"load{k}") for k in range(keys)]
    async with ShimProcess(env) as shim:
        cpu_before = shim.cpu_seconds()
        clients = [held_client(shim.url, name, quality="low", tag=name, overrides=BODY) for name in names]
        started = time.monotonic()
        answers: list[Answer] = list(await asyncio.gather(*(clients[i % keys](i) for i in range(requests))))
        elapsed = time.monotonic() - started
        server = {"cpu_seconds": shim.cpu_seconds() - cpu_before, "peak_rss_mb": shim.memory_mb()[1]}
    state = emulator.state
    counters: list[Mapping[str, int]] = []
    ok: list[tuple[str, float]] = []
    answered: list[float] = []
    for k, name in enumerate(names):
        mine = [a for i, a in enumerate(answers) if i % keys == k]
        run = collect(state, "shim", name, mine, started)
        counters.append(run.counters)  # (the shim is gone: they no longer move)
        done = completed(run)
        ok += done
        answered += delays(run, done)[1]
    return {
        "requests": requests,
        "keys": keys,
        "ok": len(ok),
        "errors": count_errors(answers),
        "rate_limited": sum(c["rate_limited"] for c in counters),
        "upstream_requests": sum(c["requests"] for c in counters),
        "requests_per_ok_task": sum(c["requests"] for c in counters) / len(ok) if ok else math.nan,
        "answer_p50": quantile(answered, 0.5),
        "answer_p90": quantile(answered, 0.9),
        "elapsed": elapsed,
        **server,
    }
