"""Prometheus metrics of one app: requests, latencies, appends, and sessions by status."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from aisopod_session.models import SessionStatus
from aisopod_session.store import AsyncSessionStore


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "aisopod_http_requests", "HTTP requests handled",
            ["method", "route", "status"], registry=self.registry,
        )
        self._latency = Histogram(
            "aisopod_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._appended = Counter(
            "aisopod_messages_appended", "Messages appended through the API", registry=self.registry
        )
        self._runs_started = Counter(
            "aisopod_runs_started", "Runs started through the API", registry=self.registry)
        self._run_takeovers = Counter(
            "aisopod_run_takeovers", "Runs started by taking over an expired lease",
            registry=self.registry)
        self._run_busy = Counter(
            "aisopod_run_busy_refusals", "Run starts refused: the session was busy",
            registry=self.registry)
        self._run_wait = Histogram(
            "aisopod_run_start_wait_seconds", "Time a run start waited for the session",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self._sessions = Gauge(
            "aisopod_sessions", "Sessions by status", ["status"], registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def appended(self, count: int) -> None:
        self._appended.inc(count)

    def run_started(self, seconds_waited: float, *, took_over: bool) -> None:
        self._runs_started.inc()
        self._run_wait.observe(seconds_waited)
        if took_over:
            self._run_takeovers.inc()

    def run_busy(self, seconds_waited: float) -> None:
        self._run_busy.inc()
        self._run_wait.observe(seconds_waited)

    async def refresh_sessions(self, store: AsyncSessionStore) -> None:
        counts = await store.count_sessions_by_status()
        for status in SessionStatus:
            self._sessions.labels(status.value).set(counts.get(status, 0))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
