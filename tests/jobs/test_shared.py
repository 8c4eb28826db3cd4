"""What replicas share of a job through Redis: an error read back renders as it was raised; an image job's
rendering holds what its answer needs, never its prompt."""

from __future__ import annotations

import dataclasses
import json

from shim import errors
from shim.jobs.shared import decode_error, decode_rendering, encode_error, encode_rendering
from shim.types import ImageSpec, Route


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


def test_a_rendering_keeps_what_an_answer_needs_and_never_the_prompt() -> None:
    """An image job's rendering, read on another replica, is its spec with every field an answer is rendered
    from (model route, n, size, formats...), and an empty prompt: the prompt, the user and the input URLs
    (which may carry signed tokens) are never in the shared text."""
    spec = ImageSpec(
        operation="edit", route=Route("gpt-image-1", "reapi", "gpt-image-2", (("quality", "low"),)),
        prompt="a secret prompt", n=2, size="1024x1536", response_format="url", output_format="webp",
        output_compression=80, user="user-42", image_urls=("https://cdn.test/in.png?X-Amz-Signature=s3cr3t",),
    )  # fmt: skip
    text = encode_rendering(spec)
    for secret in ("a secret prompt", "user-42", "s3cr3t", "cdn.test"):
        assert secret not in text
    read = decode_rendering(text)
    assert read == dataclasses.replace(spec, prompt="", user=None, image_urls=())
    assert decode_rendering('{"route": {}}') is None and decode_rendering("not json") is None
