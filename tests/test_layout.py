"""The layout shows the architecture: imports point one way (cli -> app -> web -> {jobs, openai, media} ->
{pacing, providers} -> {types, errors}), there is no import circle, the emulator is an independent upstream,
no function is longer than a screen, and a third upstream is one module plus one registry entry."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import openai

from shim.app import create_app
from shim.config import Settings, UpstreamSettings
from shim.providers import builtin_providers
from shim.providers.base import Alias, ModelSpec, ProviderContext
from shim.types import LatencyPrior, Spec, Submission, Task

from .conftest import served

SHIM = Path(__file__).resolve().parents[1] / "shim"

#: Each package (or module prefix) with its layer: a module may import its own layer and those below.
LAYERS: dict[str, int] = {
    "shim.types": 0, "shim.errors": 0, "shim.untrusted": 0, "shim.sizes": 0, "shim.workers": 0,
    "shim.config": 0, "shim.logs": 0, "shim.events": 0, "shim.redis_link": 0,
    "shim.pacing": 1, "shim.providers": 1,
    "shim.jobs": 2, "shim.openai": 2, "shim.media": 2, "shim.routing": 2,
    "shim.state": 3, "shim.web": 3, "shim.metrics": 3,
    "shim.app": 4, "shim.server": 4, "shim.sandbox": 4,
    "shim.cli": 5, "shim.__main__": 5, "shim.bench": 5, "shim": 5,
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SHIM.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """module -> the shim modules it imports, wherever the import stands (top level, function, TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    modules = {module_name(p): p for p in SHIM.rglob("*.py")}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("shim")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.startswith("shim"):
                    for alias in node.names:  # `from . import x` may name a module
                        candidate = f"{base}.{alias.name}"
                        found.add(candidate if candidate in modules else base)
        graph[name] = found - {name}
    return graph


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith((p + ".", p + "_"))), key=len)
    return LAYERS[best]


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    """No module of shim/ imports, directly or not, a module that imports it (lazy imports count)."""
    assert cycles(imports()) == []


def test_imports_point_one_way() -> None:
    """Every import goes to the same layer or a lower one."""
    upward = [
        (module, target)
        for module, targets in imports().items()
        if not module.startswith("shim.emulator")
        for target in targets
        if not target.startswith("shim.emulator") and layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_emulator_is_an_independent_upstream() -> None:
    """The emulators import nothing of the shim but each other (a shared codec would hide a shared bug)."""
    outside = {
        (module, target)
        for module, targets in imports().items()
        if module.startswith("shim.emulator")
        for target in targets
        if not target.startswith("shim.emulator")
    }
    assert outside == set()


def test_the_core_never_imports_an_exporter() -> None:
    """Only the wiring (app, cli, server) imports the exporters of the core's events (logs, metrics)."""
    exporters = {"shim.logs", "shim.metrics"}
    importers = {module for module, targets in imports().items() if targets & exporters}
    assert importers <= {"shim.app", "shim.cli", "shim.server"}


def test_no_provider_is_named_outside_providers() -> None:
    """The core names no upstream: only providers/, the emulators, the bench and the sandbox's registry do."""
    names = [f'"{name}"' for name in builtin_providers()]
    allowed = ("providers", "emulator", "bench")
    offenders = [
        str(path.relative_to(SHIM))
        for path in SHIM.rglob("*.py")
        if not path.relative_to(SHIM).parts[0].startswith(allowed) and any(name in path.read_text() for name in names)
    ]
    assert offenders == []


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_longer_than_a_screen() -> None:
    """No function of shim/ is longer than 60 lines."""
    long = [
        f"{path.relative_to(SHIM)}::{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in SHIM.rglob("*.py")
        for node in functions(ast.parse(path.read_text()))
        if node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


# --- a third upstream: its module (below) and one registry entry (create_app's `providers`)


class EchoProvider:
    """A third upstream whose tasks finish at once, answering a fixed image URL from its base URL."""

    name = "echo"
    defaults = UpstreamSettings("http://echo.test", rate_limit=50.0)
    catalog: ClassVar[dict[str, ModelSpec]] = {"echo-1": ModelSpec("echo-1")}
    aliases: ClassVar[dict[str, Alias]] = {"echo-latest": Alias("echo-1")}
    alias_patterns: ClassVar[tuple[Any, ...]] = ()
    priors: ClassVar[dict[str, LatencyPrior]] = {"echo": LatencyPrior(0.01, 0.02)}
    passthrough = False  # echo/<anything else> is an unknown model
    declarable: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, context: ProviderContext) -> None:
        self._http = context.http
        self._base = context.settings.base_url
        self.rate_limit = context.settings.rate_limit
        self.max_in_flight = context.settings.max_in_flight

    def check(self, spec: Spec) -> None:
        pass

    def plan(self, spec: Spec) -> list[Submission]:
        return [Submission({"prompt": spec.prompt}, 1, "echo") for _ in range(spec.n)]

    async def submit(self, submission: Submission, key: str) -> Task:
        response = await self._http.post(f"{self._base}/make", json=dict(submission.body))
        return Task(response.json()["id"], "processing")

    async def poll(self, task_id: str, key: str) -> Task:
        response = await self._http.get(f"{self._base}/task/{task_id}")
        return Task(task_id, "completed", (response.json()["url"],))

    def failure(self, task: Task) -> Exception:  # pragma: no cover - echo never fails
        raise AssertionError(task)


def test_a_third_upstream_needs_its_adapter_and_one_registry_line() -> None:
    """An adapter declared in one module and added to the registry is routed (bare, prefixed and by its
    alias), listed, configured by SHIM_ECHO_BASE_URL, paced and polled like the built-in ones."""
    calls: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url}")
        if request.url.path == "/make":
            return httpx.Response(200, json={"id": f"e{len(calls)}"})
        return httpx.Response(200, json={"url": f"https://cdn.echo.test/{request.url.path.rsplit('/', 1)[1]}.png"})

    registry = {**builtin_providers(), "echo": EchoProvider}
    defaults = {name: factory.defaults for name, factory in registry.items()}
    settings = Settings.from_env({"SHIM_ECHO_BASE_URL": "http://echo.elsewhere.test/"}, defaults)
    assert settings.upstreams["echo"] == dataclasses.replace(
        EchoProvider.defaults, base_url="http://echo.elsewhere.test"
    )
    app = create_app(settings, transport=httpx.MockTransport(upstream), providers=registry)  # type: ignore[dict-item]
    with served(app) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
        urls = [
            client.images.generate(model=m, prompt="hi", response_format="url").data[0].url
            for m in ("echo-1", "echo/echo-1", "echo-latest")
        ]
        owners = {m.id: m.owned_by for m in client.models.list().data}
    assert all(url and url.startswith("https://cdn.echo.test/e") for url in urls)
    assert owners["echo-1"] == owners["echo/echo-1"] == owners["echo-latest"] == "echo"
    assert sum(call.startswith("POST http://echo.elsewhere.test/make") for call in calls) == 3
