"""`Prefer: respond-async` (RFC 7240): reading a request's preferences, and the `202 Accepted` answers of a
job a client looks up later at its URL (`GET /v1/images/jobs/{id}`, web/image_jobs.py)."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..jobs.job import Job

#: RFC 7230's tchar: what a preference's name (and a token value) is made of.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Seconds a client is asked to wait before looking a running job up again.
RETRY_AFTER = 1


def preferences(values: Iterable[str]) -> dict[str, str]:
    """The preferences of `Prefer` header values: lower-cased name -> value ("" for none), the first of a
    name winning (RFC 7240 section 2). Parameters after `;` are read past; a malformed element is skipped, as a
    preference a server does not understand is ignored. Commas and semicolons inside quoted strings count as
    text."""
    found: dict[str, str] = {}
    for value in values:
        for element in _split(value, ","):
            name, _, rest = _split(element, ";")[0].partition("=")
            name, rest = name.strip(), rest.strip()
            word = _word(rest) if rest else ""
            if name and set(name) <= _TCHAR and word is not None:
                found.setdefault(name.lower(), word)
    return found


def _split(text: str, separator: str) -> list[str]:
    """`text` split at `separator` outside quoted strings (a backslash escapes the next character)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _word(text: str) -> str | None:
    """A token, or a quoted string unquoted; None when it is neither."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        out: list[str] = []
        escaped = False
        for char in text[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return None if escaped else "".join(out)
    return text if set(text) <= _TCHAR else None


def prefers_async(request: Request) -> bool:
    """The request asks to be answered at once and to look the result up later."""
    return "respond-async" in preferences(request.headers.getlist("prefer"))


def job_url(job: Job) -> str:
    return f"/v1/images/jobs/{job.id}"


def job_body(job: Job) -> dict[str, str]:
    """What a client learns of a job that is not answered yet."""
    status = "in_progress" if not job.done else "completed" if job.result is not None else "failed"
    return {"id": job.id, "object": "image.job", "status": status}


def accepted(job: Job, headers: dict[str, str]) -> Response:
    """The immediate answer to a request that preferred it: where to look the job up."""
    return JSONResponse(
        job_body(job),
        status_code=202,
        headers={**headers, "location": job_url(job), "preference-applied": "respond-async"},
    )


def pending(job: Job, headers: dict[str, str]) -> Response:
    """A look-up of a job still running: the same body, and when to look again."""
    return JSONResponse(
        job_body(job),
        status_code=202,
        headers={**headers, "location": job_url(job), "retry-after": str(RETRY_AFTER)},
    )
