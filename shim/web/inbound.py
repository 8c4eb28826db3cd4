"""Reading what a client sent, defensively: its credential, a size-capped body, strict JSON.

Every problem is a 4xx ShimError; nothing here can produce a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import ClientDisconnect, Request

from .. import errors
from ..config import Settings
from ..openai.multipart import Part, parse_multipart
from ..untrusted import is_token
from ..workers import FairPool

MAX_DEPTH = 32


#: Longer than any real API key; a header longer than this is not one.
MAX_KEY_LENGTH = 512
#: JSON bodies larger than this are parsed in the worker pool, not on the event loop.
INLINE_JSON_BYTES = 64 << 10


def credential(request: Request) -> str:
    """The client's API key: `Authorization: Bearer <key>` or Azure-style `api-key: <key>`.

    A key must be visible ASCII without spaces (what every upstream issues): anything else (a byte 0xE9, a
    control character) is refused with 401 here, never sent upstream where it could not even be encoded.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else ""
    key = key or request.headers.get("api-key", "").strip()
    if key:
        if not is_token(key, MAX_KEY_LENGTH):
            raise errors.AuthenticationFailed(
                "Incorrect API key provided: an API key is visible ASCII characters without spaces."
            )
        return key
    raise errors.AuthenticationFailed(
        "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
        "(Authorization: Bearer YOUR_KEY) or in an api-key header.",
        code="missing_api_key",
    )


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refusing (413) anything over `limit` bytes, declared or streamed (chunked), and (408)
    a body still incomplete after `timeout` seconds: a client trickling bytes holds no connection for long."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise errors.RequestTimeout(f"The request body did not arrive within {timeout:g} seconds.") from None
    except ClientDisconnect:
        raise errors.ClientDisconnected("The client disconnected while sending the request body.") from None
    return b"".join(chunks)


def _too_large(limit: int) -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"The request body is too large: the limit is {limit} bytes.")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def parse_json_off_loop(raw: bytes, owner: str, workers: FairPool) -> Any:
    """`parse_json`, in the worker pool for bodies over INLINE_JSON_BYTES (a megabyte of `[0,0,...]` must not
    hold the event loop)."""
    if len(raw) <= INLINE_JSON_BYTES:
        return parse_json(raw)
    return await workers.run(owner, parse_json, raw)


async def read_form_or_json(
    request: Request, settings: Settings, owner: str, workers: FairPool, *, expected: str
) -> tuple[list[Part] | None, Any]:
    """A body that may be multipart (SHIM_MAX_UPLOAD_BYTES) or JSON (SHIM_MAX_BODY_BYTES, the cap of every
    JSON body: data: URLs count toward it): (its parts, None) or (None, the parsed JSON); 413 beyond the cap,
    415 for any other type (`expected` says what to send instead)."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        body = await read_body(request, settings.max_upload_bytes, settings.body_timeout)
        return parse_multipart(body, content_type), None
    if media_type == "application/json" or media_type.endswith("+json"):
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout)
        return None, await parse_json_off_loop(body, owner, workers)
    raise errors.UnsupportedMediaType(f"Unsupported Content-Type {media_type or 'none'!r}: send {expected}.")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, nesting at most MAX_DEPTH levels."""
    if not raw.strip():
        raise errors.InvalidRequest("The request body is empty: send a JSON object.", code="invalid_json")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise errors.InvalidRequest("The request body is not valid UTF-8.", code="invalid_json") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise errors.InvalidRequest(
            f"We could not parse the JSON body of your request ({exc}).", code="invalid_json"
        ) from None
    _check_depth(value)
    return value


def _too_deep() -> errors.InvalidRequest:
    return errors.InvalidRequest(
        f"The JSON body is nested too deeply (at most {MAX_DEPTH} levels).", code="invalid_json"
    )


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise errors.InvalidRequest("Numbers must be finite.", code="invalid_json")
        elif isinstance(item, str) and not _encodable(item):
            raise _lone_surrogate()
        if isinstance(item, dict) and not all(_encodable(k) for k in item):
            raise _lone_surrogate()


def _encodable(text: str) -> bool:
    """False for strings with a lone surrogate (JSON's `"\\ud800"`): no upstream can be sent them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate() -> errors.InvalidRequest:
    return errors.InvalidRequest(
        "The JSON body contains an invalid Unicode escape (a lone surrogate such as \\ud800).", code="invalid_json"
    )


def retry_count(request: Request) -> int:
    """The SDK's retry number (0 for a first attempt, or when the header is anything but a few ASCII digits)."""
    raw = request.headers.get("x-stainless-retry-count", "0").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0


#: Node's fetch (openai-node, the Vercel AI SDK) gives up waiting for response headers at 300 s.
NODE_HEADERS_TIMEOUT = 300.0


def client_timeout(request: Request) -> float | None:
    """The shortest wait this client will sit through, in seconds, from what it announces.

    openai-python sends x-stainless-read-timeout; openai-node sends x-stainless-timeout; any Node client
    (x-stainless-runtime: node, or a node / ai-sdk user agent) stops at NODE_HEADERS_TIMEOUT regardless.
    """
    found: list[float] = []
    for name in ("x-stainless-read-timeout", "x-stainless-timeout"):
        try:
            value = float(request.headers.get(name, "").strip())
        except ValueError:
            continue
        if math.isfinite(value) and value > 0:
            found.append(value)
    runtime = request.headers.get("x-stainless-runtime", "").lower()
    agent = request.headers.get("user-agent", "").lower()
    if runtime == "node" or agent.startswith(("node", "undici", "ai-sdk", "ai/")):
        found.append(NODE_HEADERS_TIMEOUT)
    return min(found) if found else None
