"""GET /metrics: scraped and parsed with prometheus_client's own parser after real traffic (generations, a
failure, an attached retry, an upstream 429 when the key's budget was spent elsewhere), each counter
moved by what happened; no label holds a key, a credential hash, a job or a task id; budget use read from the
pacers; a paid result never collected counted when it leaves the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shim.app import create_app
from shim.jobs.job import credential_id
from shim.metrics import BudgetCollector
from shim.pacing.pacers import Pacers

from .conftest import ServedApp, served, shim_settings
from .pacing.test_pacing import PRIORS, now, run

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ROUTE = "/v1/images/generations"


def scrape(server: ServedApp) -> Samples:
    """Every sample of the shim's /metrics, by (sample name, labels)."""
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def settled(server: ServedApp, until: Callable[[Samples], bool], deadline: float = 20.0) -> Samples:
    """Scrape until `until` holds (an answer's bookkeeping runs just after it is sent)."""
    end = time.monotonic() + deadline
    while True:
        samples = scrape(server)
        if until(samples) or time.monotonic() > end:
            return samples
        time.sleep(0.05)


@pytest.fixture(scope="module")
def metered_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    """A shim of its own, so that its counters start at zero."""
    with served(create_app(shim_settings(reapi_upstream, reve2img_upstream))) as server:
        yield server


async def spend_budget(upstream: ServedApp, key: str) -> None:
    """Spend the key's whole second at the emulator (10 polls of no task), so the shim's next call gets a 429."""
    async with httpx.AsyncClient(base_url=upstream.url, headers={"Authorization": f"Bearer {key}"}) as http:
        statuses = {(await http.get("/api/v1/tasks/task_none")).status_code for _ in range(10)}
    assert statuses == {404}


async def traffic(server: ServedApp, key: str, first: Callable[[], Awaitable[None]]) -> list[int]:
    """After `first`, three url generations at once, a b64 one, a failure, and a request retried with its
    Idempotency-Key: the statuses answered."""
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    statuses: list[int] = []

    async def generate(prompt: str, model: str = "dall-e-2", **extra: Any) -> None:
        try:
            await client.images.generate(model=model, prompt=prompt, **extra)
            statuses.append(200)
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)

    try:
        await first()
        await asyncio.gather(*(generate(f"[latency=0.3] fox {i}", response_format="url") for i in range(3)))
        await generate("[latency=0.2] owl", model="gpt-image-1")  # b64_json: one download
        await generate("[fail=80003] doomed", response_format="url")
        idem = {"Idempotency-Key": "idem-" + key}
        for _ in range(2):  # the second collects the first's job
            await generate("[latency=0.2] cat", response_format="url", extra_headers=idem)
    finally:
        await client.close()
    return statuses


