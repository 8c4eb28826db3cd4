"""What every HTTP upstream adapter shares: its settings, and the one way its calls are made and fail.

An upstream's answer is untrusted: it is read with a byte cap and a total deadline. A submit that certainly
never left is safe to send again (it is re-queued through the budget); one that may have reached the
upstream is never resent (SubmitOutcomeUnknown). A poll is always safe to repeat (UpstreamTransient).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httpx

from .. import errors
from .base import Alias, ModelSpec, ProviderContext
from .transport import NOT_SENT, describe

#: The most an API answer (not a result image) may weigh: a task envelope is a few hundred bytes.
MAX_ANSWER_BYTES = 1 << 20
CallKind = Literal["submit", "poll"]


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream API answer: status, headers, and the JSON body (None when it had none)."""

    status: int
    headers: httpx.Headers
    payload: object


class HttpAdapter:
    """Base of the built-in adapters: holds the shared client, the API base URL, the timeout and the limits.
    Every call is reported as an `upstream_request` event (kind, HTTP status or timeout | error)."""

    name: str
    api_path = "/api/v1"
    #: An upstream without video models (an adapter that has some declares its own).
    video_catalog: ClassVar[Mapping[str, ModelSpec]] = {}
    video_aliases: ClassVar[Mapping[str, Alias]] = {}
    video_alias_patterns: ClassVar[tuple[tuple[re.Pattern[str], Alias], ...]] = ()

    def __init__(self, context: ProviderContext) -> None:
        self._http = context.http
        self._events = context.events
        self._base = context.settings.base_url.rstrip("/") + self.api_path
        self._timeout = context.timeout
        self.rate_limit = context.settings.rate_limit
        self.max_in_flight = context.settings.max_in_flight

    @staticmethod
    def _auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def _call(
        self,
        kind: CallKind,
        method: str,
        path: str,
        key: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """One API call, read with MAX_ANSWER_BYTES and `timeout` seconds in all; transit failures translated
        for `kind` (see the module docstring)."""
        status = "error"  # no HTTP answer (not sent, cut, unreadable), unless one is read below
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._send(method, path, key, body, params)
            status = str(reply.status)
            return reply
        except NOT_SENT as exc:
            if kind == "submit":
                raise errors.UpstreamRateLimited(1.0, reason=f"unreachable ({describe(exc)})") from exc
            raise errors.UpstreamTransient(describe(exc)) from exc
        except (httpx.HTTPError, TimeoutError, _TooLarge) as exc:
            status = "timeout" if isinstance(exc, TimeoutError) else status
            detail = f"no answer within {self._timeout:g}s" if isinstance(exc, TimeoutError) else describe(exc)
            if kind == "poll":
                raise errors.UpstreamTransient(detail) from exc
            raise errors.SubmitOutcomeUnknown(
                f"The upstream did not answer the submit ({detail}). A task may have been created and "
                "charged, so the shim does not resubmit it; check the upstream dashboard before retrying."
            ) from exc
        finally:
            self._events.emit("upstream_request", provider=self.name, kind=kind, status=status)

    async def _send(
        self, method: str, path: str, key: str, body: Mapping[str, Any] | None, params: Mapping[str, str] | None
    ) -> Reply:
        request = self._http.build_request(
            method,
            self._base + path,
            json=None if body is None else dict(body),
            params=params,
            headers=self._auth(key),
            timeout=self._timeout,
        )
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise _TooLarge(f"an answer of {declared} bytes")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise _TooLarge(f"an answer over {MAX_ANSWER_BYTES} bytes")
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, _json(bytes(data)))

    @staticmethod
    def _unknown_submit(status: int, detail: object) -> errors.SubmitOutcomeUnknown:
        """A 5xx or unreadable answer to a submit: the task may exist, so it is never resubmitted."""
        return errors.SubmitOutcomeUnknown(
            f"The upstream answered the submit with HTTP {status} ({detail}). A task may have been created, "
            "so the shim does not resubmit it."
        )


class _TooLarge(Exception):
    """An upstream answer over MAX_ANSWER_BYTES (read no further)."""


def _json(data: bytes) -> object:
    """The body's JSON, or None when it is not JSON (an HTML error page from a proxy, say)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
