"""The reve2img adapter: the codec in reve2img_codec plus the two HTTP calls, generate and status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from .. import errors
from ..types import Task
from . import reve2img_codec as codec
from .http_adapter import HttpAdapter
from .transport import json_or_none, retry_after_seconds


class Reve2imgProvider(HttpAdapter):
    name = "reve2img"
    catalog = codec.CATALOG
    priors = codec.PRIORS

    plan = staticmethod(codec.plan)
    failure = staticmethod(codec.task_failure)

    async def submit(self, body: Mapping[str, Any], key: str) -> Task:
        response = await self._submitting(
            self._http.post(f"{self._base}/generate", json=dict(body), headers=self._auth(key), timeout=self._timeout)
        )
        data = _data(response)
        if data is not None and data.get("task_id"):
            return codec.parse_task(data)
        retry_after = retry_after_seconds(response.headers, 2.0)
        error = codec.map_error(response.status_code, json_or_none(response), retry_after, submitting=True)
        if isinstance(error, errors.UpstreamTransient):
            raise self._unknown_submit(response.status_code, error)
        raise error

    async def poll(self, task_id: str, key: str) -> Task:
        response = await self._polling(
            self._http.get(
                f"{self._base}/status", params={"task_id": task_id}, headers=self._auth(key), timeout=self._timeout
            )
        )
        data = _data(response)
        if data is not None and data.get("task_id"):
            return codec.parse_task(data)
        retry_after = retry_after_seconds(response.headers)
        raise codec.map_error(response.status_code, json_or_none(response), retry_after, submitting=False)


def _data(response: httpx.Response) -> Mapping[str, Any] | None:
    """The `data` of a successful `{code: 200, message, data}` envelope, else None.

    Any 2xx counts, whatever its envelope `code` says: a task id in it means a task exists (and was paid
    for), so it is never abandoned for a 201 or 202.
    """
    payload = json_or_none(response)
    if not 200 <= response.status_code < 300 or not isinstance(payload, Mapping):
        return None
    data = payload.get("data")
    return data if isinstance(data, Mapping) else None
