"""The job registry shared by replicas, in Redis (SHIM_REDIS_URL): one record per job (a hash of credential
hash, fingerprint, Idempotency-Key digest, per-submission state, hand-off, status, the outcome to deliver),
lookups by fingerprint and by Idempotency-Key, and a lease naming the replica that runs it.

Money rules, across replicas: a submission is recorded "submitting" by a script that succeeds only for the
lease holder and only once per submission, before it is sent; a replica that adopts a job whose owner died
polls its known tasks and never resends a submission it finds "submitting". Writes that need not precede a
submit (task ids, outcomes, hand-offs, deliveries) are retried until Redis takes them, and after an outage
every replica writes its jobs' records again (a Redis that lost its data learns them back). Records expire:
running ones after the task cap, finished ones after the result TTL. Keys and prompts are never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache

from .. import errors
from ..redis_link import LinkDown, RedisLink
from ..types import ImageSpec, Outcome
from .job import Job
from .journal import Submitted
from .shared import SharedJob, Status, encode_rendering, encode_result

log = logging.getLogger("shim")

#: KEYS: job, lease, fingerprint index, idempotency key. ARGV: owner, lease ms, ttl ms, id, created, hand-off,
#: indexed (1/0), has an Idempotency-Key (1/0), channel, release (1/0), then field/value pairs.
#: Upserts what the owner knows (a known task id is never replaced by "submitting"; the hand-off only grows),
#: keeps a running job leased (to its owner, when nobody holds it) and the lookups pointing at it.
PUT = """
for i = 11, #ARGV, 2 do
  local old = string.sub(ARGV[i], 1, 2) == 's:' and redis.call('HGET', KEYS[1], ARGV[i])
  if not (old and cjson.decode(old).task and not cjson.decode(ARGV[i + 1]).task) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if tonumber(ARGV[6]) > (tonumber(redis.call('HGET', KEYS[1], 'handoff')) or 0) then
  redis.call('HSET', KEYS[1], 'handoff', ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local holder = redis.call('GET', KEYS[2])
local running = redis.call('HGET', KEYS[1], 'status') == 'running'
if running and not holder and ARGV[10] ~= '1' then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  holder = ARGV[1]
elseif holder == ARGV[1] and (ARGV[10] == '1' or not running) then
  redis.call('DEL', KEYS[2])
end
if ARGV[7] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
  local idem = ARGV[8] == '1' and redis.call('GET', KEYS[4])
  if ARGV[8] == '1' and (not idem or idem == ARGV[4]) then redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[3]) end
else
  redis.call('ZREM', KEYS[3], ARGV[4])
  if ARGV[8] == '1' and redis.call('GET', KEYS[4]) == ARGV[4] then redis.call('DEL', KEYS[4]) end
end
if not running then redis.call('PUBLISH', ARGV[9], ARGV[4]) end
if holder == ARGV[1] then return 1 end
return 0
"""

#: A new job: PUT, unless another job holds its Idempotency-Key already (then that job's id).
CREATE = (
    """
if ARGV[8] == '1' then
  local holder = redis.call('GET', KEYS[4])
  local holder_key = (string.gsub(KEYS[1], ARGV[4] .. '$', holder or ''))
  if holder and holder ~= ARGV[4] and redis.call('EXISTS', holder_key) == 1 then
    return holder
  end
end
"""
    + PUT
)

#: KEYS: job, lease. ARGV: owner, field, value. "submitting" for the lease holder, once per submission.
SUBMITTING = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then
  local known = cjson.decode(old)
  if known.task or known.by ~= ARGV[1] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

#: KEYS: lease, job. ARGV: owner, lease ms. 1 renewed, 0 another replica holds it, -1 the record is gone.
RENEW = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""

#: KEYS: lease, job. ARGV: owner, lease ms. A running job nobody holds: take it.
ADOPT = """
if redis.call('HGET', KEYS[2], 'status') ~= 'running' then return 0 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

#: KEYS: job, lease. The record's fields, and whether its lease is alive.
LOAD = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
table.insert(fields, '~leased')
table.insert(fields, tostring(redis.call('EXISTS', KEYS[2])))
return fields
"""

#: KEYS: job. ARGV: delivered (1/0), hand-off. What a replica that does not own the job adds to its record.
NOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'delivered', '1') end
if tonumber(ARGV[2]) > (tonumber(redis.call('HGET', KEYS[1], 'handoff')) or 0) then
  redis.call('HSET', KEYS[1], 'handoff', ARGV[2])
end
return 1
"""


@dataclass(eq=False)
class _Owned:
    """What this replica wants in the record of a job it runs (or ran): written again until Redis has it."""

    job: Job
    fields: dict[str, str]
    handoff: float = 0.0
    indexed: bool = True
    release: bool = False
    lost: bool = False  # another replica holds the lease now

    @property
    def running(self) -> bool:
        return self.fields.get("status") == "running"


