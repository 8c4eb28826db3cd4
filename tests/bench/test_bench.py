"""`shim bench --quick` as a smoke test: it runs every scenario and reports them. No timing is asserted: the
figures depend on the machine; only the structure and the counts are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shim.bench.servers import ShimProcess

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_reports_every_scenario(tmp_path: Path) -> None:
    """The quick bench exits 0, prints the scenario table and the three detailed tables, every task of every
    scenario succeeds (three replicas on one Redis among them), the shim is never told the emulator's speed,
    and the learner's figures and the told-the-truth reference are there."""
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "shim", "bench", "--quick", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert f"$ shim bench --quick --json {out}" in text
    assert "no SHIM_LATENCY_SCALE" in text
    for heading in ("[1] scenarios", "[2] 10 concurrent tasks", "[3] low load", "[4] 200 requests held open"):
        assert heading in text
    for row in (
        "fast: 10 at once",
        "replicas: 10 at once over 3 shims on one Redis",
        "low load: 5 clients",
        "drift: 10 clients",
        "mixed: 10 at once, 4 classes",
        "idle key: 10 at once on key A",
        "key B's 1 s task answered",
        "req/task (told)",
        "upstream requests per ok task",
        "429s received",
        "done -> client answer p50 / p90 (s)",
        "throughput (tasks/s, % of rate/2)",
        "shim RSS per held request (kB)",
        "shim CPU while held (CPU s per s)",
    ):
        assert row in text

    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == {"fast", "replicas", "low load", "drift", "mixed", "idle key"}  # no slow
    for name, figures in report["scenarios"].items():
        assert figures["ok"] == figures["tasks"] > 0, name
        assert figures["learning"], name  # the learner's median was sampled for every class asked
        for learned in figures["learning"].values():
            assert learned["true_median"] > 0 and learned["learned_median"] > 0
        told = figures["told"]  # the poll rule told the truth needs a submit and a poll a task, at the least
        assert told is not None and told["requests_per_task"] >= 2.0 and told["p90"] <= 1.5, name
    assert len(report["scenarios"]["mixed"]["learning"]) == 4
    assert [scale for _, scale in report["scenarios"]["drift"]["switches"]] == [0.06, 0.02]
    assert report["scenarios"]["idle key"]["lone_ok"] is True
    for scenario in ("concurrent", "low_load"):
        shim, naive, naive_scaled = report[scenario]
        assert [shim["label"], naive["label"]] == ["shim", "naive 1.5 s"]
        assert naive_scaled["label"].startswith("naive ")
        assert shim["ok"] == shim["tasks"] > 0
        assert shim["cpu_seconds"] is not None and shim["peak_rss_mb"] > 0
        for loop in (naive, naive_scaled):  # the naive loop ran against the emulator on its own key
            assert loop["tasks"] == shim["tasks"] and loop["upstream_requests"] >= loop["tasks"]
    held = report["held"]
    assert held["ok"] == held["requests"] == 200
    assert held["held_peak_rss_mb"] >= held["baseline_rss_mb"] > 0


def test_bench_shim_cannot_be_told_the_emulator_speed() -> None:
    """A bench shim process refuses SHIM_LATENCY_SCALE: what the bench measures is what the shim learned."""
    with pytest.raises(ValueError, match="SHIM_LATENCY_SCALE"):
        ShimProcess({"SHIM_REAPI_BASE_URL": "http://127.0.0.1:9", "SHIM_LATENCY_SCALE": "0.1"})


def test_repeat_runs_one_scenario_a_line_per_run() -> None:
    """`shim bench --repeat b64-load --runs 2 --quick` runs that scenario alone twice: a header naming the
    figures, then one line per run whose requests all succeeded (60 of the quick plan), each on a fresh shim."""
    command = [sys.executable, "-m", "shim", "bench", "--repeat", "b64-load", "--runs", "2", "--quick"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    header, *lines = done.stdout.strip().splitlines()
    assert header.split() == ["run", "ok", "upstream_requests", "rate_limited", "answer_p50", "answer_p90",
                              "elapsed", "cpu_seconds"]  # fmt: skip
    assert [line.split()[:2] for line in lines] == [["1", "60"], ["2", "60"]]
    assert all(int(line.split()[2]) >= 120 for line in lines)  # a submit and at least one poll per request
