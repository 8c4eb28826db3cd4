"""One budget per key across replicas: the Redis script reserves evenly spaced slots on Redis's clock for every
Pacer of the key, an upstream 429 seen by one pauses all, and a Redis that is down leaves each Pacer its own
window (polls of paid tasks go on)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from shim.pacing.pacer import Pacer
from shim.pacing.redis_budget import MARGIN, RedisBudget
from shim.pacing.window import SlidingWindow
from shim.redis_link import RedisLink

from ..conftest import RedisServer, free_port


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_server.url, prefix="test-" + uuid.uuid4().hex[:8])
    yield link
    await link.aclose()


def budget(link: RedisLink, credential: str, rate: int = 10) -> RedisBudget:
    return RedisBudget(link, "reapi", credential, SlidingWindow.for_rate(rate, 1.0, 0.05))


async def test_replicas_share_one_evenly_spaced_window(link: RedisLink) -> None:
    """Three budgets of one key (three replicas) claiming at once get slots at least span/capacity apart, so
    no window of 1.05 s ever holds more than 10 sends; another key's budget is not delayed by them."""
    replicas = [budget(link, "cred-a") for _ in range(3)]
    now = time.monotonic()
    slots = [(await replicas[i % 3].claim(now)).at for i in range(21)]
    spacing = 1.05 / 10
    assert all(b - a >= spacing - 0.005 for a, b in zip(slots, slots[1:], strict=False))
    assert slots[-1] - slots[0] >= 20 * spacing - 0.01
    for i, at in enumerate(slots):
        assert sum(at <= other < at + 1.05 - 0.01 for other in slots[i:]) <= 10
    other = (await budget(link, "cred-b").claim(time.monotonic())).at
    assert other - time.monotonic() < spacing  # a key of its own: the slot is now


async def test_a_429_on_one_replica_pauses_the_key_for_all(link: RedisLink) -> None:
    """An upstream 429 seen by one replica (pause 2 s, and a widened window) delays the next claim of another
    replica of the same key until the pause ends, and that replica's window widens too."""
    first, second = budget(link, "cred-p"), budget(link, "cred-p")
    now = time.monotonic()
    first.pause(now + 2.0)
    first.resize(1.05 + 0.05)  # the Pacer's window after an unexpected 429
    await asyncio.gather(*first._pending)
    at = (await second.claim(time.monotonic())).at
    assert 1.0 < at - now <= 2.1
    assert second.paused_until > now + 1.0
    assert second.span == pytest.approx(1.10)


async def test_replicas_see_the_key_s_whole_load(link: RedisLink) -> None:
    """A replica's poll price is reckoned from the key's load on every replica: after each has claimed once,
    one replica reckons its own 2 tasks plus the other's 5."""
    first, second = budget(link, "cred-load"), budget(link, "cred-load")
    assert first.load(5) == 5  # nothing heard of the others yet
    await first.claim(time.monotonic())
    second.load(2)
    await second.claim(time.monotonic())
    assert second.load(2) == 7


async def test_redis_down_leaves_each_pacer_its_own_window() -> None:
    """With Redis unreachable a claim is granted by the local window at once (a paid task's polls go on), and
    the link says Redis is down."""
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        shared = budget(link, "cred-down")
        now = time.monotonic()
        assert (await shared.claim(now)).at == now
        assert not link.up and await link.problem() is not None
        assert shared.next_free(now) > now  # the local window counted that send
    finally:
        await link.aclose()


async def test_pacers_of_three_replicas_keep_the_upstream_window(link: RedisLink) -> None:
    """Three Pacers of one key (one per replica) each running 12 calls at once, at 20 requests/s: no second
    holds more than 20 of the 36 sends, which take the shared window's time (35 slots of 55 ms: the shared
    margin, as the app sets it)."""
    shared = functools.partial(RedisBudget, link, "reapi", "cred-pacers")
    pacers = [Pacer(rate=20, margin=MARGIN, budget=shared) for _ in range(3)]
    sent: list[float] = []

    async def call() -> None:
        sent.append(time.monotonic())

    try:
        await asyncio.gather(*(p.call(call) for p in pacers for _ in range(12)))
    finally:
        await asyncio.gather(*(p.aclose() for p in pacers))
    sent.sort()
    assert len(sent) == 36
    assert max(sum(at <= other < at + 1.0 for other in sent) for at in sent) <= 20
    assert sent[-1] - sent[0] >= 35 * (1.0 + MARGIN) / 20 - 0.05
