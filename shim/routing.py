"""Public model names -> Routes (provider + upstream model + defaults): built-in OpenAI aliases, each
provider's own ids (bare or as provider/model), and the names a SHIM_CONFIG TOML file defines. Video ids
(OpenAI's sora-2, sora-2-pro; the providers' video models) resolve apart (`resolve_video`): an image endpoint
never takes a video id, nor the other way round."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .config import ConfigurationError
from .openai.request import BACKGROUNDS, MODERATIONS, OUTPUT_FORMATS, QUALITIES, RESOLUTIONS, RESPONSE_FORMATS
from .providers.base import Alias, ProviderFactory
from .sizes import size_problem
from .types import Route

#: OpenAI's dated snapshots (gpt-image-1.5-2025-12-16, dall-e-3-...) route like their undated names.
DATED_SNAPSHOT = re.compile(r"^(?P<base>(?:gpt-image-|chatgpt-image-|dall-e-)[a-z0-9.-]+?)-\d{4}-\d{2}-\d{2}$")
#: OpenAI's default video model and its dated snapshots (sora-2-2025-10-06): SHIM_DEFAULT_VIDEO_MODEL's.
DEFAULT_VIDEO_ID = "sora-2"
DATED_VIDEO = re.compile(r"^sora-2-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Door:
    """What an adapter declares for routing: its upstream model ids and the public ids it answers for."""

    models: tuple[str, ...]
    aliases: Mapping[str, Alias]
    alias_patterns: tuple[tuple[re.Pattern[str], Alias], ...] = ()
    video_models: tuple[str, ...] = ()
    video_aliases: Mapping[str, Alias] = field(default_factory=dict)
    video_alias_patterns: tuple[tuple[re.Pattern[str], Alias], ...] = ()

    @classmethod
    def of(cls, factory: ProviderFactory) -> Door:
        # An adapter from outside may declare no video models at all.
        return cls(
            tuple(factory.catalog),
            factory.aliases,
            tuple(factory.alias_patterns),
            tuple(getattr(factory, "video_catalog", ())),
            getattr(factory, "video_aliases", {}),
            tuple(getattr(factory, "video_alias_patterns", ())),
        )

    def videos(self) -> Door:
        """This door's video side, shaped as an image door (so one lookup serves both)."""
        return Door(self.video_models, self.video_aliases, self.video_alias_patterns)


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
    """Resolves public model ids. `doors` are the providers' declarations, in priority order."""

    doors: Mapping[str, Door]
    configured: Mapping[str, Route]
    #: What `sora-2` (OpenAI's default video model) means, when SHIM_DEFAULT_VIDEO_MODEL names it.
    default_video_model: str | None = None

    def resolve(self, model: str, *, mask: bool = False) -> Route:
        """The Route of a public id; `mask` for an edit carrying a mask (an alias may send it elsewhere)."""
        route = self._lookup(model, mask)
        if route is None:
            hint = " It is a video model: use POST /v1/videos." if self._video_lookup(model) else ""
            raise errors.ModelNotFound(
                f"The model '{model}' does not exist or you do not have access to it.{hint}", param="model"
            )
        return route

    def resolve_video(self, model: str) -> Route:
        """The Route of a public video id: sora-2 (SHIM_DEFAULT_VIDEO_MODEL), sora-2-pro, their dated
        snapshots, a provider's video model bare or as provider/model."""
        route = self._video_lookup(model)
        if route is None:
            hint = " It is an image model: use /v1/images." if self._lookup(model) else ""
            raise errors.ModelNotFound(
                f"The video model '{model}' does not exist or you do not have access to it.{hint}", param="model"
            )
        return route

    def _video_lookup(self, model: str, *, default: bool = True) -> Route | None:
        if default and self.default_video_model and (model == DEFAULT_VIDEO_ID or DATED_VIDEO.match(model)):
            target = self._video_lookup(self.default_video_model, default=False)
            return None if target is None else Route(model, target.provider, target.upstream_model)
        videos = Router({name: door.videos() for name, door in self.doors.items()}, {})
        return videos._lookup(model)

    def is_video_model(self, model: str) -> bool:
        """Whether `model` names a video model in its own right (not through SHIM_DEFAULT_VIDEO_MODEL)."""
        return self._video_lookup(model, default=False) is not None

    def video_ids(self) -> list[tuple[str, str]]:
        """Every routable video id with its owner: aliases, bare and prefixed upstream ids."""
        return Router({name: door.videos() for name, door in self.doors.items()}, {}).ids()

    def _lookup(self, model: str, mask: bool = False) -> Route | None:
        if model in self.configured:
            return self.configured[model]
        for provider, door in self.doors.items():
            alias = door.aliases.get(model) or next((a for p, a in door.alias_patterns if p.match(model)), None)
            if alias is not None:
                upstream = alias.masked_model if mask and alias.masked_model else alias.upstream_model
                return Route(model, provider, upstream, alias.defaults)
        provider, slash, upstream = model.partition("/")
        if slash:
            return Route(model, provider, upstream) if upstream in self._models(provider) else None
        for provider, door in self.doors.items():
            if model in door.models:
                return Route(model, provider, model)
        dated = DATED_SNAPSHOT.match(model)
        if dated:
            undated = self._lookup(dated["base"], mask)
            return None if undated is None else Route(model, undated.provider, undated.upstream_model, undated.defaults)
        return None

    def _models(self, provider: str) -> tuple[str, ...]:
        door = self.doors.get(provider)
        return door.models if door is not None else ()

    def ids(self) -> list[tuple[str, str]]:
        """Every routable id with its owner: configured names, aliases, bare and prefixed upstream ids."""
        seen: dict[str, str] = {}
        for name, route in self.configured.items():
            seen.setdefault(name, route.provider)
        for provider, door in self.doors.items():
            for name in door.aliases:
                seen.setdefault(name, provider)
        for provider, door in self.doors.items():
            for model in door.models:
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
