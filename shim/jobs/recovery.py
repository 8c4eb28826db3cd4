"""The job registry's side of the journal: writing a job's records at the right moments, and holding the jobs
an earlier process left unfinished until a retry resumes them. Without a journal, every call is a no-op."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable

from .. import errors
from ..workers import SerialWorker
from .job import Job
from .journal import Journal, Kind, Record, RecoveredJob

log = logging.getLogger("shim")


class JobJournal:
    """Records for the registry's jobs, and the recovered jobs a retry may resume (see the module docstring)."""

    def __init__(
        self, journal: Journal | None, *, handoff_seconds: float, wall: Callable[[], float] = time.time
    ) -> None:
        self._journal = journal
        # fsyncs get a thread of their own: they must never queue behind image decoding (another key's work)
        self._writer = SerialWorker("shim-journal") if journal is not None else None
        self._handoff = handoff_seconds
        self._wall = wall
        self._by_fingerprint: dict[tuple[str, str], list[RecoveredJob]] = {}
        self._by_idempotency: dict[tuple[str, str], RecoveredJob] = {}
        self._by_id: dict[str, RecoveredJob] = {}
        for recovered in journal.recovered() if journal is not None else ():
            self._by_id[recovered.id] = recovered
            self._by_fingerprint.setdefault((recovered.credential, recovered.fingerprint), []).append(recovered)
            if recovered.idempotency:
                self._by_idempotency[(recovered.credential, recovered.idempotency)] = recovered

    # --- recovered jobs -------------------------------------------------------------------------------

    def by_idempotency(self, credential: str, idempotency: str) -> RecoveredJob | None:
        """The unexpired recovered job started with this Idempotency-Key digest."""
        found = self._by_idempotency.get((credential, idempotency))
        return found if found is not None and self._fresh(found) else None

    def matching(self, credential: str, fingerprint: str, *, retry_count: int) -> RecoveredJob | None:
        """The recovered job this request may resume under the live rules: an SDK retry, or a retry the shim
        asked for (its hand-off window is still open); the newest when several match."""
        wall = self._wall()
        eligible = [
            r
            for r in self._by_fingerprint.get((credential, fingerprint), ())
            if self._fresh(r) and (retry_count >= 1 or (r.handed_off or -math.inf) + self._handoff > wall)
        ]
        return max(eligible, key=lambda r: r.last, default=None)

    def by_id(self, job_id: str, credential: str) -> RecoveredJob | None:
        """The unexpired recovered job of this id, if `credential` started it (a client asks after it by id)."""
        found = self._by_id.get(job_id)
        return found if found is not None and found.credential == credential and self._fresh(found) else None

    def consume(self, recovered: RecoveredJob) -> None:
        """A recovered job is resumed once: from then on it is a live job."""
        self._by_id.pop(recovered.id, None)
        key = (recovered.credential, recovered.fingerprint)
        rest = [r for r in self._by_fingerprint.get(key, ()) if r is not recovered]
        if rest:
            self._by_fingerprint[key] = rest
        else:
            self._by_fingerprint.pop(key, None)
        if recovered.idempotency:
            self._by_idempotency.pop((recovered.credential, recovered.idempotency), None)

    def _fresh(self, recovered: RecoveredJob) -> bool:
        assert self._journal is not None
        return self._wall() - recovered.last <= self._journal.horizon

    # --- records --------------------------------------------------------------------------------------

    async def submitting(self, job: Job, index: int) -> None:
        """On disk before submission `index` is sent: if it cannot be written, nothing is submitted (a task the
        journal does not know of could be paid for twice after a restart)."""
        if not await self._durable(job, "submitting", index):
            raise errors.ShimError("The gateway could not record the task; nothing was submitted.")

    async def submitted(self, job: Job, index: int, task: str) -> None:
        """On disk once the submit returned a task id (a failure is logged: the task is paid, wait for it)."""
        await self._durable(job, "submitted", index, task)

    def handed_off(self, job: Job) -> None:
        """The shim told the client to retry: a plain retry may attach after a restart too. At most one
        record per half hand-off window."""
        wall = self._wall()
        if self._journal is not None and wall - job.handoff_journaled >= self._handoff / 2:
            job.handoff_journaled = wall
            self._note(job, "handed_off")

    def finished(self, job: Job) -> None:
        """Nothing is left to collect: delivered, or failed with no task created."""
        if job.journaled:
            self._note(job, "finished")

    async def _durable(self, job: Job, kind: Kind, index: int, task: str | None = None) -> bool:
        """fsync'd, off the event loop. Whether it was written."""
        if self._journal is None or self._writer is None:
            return True
        try:
            record = self._record(job, kind, index, task)
            await self._writer.run(functools.partial(self._journal.append, record, durable=True))
        except OSError as exc:
            log.error("journal write failed: %s %s: %s", kind, job.id, exc)
            return False
        job.journaled = True
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _note(self, job: Job, kind: Kind) -> None:
        """A record written in the request path: handed to the OS by one write(2), not fsync'd (it survives the
        process, not the machine), and best-effort. A lost `finished` at worst lets a retry collect a delivered
        image again; a lost `handed_off`, that a plain retry after a machine crash is a new task."""
        if self._journal is None:
            return
        try:
            self._journal.append(self._record(job, kind), durable=False)
        except OSError as exc:
            log.error("journal write failed: %s %s: %s", kind, job.id, exc)
        else:
            job.journaled = True

    def _record(self, job: Job, kind: Kind, index: int | None = None, task: str | None = None) -> Record:
        return Record(
            kind=kind,
            job=job.id,
            credential=job.credential,
            fingerprint=job.fingerprint,
            provider=job.spec.route.provider,
            at=self._wall(),
            idempotency=job.idempotency,
            index=index,
            task=task,
        )
