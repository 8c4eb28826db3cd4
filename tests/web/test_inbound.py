"""Reading what clients announce: credentials and timeouts (Request objects built from ASGI scopes)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from shim import errors
from shim.web.inbound import NODE_HEADERS_TIMEOUT, client_timeout, credential


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="nothing-announced"),
        pytest.param({"x_stainless_read_timeout": "600"}, 600.0, id="python-sdk"),
        pytest.param({"x_stainless_read_timeout": "1"}, 1.0, id="short"),
        pytest.param({"x_stainless_timeout": "120", "x_stainless_runtime": "node"}, 120.0, id="node-sdk"),
        pytest.param(
            {"x_stainless_timeout": "600", "x_stainless_runtime": "node"}, NODE_HEADERS_TIMEOUT, id="node-cap"
        ),
        pytest.param({"user_agent": "ai-sdk/openai/3.0.1"}, NODE_HEADERS_TIMEOUT, id="vercel-ai-sdk"),
        pytest.param({"x_stainless_read_timeout": "nan"}, None, id="nan-ignored"),
        pytest.param({"x_stainless_read_timeout": "-3"}, None, id="negative-ignored"),
    ],
)
def test_client_timeout(headers, expected) -> None:
    """The shortest wait a client will sit through comes from the SDK headers and Node's header timeout."""
    assert client_timeout(request(**headers)) == expected


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"authorization": "Bearer rk_1"}, "rk_1"),
        ({"authorization": "bearer  rk_2 "}, "rk_2"),
        ({"api_key": "azure_3"}, "azure_3"),
        ({"authorization": "Basic abc", "api_key": "azure_4"}, "azure_4"),
    ],
)
def test_credential(headers, key) -> None:
    """Bearer tokens and Azure-style api-key headers are the credential."""
    assert credential(request(**headers)) == key


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer "}, {"authorization": "Basic abc"}])
def test_missing_credential(headers) -> None:
    """No usable key is a 401 whose message does not echo what was sent."""
    with pytest.raises(errors.AuthenticationFailed) as caught:
        credential(request(**headers))
    assert caught.value.status == 401 and "abc" not in caught.value.message
