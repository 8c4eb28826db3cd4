"""Replicas on one Redis (SHIM_REDIS_URL), each a real `python -m shim serve` child process with its own memory:
one budget per key for all of them, a retry attaching wherever its job runs, a killed replica's task collected
by another, and a Redis outage that refuses new submits (503) but loses no task and charges nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import redis.asyncio as aioredis

from shim.bench.servers import EmulatorProcess, ShimProcess

from .conftest import TIME_SCALE, RedisServer, ServedApp

PATH = "/v1/images/generations"


@contextlib.asynccontextmanager
async def replicas(upstream_url: str, redis: RedisServer, n: int, **env: str) -> AsyncIterator[list[ShimProcess]]:
    """`n` shim processes on one emulator and one Redis (a key prefix of their own), started together."""
    shared = {
        "SHIM_REAPI_BASE_URL": upstream_url,
        "SHIM_REDIS_URL": redis.url,
        "SHIM_REDIS_PREFIX": "test-" + uuid.uuid4().hex[:8],
        "SHIM_REDIS_LEASE_SECONDS": "1",
        **env,
    }
    shims = [ShimProcess(shared) for _ in range(n)]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(shim) for shim in shims))
        yield shims


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "dall-e-2", "prompt": prompt, **extra}


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


async def dropped(http: httpx.AsyncClient, shim: ShimProcess, payload: dict[str, Any], headers: dict[str, str]) -> None:
    """A client that gives up after 0.3 s: its job goes on, on that replica."""
    with pytest.raises(httpx.ReadTimeout):
        await http.post(shim.url + PATH, json=payload, headers=headers, timeout=0.3)


async def until(condition: Any, timeout: float = 15.0) -> None:
    """Wait (polling) until `condition()` is true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_three_replicas_spend_one_budget(redis_server: RedisServer) -> None:
    """60 concurrent SDK calls on one key, spread round-robin over three replicas: all succeed, the upstream sees
    no 429 (10 requests/s for the key in all), and at most 2.5 upstream requests per task."""
    key = "rk_test_" + uuid.uuid4().hex
    async with (
        EmulatorProcess(time_scale=TIME_SCALE, rate=10) as emulator,
        replicas(emulator.url, redis_server, 3) as shims,
    ):
        clients = [openai.AsyncOpenAI(base_url=s.url + "/v1", api_key=key, max_retries=0, timeout=120) for s in shims]
        try:
            results = await asyncio.gather(
                *(
                    clients[i % 3].images.generate(
                        model="gpt-image-1", prompt=f"tile {i}", quality="low", response_format="url"
                    )
                    for i in range(60)
                )
            )
        finally:
            await asyncio.gather(*(c.close() for c in clients))
        counters = emulator.state.counters(key)
    assert all(r.data and r.data[0].url for r in results)
    assert counters["submits"] == 60
    assert counters["rate_limited"] == 0
    assert counters["requests"] <= 2.5 * 60


