"""Log lines: with SHIM_LOG_FORMAT=json, `shim serve` writes one JSON object per line (its own event lines
and uvicorn's), with the request id, job id, task ids, provider, model, status and seconds, and never a key,
a credential hash or a prompt; plain text stays the default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from shim.config import ConfigurationError, Settings
from shim.jobs.job import credential_id

from .conftest import free_port


def serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "shim", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    end = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > end:
            process.kill()
            raise RuntimeError(f"shim serve did not start: {process.communicate()[0]}")
        time.sleep(0.1)


def test_json_lines_parse_and_never_hold_the_key(reapi_upstream, reve2img_upstream, key) -> None:
    """Every line is a JSON object; the job's events carry its ids, provider, model, status and seconds
    under the request's id; neither the key (nor one the upstream rejects), its hash nor the prompt appear."""
    secret_word = "prompt-" + uuid.uuid4().hex
    rejected = "rk_invalid_" + uuid.uuid4().hex
    port = free_port()
    env = {
        "SHIM_LOG_FORMAT": "json",
        "SHIM_LOG_LEVEL": "debug",
        "SHIM_REAPI_BASE_URL": reapi_upstream.url,
        "SHIM_REVE2IMG_BASE_URL": reve2img_upstream.url,
    }
    process = serve(env, port)
    try:
        base = f"http://127.0.0.1:{port}/v1/images/generations"
        ok = httpx.post(
            base,
            json={"model": "gpt-image-1", "prompt": f"[latency=0.2] {secret_word} {key}"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        failed = httpx.post(
            base,
            json={"model": "dall-e-2", "prompt": f"[fail=80003] {secret_word}"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )
        refused = httpx.post(
            base, json={"model": "dall-e-2", "prompt": "hi"}, headers={"Authorization": f"Bearer {rejected}"}
        )
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0]
    assert (ok.status_code, failed.status_code, refused.status_code) == (200, 502, 401)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and {"time", "level", "logger"} <= set(line) for line in lines)
    for secret in (key, rejected, credential_id(key), credential_id(rejected), secret_word):
        assert secret not in output
    # httpx's own lines (every URL, result URLs with any signed token among them) stay out, even at debug
    assert not [line for line in lines if line["logger"].startswith(("httpx", "httpcore"))]
    assert "/media/tasks/" not in output
    job_id = ok.headers["x-shim-job"]
    mine = {line["event"]: line for line in lines if line.get("job_id") == job_id}
    assert {"job_started", "task_submitted", "task_finished", "job_finished", "job_delivered"} <= set(mine)
    finished = mine["task_finished"]
    assert finished["task_ids"] == [ok.headers["x-upstream-task-ids"]]
    assert (finished["provider"], finished["model"], finished["status"]) == (
        "reapi",
        "gpt-image-2-official",
        "completed",
    )
    assert finished["seconds"] > 0 and mine["job_finished"]["outcome"] == "ok"
    assert mine["job_started"]["request_id"] == ok.headers["x-request-id"]
    assert {line["event"]: line for line in lines if line.get("job_id") == failed.headers["x-shim-job"]}[
        "job_finished"
    ]["outcome"] == "failed"
    access = [line for line in lines if line["logger"] == "uvicorn.access" and line.get("status") == 200]
    assert any(line["path"] == "/v1/images/generations" and line["method"] == "POST" for line in access)
    assert any(line.get("request_id") == ok.headers["x-request-id"] for line in access)


def test_log_format_is_text_unless_json() -> None:
    """SHIM_LOG_FORMAT defaults to text, takes json in any case, and refuses anything else at start-up."""
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"SHIM_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigurationError, match="SHIM_LOG_FORMAT"):
        Settings.from_env({"SHIM_LOG_FORMAT": "yaml"})
