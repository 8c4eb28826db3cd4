"""Learning pooled across replicas (real Redis): one replica's completions reach every other replica's
learner, never come back to their own, warm up a replica that starts later, and what the stream holds is
checked before it is believed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from shim.pacing.learner import LatencyLearner
from shim.pacing.redis_learning import READ_EVERY, SharedLearning, read_entry
from shim.redis_link import RedisLink
from shim.types import LatencyPrior

PRIORS = {"reapi/m/low": LatencyPrior(20, 40)}
CLASS = "reapi/m/low/1k"


async def eventually(check: Callable[[], bool], seconds: float = 3.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


def complete(learner: LatencyLearner, count: int, seed: int = 1) -> None:
    """`count` local completions of 2-4 s tasks (ten times faster than the documented 20-40 s)."""
    rng = random.Random(seed)
    for _ in range(count):
        done = rng.uniform(2, 4)
        learner.observe(CLASS, done - 0.1, done + 0.1, learner.start(CLASS))


async def test_completions_reach_the_other_replicas_and_never_come_back(link: RedisLink) -> None:
    """Twelve completions learned on replica A: replica B's estimate of the class (never run there) moves from
    the documented 30 s to about 3 s with the twelve; A still counts its twelve once; another upstream's
    stream is its own."""
    a, b, other = (LatencyLearner(priors=PRIORS) for _ in range(3))
    sharing = [SharedLearning(link, "reapi", a), SharedLearning(link, "reapi", b), SharedLearning(link, "reve", other)]
    for learning in sharing:
        learning.start()
    try:
        await asyncio.sleep(2 * READ_EVERY)  # every reader has read the (empty) history
        assert b.model(CLASS).quantile(0.5) > 15
        complete(a, 12)
        assert await eventually(lambda: b.estimates().get(CLASS, {}).get("observations") == 12)
        assert b.model(CLASS).quantile(0.5) == pytest.approx(3.0, abs=0.6)
        await asyncio.sleep(3 * READ_EVERY)
        assert a.estimates()[CLASS]["observations"] == 12  # its own, not heard again
        assert other.estimates() == {}
    finally:
        for learning in sharing:
            await learning.aclose()


async def test_a_replica_that_starts_learns_what_the_fleet_saw_last(link: RedisLink) -> None:
    """A replica started after twenty completions elsewhere reads the latest of them before its first task."""
    a = LatencyLearner(priors=PRIORS)
    first = SharedLearning(link, "reapi", a)
    first.start()
    complete(a, 20)
    await asyncio.sleep(2 * READ_EVERY)  # the appends went out
    late = LatencyLearner(priors=PRIORS)
    second = SharedLearning(link, "reapi", late)
    second.start()
    try:
        assert await eventually(lambda: late.estimates().get(CLASS, {}).get("observations") == 20)
        assert late.model(CLASS).quantile(0.5) == pytest.approx(3.0, abs=0.6)
    finally:
        await first.aclose()
        await second.aclose()


async def test_what_the_stream_holds_is_checked_before_it_is_believed(link: RedisLink) -> None:
    """Entries another writer put in the stream (no replica, a class name too long or not printable, times
    that are not numbers, negative, reversed or infinite) are skipped; a good one after them is learned."""
    key = link.key("learned", "reapi")
    bad = [
        {"c": CLASS, "a": "1", "b": "2"},
        {"r": "x", "c": "c" * 201, "a": "1", "b": "2"},
        {"r": "x", "c": "reapi/\x1b[31m", "a": "1", "b": "2"},
        {"r": "x", "c": CLASS, "a": "soon", "b": "2"},
        {"r": "x", "c": CLASS, "a": "-1", "b": "2"},
        {"r": "x", "c": CLASS, "a": "3", "b": "2"},
        {"r": "x", "c": CLASS, "a": "1", "b": "inf"},
    ]
    for fields in bad:
        await link.client.xadd(key, fields)
        assert read_entry(fields) is None
    await link.client.xadd(key, {"r": "x", "c": CLASS, "a": "2.9", "b": "3.1"})
    learner = LatencyLearner(priors=PRIORS)
    learning = SharedLearning(link, "reapi", learner)
    learning.start()
    try:
        assert await eventually(lambda: learner.estimates().get(CLASS, {}).get("observations") == 1)
        assert learner.size() == 1
    finally:
        await learning.aclose()


async def test_a_stream_of_the_wrong_type_leaves_each_replica_learning_alone(link: RedisLink) -> None:
    """The stream's key holding something else (a string): reads and appends fail, and the learner goes on."""
    await link.client.set(link.key("learned", "reapi"), "not a stream")
    learner = LatencyLearner(priors=PRIORS)
    learning = SharedLearning(link, "reapi", learner)
    learning.start()
    try:
        complete(learner, 5)
        await asyncio.sleep(2 * READ_EVERY)
        assert learner.estimates()[CLASS]["observations"] == 5
        assert link.up
    finally:
        await learning.aclose()
