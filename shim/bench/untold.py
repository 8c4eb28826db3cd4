"""The bench's runs of the shim against an emulator whose speed it is not told: a fresh shim per run, warmed
up with a few tasks, its SDK clients recorded, and what its learner said sampled from /healthz meanwhile.
Also the runs that need more than one kind of client: the emulator slowing down mid-run, an idle key, and
several replicas on one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .clients import Answer, Ask, Request, open_sdk, run_clients, sdk_client
from .servers import EmulatorProcess, RedisProcess, ShimProcess

#: How often the shim's /healthz is read for what its learner says (seconds).
SAMPLE_EVERY = 0.1

#: (monotonic time, {latency class: {"observations", "p50", "p90", "trusted"}}), as /healthz reported.
Sample = tuple[float, dict[str, dict[str, Any]]]


@dataclass(slots=True)
class ShimRun:
    """One run: the measured key's answers, every key the run used, the learner over time, the switches."""

    key: str
    keys: list[str]
    answers: list[Answer]
    started: float
    server: dict[str, float]
    samples: list[Sample]
    switches: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time, new time scale)
    extra: dict[str, Any] = field(default_factory=dict)


def bench_key(tag: str) -> str:
    return f"rk_bench_{tag}_{uuid.uuid4().hex[:12]}"


async def run_untold(
    emulator: EmulatorProcess,
    env: dict[str, str],
    *,
    tag: str,
    asks: Sequence[Ask] = (Ask(),),
    concurrency: int,
    rounds: int = 1,
    warmup: int = 10,
    warm_asks: Sequence[Ask] = (Ask(),),
    switches: Sequence[tuple[int, float]] = (),
) -> ShimRun:
    """A fresh shim: `warmup` tasks at once on a key of their own, then `concurrency` SDK clients making
    `rounds` requests each on the measured key. `switches`: once that many measured answers have come,
    set the emulator's time scale to that value (the shim is never told)."""
    warm_key, key = bench_key(f"{tag}_warm"), bench_key(f"{tag}_shim")
    async with ShimProcess(env) as shim, _sampling(shim.url) as samples:
        cpu_before = shim.cpu_seconds()
        if warmup:
            async with open_sdk(shim.url, warm_key) as client:
                await run_clients(sdk_client(client, asks=warm_asks, tag=warm_key), concurrency=warmup)
        switched: list[tuple[float, float]] = []
        async with open_sdk(shim.url, key) as client:
            one = sdk_client(client, asks=asks, tag=key)
            if switches:
                one = _switching(one, emulator.url, list(switches), switched)
            started = time.monotonic()
            answers = await run_clients(one, concurrency=concurrency, rounds=rounds)
        server = {"cpu_seconds": shim.cpu_seconds() - cpu_before, "peak_rss_mb": shim.memory_mb()[1]}
    keys = [warm_key, key] if warmup else [key]
    return ShimRun(key, keys, answers, started, server, samples, switched)


async def run_idle_key(
    env: dict[str, str], *, tag: str, backlog: int, warmup: int = 10, lone: Ask, lone_after: float = 1.0
) -> ShimRun:
    """A fresh shim, warmed up; key A asks `backlog` images at once, and `lone_after` seconds later key B
    (idle until then) asks one: B's answer must not wait behind A's queue."""
    warm_key, key, lone_key = bench_key(f"{tag}_warm"), bench_key(f"{tag}_busy"), bench_key(f"{tag}_idle")
    async with ShimProcess(env) as shim, _sampling(shim.url) as samples:
        cpu_before = shim.cpu_seconds()
        if warmup:
            async with open_sdk(shim.url, warm_key) as client:
                await run_clients(sdk_client(client, tag=warm_key), concurrency=warmup)
        async with open_sdk(shim.url, key) as busy, open_sdk(shim.url, lone_key) as idle:
            started = time.monotonic()
            queued = asyncio.ensure_future(run_clients(sdk_client(busy, tag=key), concurrency=backlog))
            await asyncio.sleep(lone_after)
            (lone_answer,) = await run_clients(sdk_client(idle, asks=(lone,), tag=lone_key), concurrency=1)
            answers = await queued
        server = {"cpu_seconds": shim.cpu_seconds() - cpu_before, "peak_rss_mb": shim.memory_mb()[1]}
    keys = [warm_key, key, lone_key] if warmup else [key, lone_key]
    return ShimRun(key, keys, answers, started, server, samples, extra={"lone": lone_answer, "lone_key": lone_key})


async def run_replicas(env: dict[str, str], *, tag: str, replicas: int, concurrency: int, warmup: int = 10) -> ShimRun:
    """`replicas` fresh shims on one Redis (SHIM_REDIS_URL), warmed up together; `concurrency` SDK clients on
    one key, request i sent to replica i mod `replicas` (a round-robin balancer). The learner is sampled on
    the first replica; CPU seconds are the replicas' sum, peak RSS their largest."""
    warm_key, key = bench_key(f"{tag}_warm"), bench_key(f"{tag}_shim")
    async with RedisProcess() as redis, contextlib.AsyncExitStack() as stack:
        shims = [ShimProcess({**env, "SHIM_REDIS_URL": redis.url}) for _ in range(replicas)]
        await asyncio.gather(*(stack.enter_async_context(shim) for shim in shims))
        samples = await stack.enter_async_context(_sampling(shims[0].url))
        cpu_before = [shim.cpu_seconds() for shim in shims]
        warm = [await stack.enter_async_context(open_sdk(shim.url, warm_key)) for shim in shims]
        clients = [await stack.enter_async_context(open_sdk(shim.url, key)) for shim in shims]
        if warmup:
            await run_clients(_round_robin([sdk_client(c, tag=warm_key) for c in warm]), concurrency=warmup)
        started = time.monotonic()
        answers = await run_clients(_round_robin([sdk_client(c, tag=key) for c in clients]), concurrency=concurrency)
        server = {
            "cpu_seconds": sum(shim.cpu_seconds() - before for shim, before in zip(shims, cpu_before, strict=True)),
            "peak_rss_mb": max(shim.memory_mb()[1] for shim in shims),
        }
    return ShimRun(key, [warm_key, key] if warmup else [key], answers, started, server, samples)


def _round_robin(requests: Sequence[Request]) -> Request:
    """Request i goes to the i-th client mod their number."""

    async def request(i: int) -> Answer:
        return await requests[i % len(requests)](i)

    return request


def _switching(
    one: Request, emulator_url: str, switches: list[tuple[int, float]], done: list[tuple[float, float]]
) -> Request:
    """`one`, and after every answer: set the emulator's time scale once the answers reach a switch."""
    answered = 0

    async def request(i: int) -> Answer:
        nonlocal answered
        answer = await one(i)
        answered += 1
        while switches and answered >= switches[0][0]:
            _, scale = switches.pop(0)
            async with httpx.AsyncClient(timeout=10.0) as http:
                reply = await http.post(emulator_url + "/_emulator/time_scale", json={"time_scale": scale})
                reply.raise_for_status()
            done.append((time.monotonic(), scale))
        return answer

    return request


@contextlib.asynccontextmanager
async def _sampling(shim_url: str) -> AsyncIterator[list[Sample]]:
    """Read what the shim's learner says every SAMPLE_EVERY seconds until the block ends."""
    samples: list[Sample] = []
    stop = asyncio.Event()

    async def sample() -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                    body = (await http.get(shim_url + "/healthz")).json()
                    samples.append((time.monotonic(), body["upstreams"]["reapi"]["latency"]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)

    sampler = asyncio.ensure_future(sample())
    try:
        yield samples
    finally:
        stop.set()
        await sampler
