"""Public model names -> Routes (provider + upstream model + defaults): built-in OpenAI aliases, each
provider's own ids (bare or as provider/model), and the names a SHIM_CONFIG TOML file defines."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .config import ConfigurationError
from .openai_wire import BACKGROUNDS, MODERATIONS, OUTPUT_FORMATS, QUALITIES, RESOLUTIONS, RESPONSE_FORMATS
from .sizes import size_problem
from .types import Route

OFFICIAL = "gpt-image-2-official"
#: OpenAI's image ids -> (provider, upstream model, default parameters).
BUILTIN_ALIASES: dict[str, tuple[str, str, dict[str, str]]] = {
    "dall-e-2": ("reapi", "gpt-image-2", {}),
    "dall-e-3": ("reapi", OFFICIAL, {"quality": "standard"}),
    "gpt-image-1": ("reapi", OFFICIAL, {}),
    "gpt-image-1-mini": ("reapi", OFFICIAL, {}),
    "gpt-image-1.5": ("reapi", OFFICIAL, {}),
    "chatgpt-image-latest": ("reapi", OFFICIAL, {}),
}
#: A masked edit on OpenAI's default edit model, dall-e-2 (classic inpainting), goes to the channel that
#: takes masks: the cheap channel its other requests use has none.
MASKED_ALIASES: dict[str, tuple[str, str]] = {"dall-e-2": ("reapi", OFFICIAL)}
#: gpt-image-2.x-* (dated or suffixed variants of OpenAI's newest id) go to the official channel too.
VERSIONED_GPT_IMAGE_2 = re.compile(r"^gpt-image-2\.[0-9]+(-[a-z0-9][a-z0-9.-]*)?$")
#: OpenAI's dated snapshots (gpt-image-1.5-2025-12-16, dall-e-3-...) route like their undated names.
DATED_SNAPSHOT = re.compile(r"^(?P<base>(?:gpt-image-|chatgpt-image-|dall-e-)[a-z0-9.-]+?)-\d{4}-\d{2}-\d{2}$")

#: Parameters a configured model may default (the client's own value always wins), with the values each
#: accepts (the wire parser's own vocabulary: a default is not validated again at request time); size has
#: its own check.
DEFAULTABLE: dict[str, tuple[str, ...] | None] = {
    "size": None,
    "quality": QUALITIES,
    "background": BACKGROUNDS,
    "moderation": MODERATIONS,
    "output_format": (*OUTPUT_FORMATS, "jpg"),
    "resolution": RESOLUTIONS,
    "response_format": RESPONSE_FORMATS,  # the model's answer when the request names none
}


@dataclass(frozen=True, slots=True)
class Router:
    """Resolves public model ids. `catalogs` lists each provider's upstream models, in priority order."""

    catalogs: Mapping[str, tuple[str, ...]]
    configured: Mapping[str, Route]

    def resolve(self, model: str, *, mask: bool = False) -> Route:
        """The Route of a public id; `mask` for an edit carrying a mask (see MASKED_ALIASES)."""
        route = self._lookup(model, mask)
        if route is None:
            raise errors.ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.", param="model"
            )
        return route

    def _lookup(self, model: str, mask: bool = False) -> Route | None:
        if model in self.configured:
            return self.configured[model]
        if mask and model in MASKED_ALIASES and MASKED_ALIASES[model][0] in self.catalogs:
            return Route(model, *MASKED_ALIASES[model])
        # An alias only routes to a provider this process has (a Route to an absent one would fail later).
        if model in BUILTIN_ALIASES and BUILTIN_ALIASES[model][0] in self.catalogs:
            provider, upstream, defaults = BUILTIN_ALIASES[model]
            return Route(model, provider, upstream, tuple(defaults.items()))
        if VERSIONED_GPT_IMAGE_2.match(model) and "reapi" in self.catalogs:
            return Route(model, "reapi", OFFICIAL)
        provider, slash, upstream = model.partition("/")
        if slash:
            return Route(model, provider, upstream) if upstream in self.catalogs.get(provider, ()) else None
        for provider, models in self.catalogs.items():
            if model in models:
                return Route(model, provider, model)
        dated = DATED_SNAPSHOT.match(model)
        if dated:
            undated = self._lookup(dated["base"], mask)
            return None if undated is None else Route(model, undated.provider, undated.upstream_model, undated.defaults)
        return None

    def ids(self) -> list[tuple[str, str]]:
        """Every routable id with its owner: configured names, aliases, bare and prefixed upstream ids."""
        seen: dict[str, str] = {}
        for name, route in self.configured.items():
            seen.setdefault(name, route.provider)
        for name, (provider, _, _) in BUILTIN_ALIASES.items():
            if provider in self.catalogs:
                seen.setdefault(name, provider)
        for provider, models in self.catalogs.items():
            for model in models:
                seen.setdefault(model, provider)
                seen.setdefault(f"{provider}/{model}", provider)
        return list(seen.items())


def load_config(path: str, catalogs: Mapping[str, tuple[str, ...]]) -> dict[str, Route]:
    """Read the SHIM_CONFIG TOML file: `[models."name"]` tables with provider, model and defaults.

    Any problem raises ConfigurationError naming the entry, at start-up.
    """
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"SHIM_CONFIG: cannot read {path!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8; tomllib decodes first
        raise ConfigurationError(f"SHIM_CONFIG: {path!r} is not valid TOML: {exc}") from None
    unknown = set(data) - {"models"}
    if unknown:
        raise ConfigurationError(f"SHIM_CONFIG: unknown top-level key(s) {sorted(unknown)} in {path!r}")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigurationError(f"SHIM_CONFIG: [models] in {path!r} must be a table")
    return {name: _route(name, entry, catalogs) for name, entry in models.items()}


def _route(name: str, entry: Any, catalogs: Mapping[str, tuple[str, ...]]) -> Route:
    where = f'SHIM_CONFIG: [models."{name}"]'
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a table")
    if not name or "/" in name:
        raise ConfigurationError(f"{where}: a public name must be non-empty and contain no '/'")
    provider = entry.get("provider")
    model = entry.get("model")
    # isinstance first: TOML arrays and tables are unhashable, and `in` a dict would raise TypeError.
    if not isinstance(provider, str) or provider not in catalogs:
        raise ConfigurationError(f"{where}: provider must be one of {sorted(catalogs)}, got {provider!r}")
    if not isinstance(model, str) or model not in catalogs[provider]:
        raise ConfigurationError(
            f"{where}: model {model!r} is not a {provider} model (known: {', '.join(catalogs[provider])})"
        )
    nested = entry.get("defaults", {})
    if not isinstance(nested, dict):
        raise ConfigurationError(f"{where}: defaults must be a table, got {nested!r}")
    defaults = dict(nested)
    defaults.update({k: v for k, v in entry.items() if k not in ("provider", "model", "defaults")})
    for key, value in defaults.items():
        if key not in DEFAULTABLE:
            raise ConfigurationError(f"{where}: unknown parameter {key!r} (allowed: {', '.join(sorted(DEFAULTABLE))})")
        if not isinstance(value, str):
            raise ConfigurationError(f"{where}: {key} must be a string, got {value!r}")
        choices = DEFAULTABLE[key]
        if choices is not None and value not in choices:
            raise ConfigurationError(f"{where}: {key} must be one of {', '.join(choices)}, got {value!r}")
    if "size" in defaults and size_problem(defaults["size"]):
        raise ConfigurationError(f"{where}: {size_problem(defaults['size'])}")
    return Route(name, provider, model, tuple(sorted(defaults.items())))
