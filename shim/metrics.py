"""The Prometheus exporter: the core's events counted (prometheus-client) in a registry of this app's own, the
pacers' budget use read at each scrape, and `GET /metrics` (text format, or OpenMetrics when asked for).

No label carries a key, a credential hash, a job or task id or a prompt: a route is its template, a model the
upstream's catalog id, a status an HTTP code or a word. Every series of a provider starts at zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from .pacing.pacers import Pacers

OUTCOMES = ("delivered", "partial", "failed", "expired_uncollected", "cancelled")
ATTACH_REASONS = ("sdk_retry", "idempotency_key", "handoff", "resumed")
REFUSALS = ("rate_limited", "too_many_tasks")
#: Held requests last minutes; answers to requests that waited, milliseconds; upstream tasks, up to an hour.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TASK_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600)

Handler = Callable[[Mapping[str, object]], None]


class Metrics:
    """The exporter of one app: subscribe it (`events.subscribe(metrics)`), `watch` the pacers, serve
    `endpoint`."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("shim_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.request_seconds = Histogram(
            "shim_request_duration_seconds", "HTTP request duration, held time included", ["route"],
            buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream = Counter(
            "shim_upstream_requests", "Upstream HTTP calls (kind: submit, poll, download)",
            ["provider", "kind", "status"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "shim_upstream_rate_limited", "Upstream refusals of a key's call (429: its rate limit, or its cap "
            "on tasks in flight)", ["provider", "reason"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("shim_jobs_in_flight", "Jobs running", ["provider"], registry=r)
        self.outcomes = Counter("shim_job_outcomes", "How jobs ended", ["provider", "outcome"], registry=r)
        self.attached = Counter(
            "shim_job_attached", "Requests that collected an existing job instead of paying", ["reason"], registry=r
        )
        self.answer_delay = Histogram(
            "shim_answer_delay_seconds", "From a job's result and its client both being there to the answer sent",
            buckets=DELAY_BUCKETS, registry=r,
        )  # fmt: skip
        self.task_latency = Histogram(
            "shim_task_latency_seconds", "Upstream task duration, submit answered to seen completed",
            ["provider", "model"], buckets=TASK_BUCKETS, registry=r,
        )  # fmt: skip
        self._pacers: Mapping[str, Pacers] = {}
        r.register(BudgetCollector(lambda: self._pacers))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        for reason in ATTACH_REASONS:
            self.attached.labels(reason)
        self._handlers: dict[str, Handler] = {
            "request_finished": self._request,
            "upstream_request": lambda d: self.upstream.labels(d["provider"], d["kind"], d["status"]).inc(),
            "upstream_rate_limited": lambda d: self.rate_limited.labels(d["provider"], d["reason"]).inc(),
            "job_started": lambda d: self.in_flight.labels(d["provider"]).inc(),
            "job_resumed": lambda d: self.in_flight.labels(d["provider"]).inc(),
            "job_attached": lambda d: self.attached.labels(d["reason"]).inc(),
            "job_finished": self._finished,
            "job_delivered": self._delivered,
            "job_expired": lambda d: self.outcomes.labels(d["provider"], "expired_uncollected").inc(),
            "task_finished": self._task,
        }

    def watch(self, pacers: Mapping[str, Pacers]) -> None:
        """Read these pacers at each scrape; every series of their providers starts at zero."""
        self._pacers = pacers
        for provider in pacers:
            self.in_flight.labels(provider)
            for outcome in OUTCOMES:
                self.outcomes.labels(provider, outcome)
            for reason in REFUSALS:
                self.rate_limited.labels(provider, reason)

    def __call__(self, name: str, data: Mapping[str, object]) -> None:
        """The event listener."""
        handler = self._handlers.get(name)
        if handler is not None:
            handler(data)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics."""
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), headers={"content-type": content_type})

    def _request(self, data: Mapping[str, object]) -> None:
        self.requests.labels(data["route"], data["status"]).inc()
        self.request_seconds.labels(data["route"]).observe(_number(data["seconds"]))

    def _finished(self, data: Mapping[str, object]) -> None:
        self.in_flight.labels(data["provider"]).dec()
        if data["outcome"] in ("failed", "cancelled"):  # an ok job's outcome is told by its delivery or expiry
            self.outcomes.labels(data["provider"], data["outcome"]).inc()

    def _delivered(self, data: Mapping[str, object]) -> None:
        self.outcomes.labels(data["provider"], data["outcome"]).inc()
        self.answer_delay.observe(_number(data["delay"]))

    def _task(self, data: Mapping[str, object]) -> None:
        if data["status"] == "completed":
            self.task_latency.labels(data["provider"], data["model"]).observe(_number(data["seconds"]))


class BudgetCollector:
    """`shim_budget_utilization{provider}`: the share of the rate limit used over the last window, averaged
    over the keys at work (something queued or watched, or a send in the window); `shim_budget_keys`: how
    many keys that is. Read from the pacers at scrape time."""

    def __init__(self, pacers: Callable[[], Mapping[str, Pacers]]) -> None:
        self._pacers = pacers

    def collect(self) -> Iterable[Metric]:
        used = GaugeMetricFamily(
            "shim_budget_utilization",
            "Share of the upstream rate limit used, mean over keys at work",
            labels=["provider"],
        )
        keys = GaugeMetricFamily(
            "shim_budget_keys", "Keys at work (calls queued, tasks watched, recent sends)", labels=["provider"]
        )
        for provider, pacers in self._pacers().items():
            busy = [
                _number(s["budget_used"])
                for s in pacers.stats().values()
                if s["budget_used"] or s["queued_calls"] or s["watched_tasks"]
            ]
            used.add_metric([provider], sum(busy) / len(busy) if busy else 0.0)
            keys.add_metric([provider], len(busy))
        return [used, keys]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
