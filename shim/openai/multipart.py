"""multipart/form-data (RFC 7578), pure: a body and its Content-Type in, parts out.

Takes repeated names (`image[]`), text parts with their own Content-Type and charset, RFC 5987 file names,
a preamble and an epilogue. The body is already size-capped by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .. import errors

MAX_PARTS = 64


@dataclass(frozen=True, slots=True)
class Part:
    """One multipart part: a file when it has a filename or an image / octet-stream content type."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def is_file(self) -> bool:
        kind = (self.content_type or "").partition(";")[0].strip().lower()
        return self.filename is not None or kind.startswith("image/") or kind == "application/octet-stream"


_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def header_params(header: str) -> dict[str, str]:
    """`form-data; name="a"; filename*=UTF-8''b%20c` -> {"name": "a", "filename": "b c"} (keys lowercased;
    an RFC 5987 `key*` value wins over the plain one)."""
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for key, raw in _PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        key = key.lower()
        if not key.endswith("*"):
            plain.setdefault(key, value)
            continue
        charset, _, rest = value.partition("'")
        try:
            extended[key[:-1]] = unquote(rest.partition("'")[2], encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            continue
    return {**plain, **extended}


def _malformed(detail: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(f"The multipart body is malformed: {detail}.", code="invalid_multipart")


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of a multipart/form-data body (preamble and epilogue ignored)."""
    boundary = header_params(content_type).get("boundary", "")
    if not 1 <= len(boundary) <= 200:
        raise _malformed("the Content-Type has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        pos = 0
    else:  # skip the preamble
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise _malformed("no part starts with the boundary")
        pos += 2
    parts: list[Part] = []
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise _malformed("a boundary line is not followed by CRLF")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise _malformed("the body ends before the closing boundary")
        if len(parts) == MAX_PARTS:
            raise _malformed(f"too many parts (at most {MAX_PARTS})")
        parts.append(_part(body, start, end))
        pos = end + 2


def _part(body: bytes, start: int, end: int) -> Part:
    head_end = body.find(b"\r\n\r\n", start, end)
    if head_end < 0:
        if body.startswith(b"\r\n", start):  # no headers at all
            raise _malformed("a part has no Content-Disposition")
        raise _malformed("a part's headers do not end")
    headers: dict[str, str] = {}
    for line in body[start:head_end].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().lower().decode("latin-1")] = _header_text(value.strip())
    disposition = headers.get("content-disposition", "")
    params = header_params(disposition)
    if not disposition.lower().startswith("form-data") or "name" not in params:
        raise _malformed("a part has no Content-Disposition form-data name")
    return Part(params["name"], body[head_end + 4 : end], params.get("filename"), headers.get("content-type"))


def _header_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")  # browsers and form-data send UTF-8 file names raw
    except UnicodeDecodeError:
        return raw.decode("latin-1")
