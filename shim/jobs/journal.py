"""The durable record of paid tasks: an append-only JSON-lines file (`<SHIM_STATE_DIR>/jobs.jsonl`) from which
a restarted shim learns which upstream tasks an earlier process paid for, so that a client's retry collects
them instead of paying again. Records name jobs and credentials by hashes only: never a key, never a prompt.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from .files import replace_atomically, write_all

#: submitting: written before the submit of one submission (a task may exist from here on)
#: submitted:  the submit returned this task id
#: handed_off: the shim told the client to retry (a plain retry may attach for a while)
#: finished:   delivered, or failed with no task created: nothing left to collect
Kind = Literal["submitting", "submitted", "handed_off", "finished"]
KINDS: frozenset[str] = frozenset(get_args(Kind))
VERSION = 1
FILE_NAME = "jobs.jsonl"
LOCK_NAME = "jobs.lock"
#: The file is rewritten when it holds this many more lines than the open jobs need (and twice as many).
COMPACT_SLACK = 1000


@dataclass(frozen=True, slots=True)
class Record:
    """One line of the journal. `index` and `task` concern one submission of the job's plan."""

    kind: Kind
    job: str
    credential: str
    fingerprint: str
    provider: str
    at: float
    idempotency: str | None = None
    index: int | None = None
    task: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a dead process knew of one submission: its task id (None: the submit's outcome is unknown)."""

    task: str | None
    at: float


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """A job an earlier process started and did not finish, folded from its records."""

    id: str
    credential: str
    fingerprint: str
    provider: str
    idempotency: str | None
    submissions: dict[int, Submitted] = field(default_factory=dict)
    handed_off: float | None = None
    last: float = 0.0  # wall time of the newest record: the job's age counts from there


# --- pure: lines <-> records, folding, compaction ----------------------------------------------------------


def encode(record: Record) -> bytes:
    data: dict[str, object] = {
        "v": VERSION,
        "kind": record.kind,
        "job": record.job,
        "credential": record.credential,
        "fingerprint": record.fingerprint,
        "provider": record.provider,
        "at": record.at,
    }
    for name in ("idempotency", "index", "task"):
        value = getattr(record, name)
        if value is not None:
            data[name] = value
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Record | None:
    """The record on one line, or None for anything else (a torn last write, another version, garbage)."""
    try:
        data = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(data, dict) or data.get("v") != VERSION or data.get("kind") not in KINDS:
        return None
    texts = [data.get(name) for name in ("job", "credential", "fingerprint", "provider")]
    at, index, task, idem = data.get("at"), data.get("index"), data.get("task"), data.get("idempotency")
    if not all(isinstance(t, str) and t for t in texts):
        return None
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        return None
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        return None
    if not (task is None or isinstance(task, str)) or not (idem is None or isinstance(idem, str)):
        return None
    if data["kind"] in ("submitting", "submitted") and index is None:
        return None
    if data["kind"] == "submitted" and not task:
        return None
    job, credential, fingerprint, provider = (str(t) for t in texts)
    return Record(data["kind"], job, credential, fingerprint, provider, float(at), idem, index, task)


def parse(data: bytes) -> tuple[list[Record], int]:
    """Every record in a file's bytes, and how many non-empty lines were skipped as unreadable."""
    records: list[Record] = []
    skipped = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        record = decode(line)
        if record is None:
            skipped += 1
        else:
            records.append(record)
    return records, skipped


def recover(records: Iterable[Record]) -> list[RecoveredJob]:
    """The jobs these records leave unfinished, in the order they first appear."""
    first: dict[str, Record] = {}
    submissions: dict[str, dict[int, Submitted]] = {}
    handed_off: dict[str, float] = {}
    last: dict[str, float] = {}
    idempotency: dict[str, str] = {}
    finished: set[str] = set()
    for r in records:
        if r.kind == "finished":
            finished.add(r.job)
            continue
        first.setdefault(r.job, r)
        last[r.job] = max(last.get(r.job, r.at), r.at)
        if r.idempotency:
            idempotency.setdefault(r.job, r.idempotency)
        if r.kind == "handed_off":
            handed_off[r.job] = max(handed_off.get(r.job, r.at), r.at)
        elif r.index is not None:
            known = submissions.setdefault(r.job, {}).get(r.index)
            if r.kind == "submitted" or known is None or known.task is None:  # a task id is never forgotten
                submissions[r.job][r.index] = Submitted(r.task if r.kind == "submitted" else None, r.at)
    return [
        RecoveredJob(
            job,
            head.credential,
            head.fingerprint,
            head.provider,
            idempotency.get(job),
            submissions.get(job, {}),
            handed_off.get(job),
            last[job],
        )
        for job, head in first.items()
        if job not in finished
    ]


def compact(records: Iterable[Record], *, now: float, horizon: float) -> list[Record]:
    """The records still worth keeping: those of unfinished jobs whose newest record is within `horizon`
    seconds of `now` (past it, the upstream task has hit the task cap and its result the result TTL)."""
    records = list(records)
    keep = {job.id for job in recover(records) if now - job.last <= horizon}
    return [r for r in records if r.job in keep]


# --- the file ----------------------------------------------------------------------------------------------


class Journal:
    """The open journal of one process. Each append is one `write` on an O_APPEND descriptor, fsync'd when
    `durable`; thread-safe (Starlette marks deliveries from its thread pool). An exclusive lock on
    `jobs.lock` keeps a second process off the same directory. The file is compacted at start-up, and
    again whenever it holds mostly lines of finished jobs, so it stays the size of the open jobs."""

    def __init__(self, directory: str, *, horizon: float, wall: Callable[[], float] = time.time) -> None:
        """Loads the file, keeps the unfinished, unexpired jobs, and rewrites it with just those.
        Raises OSError (an unusable directory, or another process holding it)."""
        self.directory = directory
        self.horizon = horizon
        self.path = os.path.join(directory, FILE_NAME)
        self._wall = wall
        self._lock = threading.Lock()
        self._fd = -1
        self._open: dict[str, list[Record]] = {}
        self._kept = 0  # records in _open
        self._lines = 0  # lines in the file
        os.makedirs(directory, exist_ok=True)
        self._lock_fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = b""
            records, self.skipped = parse(data)
            self._rewrite(compact(records, now=wall(), horizon=horizon))
        except BaseException:
            self.close()
            raise
        self._recovered = recover(self._records())

    def recovered(self) -> list[RecoveredJob]:
        """The jobs the previous process left unfinished and unexpired (read at start-up)."""
        return list(self._recovered)

    def append(self, record: Record, *, durable: bool) -> None:
        """Add one record; with `durable`, return only once it is on disk (fsync). Raises OSError."""
        line = encode(record)
        with self._lock:
            if self._fd < 0:
                raise OSError("the journal is closed")
            write_all(self._fd, line)
            if durable:
                os.fsync(self._fd)
            self._lines += 1
            if record.kind == "finished":
                self._kept -= len(self._open.pop(record.job, ()))
            else:
                self._open.setdefault(record.job, []).append(record)
                self._kept += 1
            if self._lines > 2 * self._kept + COMPACT_SLACK:
                self._rewrite(compact(self._records(), now=self._wall(), horizon=self.horizon))

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)  # closing the lock file releases the flock
            self._fd = self._lock_fd = -1

    def _records(self) -> list[Record]:
        return [r for records in self._open.values() for r in records]

    def _rewrite(self, records: list[Record]) -> None:
        """Atomically replace the file with `records` (see `files.replace_atomically`)."""
        replace_atomically(self.path, b"".join(encode(r) for r in records))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._open = {}
        for r in records:
            self._open.setdefault(r.job, []).append(r)
        self._kept = self._lines = len(records)
