"""Running one job: each of its planned submissions is submitted once through the key's pacer (recorded in the
journal before the call), then polled to its end; resumed submissions (an earlier process paid for them) are
only polled, and one whose submit was in flight at a restart is never sent again.

A failure of one submission does not cancel the others: every paid image is kept, and the job fails only
when none completed. A submission the upstream refuses as invalid, naming the parameter its fallbacks vary (a
video's duration), is submitted again as the next fallback: a validation refusal created nothing.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from .. import errors
from ..events import Events
from ..pacing.pacer import Pacer
from ..providers.base import Provider
from ..types import Outcome, Submission, Task
from ..untrusted import public
from .job import Job
from .journal import Submitted


class Recorder(Protocol):
    """Where a job's submits are recorded (`recovery.JobJournal`, or the replicas' `redis_jobs.RedisJobs`)."""

    async def submitting(self, job: Job, index: int) -> None:
        """Before submission `index` is sent; raises (and nothing is sent) when it cannot be recorded."""
        ...

    async def submitted(self, job: Job, index: int, task: str) -> None: ...


@dataclass
class SubmitGauge:
    """How many submits are on the wire (a stop waits for them: their task ids are worth keeping)."""

    count: int = 0


@dataclass
class Run:
    """One job's execution (see the module docstring)."""

    job: Job
    provider: Provider
    pacer: Pacer
    key: str
    journal: Recorder
    events: Events
    gauge: SubmitGauge
    slots: AbstractAsyncContextManager[object] | None = None
    earlier: Mapping[int, Submitted] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    async def outcome(self, submissions: list[Submission]) -> Outcome:
        results = await asyncio.gather(*(self._one(i, s) for i, s in enumerate(submissions)), return_exceptions=True)
        failures: list[errors.ShimError] = []
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, errors.ShimError):
                failures.append(result)
            elif isinstance(result, BaseException):
                failures.append(errors.UpstreamError(f"Unexpected failure: {type(result).__name__}"))
        done = tuple(r for r in results if isinstance(r, tuple))
        if not done:
            raise failures[0]
        return Outcome(done, tuple(failures))

    async def _one(self, index: int, sub: Submission) -> tuple[Submission, Task]:
        try:
            known = self.earlier.get(index)
            if known is not None and known.task is None:
                raise errors.SubmitOutcomeUnknown(
                    "The gateway restarted while submitting this task: it may exist upstream, so it was not "
                    f"submitted again (job {self.job.id})."
                )
            async with self.slots or nullcontext():  # the upstream caps tasks in flight per key: never go over
                return await self._submit_and_wait(index, sub, known)
        except errors.ShimError as exc:
            if isinstance(exc, errors.SubmitOutcomeUnknown):
                self.job.uncertain = True  # a task may exist: the job stays collectable, never resubmitted
            raise exc.redact(self.key) from None

    async def _submit(self, index: int, sub: Submission) -> Task:
        """One submit, journaled before and after; the gauge spans both writes, so a stop waits for the
        task id to be on disk (not merely answered) before it cancels anything."""
        self.gauge.count += 1
        try:
            await self.journal.submitting(self.job, index)  # before the call: from here on, a task may exist
            task = await self.provider.submit(sub, self.key)
            await self.journal.submitted(self.job, index, task.id)
            return task
        except errors.UpstreamRateLimited as exc:
            self._refused(exc)
            raise
        finally:
            self.gauge.count -= 1

    async def _poll(self, task_id: str) -> Task:
        try:
            return await self.provider.poll(task_id, self.key)
        except errors.UpstreamRateLimited as exc:
            self._refused(exc)
            raise

    def _refused(self, exc: errors.UpstreamRateLimited) -> None:
        """The upstream refused a call of this key (its rate limit, or its cap on tasks in flight)."""
        if exc.reason in ("rate_limited", "too_many_tasks"):
            self.events.emit("upstream_rate_limited", provider=self.provider.name, reason=exc.reason)

    async def _submit_fitting(self, index: int, sub: Submission) -> tuple[Submission, Task]:
        """Submit `sub`, then its fallbacks in turn while the upstream refuses each as invalid naming
        `sub.refit_param`; the first refusal is the one raised when none is taken."""
        first: errors.InvalidRequest | None = None
        for attempt in (sub, *sub.fallbacks):
            try:
                return attempt, await self.pacer.call(functools.partial(self._submit, index, attempt), kind="submit")
            except errors.InvalidRequest as exc:
                refit = sub.refit_param is not None and exc.param == sub.refit_param
                if not refit or isinstance(exc, errors.ContentPolicyViolation):
                    raise
                first = first or exc
        assert first is not None
        raise first

    async def _submit_and_wait(self, index: int, sub: Submission, known: Submitted | None) -> tuple[Submission, Task]:
        job = self.job
        if known is not None and known.task is not None:
            # An earlier process paid for this one: wait for it, with its task cap counted from its submit.
            task = Task(known.task, "processing", media=sub.media)
            submitted_at = self.clock() - max(0.0, self.wall() - known.at)
        else:
            sub, task = await self._submit_fitting(index, sub)
            submitted_at = self.clock()
        job.accepted[index] = sub
        job.submits += 1
        job.task_ids.append(task.id)
        job.public_task_ids.append(public(task.id, self.key, 100))
        event = "task_submitted" if known is None else "task_resumed"
        self.events.emit(event, job=job.id, task=job.public_task_ids[-1])
        resumed_at = None if known is None else submitted_at
        task = await self.pacer.wait_for(task, self._poll, latency_class=sub.latency_class, submitted_at=resumed_at)
        self.events.emit(
            "task_finished",
            job=job.id,
            task=public(task.id, self.key, 100),
            provider=self.provider.name,
            model=job.spec.route.upstream_model,
            status=task.status,
            seconds=round(self.clock() - submitted_at, 3),
        )
        if task.status == "failed":
            raise self.provider.failure(task)
        return sub, task
