"""The reAPI adapter: the codec in reapi_codec plus the two HTTP calls, submit and poll."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from .. import errors
from ..types import ImageJob, Task
from . import ProviderContext, Submission
from . import reapi_codec as codec
from .transport import NOT_SENT, describe, json_or_none, retry_after_seconds


class ReapiProvider:
    name = "reapi"
    catalog = codec.CATALOG
    priors = codec.PRIORS

    def __init__(self, context: ProviderContext) -> None:
        self._http = context.http
        self._base = context.base_url.rstrip("/") + "/api/v1"
        self._timeout = context.timeout
        self.rate_limit = context.rate_limit

    def plan(self, job: ImageJob) -> list[Submission]:
        return codec.plan(job)

    def failure(self, task: Task) -> errors.ShimError:
        return codec.task_failure(task)

    async def submit(self, body: Mapping[str, Any], key: str) -> Task:
        try:
            response = await self._http.post(
                f"{self._base}/images/generations",
                json=dict(body),
                headers={"Authorization": f"Bearer {key}"},
                timeout=self._timeout,
            )
        except NOT_SENT as exc:
            raise errors.UpstreamRateLimited(1.0, reason=f"unreachable ({describe(exc)})") from exc
        except httpx.HTTPError as exc:
            raise errors.SubmitOutcomeUnknown(
                f"The upstream did not answer the submit ({describe(exc)}). A task may have been created and "
                "charged, so the shim does not resubmit it; check the reAPI dashboard before retrying."
            ) from exc
        payload = json_or_none(response)
        if response.status_code == 200 and isinstance(payload, Mapping) and payload.get("id"):
            return codec.parse_task(payload)
        error = codec.map_error(response.status_code, payload, retry_after_seconds(response.headers))
        if isinstance(error, errors.UpstreamTransient):
            # A 5xx (or an unreadable 200) on a submit: the task may exist. Never resubmit.
            raise errors.SubmitOutcomeUnknown(
                f"The upstream answered the submit with HTTP {response.status_code} ({error}). A task may have "
                "been created, so the shim does not resubmit it."
            )
        raise error

    async def poll(self, task_id: str, key: str) -> Task:
        try:
            response = await self._http.get(
                f"{self._base}/tasks/{task_id}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise errors.UpstreamTransient(describe(exc)) from exc
        payload = json_or_none(response)
        if response.status_code == 200 and isinstance(payload, Mapping):
            return codec.parse_task(payload)
        raise codec.map_error(response.status_code, payload, retry_after_seconds(response.headers))