def test_counters_move_by_what_happened(metered_shim, reapi_upstream, reapi_state, key) -> None:
    """After the traffic, each counter equals what happened, the upstream's 429s as the emulator counted them."""
    before = scrape(metered_shim)
    assert value(before, "shim_requests_total", route=ROUTE) == 0
    assert value(before, "shim_upstream_rate_limited_total", provider="reapi", reason="rate_limited") == 0
    spent: dict[str, int] = {}

    async def spend() -> None:  # just before the shim's first call: the emulator's window is one second
        await spend_budget(reapi_upstream, key)
        spent.update(reapi_state.counters(key))

    statuses = asyncio.run(traffic(metered_shim, key, spend))
    assert sorted(statuses) == [200] * 6 + [502]
    after = settled(metered_shim, lambda s: value(s, "shim_requests_total", route=ROUTE) == 7)
    emulator = {name: count - spent[name] for name, count in reapi_state.counters(key).items()}
    assert emulator["rate_limited"] > 0  # the test would prove nothing about 429s without one

    assert value(after, "shim_requests_total", route=ROUTE, status="200") == 6
    assert value(after, "shim_requests_total", route=ROUTE, status="502") == 1
    assert value(after, "shim_request_duration_seconds_count", route=ROUTE) == 7
    upstream = "shim_upstream_requests_total"
    assert value(after, upstream, provider="reapi", kind="submit", status="200") == emulator["submits"] == 6
    assert value(after, upstream, provider="reapi", kind="poll", status="200") == emulator["polls"]
    assert value(after, upstream, provider="reapi", status="429") == emulator["rate_limited"]
    assert value(after, "shim_upstream_rate_limited_total", provider="reapi") == emulator["rate_limited"]
    assert value(after, upstream, provider="reapi", kind="download", status="200") == 1
    outcomes = "shim_job_outcomes_total"
    assert value(after, outcomes, provider="reapi", outcome="delivered") == 5
    assert value(after, outcomes, provider="reapi", outcome="failed") == 1
    assert value(after, outcomes, provider="reapi", outcome="partial") == 0
    assert value(after, outcomes, provider="reapi", outcome="expired_uncollected") == 0
    assert value(after, "shim_job_attached_total", reason="idempotency_key") == 1
    assert value(after, "shim_job_attached_total") == 1
    assert value(after, "shim_jobs_in_flight", provider="reapi") == 0
    latency = "shim_task_latency_seconds_count"
    assert value(after, latency, provider="reapi", model="gpt-image-2") == 4  # dall-e-2's completed tasks
    assert value(after, latency, provider="reapi", model="gpt-image-2-official") == 1
    assert value(after, "shim_answer_delay_seconds_count") == 5
    assert 0 <= value(after, "shim_budget_utilization", provider="reapi") <= 1

    secrets = (key, credential_id(key))
    labels = {v for (_, ls), _ in after.items() for _, v in ls}
    assert not [v for v in labels if any(s in v for s in secrets) or v.startswith(("job_", "task_"))]
    assert not any(s in httpx.get(metered_shim.url + "/metrics").text for s in secrets)


def test_uncollected_result_counts_as_expired(reapi_upstream, reve2img_upstream, key) -> None:
    """A finished, paid job nobody collects counts as expired_uncollected once its result TTL passes (not as
    delivered), though no other request comes to trigger the registry's expiry."""
    settings = shim_settings(reapi_upstream, reve2img_upstream, result_ttl_seconds=0.3)
    with served(create_app(settings)) as server:
        accepted = httpx.post(
            server.url + "/v1/images/generations",
            json={"model": "dall-e-2", "prompt": "[latency=0.1] nobody comes"},
            headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
        )
        assert accepted.status_code == 202
        expired = "shim_job_outcomes_total"
        samples = settled(server, lambda s: value(s, expired, outcome="expired_uncollected") > 0)
    assert value(samples, expired, provider="reapi", outcome="expired_uncollected") == 1
    assert value(samples, expired, outcome="delivered") == 0
    assert value(samples, "shim_jobs_in_flight") == 0


def test_two_apps_count_apart(reapi_upstream, reve2img_upstream, key) -> None:
    """Two shims in one process keep their own registries: one's requests never show in the other's scrape."""
    settings = shim_settings(reapi_upstream, reve2img_upstream)
    with served(create_app(settings)) as first, served(create_app(settings)) as second:
        httpx.get(first.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        httpx.get(first.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        counted = settled(first, lambda s: value(s, "shim_requests_total", route="/v1/models") == 2)
        assert value(counted, "shim_requests_total", route="/v1/models", status="200") == 2
        assert value(scrape(second), "shim_requests_total", route="/v1/models") == 0


def test_budget_utilization_is_the_share_used_by_keys_at_work() -> None:
    """Four sends of a 10/s key give 0.4 while the window holds them, averaged over the keys at work only (an
    idle key does not dilute it), and 0 once the window has passed."""

    async def main() -> list[dict[str, float]]:
        pacers = Pacers(rate=10, priors=PRIORS, clock=now, sleep=asyncio.sleep)
        collector = BudgetCollector(lambda: {"reapi": pacers})

        def read() -> dict[str, float]:
            return {sample.name: sample.value for family in collector.collect() for sample in family.samples}

        busy, _idle = pacers.get("a" * 32), pacers.get("b" * 32)

        async def ok() -> None:
            return None

        for _ in range(4):
            await busy.call(ok)
        during = read()
        await asyncio.sleep(2.0)
        return [during, read()]

    during, later = run(main())
    assert during == {"shim_budget_utilization": pytest.approx(0.4), "shim_budget_keys": 1}
    assert later == {"shim_budget_utilization": 0.0, "shim_budget_keys": 0}
