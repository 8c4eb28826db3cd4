"""The reAPI adapter: the codec in reapi_codec (and reapi_video) plus the two HTTP calls, submit and poll."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from .. import errors
from ..config import UpstreamSettings
from ..types import Submission, Task
from . import reapi_codec as codec
from . import reapi_video as video
from .http import HttpAdapter
from .transport import retry_after_seconds


class ReapiProvider(HttpAdapter):
    name = "reapi"
    defaults = UpstreamSettings("https://reapi.ai", rate_limit=10.0)  # "10 requests / second / user"
    catalog = codec.CATALOG
    aliases = codec.ALIASES
    alias_patterns = codec.ALIAS_PATTERNS
    priors = codec.PRIORS
    video_catalog = video.VIDEO_CATALOG
    video_aliases = video.VIDEO_ALIASES
    video_alias_patterns = video.VIDEO_ALIAS_PATTERNS

    check = staticmethod(codec.check)
    plan = staticmethod(codec.plan)
    failure = staticmethod(codec.task_failure)

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
