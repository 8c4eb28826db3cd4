"""The core's events and who listens to them: the core emits (`Events.emit`), exporters subscribe (the log
lines of `logs`; metrics). The core never imports an exporter, and an exporter's failure never reaches a job.

Events (name: fields), ids and outcomes only, never a key, a credential hash or a prompt:
    job_started, job_resumed   job, provider, model, n (resumed_tasks)
    job_attached               job, provider, reason (idempotency_key | sdk_retry | handoff | resumed)
    task_submitted, task_resumed   job, task
    task_finished              job, task, provider, model (the upstream's), status, seconds (since the submit
                               was answered)
    job_finished               job, provider, outcome (ok | failed | cancelled), error, tasks, seconds
    job_delivered              job, provider, outcome (delivered | partial), delay (seconds from the job's
                               result and the client both being there to the answer sent); once per job
    job_following              job (another replica runs it: this one waits for its shared record)
    job_followed               job, outcome, error, seconds (that wait is over: delivered from the record)
    job_adopted                job, resumed_tasks (its replica died: this one resumes it)
    job_expired                job, provider, tasks: a finished, paid result left the registry uncollected
    upstream_request           provider, kind (submit | poll | download), status (HTTP status, or timeout |
                               error when no answer came)
    upstream_rate_limited      provider, reason (rate_limited | too_many_tasks): the upstream refused a call
    request_finished           route (the route's template, never a raw path), method, status, seconds

`request_id` holds the id of the HTTP request being served (its context carries it into the jobs it starts).

Inside the core, `jobs.videos` listens too: a video follows its job's task_submitted / task_resumed /
job_finished / job_followed (it imports no exporter, and no exporter imports it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar

Listener = Callable[[str, Mapping[str, object]], None]
log = logging.getLogger("shim")
#: The id of the HTTP request being served (None outside one); set by the request-id middleware.
request_id: ContextVar[str | None] = ContextVar("shim_request_id", default=None)


class Events:
    """A list of listeners; `emit` calls each in turn."""

    def __init__(self, *listeners: Listener) -> None:
        self._listeners: list[Listener] = list(listeners)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, name: str, **data: object) -> None:
        for listener in self._listeners:
            try:
                listener(name, data)
            except Exception:  # an exporter's bug must not break a job
                log.exception("event listener failed on %s", name)
