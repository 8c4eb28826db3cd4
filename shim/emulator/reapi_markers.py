"""Test markers read from a prompt: scripted failures and timings for the reAPI emulator.

The list of markers and their effects is drawn in `shim.emulator.reapi`'s docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FAIL = re.compile(r"\[fail=(8000[123])\]")
_LATENCY = re.compile(r"\[latency=(\d+(?:\.\d*)?)\]")
_POLL500 = re.compile(r"\[poll500=(\d+)\]")
_SUBMIT_SLOW = re.compile(r"\[submit_slow=(\d+(?:\.\d*)?)\]")

FAIL_MESSAGES = {
    80001: "provider_submit_failed",
    80002: "provider_polling_timeout",
    80003: "provider_failed",
}


@dataclass(frozen=True, slots=True)
class Markers:
    """What a prompt asks the emulator to do besides generating."""

    moderated: bool = False
    fail: int | None = None
    latency: float | None = None
    poll500: int = 0
    submit_status: int | None = None
    submit_slow: float | None = None


def parse_markers(prompt: str) -> Markers:
    """Read every marker in `prompt`; text without markers gives `Markers()`."""
    fail = _FAIL.search(prompt)
    latency = _LATENCY.search(prompt)
    poll500 = _POLL500.search(prompt)
    slow = _SUBMIT_SLOW.search(prompt)
    submit_status = 500 if "[submit500]" in prompt else 503 if "[submit503]" in prompt else None
    return Markers(
        moderated="[moderated]" in prompt,
        fail=int(fail[1]) if fail else None,
        latency=float(latency[1]) if latency else None,
        poll500=int(poll500[1]) if poll500 else 0,
        submit_status=submit_status,
        submit_slow=float(slow[1]) if slow else None,
    )
