"""One budget per key across replicas: the Redis script reserves evenly spaced slots on Redis's clock for every
Pacer of the key, an upstream 429 seen by one pauses all, and a Redis that is down leaves each Pacer its own
window (polls of paid tasks go on)."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from shim.pacing.pacer import MARGIN, Pacer
from shim.pacing.redis_budget import RETRY, RedisBudget
from shim.pacing.window import SlidingWindow
from shim.redis_link import RedisLink

from ..conftest import free_port


def budget(link: RedisLink, credential: str, rate: int = 10, max_out: float = 60.0) -> RedisBudget:
    return RedisBudget(link, "reapi", credential, SlidingWindow.for_rate(rate, 1.0, 0.05), max_out=max_out)


async def test_replicas_share_one_evenly_spaced_window(link: RedisLink) -> None:
    """Three budgets of one key (three replicas) claiming at once get slots at least span/capacity apart, so
    no window of 1.05 s ever holds more than 10 sends; another key's budget is not delayed by them."""
    replicas = [budget(link, "cred-a") for _ in range(3)]
    now = time.monotonic()
    slots = []
    for i in range(21):
        send = await replicas[i % 3].claim(now)
        send.answered(send.at)  # answered the moment it left: the window alone spaces them
        await asyncio.gather(*replicas[i % 3]._pending)
        slots.append(send.at)
    spacing = 1.05 / 10
    assert all(b - a >= spacing - 0.005 for a, b in zip(slots, slots[1:], strict=False))
    assert slots[-1] - slots[0] >= 20 * spacing - 0.01
    for i, at in enumerate(slots):
        assert sum(at <= other < at + 1.05 - 0.01 for other in slots[i:]) <= 10
    other = (await budget(link, "cred-b").claim(time.monotonic())).at
    assert other - time.monotonic() < spacing  # a key of its own: the slot is now


async def test_a_send_out_holds_its_slot_on_every_replica(link: RedisLink) -> None:
    """The upstream counts a send somewhere between its slot and its answer: ten sends of replica A still out
    leave replica B no slot at all (it is told to ask again shortly), and once one of A's answers is back, B's
    slot comes a span after that answer, whatever the ten slots' times."""
    first, second = budget(link, "cred-hold"), budget(link, "cred-hold")
    now = time.monotonic()
    sends = [await first.claim(now) for _ in range(10)]
    waiting = await second.claim(time.monotonic())
    assert not waiting.reserved and waiting.at - time.monotonic() <= RETRY
    await asyncio.sleep(1.2)  # a span after the ten slots: a window counting slot times would be free again
    assert not (await second.claim(time.monotonic())).reserved
    answered = time.monotonic()
    sends[0].answered(answered)
    await asyncio.gather(*first._pending)
    slot = await second.claim(time.monotonic())
    assert slot.reserved and slot.at >= answered + 1.05 - 0.01


async def test_a_send_never_told_answered_lapses_after_max_out(link: RedisLink) -> None:
    """A replica that never says its sends were answered (cut off from Redis, or gone) blocks the key only
    for `max_out` and a span: then the slots are every replica's again."""
    gone, other = budget(link, "cred-lapse", max_out=0.3), budget(link, "cred-lapse", max_out=0.3)
    for _ in range(10):
        await gone.claim(time.monotonic())
    assert not (await other.claim(time.monotonic())).reserved
    await asyncio.sleep(0.3 + 1.05 + 0.05)
    assert (await other.claim(time.monotonic())).reserved


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
    holds more than 20 of the 36 sends, which take the shared window's time (35 slots of 50.25 ms)."""
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


async def test_replicas_keep_the_window_of_an_upstream_that_counts_late(link: RedisLink) -> None:
    """Two Pacers of one key (two replicas) whose calls are counted only when they end: replica A's 10 calls
    0.9 s after they leave (a busy replica, a queue in front of the upstream), then, once A has sent them all,
    replica B's 10 at once. No second of those counts holds more than the key's 10: B's slots wait for A's
    answers (a window of slot times would let B's land among A's last ones)."""
    slow, quick = (Pacer(rate=10, margin=MARGIN, budget=functools.partial(RedisBudget, link, "reapi", "cred-late"))
                   for _ in range(2))  # fmt: skip
    counted: list[float] = []

    async def call(delay: float) -> None:
        await asyncio.sleep(delay)
        counted.append(time.monotonic())

    async def later() -> None:
        await asyncio.sleep(1.0)
        await asyncio.gather(*(quick.call(functools.partial(call, 0.0)) for _ in range(10)))

    try:
        await asyncio.gather(*(slow.call(functools.partial(call, 0.9)) for _ in range(10)), later())
    finally:
        await asyncio.gather(slow.aclose(), quick.aclose())
    counted.sort()
    assert len(counted) == 20
    assert max(sum(at <= other < at + 1.0 for other in counted) for at in counted) <= 10
