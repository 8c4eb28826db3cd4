"""The one exception handler: every failure leaves as OpenAI's `{"error": {...}}` with `x-request-id`
(rendered by `openai.render.render_error`); an unexpected one is logged and answered 500 without details."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import errors
from ..openai.render import render_error

log = logging.getLogger("shim")


def error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, errors.ClientDisconnected):
        log.info("client disconnected on %s %s", request.method, request.url.path)
    if isinstance(exc, errors.ShimError):
        error = exc
    elif isinstance(exc, HTTPException):
        error = errors.NotFound(f"{request.method} {request.url.path}: {exc.detail}")
        error.status = exc.status_code
        if exc.status_code == 405:
            error.code = "method_not_allowed"
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = errors.ShimError("The server had an error while processing your request.")
    request_id = str(request.scope.get("state", {}).get("request_id", ""))
    status, body, headers = render_error(error, request_id)
    return JSONResponse(body, status_code=status, headers=headers)


#: Starlette's exception handlers: everything goes through `error_response`.
HANDLERS: dict[Any, Any] = {errors.ShimError: error_response, HTTPException: error_response, Exception: error_response}
