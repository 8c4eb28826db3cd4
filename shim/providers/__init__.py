"""The upstream adapters, by name: the one registry. A new upstream is its module plus one line here."""

from __future__ import annotations

from .base import ProviderFactory
from .reapi import ReapiProvider
from .reve2img import Reve2imgProvider


def builtin_providers() -> dict[str, ProviderFactory]:
    """The built-in adapters in routing priority order (a bare id both know goes to the first)."""
    return {"reapi": ReapiProvider, "reve2img": Reve2imgProvider}
