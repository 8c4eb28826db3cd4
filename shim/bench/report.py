"""The benchmark's numbers and tables: plain data in (answers, emulator task records, counters), plain data
and text out. No clock, no I/O."""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..providers.reapi_codec import latency_class
from .clients import Answer

#: The learner has a class's latency once its median is within this share of the true one.
NEAR = 0.2


@dataclass(slots=True)
class Run:
    """One column of a table: the answers of one kind of client, and what the upstream saw of its key."""

    label: str
    answers: list[Answer]
    started: float
    counters: Mapping[str, int]
    ready_at: Mapping[str, float]  # task id -> when the emulator finished it
    first_seen: Mapping[str, float | None]  # task id -> first poll that saw it terminal
    polls: Mapping[str, int]  # task id -> polls it received
    server: dict[str, float] = field(default_factory=dict)  # shim process figures (CPU s, RSS MB)


def collect(
    emulator: Any, label: str, key: str, answers: list[Answer], started: float, server: dict[str, float] | None = None
) -> Run:
    """A Run from the answers and what the (in-process) `ReapiEmulator` recorded for `key`; call it once the
    run is over (the emulator's thread then no longer adds tasks)."""
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:12]  # how the emulator names keys over HTTP
    tasks = [t for t in list(emulator.tasks.values()) if t.key in (key, fingerprint)]
    return Run(
        label=label,
        answers=answers,
        started=started,
        counters=emulator.counters(key),
        ready_at={t.id: t.ready_at for t in tasks},
        first_seen={t.id: t.first_seen_terminal_at for t in tasks},
        polls={t.id: t.polls for t in tasks},
        server=dict(server or {}),
    )


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def count_errors(answers: Sequence[Answer]) -> dict[str, int]:
    """Failed answers by what went wrong."""
    errors: dict[str, int] = {}
    for answer in answers:
        if not answer.ok:
            reason = answer.error or "unknown task"
            errors[reason] = errors.get(reason, 0) + 1
    return errors


def completed(run: Run) -> list[tuple[str, float]]:
    """(task id, answer time) of each successful answer whose task the emulator knows."""
    return [
        (a.task_id, a.answered)
        for a in run.answers
        if a.ok and a.task_id is not None and a.answered is not None and a.task_id in run.ready_at
    ]


def delays(run: Run, ok: Sequence[tuple[str, float]]) -> tuple[list[float], list[float]]:
    """Seconds from the upstream finishing each task to (its first terminal poll, the client's answer)."""
    noticed = [seen - run.ready_at[t] for t, _ in ok if (seen := run.first_seen.get(t)) is not None]
    return noticed, [at - run.ready_at[t] for t, at in ok]


def summarize(run: Run, *, rate: float) -> dict[str, Any]:
    """The figures of one run; delays are from the upstream finishing the task (same monotonic clock)."""
    ok = completed(run)
    noticed, answered = delays(run, ok)
    polls = [run.polls[task_id] for task_id, _ in ok]
    elapsed = max((at for _, at in ok), default=run.started) - run.started
    return {
        "label": run.label,
        "tasks": len(run.answers),
        "ok": len(ok),
        "errors": count_errors(run.answers),
        "upstream_requests": run.counters.get("requests", 0),
        "upstream_submits": run.counters.get("submits", 0),
        "upstream_polls": run.counters.get("polls", 0),
        "requests_per_ok_task": run.counters.get("requests", 0) / len(ok) if ok else math.nan,
        "rate_limited": run.counters.get("rate_limited", 0),
        "polls_per_task_p50": quantile(polls, 0.5),
        "polls_per_task_max": max(polls, default=0),
        "noticed_p50": quantile(noticed, 0.5),
        "noticed_p90": quantile(noticed, 0.9),
        "answer_p50": quantile(answered, 0.5),
        "answer_p90": quantile(answered, 0.9),
        "elapsed": elapsed,
        "throughput": len(ok) / elapsed if elapsed > 0 else math.nan,
        "limit": rate / 2,
        **run.server,
    }


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


#: (row label, cell of a summary). A cell of "-" means the figure does not apply to that column.
RunRow = tuple[str, Callable[[Mapping[str, Any]], str]]
RUN_ROWS: list[RunRow] = [
    ("tasks ok", lambda s: f"{s['ok']}/{s['tasks']}"),
    ("upstream requests (total)", lambda s: str(s["upstream_requests"])),
    ("upstream requests per ok task", lambda s: _num(s["requests_per_ok_task"])),
    ("polls per task p50 / max", lambda s: f"{_num(s['polls_per_task_p50'], 1)} / {s['polls_per_task_max']}"),
    ("429s received", lambda s: str(s["rate_limited"])),
    ("done -> noticed p50 / p90 (s)", lambda s: f"{_num(s['noticed_p50'])} / {_num(s['noticed_p90'])}"),
    ("done -> client answer p50 / p90 (s)", lambda s: f"{_num(s['answer_p50'])} / {_num(s['answer_p90'])}"),
    (
        "throughput (tasks/s, % of rate/2)",
        lambda s: f"{_num(s['throughput'])} ({_num(100 * s['throughput'] / s['limit'], 0)}%)",
    ),
    ("wall time, first submit -> last answer (s)", lambda s: _num(s["elapsed"], 1)),
    ("shim CPU (s)", lambda s: _num(s.get("cpu_seconds"))),
    ("shim peak RSS (MB)", lambda s: _num(s.get("peak_rss_mb"), 1)),
]

