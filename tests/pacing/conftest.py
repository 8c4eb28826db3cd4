"""Fixtures of the pacing tests that need Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shim.redis_link import RedisLink

from ..conftest import RedisServer


@pytest.fixture
async def link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    """A link to the suite's Redis under a key prefix of its own (closed after the test)."""
    link = RedisLink(redis_server.url, prefix="test-" + uuid.uuid4().hex[:8])
    yield link
    await link.aclose()
