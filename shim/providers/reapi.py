"""The reAPI adapter: the codec in reapi_codec plus the two HTTP calls, submit and poll."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..types import Task
from . import reapi_codec as codec
from .http_adapter import HttpAdapter
from .transport import json_or_none, retry_after_seconds


class ReapiProvider(HttpAdapter):
    name = "reapi"
    catalog = codec.CATALOG
    priors = codec.PRIORS

    plan = staticmethod(codec.plan)
    failure = staticmethod(codec.task_failure)

    async def submit(self, body: Mapping[str, Any], key: str) -> Task:
        response = await self._submitting(
            self._http.post(
                f"{self._base}/images/generations", json=dict(body), headers=self._auth(key), timeout=self._timeout
            )
        )
        payload = json_or_none(response)
        # Any 2xx naming a task created it (a 201 or 202 is as paid as a 200): never abandon it.
        if 200 <= response.status_code < 300 and isinstance(payload, Mapping) and payload.get("id"):
            return codec.parse_task(payload)
        error = codec.map_error(response.status_code, payload, retry_after_seconds(response.headers))
        if isinstance(error, errors.UpstreamTransient):
            raise self._unknown_submit(response.status_code, error)
        raise error

    async def poll(self, task_id: str, key: str) -> Task:
        response = await self._polling(
            self._http.get(f"{self._base}/tasks/{task_id}", headers=self._auth(key), timeout=self._timeout)
        )
        payload = json_or_none(response)
        if 200 <= response.status_code < 300 and isinstance(payload, Mapping):
            return codec.parse_task(payload)
        raise codec.map_error(response.status_code, payload, retry_after_seconds(response.headers))