Target = tuple[str, str, Callable[[Mapping[str, Any]], bool]]  # row label, target text, met?


def _check(shim: Mapping[str, Any], targets: Sequence[Target]) -> dict[str, str]:
    return {row: f"{text}: {'met' if met(shim) else 'MISSED'}" for row, text, met in targets}


def run_table(title: str, summaries: Sequence[Mapping[str, Any]], targets: Sequence[Target] = ()) -> str:
    """Rows of figures, one column per run; the last column checks the first run (the shim) against targets."""
    checks = _check(summaries[0], targets) if targets else {}
    header = ["", *(s["label"] for s in summaries)] + (["target (shim)"] if targets else [])
    body = [
        [label, *(cell(s) for s in summaries)] + ([checks.get(label, "")] if targets else [])
        for label, cell in RUN_ROWS
    ]
    notes = [f"  {s['label']} failures: {s['errors']}" for s in summaries if s["errors"]]
    return "\n".join([title, render([header, *body], text_last=bool(targets)), *notes])


def held_table(title: str, figures: Mapping[str, Any], targets: Sequence[Target] = ()) -> str:
    rows: list[tuple[str, str]] = [
        ("requests completed", f"{figures['ok']}/{figures['requests']}"),
        ("still held at the end of the window", f"{figures['held_in_window']}/{figures['requests']}"),
        ("time to get all submitted upstream (s)", _num(figures["submit_seconds"], 1)),
        ("shim RSS before the requests (MB)", _num(figures["baseline_rss_mb"], 1)),
        ("shim peak RSS while held (MB)", _num(figures["held_peak_rss_mb"], 1)),
        ("shim RSS per held request (kB)", _num(figures["rss_per_request_kb"], 1)),
        ("shim CPU while held (CPU s per s)", _num(figures["held_cpu_per_second"], 3)),
        ("upstream requests while held (per s)", _num(figures["held_upstream_per_second"], 1)),
        ("shim CPU after the window (CPU s per s)", _num(figures["completing_cpu_per_second"], 3)),
        ("  (window end -> last answer, s)", _num(figures["completing_seconds"], 1)),
        ("shim peak RSS, whole run (MB)", _num(figures["peak_rss_mb"], 1)),
        ("shim CPU, whole run (s)", _num(figures["cpu_seconds"])),
        ("upstream requests per task", _num(figures["requests_per_task"])),
        ("429s received", str(figures["rate_limited"])),
        ("done -> noticed p50 / p90 (s)", f"{_num(figures['noticed_p50'])} / {_num(figures['noticed_p90'])}"),
        ("done -> client answer p50 / p90 (s)", f"{_num(figures['answer_p50'])} / {_num(figures['answer_p90'])}"),
    ]
    checks = _check(figures, targets)
    header = ["", "shim"] + (["target"] if targets else [])
    table = [header] + [[label, value] + ([checks.get(label, "")] if targets else []) for label, value in rows]
    notes = [f"  failures: {figures['errors']}"] if figures["errors"] else []
    return "\n".join([title, render(table, text_last=bool(targets)), *notes])


def load_table(title: str, figures: Mapping[str, Any]) -> str:
    """The b64 load scenario: every key's figures together, against its targets (all ok, no 429)."""
    rows = [
        ("", "shim", "target"),
        ("requests ok", f"{figures['ok']}/{figures['requests']}", "all: " + _met(figures["ok"] == figures["requests"])),
        ("429s received (all keys)", str(figures["rate_limited"]), "0: " + _met(figures["rate_limited"] == 0)),
        ("upstream requests per ok task", _num(figures["requests_per_ok_task"]), ""),
        ("done -> client answer p50 / p90 (s)", f"{_num(figures['answer_p50'])} / {_num(figures['answer_p90'])}", ""),
        ("wall time (s)", _num(figures["elapsed"], 1), ""),
        (
            "shim CPU (s) / peak RSS (MB)",
            f"{_num(figures.get('cpu_seconds'))} / {_num(figures.get('peak_rss_mb'), 1)}",
            "",
        ),
    ]
    notes = [f"  failures: {figures['errors']}"] if figures["errors"] else []
    return "\n".join([title, render(rows, text_last=True), *notes])


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(rows: Sequence[Sequence[str]], *, text_last: bool = False) -> str:
    """Labels left-aligned, figures right-aligned (a last column of text, left), two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(width) for cell, width in zip(row, widths, strict=True)]
        cells[0] = row[0].ljust(widths[0])
        if text_last:
            cells[-1] = row[-1].ljust(widths[-1])
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def latency_classes(tasks: Mapping[str, Any]) -> dict[str, str]:
    """Emulator task id -> the shim's latency class of it ("reapi/<model>/<quality>/<tier>")."""
    classes = {}
    for task_id, task in tasks.items():
        body = task.body if isinstance(task.body, dict) else {}
        classes[task_id] = latency_class(str(body.get("model")), body.get("quality"), body.get("resolution"))
    return classes


