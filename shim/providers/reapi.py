"""The reAPI adapter: the codec in reapi_codec (and reapi_video) plus the two HTTP calls, submit and poll."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from .. import errors
from ..config import UpstreamSettings
from ..types import Spec, Submission, Task
from . import reapi_codec as codec
from . import reapi_video as video
from .base import CAPABILITIES, ProviderContext
from .http import HttpAdapter
from .transport import retry_after_seconds


class ReapiProvider(HttpAdapter):
    name = "reapi"
    defaults = UpstreamSettings("https://reapi.ai", rate_limit=10.0)  # "10 requests / second / user"
    catalog = codec.CATALOG
    aliases = codec.ALIASES
    alias_patterns = codec.ALIAS_PATTERNS
    priors = codec.PRIORS
    passthrough = True  # reAPI validates the model: an unknown one is a 400 (mapped to model_not_found)
    declarable = frozenset(CAPABILITIES)  # each has its wire field (n, size, quality, ..., mask_url)
    video_catalog = video.VIDEO_CATALOG
    video_aliases = video.VIDEO_ALIASES
    video_alias_patterns = video.VIDEO_ALIAS_PATTERNS

    failure = staticmethod(codec.task_failure)

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        if context.models:  # declared in SHIM_CONFIG: they join the catalog, with their priors
            self.catalog = {**codec.CATALOG, **context.models}
            self.priors = codec.priors(self.catalog)

    def check(self, spec: Spec) -> None:
        codec.check(spec, self.catalog)

    def plan(self, spec: Spec) -> list[Submission]:
        return codec.plan(spec, self.catalog)

    async def submit(self, submission: Submission, key: str) -> Task:
        path = "/videos/generations" if submission.media == "video" else "/images/generations"
        reply = await self._call("submit", "POST", path, key, body=submission.body)
        # Any 2xx naming a task created it (a 201 or 202 is as paid as a 200): never abandon it.
        if 200 <= reply.status < 300 and isinstance(reply.payload, Mapping) and reply.payload.get("id"):
            return codec.parse_submitted(reply.payload)
        error = codec.map_error(reply.status, reply.payload, retry_after_seconds(reply.headers))
        if isinstance(error, errors.UpstreamTransient):
            raise self._unknown_submit(reply.status, error)
        if isinstance(error, errors.ShimError) and submission.media == "video" and error.param:
            error.param = video.VIDEO_PARAMS.get(error.param, error.param)  # OpenAI's names for the fields
        raise error

    async def poll(self, task_id: str, key: str) -> Task:
        # The id is the upstream's: quoted, so that no character of it can change the request line.
        reply = await self._call("poll", "GET", f"/tasks/{quote(task_id, safe='')}", key)
        if 200 <= reply.status < 300 and isinstance(reply.payload, Mapping):
            return codec.parse_task(reply.payload, task_id)
        raise codec.map_error(reply.status, reply.payload, retry_after_seconds(reply.headers))
