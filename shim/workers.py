"""Threads for work that must not run on the event loop: CPU work (image decoding and encoding, base64, large
JSON), shared fairly between credentials, and the journal's disk writes, which never wait behind it.

One key's forty decompression bombs must not delay another key's answer, and no CPU work may delay a send
the pacer already counted: every such job goes through `FairPool.run`, which keeps a queue per owner and
starts the next job round-robin across owners, at most `workers` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
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


class FairPool:
    """A bounded thread pool whose queue is fair between owners (credential hashes)."""

    def __init__(self, workers: int, *, name: str = "shim-cpu") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._free = workers
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()

    async def run(self, owner: str, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, after the jobs queued before it by `owner` and in turn with other
        owners' jobs. Cancelling the caller before the job starts drops it."""
        job = _Job(lambda: fn(*args), asyncio.get_running_loop().create_future())
        self._queues.setdefault(owner, deque()).append(job)
        self._pump()
        result: T = await job.result
        return result

    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _pump(self) -> None:
        while self._free and self._queues:
            owner, queue = self._queues.popitem(last=False)
            job = queue.popleft()
            if queue:
                self._queues[owner] = queue  # to the back of the round
            if job.result.done():  # the caller went away before its turn
                continue
            self._free -= 1
            future = self._executor.submit(job.fn)
            future.add_done_callback(self._notifier(job))

    def _notifier(self, job: _Job) -> Callable[[ThreadFuture[Any]], None]:
        """Called in the worker thread when the job is done: hands the outcome back to the loop."""
        loop = job.result.get_loop()

        def notify(future: ThreadFuture[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                loop.call_soon_threadsafe(self._finished, job, future)

        return notify

    def _finished(self, job: _Job, future: ThreadFuture[Any]) -> None:
        self._free += 1
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
