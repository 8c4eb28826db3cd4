"""What can be checked of deploy/ without a Docker engine: the compose file parses and points at the
Dockerfile, the image runs the CLI as a non-root user, and its healthcheck path is served."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shim.cli import _parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, with line continuations joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def test_compose_file_parses_and_builds_the_dockerfile() -> None:
    """docker-compose.yml is valid YAML whose service builds deploy/Dockerfile and publishes the shim's port."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    service = compose["services"]["shim"]
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    ).resolve()
    assert any(str(p).endswith(":8000") for p in service["ports"])
    assert all(name.startswith("SHIM_") for name in service["environment"])


def test_image_command_is_the_cli_and_runs_as_non_root() -> None:
    """The image's CMD is a `shim` command the CLI accepts, and a USER other than root runs it."""
    instructions = dockerfile()
    (cmd,) = [rest for name, rest in instructions if name == "CMD"]
    argv = yaml.safe_load(cmd)  # the exec form is a JSON array
    assert argv[0] == "shim"
    args = _parser().parse_args(argv[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    users = [rest for name, rest in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_healthcheck_path_is_served(shim_server) -> None:
    """The HEALTHCHECK fetches a path that the shim answers with 200."""
    (check,) = [rest for name, rest in dockerfile() if name == "HEALTHCHECK"]
    url = re.search(r"http://127\.0\.0\.1:8000(/[\w/]*)", check)
    assert url is not None and "CMD" in shlex.split(check.replace("'", " "))
    response = httpx.get(shim_server.url + url.group(1))
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_replicas_compose_runs_two_shims_on_one_redis_behind_nginx() -> None:
    """deploy/replicas: Redis (persistent), two shim replicas built from the Dockerfile with SHIM_REDIS_URL and
    no SHIM_STATE_DIR, and nginx in front of both (a long read timeout, no buffering for streamed answers)."""
    compose = yaml.safe_load((DEPLOY / "replicas" / "docker-compose.yml").read_text())
    services = compose["services"]
    shims = [s for s in services.values() if "build" in s]
    assert len(shims) == 2 and "redis" in services and "nginx" in services
    for shim in shims:
        assert (DEPLOY / "replicas" / shim["build"]["context"] / shim["build"]["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()
        assert shim["environment"]["SHIM_REDIS_URL"].startswith("redis://redis:")
        assert "SHIM_STATE_DIR" not in shim["environment"]  # with Redis, Redis is the journal (both: refused)
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"  # a Redis that restarts keeps the jobs' records
    nginx = (DEPLOY / "replicas" / "nginx.conf").read_text()
    upstream = re.search(r"upstream shim \{(.*?)\}", nginx, re.S)
    assert upstream is not None and len(re.findall(r"server shim-[ab]:8000", upstream.group(1))) == 2
    assert "proxy_buffering off" in nginx and re.search(r"proxy_read_timeout (\d+)s", nginx)


def test_kubernetes_manifests() -> None:
    """deploy/kubernetes: a Deployment of 2 replicas reading SHIM_REDIS_URL from a Secret and its settings
    from a ConfigMap, probes on /readyz and /healthz, a Service and a PodDisruptionBudget for the same pods."""
    docs = {
        doc["kind"]: doc
        for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    }
    assert set(docs) >= {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap"}
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert docs["Service"]["spec"]["selector"] == labels
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHIM_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"]
    assert container["envFrom"][0]["configMapRef"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert all(name.startswith("SHIM_") for name in docs["ConfigMap"]["data"])
    assert "SHIM_STATE_DIR" not in docs["ConfigMap"]["data"]  # refused beside SHIM_REDIS_URL
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert _parser().parse_args(container["args"][1:]).command == "serve"


def test_monitoring_examples_parse_and_use_shim_metrics() -> None:
    """deploy/monitoring: a Prometheus scrape config of /metrics and a Grafana dashboard whose every query
    reads a shim_* metric."""
    prometheus = yaml.safe_load((DEPLOY / "monitoring" / "prometheus.yml").read_text())
    assert all(job["metrics_path"] == "/metrics" for job in prometheus["scrape_configs"] if "metrics_path" in job)
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert queries and all(re.search(r"\bshim_[a-z_]+", q) for q in queries)


def test_dashboard_reads_metrics_the_shim_serves(shim_server) -> None:
    """Every shim_* series the Grafana dashboard queries (and every label it groups by) is one the shim's
    /metrics exports, so the dashboard cannot drift from the exporter."""
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(shim_server.url + "/metrics").text)}
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bshim_[a-z_]+", target["expr"]):
                family = re.sub(r"_(bucket|count|sum|total)$", "", name)
                assert family in families, f"{panel['title']}: {name} is not exported"
            grouped = re.findall(r"by \(([^)]*)\)", target["expr"])
            labels = {label.strip() for group in grouped for label in group.split(",")} - {"le"}
            assert labels <= {"provider", "route", "status", "kind", "outcome", "reason", "model"}, panel["title"]


def test_readiness_probe_path_is_served(shim_server) -> None:
    """The Kubernetes readiness probe's path answers 200 "ready" once the shim can take traffic."""
    response = httpx.get(shim_server.url + "/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ready"
    assert response.json()["checks"]["providers"] == "ok"
