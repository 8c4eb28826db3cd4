"""The reve2img adapter: the codec in reve2img_codec plus the two HTTP calls, generate and status."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from .. import errors
from ..config import UpstreamSettings
from ..types import Spec, Submission, Task
from . import reve2img_codec as codec
from .base import Alias, ProviderContext
from .http import HttpAdapter, Reply
from .transport import retry_after_seconds


class Reve2imgProvider(HttpAdapter):
    name = "reve2img"
    # The rate is not documented (10 as reAPI's); 8 tasks in flight is our assumption about TOO_MANY_TASKS.
    defaults = UpstreamSettings("https://reve2img.com", rate_limit=10.0, max_in_flight=8)
    catalog = codec.CATALOG
    aliases: ClassVar[dict[str, Alias]] = {}
    alias_patterns: ClassVar[tuple[tuple[re.Pattern[str], Alias], ...]] = ()
    priors = codec.PRIORS
    # The reference lists no models at all ("See the model category pages"), and answers INVALID_MODEL.
    passthrough = True
    # Its reference documents no n, pixel size, quality, background, moderation or mask field to send.
    declarable = frozenset({"max_image_urls", "synchronous"})

    failure = staticmethod(codec.task_failure)

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        if context.models:  # declared in SHIM_CONFIG: they join the catalog, with their priors
            self.catalog = {**codec.CATALOG, **context.models}
            self.priors = {**codec.PRIORS, **codec.priors(context.models)}

    def check(self, spec: Spec) -> None:
        codec.check(spec, self.catalog)

    def plan(self, spec: Spec) -> list[Submission]:
        return codec.plan(spec, self.catalog)

    async def submit(self, submission: Submission, key: str) -> Task:
        reply = await self._call("submit", "POST", "/generate", key, body=submission.body)
        data = _data(reply)
        if data is not None and data.get("task_id"):
            return codec.parse_submitted(data)
        retry_after = retry_after_seconds(reply.headers, 2.0)
        error = codec.map_error(reply.status, reply.payload, retry_after, submitting=True)
        if isinstance(error, errors.UpstreamTransient):
            raise self._unknown_submit(reply.status, error)
        raise error

    async def poll(self, task_id: str, key: str) -> Task:
        reply = await self._call("poll", "GET", "/status", key, params={"task_id": task_id})
        data = _data(reply)
        if data is not None:
            return codec.parse_task(data, task_id)
        retry_after = retry_after_seconds(reply.headers)
        raise codec.map_error(reply.status, reply.payload, retry_after, submitting=False)


def _data(reply: Reply) -> Mapping[str, Any] | None:
    """The `data` of a successful `{code: 200, message, data}` envelope, else None.

    Any 2xx counts, whatever its envelope `code` says: a task id in it means a task exists (and was paid
    for), so it is never abandoned for a 201 or 202.
    """
    payload = reply.payload
    if not 200 <= reply.status < 300 or not isinstance(payload, Mapping):
        return None
    data = payload.get("data")
    return data if isinstance(data, Mapping) else None