@dataclass
class _Note:
    delivered: bool = False
    handoff: float = 0.0


@dataclass
class RedisJobs:
    """A `SharedJobs` (see `shared`) in Redis; one per replica."""

    link: RedisLink
    lease_seconds: float = 10.0
    running_ttl: float = 4200.0
    result_ttl: float = 900.0
    wall: Callable[[], float] = time.time
    clock: Callable[[], float] = time.monotonic
    #: After an outage, new jobs wait this long: every replica writes its jobs' records again first.
    settle_seconds: float = 1.5
    owner: str = field(default_factory=lambda: "replica_" + secrets.token_hex(8))

    def __post_init__(self) -> None:
        self.follow_every = min(1.0, self.lease_seconds / 4)
        self._scripts = {name: self.link.script(lua) for name, lua in _SCRIPTS.items()}
        self._channel = self.link.key("done")
        self._owned: dict[str, _Owned] = {}
        self._kept: TTLCache[str, _Owned] = TTLCache(maxsize=100_000, ttl=self.result_ttl, timer=self.clock)
        self._dirty: dict[str, _Owned] = {}
        self._notes: dict[tuple[str, str], _Note] = {}
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._settled_at = -math.inf
        self._closed = False
        self._loop = asyncio.get_running_loop()  # built by the app's lifespan, inside the loop it serves
        self.link.on_recovery(self._resync)

    # --- lookups ------------------------------------------------------------------------------------------

    async def by_idempotency(self, credential: str, idempotency: str) -> SharedJob | None:
        job_id = await self._run(lambda c: c.get(self._key(credential, "idem", idempotency)))
        return await self.load(credential, job_id) if job_id else None

    async def by_fingerprint(self, credential: str, fingerprint: str) -> list[SharedJob]:
        ids = await self._run(lambda c: c.zrevrange(self._key(credential, "fp", fingerprint), 0, 31))
        found = await asyncio.gather(*(self.load(credential, job_id) for job_id in ids))
        return [job for job in found if job is not None]

    async def load(self, credential: str, job_id: str) -> SharedJob | None:
        keys = [self._key(credential, "job", job_id), self._key(credential, "lease", job_id)]
        flat = await self._run(lambda _: self._scripts["load"](keys=keys))
        return _view(job_id, dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None

    # --- the owner's records ------------------------------------------------------------------------------

    async def create(self, job: Job) -> str | None:
        if self.clock() < self._settled_at:
            raise _unavailable("Redis is back; the replicas are writing their jobs' records again")
        fields = {
            "cred": job.credential,
            "fp": job.fingerprint,
            "provider": job.spec.route.provider,
            "created": repr(self.wall()),
            "status": "running",
        }
        if job.idempotency:
            fields["idem"] = job.idempotency
        if isinstance(job.spec, ImageSpec):  # a look-up by id on another replica renders with it
            fields["rendering"] = encode_rendering(job.spec)
        owned = _Owned(job, fields)
        holder = await self._run(lambda _: self._scripts["create"](**self._put_args(owned)))
        if isinstance(holder, str):
            return holder
        self._own(owned)
        return None

    async def adopt(self, job: Job, found: SharedJob) -> bool:
        keys = [self._key(job.credential, "lease", job.id), self._key(job.credential, "job", job.id)]
        args = [self.owner, round(self.lease_seconds * 1000)]
        if not await self._run(lambda _: self._scripts["adopt"](keys=keys, args=args)):
            return False
        fields = {
            "cred": found.credential,
            "fp": found.fingerprint,
            "provider": found.provider,
            "created": repr(found.created),
            "status": "running",
            **{f"s:{i}": _submission(s) for i, s in found.submissions.items()},
        }
        if found.idempotency:
            fields["idem"] = found.idempotency
        if found.rendering:
            fields["rendering"] = found.rendering
        self._own(_Owned(job, fields, handoff=max(found.handoff_until, 0.0)))
        return True

    async def submitting(self, job: Job, index: int) -> None:
        owned = self._owned.get(job.id)
        value = json.dumps({"by": self.owner, "at": self.wall()})
        keys = [self._key(job.credential, "job", job.id), self._key(job.credential, "lease", job.id)]
        try:
            ok = owned is not None and not owned.lost
            ok = ok and await self.link.run(
                lambda _: self._scripts["submitting"](keys=keys, args=[self.owner, f"s:{index}", value])
            )
        except LinkDown:
            ok = False
        if not ok or owned is None:
            raise _unavailable("the gateway could not record the task in its shared state; nothing was submitted")
        owned.fields[f"s:{index}"] = value

    async def submitted(self, job: Job, index: int, task: str) -> None:
        owned = self._owned.get(job.id)
        if owned is not None:  # written by the flusher, which keeps one job's writes in order
            owned.fields[f"s:{index}"] = json.dumps({"task": task, "at": self.wall()})
            self._mark(owned)

    def finished(self, job: Job, outcome: Outcome | None, failure: errors.ShimError | None) -> None:
        owned = self._owned.pop(job.id, None)
        if owned is None:
            return
        if outcome is None and failure is None:  # cancelled (a stop): let another replica adopt it at once
            owned.release = True
        else:
            owned.fields.update(
                status="done" if outcome is not None else "failed",
                result=encode_result(outcome, failure),
                paid="0" if job.nothing_paid else "1",
            )
            owned.indexed = not job.nothing_paid
            self._kept[job.id] = owned
        self._mark(owned)

    def handed_off(self, job: Job, until: float) -> None:
        owned = self._owned.get(job.id) or self._kept.get(job.id)
        if owned is not None:
            owned.handoff = max(owned.handoff, until)
            self._mark(owned)
        else:
            note = self._notes.setdefault((job.credential, job.id), _Note())
            note.handoff = max(note.handoff, until)
            self._flush_soon()

    def delivered(self, job: Job) -> None:
        """Thread-safe: Starlette marks a delivery from its thread pool."""
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            here = False
        if not here:
            self._loop.call_soon_threadsafe(self.delivered, job)
            return
        owned = self._owned.get(job.id) or self._kept.get(job.id)
        if owned is not None:
            owned.fields["delivered"] = "1"
            self._mark(owned)
        else:
            self._notes.setdefault((job.credential, job.id), _Note()).delivered = True
            self._flush_soon()

    def forget(self, job: Job) -> None:
        owned = self._owned.get(job.id) or self._kept.get(job.id)
        if owned is not None:
            owned.indexed = False
            self._mark(owned)

    # --- waiting for another replica's job -----------------------------------------------------------------

    async def changed(self, job_id: str, timeout: float) -> None:
        self._start("listen", self._listen)
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            waiting = self._waiting.get(job_id, set())
            waiting.discard(future)
            if not waiting:
                self._waiting.pop(job_id, None)

    async def _listen(self) -> None:
        """Completion notices of every replica's jobs (PUBLISH on the deployment's channel: the job id)."""
        while not self._closed:
            try:
                pubsub = self.link.client.pubsub()
                try:
                    await pubsub.subscribe(self._channel)
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message and message.get("type") == "message":
                            for future in self._waiting.get(str(message["data"]), ()):
                                if not future.done():
                                    future.set_result(None)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except Exception:  # Redis down (or a client bug): followers poll the record meanwhile
                await asyncio.sleep(self.follow_every)

    # --- readiness and shutdown ----------------------------------------------------------------------------

    async def problem(self) -> str | None:
        """The readiness check: Redis answers, and the replicas have written their records again after an
        outage."""
        problem = await self.link.problem()
        if problem is None and self.clock() < self._settled_at:
            problem = "Redis is back; the replicas are writing their jobs' records again"
        return problem

    async def aclose(self, timeout: float = 2.0) -> None:
        """Write what is pending (released leases among it) for up to `timeout` seconds, then stop."""
        await asyncio.sleep(0)  # the registry's done-callbacks of cancelled jobs run first
        self._closed = True
        flusher = self._tasks.get("flush")
        if flusher is None and (self._dirty or self._notes) and self.link.up:
            flusher = asyncio.get_running_loop().create_task(self._flush())
        if flusher is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(flusher), timeout)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # --- inside ---------------------------------------------------------------------------------------------

    def _key(self, credential: str, kind: str, name: str) -> str:
        return self.link.key("{" + credential + "}", kind, name)  # one hash slot per credential

    async def _run(self, call: Callable[[Any], Any]) -> Any:
        """A lookup or a record that must succeed: LinkDown becomes StateUnavailable (a retryable 503)."""
        try:
            return await self.link.run(call)
        except LinkDown:
            raise _unavailable("the gateway cannot reach its shared state (Redis)") from None

    def _put_args(self, owned: _Owned) -> dict[str, list[Any]]:
        job = owned.job
        ttl = self.running_ttl if owned.running else self.result_ttl
        idem = job.idempotency or owned.fields.get("idem")
        keys = [self._key(job.credential, kind, name) for kind, name in (("job", job.id), ("lease", job.id))]
        keys += [self._key(job.credential, "fp", job.fingerprint), self._key(job.credential, "idem", idem or "-")]
        args: list[Any] = [self.owner, round(self.lease_seconds * 1000), round(ttl * 1000), job.id]
        args += [owned.fields["created"], repr(owned.handoff), int(owned.indexed), int(bool(idem)), self._channel]
        args.append(int(owned.release))
        for name, value in owned.fields.items():
            args += [name, value]
        return {"keys": keys, "args": args}

    async def _write(self, owned: _Owned) -> None:
        """Upsert the record now; kept for the flusher when Redis does not take it."""
        try:
            holds = await self.link.run(lambda _: self._scripts["put"](**self._put_args(owned)))
        except LinkDown:
            self._mark(owned)
            return
        if not holds and owned.running and not owned.release and not owned.lost:
            owned.lost = True
            log.warning("job %s: another replica holds its lease now", owned.job.id)

    def _own(self, owned: _Owned) -> None:
        self._owned[owned.job.id] = owned
        self._start("renew", self._renew)

    def _mark(self, owned: _Owned) -> None:
        self._dirty[owned.job.id] = owned
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self.link.up and not self._closed:
            self._start("flush", self._flush)

    def _start(self, name: str, work: Callable[[], Any]) -> None:
        if name not in self._tasks and not self._closed:
            task = self._tasks[name] = asyncio.get_running_loop().create_task(work())
            task.add_done_callback(lambda _: self._tasks.pop(name, None))

    async def _flush(self) -> None:
        """Write the pending records in order; stop at the first failure (the link says when to resume)."""
        while self._dirty or self._notes:
            if self._dirty:
                job_id, owned = next(iter(self._dirty.items()))
                del self._dirty[job_id]
                await self._write(owned)
                if job_id in self._dirty:  # not taken: Redis is down again
                    return
            else:
                (credential, job_id), note = next(iter(self._notes.items()))
                try:
                    await self._note(credential, job_id, note)
                except LinkDown:
                    return
                if self._notes.get((credential, job_id)) is note:
                    del self._notes[(credential, job_id)]

    async def _note(self, credential: str, job_id: str, note: _Note) -> None:
        keys, args = [self._key(credential, "job", job_id)], [int(note.delivered), repr(note.handoff)]
        await self.link.run(lambda _: self._scripts["note"](keys=keys, args=args))

    def _resync(self) -> None:
        """Redis answers again: write every record this replica keeps (Redis may have lost them)."""
        self._settled_at = self.clock() + self.settle_seconds
        for owned in [*self._owned.values(), *self._kept.values()]:
            self._dirty[owned.job.id] = owned
        self._flush_soon()

    async def _renew(self) -> None:
        """Renew the leases of the running jobs this replica owns, every third of a lease."""
        while self._owned and not self._closed:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                for owned in [o for o in self._owned.values() if not o.lost]:
                    await self._renew_one(owned)
            except LinkDown:
                continue

    async def _renew_one(self, owned: _Owned) -> None:
        job = owned.job
        keys = [self._key(job.credential, "lease", job.id), self._key(job.credential, "job", job.id)]
        args = [self.owner, round(self.lease_seconds * 1000)]
        held = await self.link.run(lambda _: self._scripts["renew"](keys=keys, args=args))
        if held == -1:  # the record is gone (Redis restarted empty): write it again
            self._mark(owned)
        elif held == 0:
            owned.lost = True
            log.warning("job %s: another replica holds its lease now", job.id)


