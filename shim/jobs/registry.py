"""The job registry: finds the job a request belongs to (so that a retry attaches instead of paying again),
starts new ones, keeps finished ones for their result TTL, and lets requests wait for them.

A job runs detached from the HTTP request that started it: a client that disconnects or times out does
not cancel the upstream task; its result waits (SHIM_RESULT_TTL_SECONDS) for a retry to collect it.
With a `Journal` (SHIM_STATE_DIR), every submit is recorded around the call, so that after a restart a
retry resumes the earlier process's job (waits for its tasks) instead of paying again. With `SharedJobs`
(SHIM_REDIS_URL: replicas), a retry landing on any replica finds the job wherever it runs, waits for its record
and delivers it there, or adopts it when the replica that ran it died.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from cachetools import TLRUCache, TTLCache

from .. import errors
from ..events import Events
from ..pacing.pacers import Pacers
from ..providers.base import ModelSpec, Provider
from ..types import Outcome, Route, Spec, Submission
from .job import Job, credential_id, fingerprint, idempotency_digest
from .journal import Journal, RecoveredJob, Submitted
from .kept import KeptJobs
from .recovery import JobJournal
from .runner import Recorder, Run, SubmitGauge
from .shared import SharedJob, SharedJobs, decode_rendering


class _Slots:
    """The upstream's cap on one key's tasks in flight; forgets itself (via `on_idle`) when nobody holds it."""

    def __init__(self, limit: int, on_idle: Callable[[], object]) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._users = 0
        self._on_idle = on_idle

    async def __aenter__(self) -> None:
        self._users += 1
        try:
            await self._semaphore.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if not self._users:
            self._on_idle()


class Jobs:
    """Creates, runs and finds jobs. Every upstream call goes through the credential's Pacer."""

    def __init__(
        self,
        *,
        providers: Mapping[str, Provider],
        pacers: Mapping[str, Pacers],
        result_ttl: float = 900.0,
        max_task_seconds: float = 3600.0,
        handoff_seconds: float = 120.0,
        journal: Journal | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        events: Events | None = None,
        on_finish: Callable[[Job], None] | None = None,
        rejected_seconds: float = 60.0,
        shared: SharedJobs | None = None,
    ) -> None:
        """`on_finish(job)` runs once every task of a job is over (its uploads are no longer needed).
        A key the upstream rejected (401/403) is refused without an upstream call for `rejected_seconds`.
        `shared`: the registry the replicas share (it is then the journal too)."""
        self._providers = providers
        self._pacers = pacers
        self._clock = clock
        self._wall = wall
        self._handoff = handoff_seconds
        self._events = events or Events()
        self._on_finish = on_finish
        # (provider, credential hash) -> when the upstream's rejection of that key stops being remembered
        self._rejected: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=100_000, ttl=rejected_seconds, timer=clock)
        running_ttl = self._running_ttl = max_task_seconds + 600.0

        def ttu(_key: object, jobs: list[Job], now: float) -> float:
            live = any(not j.done for j in jobs)
            return now + (running_ttl if live else result_ttl)

        self._by_fingerprint: TLRUCache[tuple[str, str], list[Job]] = TLRUCache(maxsize=100_000, ttu=ttu, timer=clock)

        def job_ttu(_key: object, job: Job, now: float) -> float:
            return now + (running_ttl if not job.done else result_ttl)

        self._by_idempotency: TLRUCache[tuple[str, str], Job] = TLRUCache(maxsize=100_000, ttu=job_ttu, timer=clock)
        self._by_id: TLRUCache[str, Job] = KeptJobs(maxsize=100_000, ttu=job_ttu, timer=clock, on_drop=self._dropped)
        self._live: set[asyncio.Task[Outcome]] = set()
        self._in_flight: dict[tuple[str, str], _Slots] = {}
        self._gauge = SubmitGauge()
        self._journal = JobJournal(journal, handoff_seconds=handoff_seconds, wall=wall)
        self._shared = shared
        self._recorder: Recorder = shared if shared is not None else self._journal

    # --- finding or starting ------------------------------------------------------------------------

    async def find_or_start(
        self, spec: Spec, key: str, *, idempotency_key: str | None = None, retry_count: int = 0
    ) -> tuple[Job, bool]:
        """The job this request belongs to, and whether it attached to an existing one.

        Attaches when: the same Idempotency-Key; or an SDK retry (retry_count >= 1) of a job still running
        or not yet delivered; or the same request inside the window in which the shim told a client to
        retry. Never across credentials. Anything else is a new intent: a new job, a new paid task.
        A job recovered from the journal, or another replica's job (shared), attaches by the same rules, when no
        live job does. Shared: raises StateUnavailable (503) when it cannot tell, rather than pay twice.
        """
        cred = credential_id(key)
        self.refuse_if_rejected(spec.route.provider, cred)
        fp = fingerprint(spec)
        now = self._clock()
        idem = idempotency_digest(cred, idempotency_key) if idempotency_key else None
        if idem:
            found: Job | RecoveredJob | SharedJob | None = self._by_idempotency.get((cred, idem))
            if found is None:
                found = self._journal.by_idempotency(cred, idem)
            if found is None and self._shared is not None:
                remote = await self._shared.by_idempotency(cred, idem)
                found = self._by_idempotency.get((cred, idem)) or remote  # (a request here may have started it)
            if found is not None:
                return self._attach_idempotent(found, spec, key, cred, fp, now, idem), True
        eligible = [
            j
            for j in self._by_fingerprint.get((cred, fp), ())
            if j.attachable and (retry_count >= 1 or j.handoff_until > now)
        ]
        if eligible:
            # Prefer a job nobody is waiting for (its client gave up), then the newest.
            job = min(eligible, key=lambda j: (j.waiters, -j.created))
            return self._attached(job, "sdk_retry" if retry_count >= 1 else "handoff"), True
        recovered = self._journal.matching(cred, fp, retry_count=retry_count)
        if recovered is not None:
            return self._attached(self._start(spec, key, cred, fp, now, idem, resume=recovered), "resumed"), True
        if self._shared is not None:
            return await self._find_or_start_shared(spec, key, cred, fp, now, idem, retry_count)
        return self._start(spec, key, cred, fp, now, idem), False

    def _attach_idempotent(
        self, found: Job | RecoveredJob | SharedJob, spec: Spec, key: str, cred: str, fp: str, now: float, idem: str
    ) -> Job:
        if found.fingerprint != fp:
            raise errors.InvalidRequest(
                "This Idempotency-Key was already used with a different request body.",
                param=None,
                code="idempotency_key_reused",
            )
        if isinstance(found, Job):
            job = found
        elif isinstance(found, SharedJob):
            job = self._join(spec, key, found, now)
        else:
            job = self._start(spec, key, cred, fp, now, idem, resume=found)
        return self._attached(job, "idempotency_key")

    async def _find_or_start_shared(
        self, spec: Spec, key: str, cred: str, fp: str, now: float, idem: str | None, retry_count: int
    ) -> tuple[Job, bool]:
        """No job here: another replica's (the live rules: an SDK retry, or a hand-off window still open), or a
        new job, recorded in the shared registry before anything is submitted."""
        assert self._shared is not None
        wall = self._wall()
        for found in await self._shared.by_fingerprint(cred, fp):  # newest first
            if found.attachable and (retry_count >= 1 or found.handoff_until > wall):
                reason = "sdk_retry" if retry_count >= 1 else "handoff"
                return self._attached(self._join(spec, key, found, now), reason), True
        provider = self._providers[spec.route.provider]
        submissions = provider.plan(spec)  # validation errors surface here, before anything is recorded
        job = self._new_job(spec, cred, fp, now, idem)
        holder = await self._shared.create(job)
        if holder is not None and idem:  # another request with this Idempotency-Key was first
            other: Job | SharedJob | None = self._by_idempotency.get((cred, idem))
            other = other or await self._shared.load(cred, holder)
            if other is None:
                raise errors.StateUnavailable("That Idempotency-Key's job is being recorded: retry.", retry_after=1)
            return self._attach_idempotent(other, spec, key, cred, fp, now, idem), True
        self._launch(job, self._run(job, provider, submissions, key, {}))
        self._emit_start(job, None)
        return job, False

    def _join(self, spec: Spec, key: str, found: SharedJob, now: float, *, adopt: bool = True) -> Job:
        """The local side of another replica's job: it waits for the shared record, and delivers it here."""
        local = self._by_id.get(found.id)
        if local is not None and local.credential == found.credential:
            return local
        job = Job(id=found.id, credential=found.credential, fingerprint=found.fingerprint, spec=spec, created=now)
        job.idempotency, job.following = found.idempotency, True
        self._launch(job, self._follow(job, self._providers[spec.route.provider], key, found, adopt=adopt))
        self._events.emit("job_following", job=job.id)
        return job

    def _attached(self, job: Job, reason: str) -> Job:
        self._events.emit("job_attached", job=job.id, provider=job.spec.route.provider, reason=reason)
        return job

    def get(self, job_id: str, credential: str) -> Job | None:
        """The job `job_id` if `credential` (a hash) started it and it is still kept; else None (another key's
        job is as absent as an unknown one)."""
        job = self._by_id.get(job_id)
        return job if job is not None and job.credential == credential else None

    async def look_up(self, job_id: str, key: str) -> Job | None:
        """As `get`, and with replicas another replica's image job too: a follower of its shared record (it
        never adopts the job: a look-up carries no prompt, so a retry of the request, which does, resumes a
        job whose replica died). None when neither knows it for this key."""
        cred = credential_id(key)
        job = self.get(job_id, cred)
        if job is not None or self._shared is None:
            return job
        found = await self._shared.load(cred, job_id)  # records are keyed by credential: another key's is absent
        spec = decode_rendering(found.rendering) if found is not None and found.rendering else None
        if found is None or spec is None:
            return None
        job = self._join(spec, key, found, self._clock(), adopt=False)
        job.lookup = True  # kept for its look-ups even when it failed having paid for nothing
        return job

    def resume(self, job_id: str, spec: Spec, key: str, *, fingerprint: str, known: Mapping[int, Submitted]) -> Job:
        """The job `job_id` of this key, by its id (a client asks after a job an earlier process started): the
        live one when there is one, else its continuation from the journal's record of it, else from `known`
        (what the caller kept of its submissions). Resumed submissions are only polled, never resubmitted."""
        cred = credential_id(key)
        live = self.get(job_id, cred)
        if live is not None:
            return live
        self.refuse_if_rejected(spec.route.provider, cred)
        recovered = self._journal.by_id(job_id, cred)
        if recovered is None:
            # A submission nobody knows the fate of is never sent again: it may have been paid for.
            planned = range(len(self._providers[spec.route.provider].plan(spec)))
            submissions = {i: known.get(i) or Submitted(None, self._wall()) for i in planned}
            recovered = RecoveredJob(
                job_id, cred, fingerprint, spec.route.provider, None, submissions, last=self._wall()
            )
        return self._start(spec, key, cred, recovered.fingerprint, self._clock(), None, resume=recovered)

    def forget(self, job: Job) -> None:
        """Drop a job from every index (a client deleted it): a retry of it is a new intent."""
        self._forget(job)
        self._by_id.pop(job.id, None)
        if self._shared is not None:
            self._shared.forget(job)

    def check(self, spec: Spec) -> None:
        """What the spec's model cannot do, as a 400, before anything is stored or spent."""
        self._providers[spec.route.provider].check(spec)

    def model_spec(self, route: Route) -> ModelSpec | None:
        """What the upstream model behind a route accepts (None: the provider does not know it)."""
        return self._providers[route.provider].catalog.get(route.upstream_model)

    def refuse_if_rejected(self, provider: str, credential: str) -> None:
        """Raise AuthenticationFailed when the upstream rejected this key moments ago: a flood of requests with
        junk keys costs neither upstream calls nor memory."""
        if self._rejected.get((provider, credential)):
            raise errors.AuthenticationFailed(
                "Incorrect API key provided: the upstream rejected this key moments ago; the gateway does not "
                "ask again for a minute."
            )

    def _start(
        self,
        spec: Spec,
        key: str,
        cred: str,
        fp: str,
        now: float,
        idem: str | None,
        *,
        resume: RecoveredJob | None = None,
    ) -> Job:
        """A new job, or (`resume`) the live continuation of a job an earlier process started."""
        provider = self._providers[spec.route.provider]
        submissions = provider.plan(spec)  # validation errors surface here, before any upstream call
        job = self._new_job(spec, cred, fp, now, idem)
        earlier: Mapping[int, Submitted] = {}
        if resume is not None:
            self._journal.consume(resume)
            job.id, job.journaled, earlier = resume.id, True, resume.submissions
            job.idempotency = resume.idempotency or idem  # (indexed by _launch)
        self._launch(job, self._run(job, provider, submissions, key, earlier))
        if idem:
            self._by_idempotency[(cred, idem)] = job
        self._emit_start(job, earlier if resume is not None else None)
        return job

    def _new_job(self, spec: Spec, cred: str, fp: str, now: float, idem: str | None) -> Job:
        job = Job(id="job_" + secrets.token_hex(12), credential=cred, fingerprint=fp, spec=spec, created=now)
        job.idempotency = idem
        return job

    def _launch(self, job: Job, work: Coroutine[Any, Any, Outcome]) -> None:
        """Run `work` as the job's runner, and index the job."""
        job.runner = asyncio.get_running_loop().create_task(work)
        self._live.add(job.runner)
        job.runner.add_done_callback(lambda t: self._finished(job, t))
        self._by_id[job.id] = job
        bucket = self._by_fingerprint.get((job.credential, job.fingerprint)) or []
        bucket.append(job)
        self._by_fingerprint[(job.credential, job.fingerprint)] = bucket
        if job.idempotency:
            self._by_idempotency[(job.credential, job.idempotency)] = job

    def _emit_start(self, job: Job, resumed: Mapping[int, Submitted] | None) -> None:
        spec = job.spec
        event: dict[str, object] = {
            "job": job.id, "provider": spec.route.provider, "model": spec.route.public_id, "n": getattr(spec, "n", 1)
        }  # fmt: skip
        if resumed is not None:
            event["resumed_tasks"] = ",".join(s.task for s in resumed.values() if s.task)
        self._events.emit("job_resumed" if resumed is not None else "job_started", **event)

    def _finished(self, job: Job, runner: asyncio.Task[Outcome]) -> None:
        self._live.discard(runner)
        job.finished = self._clock()
        # Reading the exception marks it retrieved: a failure is delivered to waiters, not logged as unhandled.
        failure = None if runner.cancelled() else runner.exception()
        if failure is not None:
            failure.__traceback__ = None  # a kept failure must not keep the frames (and the key) alive
            if isinstance(failure, errors.AuthenticationFailed):
                self._rejected[(job.spec.route.provider, job.credential)] = True
        if self._shared is not None and not job.following:
            result = job.result
            if failure is not None and not isinstance(failure, errors.ShimError):
                failure = errors.ShimError("The server had an error while processing your request.")
            self._shared.finished(job, result, failure)
        key = (job.credential, job.fingerprint)
        bucket = self._by_fingerprint.get(key)
        if job.nothing_paid:
            # Nothing to collect and a retry is a new attempt anyway: forget the job now (junk keys, bad input),
            # unless a client is to look it up by id (its error is then the answer).
            self._forget(job)
            if not job.lookup:
                self._by_id.pop(job.id, None)
            elif self._by_id.get(job.id) is job:
                self._by_id[job.id] = job  # re-insert: kept for the result TTL
            self._journal.finished(job)
        else:
            if bucket is not None:
                self._by_fingerprint[key] = bucket  # re-insert: the finished job now lives for the result TTL
            if self._by_id.get(job.id) is job:
                self._by_id[job.id] = job
        outcome = "cancelled" if runner.cancelled() else "ok" if failure is None else "failed"
        self._events.emit(
            "job_finished" if not job.following else "job_followed",
            job=job.id,
            provider=job.spec.route.provider,
            outcome=outcome,
            error=getattr(failure, "code", None) if failure else None,
            tasks=",".join(job.public_task_ids),
            seconds=round(self._clock() - job.created, 3),
        )
        if self._on_finish is not None and not job.uncertain:  # a task of unknown fate may still fetch inputs
            self._on_finish(job)

    def _forget(self, job: Job) -> None:
        key = (job.credential, job.fingerprint)
        rest = [j for j in self._by_fingerprint.get(key, ()) if j is not job]
        if rest:
            self._by_fingerprint[key] = rest
        else:
            self._by_fingerprint.pop(key, None)
        if job.idempotency and self._by_idempotency.get((job.credential, job.idempotency)) is job:
            del self._by_idempotency[(job.credential, job.idempotency)]

    # --- running ------------------------------------------------------------------------------------

    async def _run(
        self, job: Job, provider: Provider, submissions: list[Submission], key: str, earlier: Mapping[int, Submitted]
    ) -> Outcome:
        limit = provider.max_in_flight
        run = Run(
            job,
            provider,
            self._pacers[provider.name].get(job.credential),
            key,
            self._recorder,
            self._events,
            self._gauge,
            slots=self._slots(provider.name, job.credential, limit) if limit else None,
            earlier=earlier,
            clock=self._clock,
            wall=self._wall,
        )
        return await run.outcome(submissions)

    async def _follow(self, job: Job, provider: Provider, key: str, found: SharedJob, *, adopt: bool) -> Outcome:
        """Another replica's job: wait for its record (a notification, or a read every `follow_every`) and
        return its outcome; adopt it once its owner's lease expired (the owner died), and resume it as after
        a restart: its known tasks are polled, a submission left "submitting" is never sent again."""
        assert self._shared is not None
        view: SharedJob | None = found
        while self._clock() < job.created + self._running_ttl:
            view = view or await self._look(job)
            if view is not None and view.status != "running":
                job.submits = sum(1 for s in view.submissions.values() if s.task)
                job.uncertain = view.paid and not job.submits  # paid, or maybe: never a fresh attempt
                return view.outcome()
            if adopt and view is not None and not view.leased and await self._adopt(job, view):
                tasks = ",".join(s.task for s in view.submissions.values() if s.task)
                self._events.emit("job_adopted", job=job.id, resumed_tasks=tasks)
                return await self._run(job, provider, provider.plan(job.spec), key, view.submissions)
            await self._shared.changed(job.id, self._shared.follow_every)
            view = None
        raise errors.TaskTimeout(f"job {job.id} ran on another replica past the task cap")

    async def _look(self, job: Job) -> SharedJob | None:
        """The job's shared record now (None: the shared state cannot answer now)."""
        assert self._shared is not None
        try:
            view = await self._shared.load(job.credential, job.id)
        except errors.StateUnavailable:
            return None
        if view is None:
            raise errors.UpstreamError(f"The record of job {job.id} expired before its result was delivered.")
        return view

    async def _adopt(self, job: Job, view: SharedJob) -> bool:
        assert self._shared is not None
        try:
            adopted = await self._shared.adopt(job, view)
        except errors.StateUnavailable:
            return False
        job.following = not adopted
        return adopted

    def _slots(self, provider: str, credential: str, limit: int) -> _Slots:
        slots = self._in_flight.get((provider, credential))
        if slots is None:
            slots = self._in_flight[(provider, credential)] = _Slots(
                limit, lambda: self._in_flight.pop((provider, credential), None)
            )
        return slots

    # --- waiting --------------------------------------------------------------------------------------

    async def wait(self, job: Job, timeout: float | None) -> Outcome | None:
        """The job's outcome, or None when `timeout` passed first (the job goes on)."""
        assert job.runner is not None
        job.waiters += 1
        try:
            done, _ = await asyncio.wait({job.runner}, timeout=timeout)
        finally:
            job.waiters -= 1
        if not done:
            return None
        return job.runner.result()

    def hand_off(self, job: Job) -> None:
        """The shim told a client to retry this job: let the same request attach for a while (also after a
        restart: the journal notes it, at most once per half window)."""
        job.handoff_until = self._clock() + self._handoff
        self._journal.handed_off(job)
        if self._shared is not None:
            self._shared.handed_off(job, self._wall() + self._handoff)

    def mark_delivered(self, job: Job, *, asked_at: float | None = None) -> None:
        """A client has the result: nothing is left to collect (after a restart either). `asked_at` (this
        registry's clock, `now()`) is when the delivering request arrived, for the answer delay."""
        if not job.delivered:
            job.delivered = True
            self._journal.finished(job)
            self._emit_delivered(job, asked_at)
            if self._shared is not None:
                self._shared.delivered(job)

    def _emit_delivered(self, job: Job, asked_at: float | None) -> None:
        now = self._clock()
        # The answer waited from the moment both the result and its client were there.
        ready = max(now if job.finished is None else job.finished, -math.inf if asked_at is None else asked_at)
        result = job.result
        self._events.emit(
            "job_delivered",
            job=job.id,
            provider=job.spec.route.provider,
            outcome="partial" if result is not None and result.failures else "delivered",
            delay=round(max(now - ready, 0.0), 6),
        )

    def keep_for_lookup(self, job: Job) -> None:
        """A client will look this job up by id: keep it for the result TTL even if it fails paying nothing."""
        job.lookup = True

    def _dropped(self, job: Job) -> None:
        """The index by id let a job go (its TTL passed, or the index was full): a paid result that no client
        collected is lost from here on."""
        if job.result is not None and not job.delivered:
            self._events.emit(
                "job_expired", job=job.id, provider=job.spec.route.provider, tasks=",".join(job.public_task_ids)
            )

    def now(self) -> float:
        """The registry's clock (for `mark_delivered`'s `asked_at`)."""
        return self._clock()

    def sweep(self) -> None:
        """Drop what has expired from every index now (rather than at the next insertion)."""
        for index in (self._by_id, self._by_fingerprint, self._by_idempotency):
            index.expire()

    def live_jobs(self) -> int:
        return len(self._live)

    def kept_jobs(self) -> int:
        """Jobs the registry indexes (running, or finished and waiting to be collected)."""
        return sum(len(bucket) for bucket in self._by_fingerprint.values())

    async def settle_submits(self, timeout: float, step: float = 0.05) -> None:
        """Before shutting down, let submits already sent get their answer (a task id worth keeping),
        so that a stop does not turn a paid task into an unknown one."""
        waited = 0.0
        while self._gauge.count and waited < timeout:
            await asyncio.sleep(step)
            waited += step

    async def aclose(self) -> None:
        for runner in list(self._live):
            runner.cancel()
        if self._live:
            await asyncio.wait(set(self._live), timeout=5)
        self._journal.close()
