"""What every HTTP upstream adapter shares: its settings, and the two ways a call can fail in transit.

A submit that certainly never left is safe to send again (it is re-queued through the budget); one that
may have reached the upstream is never resent. A poll is always safe to repeat.
"""

from __future__ import annotations

from collections.abc import Awaitable

import httpx

from .. import errors
from . import ProviderContext
from .transport import NOT_SENT, describe


class HttpAdapter:
    """Base of the built-in adapters: holds the shared client, the API base URL and the timeout."""

    api_path = "/api/v1"

    def __init__(self, context: ProviderContext) -> None:
        self._http = context.http
        self._base = context.base_url.rstrip("/") + self.api_path
        self._timeout = context.timeout
        self.rate_limit = context.rate_limit
        self.max_in_flight = context.max_in_flight

    @staticmethod
    def _auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    @staticmethod
    async def _submitting(call: Awaitable[httpx.Response]) -> httpx.Response:
        try:
            return await call
        except NOT_SENT as exc:
            raise errors.UpstreamRateLimited(1.0, reason=f"unreachable ({describe(exc)})") from exc
        except httpx.HTTPError as exc:
            raise errors.SubmitOutcomeUnknown(
                f"The upstream did not answer the submit ({describe(exc)}). A task may have been created and "
                "charged, so the shim does not resubmit it; check the upstream dashboard before retrying."
            ) from exc

    @staticmethod
    async def _polling(call: Awaitable[httpx.Response]) -> httpx.Response:
        try:
            return await call
        except httpx.HTTPError as exc:
            raise errors.UpstreamTransient(describe(exc)) from exc

    @staticmethod
    def _unknown_submit(status: int, detail: object) -> errors.SubmitOutcomeUnknown:
        """A 5xx or unreadable answer to a submit: the task may exist, so it is never resubmitted."""
        return errors.SubmitOutcomeUnknown(
            f"The upstream answered the submit with HTTP {status} ({detail}). A task may have been created, "
            "so the shim does not resubmit it."
        )
