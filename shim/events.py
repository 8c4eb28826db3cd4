"""The core's events and who listens to them: the core emits (`Events.emit`), exporters subscribe (the log
lines of `logs`; metrics). The core never imports an exporter, and an exporter's failure never reaches a job.

Events (name: fields), ids and outcomes only, never a key, a credential hash or a prompt:
    job_started, job_resumed   job, model, n (resumed_tasks)
    job_attached               job, reason (idempotency_key | sdk_retry | handoff | resumed)
    task_submitted, task_resumed, task_finished   job, task (status)
    job_finished               job, outcome, error, tasks, seconds
    job_following              job (another replica runs it: this one waits for its shared record)
    job_followed               job, outcome, error, seconds (that wait is over: delivered from the record)
    job_adopted                job, resumed_tasks (its replica died: this one resumes it)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

Listener = Callable[[str, Mapping[str, object]], None]
log = logging.getLogger("shim")


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
