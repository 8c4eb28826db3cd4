"""The registry's index by id reports the jobs it drops on its own (expired, or evicted when full), never
those taken out on purpose (the registry turns a dropped, paid, uncollected one into `job_expired`: see
tests/test_metrics.py)."""

from __future__ import annotations

from shim.jobs.job import Job
from shim.jobs.kept import KeptJobs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(name: str) -> Job:
    return Job(id=name, credential="c", fingerprint="f", spec=None, created=0.0)  # type: ignore[arg-type]


def test_expired_and_evicted_jobs_are_reported_and_popped_ones_not() -> None:
    """Expiry (on a sweep or an insertion) and eviction of the least recently used report the job; pop does not."""
    clock, dropped = Clock(), []
    kept = KeptJobs(maxsize=2, ttu=lambda _k, _v, now: now + 10, timer=clock, on_drop=lambda j: dropped.append(j.id))
    kept["a"], kept["b"] = job("a"), job("b")
    kept.pop("a")
    kept["c"] = job("c")
    kept["d"] = job("d")  # full: the least recently used ("b") is evicted
    assert dropped == ["b"]
    clock.now = 11
    kept.expire()
    assert sorted(dropped) == ["b", "c", "d"] and len(kept) == 0
