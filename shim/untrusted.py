"""Text that came from outside (an upstream's ids and messages, a client's headers) made safe for the places it
goes: an HTTP header, a log line, an error message. Pure functions."""

from __future__ import annotations

import re

#: Anything but visible ASCII and the space: control characters (CR, LF...), DEL, and every non-ASCII code point.
_UNSAFE = re.compile(r"[^\x20-\x7e]+")
_SPACES = re.compile(r"\s+")


def printable(value: object, limit: int = 200) -> str:
    """`value` as one line of visible ASCII, at most `limit` characters: a header value or a log field that an
    upstream's CR/LF, NUL or non-latin-1 text cannot break."""
    text = _SPACES.sub(" ", _UNSAFE.sub("?", str(value))).strip()
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def redact(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` (an API key an upstream echoed back) replaced."""
    return text.replace(secret, "[redacted]") if secret and secret in text else text


def public(value: object, secret: str, limit: int = 200) -> str:
    """What may leave the process of an upstream string: redacted, then made printable."""
    return printable(redact(str(value), secret), limit)


def is_token(text: str, limit: int = 256) -> bool:
    """A client credential or an upstream id usable as is: 1 to `limit` visible ASCII characters, no spaces."""
    return 0 < len(text) <= limit and text.isascii() and text.isprintable() and " " not in text
