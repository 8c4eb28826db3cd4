"""`shim bench --quick` as a smoke test: it runs every scenario and reports them. No timing is asserted: the
figures depend on the machine; only the structure and the counts are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_every_scenario(tmp_path: Path) -> None:
    """The quick bench exits 0, prints the three tables with their columns, and every task succeeds."""
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "shim", "bench", "--quick", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert f"$ shim bench --quick --json {out}" in text
    for heading in ("[1] 10 concurrent tasks", "[2] low load", "[3] 200 requests held open"):
        assert heading in text
    for row in (
        "tasks ok",
        "upstream requests per ok task",
        "429s received",
        "done -> noticed p50 / p90 (s)",
        "done -> client answer p50 / p90 (s)",
        "throughput (tasks/s, % of rate/2)",
        "shim CPU (s)",
        "shim peak RSS (MB)",
        "shim RSS per held request (kB)",
        "shim CPU while held (CPU s per s)",
    ):
        assert row in text

    report = json.loads(out.read_text())
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
