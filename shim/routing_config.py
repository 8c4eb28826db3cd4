"""SHIM_CONFIG, the operator's TOML file, read and checked at start-up: `[models."name"]` public names (a
provider, its model, default parameters) and `[upstream_models."provider/id"]` upstream models the shim does
not know (their capabilities and latency); and the Router the providers' doors and the file make together.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigurationError
from .openai.request import BACKGROUNDS, MODERATIONS, OUTPUT_FORMATS, QUALITIES, RESOLUTIONS, RESPONSE_FORMATS
from .providers.base import CAPABILITIES, ModelSpec, ProviderFactory
from .routing import UPSTREAM_ID, Door, Router
from .sizes import size_problem
from .types import LatencyPrior, Route

log = logging.getLogger("shim")

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
#: A declaration's integer capabilities and their ranges: no request asks for more than 10 images (so a
#: bigger batch is never used) or sends more than 16 input images.
INTEGERS: dict[str, tuple[int, int]] = {"max_batch": (1, 10), "max_image_urls": (0, 16)}
#: The longest declared latency, in seconds (a day: beyond any task cap worth having).
MAX_LATENCY = 86_400.0
TOP_LEVEL = ("models", "upstream_models")


@dataclass(frozen=True, slots=True)
class Config:
    """What the file says: public names, and declared upstream models by provider."""

    routes: Mapping[str, Route] = field(default_factory=dict)
    declared: Mapping[str, Mapping[str, ModelSpec]] = field(default_factory=dict)


def build_router(
    factories: Mapping[str, ProviderFactory],
    *,
    config_file: str | None = None,
    passthrough: bool = True,
    default_video_model: str | None = None,
) -> Router:
    """The Router of these adapters (in registry order) and the SHIM_CONFIG file; `passthrough` False closes
    every door to ids outside its catalog. Logs each bare id more than one provider offers, once."""
    doors = {name: Door.of(factory, passthrough=passthrough) for name, factory in factories.items()}
    config = load_config(config_file, doors) if config_file else Config()
    doors = {name: door.declaring(config.declared.get(name, {})) for name, door in doors.items()}
    router = Router(doors, config.routes, default_video_model=default_video_model)
    report_collisions(router)
    return router


def report_collisions(router: Router) -> None:
    """One line per bare id several providers offer: where it goes, and how to reach the others."""
    for clash in router.collisions():
        offered = " and ".join(clash.providers)
        others = ", ".join(f"{p}/{clash.model}" for p in clash.providers if p != clash.winner)
        if clash.configured:
            log.info(
                "model %r is offered by %s; SHIM_CONFIG sends it to %s (also: %s)",
                clash.model,
                offered,
                clash.winner,
                others,
            )
        else:
            log.warning(
                "model %r is offered by %s; it goes to %s, the first in registry order (the others: %s, "
                "or name it in SHIM_CONFIG)",
                clash.model,
                offered,
                clash.winner,
                others,
            )


def load_config(path: str, doors: Mapping[str, Door]) -> Config:
    """Read the SHIM_CONFIG file against the providers' `doors`. Any problem raises ConfigurationError naming
    the entry, at start-up."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"SHIM_CONFIG: cannot read {path!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8; tomllib decodes first
        raise ConfigurationError(f"SHIM_CONFIG: {path!r} is not valid TOML: {exc}") from None
    unknown = set(data) - set(TOP_LEVEL)
    if unknown:
        raise ConfigurationError(f"SHIM_CONFIG: unknown top-level key(s) {sorted(unknown)} in {path!r}")
    models, upstream = (data.get(name, {}) for name in TOP_LEVEL)
    for name, table in zip(TOP_LEVEL, (models, upstream), strict=True):
        if not isinstance(table, dict):
            raise ConfigurationError(f"SHIM_CONFIG: [{name}] in {path!r} must be a table")
    declared: dict[str, dict[str, ModelSpec]] = {}
    for key, entry in upstream.items():
        provider, spec = _declaration(key, entry, doors)
        declared.setdefault(provider, {})[spec.id] = spec
    known = {name: (*door.models, *declared.get(name, {})) for name, door in doors.items()}
    return Config({name: _route(name, entry, known) for name, entry in models.items()}, declared)


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
            f"{where}: model {model!r} is not a {provider} model (known: {', '.join(catalogs[provider])}); "
            f'a model the shim does not know is declared first, as [upstream_models."{provider}/<id>"]'
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


def _declaration(key: str, entry: Any, doors: Mapping[str, Door]) -> tuple[str, ModelSpec]:
    """`[upstream_models."provider/id"]` -> (provider, the ModelSpec it declares)."""
    where = f'SHIM_CONFIG: [upstream_models."{key}"]'
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where} must be a table")
    provider, slash, model = key.partition("/")
    if not slash or provider not in doors:
        raise ConfigurationError(f"{where}: the name must be <provider>/<upstream id>, provider one of {sorted(doors)}")
    if not UPSTREAM_ID.fullmatch(model):
        raise ConfigurationError(
            f"{where}: the upstream id must be 1-128 characters of letters, digits and ._:@+/- (starting with a "
            "letter or digit)"
        )
    allowed = (*CAPABILITIES, "latency")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {unknown} (allowed: {', '.join(allowed)})")
    values: dict[str, Any] = {n: _capability(where, n, value) for n, value in entry.items() if n != "latency"}
    conservative = ModelSpec(model)
    door = doors[provider]
    refused = [name for name, value in values.items() if value != getattr(conservative, name)]
    refused = [name for name in refused if name not in door.declarable]
    if refused:
        can = ", ".join(sorted(door.declarable)) or "none"
        raise ConfigurationError(
            f"{where}: {provider} cannot honour {', '.join(refused)} (its adapter has no wire field for it); "
            f"declarable for {provider}: {can}, latency"
        )
    latency = _latency(where, entry["latency"]) if "latency" in entry else None
    if latency is not None and values.get("synchronous"):
        raise ConfigurationError(f"{where}: a synchronous model's latency is near zero: give latency or synchronous")
    return provider, dataclasses.replace(conservative, latency=latency, **values)


def _capability(where: str, name: str, value: object) -> int | bool:
    if name in INTEGERS:
        low, high = INTEGERS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigurationError(f"{where}: {name} must be an integer from {low} to {high}, got {value!r}")
        return value
    if not isinstance(value, bool):
        raise ConfigurationError(f"{where}: {name} must be true or false, got {value!r}")
    return value


def _latency(where: str, value: object) -> LatencyPrior:
    """`latency = [low, high]`: seconds from submit to done, 0 <= low <= high, 0 < high <= MAX_LATENCY."""
    numbers = value if isinstance(value, list) and len(value) == 2 else None
    if numbers is None or any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers):
        raise ConfigurationError(f"{where}: latency must be [low, high] in seconds, got {value!r}")
    low, high = float(numbers[0]), float(numbers[1])
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high and 0 < high <= MAX_LATENCY):
        raise ConfigurationError(
            f"{where}: latency must satisfy 0 <= low <= high, 0 < high <= {MAX_LATENCY:g}, got {value!r}"
        )
    return LatencyPrior(low, high)
