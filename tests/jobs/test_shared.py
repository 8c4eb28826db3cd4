"""What replicas share of a job's end through Redis: an error read back renders as it was raised."""

from __future__ import annotations

import json

from shim import errors
from shim.jobs.shared import decode_error, encode_error


def test_a_failed_task_keeps_its_upstream_code_and_task_across_replicas() -> None:
    """A task failure read on another replica keeps its class, its status, the task id and the upstream's
    own code (a video's error.code on every replica), through the JSON Redis holds."""
    raised = errors.TaskFailed("the provider refused it", status=400, task_id="task_1", upstream_code="80003")
    read = decode_error(json.loads(json.dumps(encode_error(raised))))
    assert isinstance(read, errors.TaskFailed)
    assert (read.status, read.code, read.message) == (400, "upstream_task_failed", "the provider refused it")
    assert (read.task_id, read.upstream_code) == ("task_1", "80003")


def test_an_unknown_class_reads_back_as_a_plain_shim_error() -> None:
    """A class this version does not know (a newer replica's) still renders: status, type and code kept."""
    data = encode_error(errors.UpstreamUnavailable("down", retry_after=3))
    read = decode_error({**data, "class": "SomethingNewer"})
    assert type(read) is errors.ShimError
    assert (read.status, read.code, read.retry_after) == (503, "upstream_unavailable", 3)
