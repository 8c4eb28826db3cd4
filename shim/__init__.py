"""shim: an OpenAI-compatible images gateway over asynchronous, task-based image APIs.

cli -> app -> web -> {jobs, openai, media} -> {pacing, providers} -> {types, errors}
"""

from __future__ import annotations

__version__ = "0.1.0"
