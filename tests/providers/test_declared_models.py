"""Models the shim has never heard of: pass-through ids, SHIM_CONFIG declarations (validated at start-up, with
their capabilities and priors), SHIM_PASSTHROUGH, and the rule for a bare id two providers offer."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from shim import errors
from shim.app import create_app
from shim.config import ConfigurationError, Settings, UpstreamSettings
from shim.pacing.latency import FALLBACK_PRIOR, find_prior
from shim.providers import builtin_providers, reapi_codec, reve2img_codec
from shim.providers.base import SYNCHRONOUS_PRIOR, ModelSpec, ProviderContext
from shim.providers.reapi import ReapiProvider
from shim.providers.reve2img import Reve2imgProvider
from shim.routing import Collision, Door, Router
from shim.routing_config import build_router, load_config
from shim.types import LatencyPrior, Route

FACTORIES = builtin_providers()
DOORS = {name: Door.of(factory) for name, factory in FACTORIES.items()}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "shim.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- pass-through -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "upstream"),
    [
        pytest.param("reapi/some-future-model", ("reapi", "some-future-model"), id="reapi"),
        pytest.param("reve2img/some-future-model", ("reve2img", "some-future-model"), id="reve2img"),
        pytest.param("reve2img/gpt-image-2", ("reve2img", "gpt-image-2"), id="another-providers-model"),
        pytest.param("reapi/fal-ai/flux-pro", ("reapi", "fal-ai/flux-pro"), id="slash-inside"),
    ],
)
def test_prefixed_unknown_id_passes_through(model, upstream) -> None:
    """<provider>/<id> for an id outside the catalog routes to that provider with the id unchanged."""
    router = Router(DOORS, {})
    route = router.resolve(model)
    assert (route.provider, route.upstream_model) == upstream and router.passes_through(route)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("some-future-model", id="bare"),
        pytest.param("midjourney/flux-2", id="unknown-provider"),
        pytest.param("reapi/", id="empty"),
        pytest.param("reapi/a model", id="space"),
        pytest.param("reapi/-x", id="leading-dash"),
        pytest.param('reapi/x"y', id="quote"),
        pytest.param("reapi/x\n", id="newline"),
        pytest.param("reapi/" + "x" * 129, id="too-long"),
    ],
)
def test_ids_that_never_pass_through(model) -> None:
    """A bare unknown id (which provider would it go to?), an unknown provider and an id that is not visible
    ASCII of at most 128 characters are 404 even with pass-through on."""
    with pytest.raises(errors.ModelNotFound):
        Router(DOORS, {}).resolve(model)


def test_passthrough_off_closes_every_door() -> None:
    """With SHIM_PASSTHROUGH off, prefixed unknown ids are 404; catalog ids still route."""
    router = build_router(FACTORIES, passthrough=False)
    with pytest.raises(errors.ModelNotFound):
        router.resolve("reapi/some-future-model")
    assert router.resolve("reapi/imagen-4-0").upstream_model == "imagen-4-0"
    assert router.passthrough_providers() == []
    assert build_router(FACTORIES).passthrough_providers() == ["reapi", "reve2img"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, True, id="default-on"),
        pytest.param({"SHIM_PASSTHROUGH": "0"}, False, id="0"),
        pytest.param({"SHIM_PASSTHROUGH": "off"}, False, id="off"),
        pytest.param({"SHIM_PASSTHROUGH": "TRUE"}, True, id="TRUE"),
    ],
)
def test_passthrough_setting(environ, expected) -> None:
    """SHIM_PASSTHROUGH reads as a flag, on by default."""
    assert Settings.from_env(environ).passthrough is expected


def test_passthrough_setting_refuses_other_words() -> None:
    """A SHIM_PASSTHROUGH that is not a flag fails at start-up, naming the variable."""
    with pytest.raises(ConfigurationError, match="SHIM_PASSTHROUGH"):
        Settings.from_env({"SHIM_PASSTHROUGH": "sometimes"})


# --- the rule for a bare id two providers offer ---------------------------------------------------------


def test_collision_goes_to_the_first_provider_in_registry_order() -> None:
    """flux-2, offered by reapi and reve2img, is reapi's bare; each is reachable with its prefix."""
    router = Router(DOORS, {})
    assert router.collisions() == [Collision("flux-2", ("reapi", "reve2img"), "reapi", False)]
    assert router.resolve("flux-2") == Route("flux-2", "reapi", "flux-2")
    assert router.resolve("reapi/flux-2") == Route("reapi/flux-2", "reapi", "flux-2")
    assert router.resolve("reve2img/flux-2") == Route("reve2img/flux-2", "reve2img", "flux-2")
    assert dict(router.ids())["flux-2"] == "reapi"


