"""Public model names -> Routes (provider + upstream model + defaults): built-in OpenAI aliases, each
provider's own ids (bare or as provider/model), the names a SHIM_CONFIG TOML file defines, and ids a
provider passes to its upstream unchecked (`<provider>/<any id>`). Video ids (OpenAI's sora-2, sora-2-pro; the
providers' video models) resolve apart (`resolve_video`): an image endpoint never takes a video id, nor the
other way round.

The rule for a bare id two providers offer: a SHIM_CONFIG name first, then the providers in registry order
(`providers.builtin_providers()`: reapi before reve2img); the prefixed form always reaches its provider.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import errors
from .providers.base import Alias, ModelSpec, ProviderFactory
from .types import Route

#: OpenAI's dated snapshots (gpt-image-1.5-2025-12-16, dall-e-3-...) route like their undated names.
DATED_SNAPSHOT = re.compile(r"^(?P<base>(?:gpt-image-|chatgpt-image-|dall-e-)[a-z0-9.-]+?)-\d{4}-\d{2}-\d{2}$")
#: An upstream id the shim may send without knowing it (pass-through, or declared in SHIM_CONFIG): visible
#: ASCII, no spaces or quotes, at most 128 characters ('/' allowed inside: some upstreams name models so).
UPSTREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,127}")  # fullmatch
#: OpenAI's default video model and its dated snapshots (sora-2-2025-10-06): SHIM_DEFAULT_VIDEO_MODEL's.
DEFAULT_VIDEO_ID = "sora-2"
DATED_VIDEO = re.compile(r"^sora-2-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Door:
    """What an adapter declares for routing: its upstream model ids (built-in, then declared), the public ids
    it answers for, whether unknown ids pass through to its upstream, and what a declaration may set."""

    models: tuple[str, ...]
    aliases: Mapping[str, Alias]
    alias_patterns: tuple[tuple[re.Pattern[str], Alias], ...] = ()
    passthrough: bool = False
    declarable: frozenset[str] = frozenset()
    #: Upstream models declared in SHIM_CONFIG (handed to the adapter when it is built).
    declared: Mapping[str, ModelSpec] = field(default_factory=dict)
    video_models: tuple[str, ...] = ()
    video_aliases: Mapping[str, Alias] = field(default_factory=dict)
    video_alias_patterns: tuple[tuple[re.Pattern[str], Alias], ...] = ()

    @classmethod
    def of(cls, factory: ProviderFactory, *, passthrough: bool = True) -> Door:
        """The door of an adapter; `passthrough` False closes it to ids outside its catalog (SHIM_PASSTHROUGH).
        An adapter from outside may declare no video models at all."""
        return cls(
            tuple(factory.catalog),
            factory.aliases,
            tuple(factory.alias_patterns),
            passthrough=passthrough and factory.passthrough,
            declarable=frozenset(factory.declarable),
            video_models=tuple(getattr(factory, "video_catalog", ())),
            video_aliases=getattr(factory, "video_aliases", {}),
            video_alias_patterns=tuple(getattr(factory, "video_alias_patterns", ())),
        )

    def videos(self) -> Door:
        """This door's video side, shaped as an image door (so one lookup serves both)."""
        return Door(self.video_models, self.video_aliases, self.video_alias_patterns)

    def declaring(self, specs: Mapping[str, ModelSpec]) -> Door:
        """This door with `specs` declared: new ids join its models, known ones get the declared spec."""
        added = tuple(model for model in specs if model not in self.models)
        return dataclasses.replace(self, models=(*self.models, *added), declared={**self.declared, **specs})

    def offers(self, upstream: str) -> bool:
        """Whether `<provider>/<upstream>` reaches this door's upstream."""
        return upstream in self.models or (self.passthrough and UPSTREAM_ID.fullmatch(upstream) is not None)


@dataclass(frozen=True, slots=True)
class Collision:
    """A bare id more than one provider offers: who offers it, where it goes, and whether SHIM_CONFIG said so."""

    model: str
    providers: tuple[str, ...]
    winner: str
    configured: bool


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
        if (
            route is not None
            and route.upstream_model not in self.doors[route.provider].models  # cheap first: rarely true
            and self.is_video_model(model)
        ):
            route = None  # pass-through never carries a known video id to an image endpoint
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
        return self._videos()._lookup(model)

    def is_video_model(self, model: str) -> bool:
        """Whether `model` names a video model in its own right (not through SHIM_DEFAULT_VIDEO_MODEL)."""
        return self._video_lookup(model, default=False) is not None

    def video_ids(self) -> list[tuple[str, str]]:
        """Every routable video id with its owner: aliases, bare and prefixed upstream ids."""
        return self._videos().ids()

    def _videos(self) -> Router:
        """The video side of every door, as a Router of its own (one lookup serves both)."""
        return Router({name: door.videos() for name, door in self.doors.items()}, {})

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
            named = self.doors.get(provider)
            return Route(model, provider, upstream) if named is not None and named.offers(upstream) else None
        for provider, door in self.doors.items():
            if model in door.models:
                return Route(model, provider, model)
        dated = DATED_SNAPSHOT.match(model)
        if dated:
            undated = self._lookup(dated["base"], mask)
            return None if undated is None else Route(model, undated.provider, undated.upstream_model, undated.defaults)
        return None

    def passes_through(self, route: Route) -> bool:
        """Whether a route names an upstream id its provider does not know (the upstream will validate it)."""
        door = self.doors.get(route.provider)
        return door is not None and route.upstream_model not in (*door.models, *door.video_models)

    def passthrough_providers(self) -> list[str]:
        """The providers that take `<provider>/<any id>`, in registry order."""
        return [provider for provider, door in self.doors.items() if door.passthrough]

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

    def listed(self) -> list[tuple[str, str]]:
        """What `GET /v1/models` lists: every image id (`ids`), then `sora-2` (when it means something) and
        every video id (`video_ids`), each with its owner."""
        seen = dict(self.ids())
        default = self._video_lookup(DEFAULT_VIDEO_ID)
        if default is not None:
            seen.setdefault(DEFAULT_VIDEO_ID, default.provider)
        for model, owner in self.video_ids():
            seen.setdefault(model, owner)
        return list(seen.items())

    def resolve_any(self, model: str) -> Route:
        """The Route of an image or a video id (`GET /v1/models/{id}`; an image id first, as `listed` ranks
        them); resolve's ModelNotFound when it is neither."""
        try:
            return self.resolve(model)
        except errors.ModelNotFound:
            video = self._video_lookup(model)
            if video is None:
                raise
            return video

    def collisions(self) -> list[Collision]:
        """The bare ids (aliases and upstream models) more than one provider offers, and where each goes."""
        offered: dict[str, list[str]] = {}
        for provider, door in self.doors.items():
            for model in dict.fromkeys((*door.aliases, *door.models)):
                offered.setdefault(model, []).append(provider)
        found = []
        for model, providers in offered.items():
            route = self._lookup(model)
            if len(providers) > 1 and route is not None:
                found.append(Collision(model, tuple(providers), route.provider, model in self.configured))
        return found
