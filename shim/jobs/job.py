"""One job = one client intent: its identity (credential hash, fingerprint of what was asked), its runner
task, and what is known of its upstream tasks. Plus the hashes that name credentials and Idempotency-Keys."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from ..types import Outcome, Spec, Submission


def credential_id(key: str) -> str:
    """A stable, non-reversible name for a credential: partitions caches, never logged as the key."""
    return hashlib.sha256(b"shim-credential:" + key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def idempotency_digest(credential: str, idempotency_key: str) -> str:
    """The name under which an Idempotency-Key is kept (in memory and in the journal): never the header."""
    raw = f"shim-idempotency:{credential}:{idempotency_key}"
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def fingerprint(spec: Spec) -> str:
    """Canonical hash of what the client asked for (streaming or not is delivery, not intent)."""
    data = asdict(spec)
    data.pop("stream", None)
    data["kind"] = spec.kind
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(eq=False)
class Job:
    id: str
    credential: str
    fingerprint: str
    spec: Spec
    created: float
    runner: asyncio.Task[Outcome] | None = None
    waiters: int = 0
    delivered: bool = False
    handoff_until: float = 0.0
    submits: int = 0
    uncertain: bool = False  # a submit of this job ended with its outcome unknown
    task_ids: list[str] = field(default_factory=list)
    public_task_ids: list[str] = field(default_factory=list)  # redacted and printable: for headers and logs
    accepted: dict[int, Submission] = field(default_factory=dict)  # by plan index: what the upstream took
    idempotency: str | None = None  # digest of the Idempotency-Key that started it
    journaled: bool = False  # the journal holds records of this job (so it must be told it finished)
    handoff_journaled: float = -math.inf  # wall time of the last `handed_off` record
    finished: float | None = None  # when its runner ended (clock time): its last task was seen complete
    lookup: bool = False  # a client will look it up by id (Prefer: respond-async): its failure is kept too
    following: bool = False  # another replica runs it: this one waits for its shared record

    @property
    def done(self) -> bool:
        return self.runner is not None and self.runner.done()

    @property
    def nothing_paid(self) -> bool:
        """The job failed having certainly created no upstream task: no submit got a task id, and none
        ended with its outcome unknown. A retry of it is a fresh, free attempt."""
        if not self.done or self.submits or self.uncertain:
            return False
        assert self.runner is not None
        return not self.runner.cancelled() and self.runner.exception() is not None

    @property
    def result(self) -> Outcome | None:
        """The outcome of a job that finished with images (None while it runs, or when it failed)."""
        runner = self.runner
        if runner is None or not runner.done() or runner.cancelled() or runner.exception() is not None:
            return None
        return runner.result()

    @property
    def attachable(self) -> bool:
        """A retry may collect this job: its result is not delivered yet, and it is not a failure that paid
        for nothing."""
        return not self.delivered and not self.nothing_paid
