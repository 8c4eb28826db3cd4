"""The reve2img adapter: the codec in reve2img_codec plus the two HTTP calls, generate and status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from .. import errors
from ..types import ImageJob, Task
from . import ProviderContext, Submission
from . import reve2img_codec as codec
from .transport import NOT_SENT, describe, json_or_none, retry_after_seconds


class Reve2imgProvider:
    name = "reve2img"
    catalog = codec.CATALOG
    priors = codec.PRIORS

    def __init__(self, context: ProviderContext) -> None:
        self._http = context.http
        self._base = context.base_url.rstrip("/") + "/api/v1"
        self._timeout = context.timeout
        self.rate_limit = context.rate_limit
        self.max_in_flight = context.max_in_flight

    def plan(self, job: ImageJob) -> list[Submission]:
        return codec.plan(job)

    def failure(self, task: Task) -> errors.ShimError:
        return codec.task_failure(task)

    async def submit(self, body: Mapping[str, Any], key: str) -> Task:
        try:
            response = await self._http.post(
                f"{self._base}/generate", json=dict(body), headers=_auth(key), timeout=self._timeout
            )
        except NOT_SENT as exc:
            raise errors.UpstreamRateLimited(1.0, reason=f"unreachable ({describe(exc)})") from exc
        except httpx.HTTPError as exc:
            raise errors.SubmitOutcomeUnknown(
                f"The upstream did not answer the submit ({describe(exc)}). A task may have been created, so "
                "the shim does not resubmit it."
            ) from exc
        data = _data(response)
        if data is not None and data.get("task_id"):
            return codec.parse_task(data)
        retry_after = retry_after_seconds(response.headers, 2.0)
        error = codec.map_error(response.status_code, json_or_none(response), retry_after, submitting=True)
        if isinstance(error, errors.UpstreamTransient):
            raise errors.SubmitOutcomeUnknown(
                f"Unexpected answer to the submit (HTTP {response.status_code}); not resubmitted."
            )
        raise error

    async def poll(self, task_id: str, key: str) -> Task:
        try:
            response = await self._http.get(
                f"{self._base}/status", params={"task_id": task_id}, headers=_auth(key), timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise errors.UpstreamTransient(describe(exc)) from exc
        data = _data(response)
        if data is not None and data.get("task_id"):
            return codec.parse_task(data)
        retry_after = retry_after_seconds(response.headers)
        raise codec.map_error(response.status_code, json_or_none(response), retry_after, submitting=False)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _data(response: httpx.Response) -> Mapping[str, Any] | None:
    payload = json_or_none(response)
    if response.status_code != 200 or not isinstance(payload, Mapping) or payload.get("code") != 200:
        return None
    data = payload.get("data")
    return data if isinstance(data, Mapping) else None