_SCRIPTS = {
    "put": PUT,
    "create": CREATE,
    "submitting": SUBMITTING,
    "renew": RENEW,
    "adopt": ADOPT,
    "load": LOAD,
    "note": NOTE,
}


def _unavailable(why: str) -> errors.StateUnavailable:
    return errors.StateUnavailable(
        f"Service temporarily unavailable: {why}. Retry shortly; nothing was charged.", retry_after=1.0
    )


def _submission(submitted: Submitted) -> str:
    if submitted.task is not None:
        return json.dumps({"task": submitted.task, "at": submitted.at})
    return json.dumps({"by": "earlier owner", "at": submitted.at})  # never this replica's: never sent again


def _view(job_id: str, fields: dict[str, str]) -> SharedJob:
    """A record's fields as a SharedJob."""
    submissions: dict[int, Submitted] = {}
    for name, value in fields.items():
        if name.startswith("s:") and name[2:].isdigit():
            known = json.loads(value)
            submissions[int(name[2:])] = Submitted(known.get("task"), float(known.get("at", 0.0)))
    status: Status = fields.get("status", "running")  # type: ignore[assignment]
    return SharedJob(
        id=job_id,
        credential=fields.get("cred", ""),
        fingerprint=fields.get("fp", ""),
        provider=fields.get("provider", ""),
        idempotency=fields.get("idem"),
        created=float(fields.get("created", 0.0)),
        status=status,
        submissions=submissions,
        handoff_until=float(fields.get("handoff", "-inf")),
        delivered=fields.get("delivered") == "1",
        paid=fields.get("paid", "1") == "1",
        leased=fields.get("~leased") == "1",
        result=fields.get("result"),
        rendering=fields.get("rendering"),
    )