def test_collision_settled_by_config(tmp_path) -> None:
    """A SHIM_CONFIG name for the bare id decides where it goes; the prefixes still reach both."""
    path = write(tmp_path, '[models."flux-2"]\nprovider = "reve2img"\nmodel = "flux-2"\n')
    router = build_router(FACTORIES, config_file=path)
    assert router.collisions() == [Collision("flux-2", ("reapi", "reve2img"), "reve2img", True)]
    assert router.resolve("flux-2").provider == "reve2img" and router.resolve("reapi/flux-2").provider == "reapi"
    assert dict(router.ids())["flux-2"] == "reve2img"


def test_start_up_logs_each_collision_once(tmp_path, caplog) -> None:
    """create_app logs one warning per unsettled collision, and one info line when SHIM_CONFIG settles it."""
    with caplog.at_level(logging.INFO, logger="shim"):
        create_app(Settings())
    warned = [r for r in caplog.records if "'flux-2'" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert "reapi" in warned[0].getMessage() and "reve2img/flux-2" in warned[0].getMessage()
    caplog.clear()
    path = write(tmp_path, '[models."flux-2"]\nprovider = "reve2img"\nmodel = "flux-2"\n')
    with caplog.at_level(logging.INFO, logger="shim"):
        create_app(Settings(config_file=path))
    settled = [r for r in caplog.records if "'flux-2'" in r.getMessage()]
    assert [r.levelno for r in settled] == [logging.INFO] and "reapi/flux-2" in settled[0].getMessage()


# --- SHIM_CONFIG declarations --------------------------------------------------------------------------

DECLARED = """
[upstream_models."reapi/imagen-5-0"]
max_batch = 4
pixel_sizes = true
quality = true
latency = [20, 40.5]

[upstream_models."reve2img/reve-3.0"]
synchronous = true
max_image_urls = 0

[upstream_models."reapi/bare-minimum"]

[models."house"]
provider = "reapi"
model = "imagen-5-0"
size = "16:9"
"""


def test_declarations_become_model_specs(tmp_path) -> None:
    """Each [upstream_models."provider/id"] table is that provider's ModelSpec, the conservative profile
    where it says nothing; a [models] name may use a declared id."""
    config = load_config(write(tmp_path, DECLARED), DOORS)
    assert config.declared == {
        "reapi": {
            "imagen-5-0": ModelSpec(
                "imagen-5-0", max_batch=4, pixel_sizes=True, quality=True, latency=LatencyPrior(20, 40.5)
            ),
            "bare-minimum": ModelSpec("bare-minimum"),
        },
        "reve2img": {"reve-3.0": ModelSpec("reve-3.0", synchronous=True, max_image_urls=0)},
    }
    assert config.routes == {"house": Route("house", "reapi", "imagen-5-0", (("size", "16:9"),))}


def test_declared_models_are_routable_bare_and_prefixed(tmp_path) -> None:
    """A declared model routes bare and prefixed, is listed, and is not a pass-through id (its spec is known),
    even with pass-through off."""
    router = build_router(FACTORIES, config_file=write(tmp_path, DECLARED), passthrough=False)
    for model, provider in (("imagen-5-0", "reapi"), ("reve-3.0", "reve2img"), ("bare-minimum", "reapi")):
        for public in (model, f"{provider}/{model}"):
            route = router.resolve(public)
            assert (route.provider, route.upstream_model) == (provider, model) and not router.passes_through(route)
            assert dict(router.ids())[public] == provider
    assert router.doors["reapi"].declared["imagen-5-0"].max_batch == 4


def context(models: dict[str, ModelSpec]) -> ProviderContext:
    return ProviderContext(httpx.AsyncClient(), UpstreamSettings("http://up.test"), 1.0, models)


def test_declared_models_reach_the_adapters_catalog_and_priors() -> None:
    """An adapter built with declared models plans them with their spec and seeds their classes with their
    latency (or near zero when synchronous); undeclared ids keep the built-in catalog and table."""
    reapi = ReapiProvider(context({"imagen-5-0": ModelSpec("imagen-5-0", latency=LatencyPrior(5, 9))}))
    assert reapi.catalog["imagen-5-0"].latency == LatencyPrior(5, 9) and "gpt-image-2" in reapi.catalog
    assert find_prior(reapi.priors, reapi_codec.latency_class("imagen-5-0", None, "2k")) == LatencyPrior(5, 9)
    assert find_prior(reapi.priors, "reapi/gpt-image-2/low/1k") == LatencyPrior(20, 40)
    reve = Reve2imgProvider(context({"reve-3.0": ModelSpec("reve-3.0", synchronous=True)}))
    assert find_prior(reve.priors, "reve2img/reve-3.0") == SYNCHRONOUS_PRIOR
    assert find_prior(reve.priors, "reve2img/flux-2") == reve2img_codec.PRIORS["reve2img/flux-2"]
    assert ReapiProvider(context({})).catalog is reapi_codec.CATALOG


def test_redeclared_builtin_model_replaces_its_spec_and_prior() -> None:
    """Declaring a model the catalog has replaces its spec, and a declared latency replaces its table cells."""
    declared = ModelSpec("midjourney-v8", max_batch=4, latency=LatencyPrior(50, 90))
    reapi = ReapiProvider(context({"midjourney-v8": declared}))
    assert reapi.catalog["midjourney-v8"] == declared
    assert find_prior(reapi.priors, "reapi/midjourney-v8/low/1k") == LatencyPrior(50, 90)


@pytest.mark.parametrize(
    ("model", "tier", "prior"),
    [
        pytest.param("imagen-4-0", "1k", LatencyPrior(20, 40), id="imagen-1k"),
        pytest.param("midjourney-v8", "2k", LatencyPrior(30, 60), id="midjourney-2k"),
        pytest.param("flux-2", "4k", LatencyPrior(60, 120), id="flux-4k"),
        pytest.param("some-future-model", "1k", FALLBACK_PRIOR, id="pass-through-none"),
    ],
)
def test_new_models_take_the_cheap_channels_low_cells(model, tier, prior) -> None:
    """The seven new reAPI models are seeded from the documented low-quality cell of their tier (the cheap
    channel runs like low quality); a pass-through id has no prior of its own."""
    assert find_prior(reapi_codec.PRIORS, reapi_codec.latency_class(model, "high", tier)) == prior


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param('[upstream_models."reapi/x"]\ncolour = true\n', "unknown key(s) ['colour']", id="unknown-key"),
        pytest.param('[upstream_models."reapi/x"]\nmax_batch = "4"\n', "max_batch must be an integer", id="str-int"),
        pytest.param('[upstream_models."reapi/x"]\nmax_batch = true\n', "max_batch must be an integer", id="bool-int"),
        pytest.param('[upstream_models."reapi/x"]\nmax_batch = 0\n', "from 1 to 10, got 0", id="batch-0"),
        pytest.param('[upstream_models."reapi/x"]\nmax_batch = 11\n', "from 1 to 10, got 11", id="batch-11"),
        pytest.param('[upstream_models."reapi/x"]\nmax_image_urls = 17\n', "from 0 to 16", id="urls-17"),
        pytest.param('[upstream_models."reapi/x"]\nmax_image_urls = -1\n', "from 0 to 16", id="urls-negative"),
        pytest.param('[upstream_models."reapi/x"]\nquality = "yes"\n', "quality must be true or false", id="str-bool"),
        pytest.param('[upstream_models."reapi/x"]\nmask = 1\n', "mask must be true or false", id="int-bool"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = 20\n', "latency must be [low, high]", id="latency-num"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [20]\n', "latency must be [low, high]", id="latency-1"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = ["a", 2]\n', "latency must be [low", id="latency-str"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [true, 2]\n', "latency must be [low", id="latency-bool"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [40, 20]\n', "0 <= low <= high", id="latency-reversed"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [-1, 20]\n', "0 <= low <= high", id="latency-negative"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [0, 0]\n', "0 < high", id="latency-zero"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [1, 1e9]\n', "high <= 86400", id="latency-huge"),
        pytest.param('[upstream_models."reapi/x"]\nlatency = [1, inf]\n', "0 <= low <= high", id="latency-inf"),
        pytest.param(
            '[upstream_models."reapi/x"]\nsynchronous = true\nlatency = [1, 2]\n', "latency or synchronous", id="both"
        ),
        pytest.param('[upstream_models."reve2img/x"]\nquality = true\n', "cannot honour quality", id="reve-quality"),
        pytest.param('[upstream_models."reve2img/x"]\nmax_batch = 2\n', "cannot honour max_batch", id="reve-batch"),
        pytest.param('[upstream_models."reve2img/x"]\npixel_sizes = true\n', "cannot honour pixel", id="reve-pixels"),
        pytest.param('[upstream_models."x"]\n', "<provider>/<upstream id>", id="no-provider"),
        pytest.param('[upstream_models."midjourney/x"]\n', "<provider>/<upstream id>", id="unknown-provider"),
        pytest.param('[upstream_models."reapi/a b"]\n', "the upstream id must be", id="bad-id"),
        pytest.param('[upstream_models."reapi/"]\n', "the upstream id must be", id="empty-id"),
        pytest.param('[upstream_models]\n"reapi/x" = 3\n', "must be a table", id="entry-not-table"),
    ],
)
def test_bad_declaration_names_it(tmp_path, text, needle) -> None:
    """A bad declaration is a ConfigurationError naming the entry and what is wrong with it."""
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, text), DOORS)
    assert caught.value.message.startswith("SHIM_CONFIG: [upstream_models.") and needle in caught.value.message


