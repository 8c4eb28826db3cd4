"""The seam between the job registry and a registry shared by replicas (`redis_jobs.RedisJobs`): what a shared
record says of a job (`SharedJob`: hashes, ids, outcomes and how an image job's answer is rendered, never a key
or a prompt), what the registry asks of it (`SharedJobs`), and the pure encodings of an outcome and of a
rendering, so that any replica can deliver it (to a look-up by id too, which carries no request body)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .. import errors
from ..types import ImageSpec, Outcome, Route, Submission, Task
from .job import Job
from .journal import Submitted

Status = Literal["running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class SharedJob:
    """A job as the replicas' shared registry holds it (see the module docstring)."""

    id: str
    credential: str
    fingerprint: str
    provider: str
    idempotency: str | None
    created: float  # wall time
    status: Status
    submissions: Mapping[int, Submitted] = field(default_factory=dict)
    handoff_until: float = -math.inf  # wall time until which a plain retry attaches
    delivered: bool = False
    paid: bool = True  # (finished) a task was created, or may have been
    leased: bool = False  # a replica runs it, and its lease is alive
    result: str | None = None  # `encode_result` of the finished job
    rendering: str | None = None  # `encode_rendering` of an image job's spec

    @property
    def attachable(self) -> bool:
        """As `Job.attachable`: not delivered, and not a failure that paid for nothing."""
        return not self.delivered and (self.status != "failed" or self.paid)

    def outcome(self) -> Outcome:
        """The finished job's outcome; raises its failure."""
        outcome, failure = decode_result(self.result or "{}")
        if failure is not None:
            raise failure
        if outcome is None:
            raise errors.UpstreamError(f"The shared record of job {self.id} holds no outcome.")
        return outcome


class SharedJobs(Protocol):
    """What the registry asks of the shared registry. Lookups and the records that must precede a submit
    (`create`, `submitting`) raise StateUnavailable when it cannot answer; the others are kept until it can."""

    #: How often a replica waiting for another's job reads its record (besides notifications).
    follow_every: float

    async def by_idempotency(self, credential: str, idempotency: str) -> SharedJob | None: ...

    async def by_fingerprint(self, credential: str, fingerprint: str) -> list[SharedJob]:
        """The kept jobs of this credential and fingerprint, newest first."""
        ...

    async def load(self, credential: str, job_id: str) -> SharedJob | None: ...

    async def create(self, job: Job) -> str | None:
        """Record a new job, owned (leased) by this replica, before anything is submitted: None, or the id of
        the job that holds `job.idempotency` already (another replica was first)."""
        ...

    async def adopt(self, job: Job, found: SharedJob) -> bool:
        """Take over a running job whose owner's lease expired (its owner died): whether this replica got it."""
        ...

    async def changed(self, job_id: str, timeout: float) -> None:
        """Return when the job's record may have changed (a notification), or after `timeout`."""
        ...

    async def submitting(self, job: Job, index: int) -> None:
        """Recorded before submission `index` is sent, while this replica holds the job's lease; else
        StateUnavailable, and nothing is submitted."""
        ...

    async def submitted(self, job: Job, index: int, task: str) -> None: ...

    def finished(self, job: Job, outcome: Outcome | None, failure: errors.ShimError | None) -> None:
        """The job this replica ran is over (neither: cancelled, so let another replica adopt it)."""
        ...

    def handed_off(self, job: Job, until: float) -> None: ...

    def delivered(self, job: Job) -> None: ...

    def forget(self, job: Job) -> None:
        """Drop the job from the lookups (nothing was paid, or a client deleted it)."""
        ...


# --- pure: outcomes <-> text ---------------------------------------------------------------------------------

#: What a Submission keeps in a shared record: how to describe its results, never its wire body (the prompt).
_SUBMISSION = ("count", "latency_class", "size", "quality", "background", "media", "duration")


def encode_result(outcome: Outcome | None, failure: errors.ShimError | None) -> str:
    """A finished job's outcome or failure as JSON (task ids, result URLs, rendered errors)."""
    data: dict[str, Any] = {}
    if outcome is not None:
        data["tasks"] = [
            [{name: getattr(sub, name) for name in _SUBMISSION}, _task(task)] for sub, task in outcome.tasks
        ]
        data["failures"] = [encode_error(f) for f in outcome.failures]
    if failure is not None:
        data["error"] = encode_error(failure)
    return json.dumps(data, separators=(",", ":"))


def decode_result(text: str) -> tuple[Outcome | None, errors.ShimError | None]:
    data = json.loads(text)
    failure = decode_error(data["error"]) if "error" in data else None
    if "tasks" not in data:
        return None, failure
    tasks = tuple((Submission(body={}, **sub), _untask(task)) for sub, task in data["tasks"])
    return Outcome(tasks, tuple(decode_error(f) for f in data["failures"])), failure


#: What a look-up by id needs of an image job's spec to render its answer, and nothing that identifies what was
#: asked: never the prompt, the user, nor the input URLs (they may carry signed tokens).
UNSHARED = ("prompt", "user", "image_urls", "mask_url")


def encode_rendering(spec: ImageSpec) -> str:
    """The spec as a look-up on another replica renders it (see UNSHARED)."""
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in UNSHARED}
    fields["route"] = dataclasses.asdict(spec.route)
    return json.dumps(fields, separators=(",", ":"))


def decode_rendering(text: str) -> ImageSpec | None:
    """The spec a look-up renders with (an empty prompt); None for a record this version cannot read."""
    try:
        fields = json.loads(text)
        route = fields.pop("route")
        route["defaults"] = tuple(tuple(pair) for pair in route.get("defaults", ()))
        return ImageSpec(route=Route(**route), prompt="", **fields)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def encode_error(error: errors.ShimError) -> dict[str, Any]:
    """What renders the error (its class too, so that `isinstance` still tells an unknown submit outcome)."""
    return {
        "class": type(error).__name__,
        "message": error.message,
        "status": error.status,
        "type": error.type,
        "code": error.code,
        "param": error.param,
        "retry_after": error.retry_after,
        "should_retry": error.should_retry,
        "upstream_request_id": error.upstream_request_id,
        "task_id": getattr(error, "task_id", None),
        "upstream_code": getattr(error, "upstream_code", None),  # a failed task's: a video's error code
    }


def decode_error(data: Mapping[str, Any]) -> errors.ShimError:
    cls = getattr(errors, str(data.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ShimError)):
        cls = errors.ShimError
    error = cls.__new__(cls)
    errors.ShimError.__init__(
        error,
        data["message"],
        param=data.get("param"),
        retry_after=data.get("retry_after"),
        upstream_request_id=data.get("upstream_request_id"),
    )
    error.status, error.type, error.code = data["status"], data["type"], data.get("code")
    error.should_retry = data.get("should_retry")
    for name in ("task_id", "upstream_code"):  # set by the subclasses that carry them
        if data.get(name) is not None:
            setattr(error, name, data[name])
    return error


def _task(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": task.status,
        "urls": list(task.urls),
        "error_code": task.error_code,
        "error_message": task.error_message,
        "credits": task.credits,
        "media": task.media,
        "extras": [list(pair) for pair in task.extras],
    }


def _untask(data: Mapping[str, Any]) -> Task:
    extras = tuple((str(name), str(value)) for name, value in data.get("extras", ()))
    return Task(
        data["id"],
        data["status"],
        tuple(data["urls"]),
        data.get("error_code"),
        data.get("error_message"),
        data.get("credits"),
        data.get("media", "image"),
        extras,
    )
