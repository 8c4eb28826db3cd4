"""What can be checked of deploy/ without a Docker engine: the compose file parses and points at the
Dockerfile, the image runs the CLI as a non-root user, and its healthcheck path is served."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import yaml

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