def test_reve2img_declaration_may_restate_the_conservative_profile(tmp_path) -> None:
    """A capability reve2img cannot honour may still be given its conservative value (it changes nothing)."""
    path = write(tmp_path, '[upstream_models."reve2img/x"]\nquality = false\nmax_batch = 1\nmax_image_urls = 4\n')
    assert load_config(path, DOORS).declared == {"reve2img": {"x": ModelSpec("x", max_image_urls=4)}}


def test_config_name_of_an_undeclared_model_says_how_to_declare_it(tmp_path) -> None:
    """A [models] name pointing at a model neither built in nor declared fails, saying how to declare it."""
    path = write(tmp_path, '[models."house"]\nprovider = "reapi"\nmodel = "imagen-5-0"\n')
    with pytest.raises(ConfigurationError, match=r'\[upstream_models\."reapi/<id>"\]'):
        load_config(path, DOORS)


def test_upstream_models_must_be_a_table(tmp_path) -> None:
    """A top-level upstream_models that is not a table fails, naming the file."""
    path = write(tmp_path, "upstream_models = 3\n")
    with pytest.raises(ConfigurationError, match=r"\[upstream_models\] in"):
        load_config(path, DOORS)


def test_bad_declaration_fails_create_app(tmp_path) -> None:
    """create_app raises on a bad declaration, before any request can be served."""
    path = write(tmp_path, '[upstream_models."reapi/imagen-5-0"]\nmax_batch = 40\n')
    with pytest.raises(ConfigurationError, match='upstream_models."reapi/imagen-5-0"'):
        create_app(Settings(config_file=path))