async def test_retries_attach_on_another_replica(
    reapi_upstream: ServedApp, reapi_state: Any, redis_server: RedisServer, key: str
) -> None:
    """An SDK retry (x-stainless-retry-count: 1) and a repeated Idempotency-Key landing on the other replica
    attach to the job the first replica runs: one upstream submit each, the same image; the Idempotency-Key
    with another body is a 400 there too."""
    async with replicas(reapi_upstream.url, redis_server, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
        payload = body("[latency=1.5] retried elsewhere")
        await dropped(http, a, payload, auth(key))
        retry = await http.post(b.url + PATH, json=payload, headers=auth(key, **{"x-stainless-retry-count": "1"}))
        headers = auth(key, **{"Idempotency-Key": "order-9"})
        idem = body("[latency=0.5] ordered once", response_format="b64_json")
        first = await http.post(a.url + PATH, json=idem, headers=headers)
        again = await http.post(b.url + PATH, json=idem, headers=headers)
        other = await http.post(b.url + PATH, json=body("[latency=0.1] another body"), headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.headers["x-shim-attached"] == "true"
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key and "retried" in t.body["prompt"]]
    assert retry.headers["x-upstream-task-ids"] == task.id
    assert first.status_code == again.status_code == 200 and again.headers["x-shim-attached"] == "true"
    assert again.headers["x-shim-job"] == first.headers["x-shim-job"]
    assert again.json()["data"][0]["b64_json"] == first.json()["data"][0]["b64_json"]
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert reapi_state.counters(key)["submits"] == 2


async def test_killed_replica_s_task_is_collected_by_another(
    reapi_upstream: ServedApp, reapi_state: Any, redis_server: RedisServer, key: str
) -> None:
    """kill -9 of the replica running a job: the client's retry to the other replica waits for the dead one's
    lease to expire, adopts the job, polls the same paid task and delivers its image: one submit in all."""
    async with replicas(reapi_upstream.url, redis_server, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
        payload = body("[latency=2.0] outlive my replica")
        await dropped(http, a, payload, auth(key))
        await until(lambda: asyncio.sleep(0, result=reapi_state.counters(key)["submits"] == 1))
        os.kill(a.pid, signal.SIGKILL)
        retry = await http.post(b.url + PATH, json=payload, headers=auth(key, **{"x-stainless-retry-count": "1"}))
    assert retry.status_code == 200, retry.text
    assert retry.headers["x-shim-attached"] == "true" and retry.json()["data"][0]["url"]
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key]
    assert retry.headers["x-upstream-task-ids"] == task.id
    assert reapi_state.counters(key)["submits"] == 1


async def test_killed_mid_submit_is_never_resubmitted(
    reapi_upstream: ServedApp, reapi_state: Any, redis_server: RedisServer, key: str
) -> None:
    """kill -9 while a submit awaits its answer (the record says "submitting"): the replica that adopts the
    job never sends it again; the retry is a 502 upstream_submit_unknown, x-should-retry: false."""
    async with replicas(reapi_upstream.url, redis_server, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
        payload = body("[submit_slow=3.0] answer lost in a crash")
        await dropped(http, a, payload, auth(key))
        await until(lambda: asyncio.sleep(0, result=reapi_state.counters(key)["submits"] == 1))
        os.kill(a.pid, signal.SIGKILL)
        retry = await http.post(b.url + PATH, json=payload, headers=auth(key, **{"x-stainless-retry-count": "1"}))
    assert retry.status_code == 502, retry.text
    assert retry.json()["error"]["code"] == "upstream_submit_unknown"
    assert retry.headers["x-should-retry"] == "false"
    assert reapi_state.counters(key)["submits"] == 1


async def test_redis_outage_refuses_new_submits_and_loses_no_task(
    reapi_upstream: ServedApp, reapi_state: Any, key: str
) -> None:
    """Redis stops while a job runs: new requests get a clear retryable 503 (no submit without a record),
    /readyz says not ready, the running task goes on; Redis comes back empty (no persistence), the replicas
    write their records again, and the client's retry on the other replica collects the paid task."""
    redis = RedisServer().start()
    try:
        async with replicas(reapi_upstream.url, redis, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
            payload = body("[latency=1.5] through an outage")
            await dropped(http, a, payload, auth(key))
            redis.stop()
            refused = [
                await http.post(s.url + PATH, json=body(f"[latency=0.1] new {s.port}"), headers=auth(key))
                for s in (a, b)
            ]
            ready = await http.get(a.url + "/readyz")
            await asyncio.sleep(2.0)  # the task completes meanwhile; its replica polls on its own window
            redis.start()

            async def both_ready() -> bool:
                answers = [await http.get(s.url + "/readyz") for s in (a, b)]
                return all(answer.status_code == 200 for answer in answers)

            await until(both_ready)
            retry = await http.post(b.url + PATH, json=payload, headers=auth(key, **{"x-stainless-retry-count": "1"}))
            fresh = await http.post(b.url + PATH, json=body("[latency=0.1] after the outage"), headers=auth(key))
    finally:
        redis.stop()
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "state_unavailable"
        assert response.headers["retry-after"] and response.headers["x-should-retry"] == "true"
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] != "ok"
    assert retry.status_code == 200, retry.text
    assert retry.headers["x-shim-attached"] == "true"
    (task,) = [t for t in reapi_state.tasks.values() if t.key == key and t.body["prompt"] == payload["prompt"]]
    assert retry.headers["x-upstream-task-ids"] == task.id
    assert fresh.status_code == 200
    assert reapi_state.counters(key)["submits"] == 2  # the outage's own task and the fresh one: none refused was sent


async def test_a_job_is_looked_up_on_any_replica(
    reapi_upstream: ServedApp, reapi_state: Any, redis_server: RedisServer, key: str
) -> None:
    """A job started with Prefer: respond-async on replica A is looked up on replica B (a balancer sends the
    look-ups anywhere): 202 while it runs, then the very answer A gives (the same image, size, format and
    task id), and one upstream submit; another key's look-up on B is a 404."""
    payload = body("[latency=0.8] looked up elsewhere", response_format="b64_json", size="512x512")
    async with replicas(reapi_upstream.url, redis_server, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
        accepted = await http.post(a.url + PATH, json=payload, headers=auth(key, Prefer="respond-async"))
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        early = await http.get(b.url + location, headers=auth(key))
        stranger = await http.get(b.url + location, headers=auth("rk_other_" + key[-12:]))

        async def answered() -> bool:
            return (await http.get(b.url + location, headers=auth(key))).status_code != 202

        await until(answered)
        elsewhere = await http.get(b.url + location, headers=auth(key))
        home = await http.get(a.url + location, headers=auth(key))
    assert early.status_code == 202 and early.json()["id"] == accepted.json()["id"]
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "job_not_found"
    assert elsewhere.status_code == home.status_code == 200, elsewhere.text
    assert elsewhere.json()["data"] == home.json()["data"] and elsewhere.json()["size"] == home.json()["size"]
    assert elsewhere.headers["x-upstream-task-ids"] == home.headers["x-upstream-task-ids"]
    assert reapi_state.counters(key)["submits"] == 1


async def test_what_one_replica_learns_every_replica_knows(
    reapi_upstream: ServedApp, redis_server: RedisServer, key: str
) -> None:
    """Six images made through replica A only: replica B's /healthz shows their latency class learned from six
    completions (it ran none) with A's median; A counts its own six once."""
    async with replicas(reapi_upstream.url, redis_server, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
        for i in range(6):
            response = await http.post(a.url + PATH, json=body(f"[latency=0.3] learned {i}"), headers=auth(key))
            assert response.status_code == 200, response.text

        async def learned(shim: ShimProcess) -> dict[str, Any]:
            return dict((await http.get(shim.url + "/healthz")).json()["upstreams"]["reapi"]["latency"])

        async def heard() -> bool:
            return any(entry["observations"] == 6 for entry in (await learned(b)).values())

        await until(heard, timeout=5)
        at_a, at_b = await learned(a), await learned(b)
    (name,) = [name for name, entry in at_b.items() if entry["observations"] == 6]
    assert at_a[name]["observations"] == 6
    assert at_b[name]["p50"] == pytest.approx(at_a[name]["p50"], rel=0.3)


async def test_records_hold_no_key_and_no_prompt(
    reapi_upstream: ServedApp, redis_server: RedisServer, key: str
) -> None:
    """After jobs on two replicas (an Idempotency-Key among them), no Redis key or value holds the API key, the
    prompt or the Idempotency-Key; every key expires."""
    async with replicas(reapi_upstream.url, redis_server, 2, SHIM_REDIS_PREFIX="secrets-" + key[-8:]) as (a, b):
        async with httpx.AsyncClient(timeout=15) as http:
            headers = auth(key, **{"Idempotency-Key": "idem-raw-value"})
            for shim in (a, b):
                response = await http.post(shim.url + PATH, json=body("[latency=0.2] a secret prompt"), headers=headers)
                assert response.status_code == 200
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = await client.keys("secrets-" + key[-8:] + ":*")
        dump = " ".join(keys)
        for name in keys:
            kind = await client.type(name)
            value = {
                "hash": client.hgetall, "string": client.get, "zset": lambda n: client.zrange(n, 0, -1),
                "list": lambda n: client.lrange(n, 0, -1), "stream": client.xrange,
            }[kind](name)  # fmt: skip
            dump += " " + str(await value)
            assert await client.pttl(name) > 0, name
    finally:
        await client.aclose()
    assert keys and "job" in dump and "learned" in dump  # the completions every replica learns
    for secret in (key, "secret prompt", "idem-raw-value"):
        assert secret not in dump


async def test_video_retry_on_another_replica_is_answered_when_its_job_ends(
    reapi_upstream: ServedApp, reapi_state: Any, redis_server: RedisServer, key: str
) -> None:
    """A dropped video create's SDK retry lands on the other replica, which follows the job the first one
    runs: it answers once that job ends there (job_followed), not after its 30 s wait for a submit; one video
    id, one paid task."""
    payload = {"prompt": "[submit_slow=1.0] [latency=0.3] a video elsewhere", "seconds": "4"}
    async with replicas(reapi_upstream.url, redis_server, 2) as (a, b), httpx.AsyncClient(timeout=15) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(a.url + "/v1/videos", json=payload, headers=auth(key), timeout=0.3)
        retry = await http.post(
            b.url + "/v1/videos", json=payload, headers=auth(key, **{"x-stainless-retry-count": "1"})
        )  # the client's timeout (15 s) is half of the wait the bug held it for
    assert retry.status_code == 200, retry.text
    assert retry.headers["x-shim-attached"] == "true" and retry.json()["id"].startswith("video_")
    assert reapi_state.counters(key)["submits"] == 1
