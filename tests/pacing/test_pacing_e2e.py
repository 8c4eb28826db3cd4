"""The per-key budget and the learned poll timing end to end: many concurrent SDK calls on one key never
draw an upstream 429, and fast tasks complete through hold budgets and SDK retries though the shim is told
nothing about how fast the emulator runs (only the documented table, 20-40 s for low x 1k)."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import openai

from shim.app import create_app
from shim.jobs.job import credential_id

from ..conftest import served, shim_settings


async def test_forty_concurrent_calls_no_429(shim_server, reapi_state, key) -> None:
    """40 concurrent calls on one key at 10 requests/s all succeed with zero upstream 429s."""
    async with openai.AsyncOpenAI(base_url=shim_server.url + "/v1", api_key=key, max_retries=0) as client:
        results = await asyncio.gather(
            *(
                client.images.generate(model="gpt-image-1", prompt=f"tile {i}", quality="low", response_format="url")
                for i in range(40)
            )
        )
    assert all(r.data[0].url for r in results)
    counters = reapi_state.counters(key)
    assert counters["submits"] == 40
    assert counters["rate_limited"] == 0
    assert counters["requests"] <= 40 * 3  # one submit and about one or two polls per task


async def test_keys_are_independent(shim_server, reapi_state, key) -> None:
    """A backlog on one key does not delay another key's single call behind it."""
    other = key + "_b"
    async with (
        openai.AsyncOpenAI(base_url=shim_server.url + "/v1", api_key=key, max_retries=0) as busy,
        openai.AsyncOpenAI(base_url=shim_server.url + "/v1", api_key=other, max_retries=0) as quiet,
    ):
        backlog = [
            asyncio.ensure_future(busy.images.generate(model="dall-e-2", prompt=f"b{i}", response_format="url"))
            for i in range(30)
        ]
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await quiet.images.generate(model="dall-e-2", prompt="[latency=0.1] alone", response_format="url")
        quiet_elapsed = loop.time() - started
        await asyncio.gather(*backlog)
        backlog_elapsed = loop.time() - started
    # The 30-task backlog needs at least 30 submits + 30 polls at 10/s: about 6 s; the quiet key does not wait.
    assert quiet_elapsed < backlog_elapsed / 2
    assert reapi_state.counters(other)["rate_limited"] == 0


def test_healthz_reports_totals_without_keys(shim_server, key, sdk) -> None:
    """/healthz shows per-upstream totals of the live budgets and what was learned of each latency class,
    and no credential or its hash."""
    sdk(shim_server, key).images.generate(model="dall-e-2", prompt="[latency=0.1] h", response_format="url")
    health = httpx.get(shim_server.url + "/healthz")
    body = health.json()
    assert health.status_code == 200 and body["status"] == "ok"
    assert body["upstreams"]["reapi"]["requests"] >= 2
    learned = body["upstreams"]["reapi"]["latency"]["reapi/gpt-image-2/low/1k"]
    assert learned["observations"] >= 1 and 0 < learned["p50"] <= learned["p90"]
    assert key not in health.text
    assert credential_id(key) not in health.text


def test_logs_name_jobs_and_tasks_never_keys(shim_server, key, sdk, caplog) -> None:
    """The shim logs each job's start, tasks and end by id; the credential appears in no log record."""
    with caplog.at_level(logging.INFO, logger="shim"):
        raw = sdk(shim_server, key).images.with_raw_response.generate(
            model="dall-e-2", prompt="[latency=0.1] logged", response_format="url"
        )
        job = raw.headers["x-shim-job"]
        time.sleep(0.2)  # the job_finished line is written by the server thread after the answer
    lines = [r.getMessage() for r in caplog.records if r.name == "shim"]
    mine = [line for line in lines if job in line]
    assert any(line.startswith("job_started") for line in mine)
    assert any(line.startswith("job_finished") and "outcome=ok" in line for line in mine)
    assert not any(key in r.getMessage() for r in caplog.records)


def test_cold_shim_hold_hand_off_completes_within_default_retries(
    sdk, reapi_upstream, reve2img_upstream, reapi_state, key
) -> None:
    """A fresh shim (it has seen no task of the class) with SHIM_HOLD_SECONDS=1: a 2.5 s task, ten times
    faster than documented, completes within the SDK's default two retries, with exactly one submit."""
    settings = shim_settings(reapi_upstream, reve2img_upstream, hold_seconds=1.0)
    assert settings.latency_scale == 1.0  # not told the emulator's time scale
    with served(create_app(settings)) as shim:
        raw = sdk(shim, key).images.with_raw_response.generate(
            model="gpt-image-1", prompt="[latency=2.5] held, cold", quality="low", response_format="url"
        )
    assert raw.parse().data[0].url
    assert raw.headers["x-shim-attached"] == "true"  # an SDK retry collected the job the first attempt started
    assert reapi_state.counters(key)["submits"] == 1


def test_cold_shim_sdk_timeout_retries_complete_the_task(
    sdk, reapi_upstream, reve2img_upstream, reapi_state, key
) -> None:
    """A fresh shim, an SDK with timeout=1.0 and max_retries=4, a 2.5 s task: the retries attach to the
    job and the image arrives, with exactly one submit."""
    with served(create_app(shim_settings(reapi_upstream, reve2img_upstream))) as shim:
        client = sdk(shim, key, timeout=1.0, max_retries=4)
        result = client.images.generate(
            model="gpt-image-1", prompt="[latency=2.5] impatient, cold", quality="low", response_format="url"
        )
    assert result.data[0].url
    assert reapi_state.counters(key)["submits"] == 1
