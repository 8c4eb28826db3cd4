"""The worker threads: the CPU pool is fair between owners (keys), and the journal's writer never waits behind
it. Real threads, made deterministic with events."""

from __future__ import annotations

import asyncio
import threading

from shim.workers import FairPool, SerialWorker


async def test_a_lone_job_of_another_key_overtakes_a_backlog() -> None:
    """Key A queues ten slow jobs on one worker; key B's single job runs second, not eleventh."""
    pool = FairPool(1)
    order: list[str] = []
    gate = threading.Event()

    def work(name: str) -> str:
        if name == "a0":
            gate.wait(5)
        order.append(name)
        return name

    backlog = [asyncio.ensure_future(pool.run("A", work, f"a{i}")) for i in range(10)]
    await asyncio.sleep(0.05)  # a0 is running, a1..a9 queued
    lone = asyncio.ensure_future(pool.run("B", work, "b0"))
    await asyncio.sleep(0.05)
    gate.set()
    assert await lone == "b0"
    await asyncio.gather(*backlog)
    pool.close()
    assert order[:3] == ["a0", "b0", "a1"] and len(order) == 11


async def test_owners_share_the_workers() -> None:
    """With two workers busy on A's jobs, the next free worker goes to B, then they alternate."""
    pool = FairPool(2)
    order: list[str] = []
    gates = {name: threading.Event() for name in ("a0", "a1")}

    def work(name: str) -> None:
        if name in gates:
            gates[name].wait(5)
        order.append(name)

    jobs = [asyncio.ensure_future(pool.run("A", work, f"a{i}")) for i in range(4)]
    await asyncio.sleep(0.05)
    jobs += [asyncio.ensure_future(pool.run("B", work, f"b{i}")) for i in range(2)]
    await asyncio.sleep(0.05)
    gates["a0"].set()
    await asyncio.sleep(0.1)
    gates["a1"].set()
    await asyncio.gather(*jobs)
    pool.close()
    assert order.index("b0") < order.index("a2") and order.index("b1") < order.index("a3")


async def test_cancelled_callers_drop_their_queued_jobs() -> None:
    """A caller that goes away before its turn costs the pool nothing."""
    pool = FairPool(1)
    ran: list[int] = []
    gate = threading.Event()

    def work(i: int) -> None:
        if i == 0:
            gate.wait(5)
        ran.append(i)

    first = asyncio.ensure_future(pool.run("A", work, 0))
    waiting = [asyncio.ensure_future(pool.run("A", work, i)) for i in (1, 2)]
    await asyncio.sleep(0.05)
    waiting[0].cancel()
    gate.set()
    await first
    await waiting[1]
    pool.close()
    assert ran == [0, 2]


async def test_errors_reach_the_caller() -> None:
    """An exception in a job is raised to its caller, and the worker serves the next job."""
    pool = FairPool(1)

    def boom() -> None:
        raise ValueError("bad image")

    try:
        await pool.run("A", boom)
    except ValueError as exc:
        assert str(exc) == "bad image"
    else:  # pragma: no cover
        raise AssertionError("no error")
    assert await pool.run("A", lambda: 7) == 7
    pool.close()


async def test_journal_writer_runs_while_the_cpu_pool_is_saturated() -> None:
    """An fsync'd journal write goes through while every CPU worker is busy (it waited behind them before)."""
    pool = FairPool(2)
    writer = SerialWorker("journal-test")
    gate = threading.Event()
    busy = [asyncio.ensure_future(pool.run(f"k{i}", gate.wait, 5)) for i in range(6)]
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(writer.run(lambda: "written"), timeout=2) == "written"
    assert not any(job.done() for job in busy)
    gate.set()
    await asyncio.gather(*busy)
    pool.close()
    writer.close()