def convergence(
    samples: Sequence[tuple[float, Mapping[str, Mapping[str, Any]]]],
    tasks: Mapping[str, Any],
    *,
    since: float = -math.inf,
    until: float = math.inf,
) -> dict[str, dict[str, Any]]:
    """For each class of the tasks created in [since, until): their true median latency (emulator ready_at
    - created), and how many of them had been seen finished when the learner's median (sampled from
    /healthz) first came within NEAR of it, and when it came within for good (until `until`)."""
    classes = latency_classes(tasks)
    figures: dict[str, dict[str, Any]] = {}
    for name in sorted(set(classes.values())):
        mine = [t for i, t in tasks.items() if classes[i] == name and since <= t.created < until]
        if not mine:
            continue
        truth = quantile([t.ready_at - t.created for t in mine], 0.5)
        seen = sorted(t.first_seen_terminal_at for t in mine if t.first_seen_terminal_at is not None)
        points = []
        for at, learned in samples:
            if since <= at < until and name in learned:
                near = abs(float(learned[name]["p50"]) - truth) <= NEAR * truth
                points.append((bisect.bisect_right(seen, at), near, float(learned[name]["p50"])))
        first = next((n for n, near, _ in points if near), None)
        settled = next((n for i, (n, _, _) in enumerate(points) if all(near for _, near, _ in points[i:])), None)
        figures[name] = {
            "tasks": len(mine),
            "true_median": truth,
            "learned_median": points[-1][2] if points else math.nan,
            "first_within": first,
            "within_for_good": settled,
        }
    return figures


#: A row of the scenario table: (scenario, its figures, [(target text, met?)]).
ScenarioRow = tuple[str, Mapping[str, Any], Sequence[tuple[str, bool]]]


def scenario_table(title: str, rows: Sequence[ScenarioRow]) -> str:
    """One line per scenario: the shim's figures, what it learned, and the targets it missed; below, what
    was learned per class (and per phase of a run whose upstream changed speed)."""
    header = ["scenario", "ok", "req/task (told)", "429s", "answer p50 / p90", "tasks/s (% rate/2)", "learned",
              "median learned / true", "targets"]  # fmt: skip
    table = [header]
    details = []
    for label, s, checks in rows:
        learning: Mapping[str, Mapping[str, Any]] = s.get("learning", {})
        worst = max(learning.items(), key=lambda item: rank(item[1]), default=None)
        missed = [text for text, met in checks if not met]
        table.append([
            label,
            f"{s['ok']}/{s['tasks']}",
            f"{_num(s['requests_per_ok_task'])} ({_told(s.get('told'))})",
            str(s["rate_limited"]),
            f"{_num(s['answer_p50'])} / {_num(s['answer_p90'])}",
            f"{_num(s['throughput'])} ({_num(100 * s['throughput'] / s['limit'], 0)}%)",
            _learned(worst[1]) if worst else "-",
            f"{_num(worst[1]['learned_median'])} / {_num(worst[1]['true_median'])} s" if worst else "-",
            "all met" if not missed else "MISSED " + "; ".join(missed),
        ])  # fmt: skip
        if len(learning) > 1:
            per_class = ", ".join(f"{name.removeprefix('reapi/')} {_learned(v)}" for name, v in learning.items())
            details.append(f"  {label.split(':')[0]}: {per_class}")
        if "lone_seconds" in s:
            details.append(
                f"  {label.split(':')[0]}: key B's 1 s task answered {_num(s['lone_seconds'])} s after it was asked "
                f"({_num(s['lone_delay'])} s after it finished)"
            )
    return "\n".join([title, render(table, text_last=True), *details])


def _told(told: Mapping[str, Any] | None) -> str:
    """The requests a task needs for the delay targets under the shim's poll rule told the truth (`truth`)."""
    return "none meets" if told is None else _num(told["requests_per_task"])


def rank(learned: Mapping[str, Any]) -> float:
    """How many completions a class took to come within 20% first (inf: never)."""
    first = learned["first_within"]
    return math.inf if first is None else float(first)


def _learned(learned: Mapping[str, Any]) -> str:
    first, good = learned["first_within"], learned["within_for_good"]
    return f"{'never' if first is None else first} / {'never' if good is None else good}"
