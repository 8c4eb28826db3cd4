"""Threads for work that must not run on the event loop: CPU work (image decoding and encoding, base64, large
JSON), shared fairly between credentials, and the journal's disk writes, which never wait behind it.

One key's forty decompression bombs must not delay another key's answer, and no CPU work may delay a send
the pacer already counted: every such job goes through `FairPool.run`, which keeps a queue per owner and, at
most `workers` at a time, starts the head job of the owner with the fewest jobs running, and among equals
the one served least recently: a lone job waits for at most one job of each other owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[[], Any]
    result: asyncio.Future[Any]
    owner: str
    seq: int


class FairPool:
    """A bounded thread pool whose queue is fair between owners (credential hashes)."""

    def __init__(self, workers: int, *, name: str = "shim-cpu") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._free = workers
        self._queues: dict[str, deque[_Job]] = {}
        self._running: dict[str, int] = {}
        self._last_start: dict[str, int] = {}  # owner -> when (in starts) its last job started
        self._starts = itertools.count()
        self._seq = itertools.count()

    async def run(self, owner: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, after the jobs queued before it by `owner` and in turn with other
        owners' jobs. Cancelling the caller before the job starts drops it."""
        job = _Job(lambda: fn(*args), asyncio.get_running_loop().create_future(), owner, next(self._seq))
        self._queues.setdefault(owner, deque()).append(job)
        self._pump()
        result: T = await job.result
        return result

    def _pump(self) -> None:
        while self._free and self._queues:
            owner = min(self._queues, key=self._priority)
            queue = self._queues[owner]
            job = queue.popleft()
            if not queue:
                del self._queues[owner]
            if job.result.done():  # the caller went away before its turn
                continue
            self._free -= 1
            self._running[owner] = self._running.get(owner, 0) + 1
            self._last_start[owner] = next(self._starts)
            future = self._executor.submit(job.fn)
            future.add_done_callback(self._notifier(job))

    def _priority(self, owner: str) -> tuple[int, int, int]:
        return self._running.get(owner, 0), self._last_start.get(owner, -1), self._queues[owner][0].seq

    def _notifier(self, job: _Job) -> Callable[[ThreadFuture[Any]], None]:
        """Called in the worker thread when the job is done: hands the outcome back to the loop."""
        loop = job.result.get_loop()

        def notify(future: ThreadFuture[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                loop.call_soon_threadsafe(self._finished, job, future)

        return notify

    def _finished(self, job: _Job, future: ThreadFuture[Any]) -> None:
        self._free += 1
        left = self._running.pop(job.owner) - 1
        if left:
            self._running[job.owner] = left
        elif job.owner not in self._queues:
            self._last_start.pop(job.owner, None)  # idle owners cost no memory
        if not job.result.done():
            exc = future.exception()
            if exc is not None:
                job.result.set_exception(exc)
            else:
                job.result.set_result(future.result())
        self._pump()

    def close(self) -> None:
        for queue in self._queues.values():
            for job in queue:
                if not job.result.done():
                    job.result.cancel()
        self._queues.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


class SerialWorker:
    """One thread of its own (the journal's fsyncs): work here never queues behind CPU work."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._executor.shutdown(wait=True)
