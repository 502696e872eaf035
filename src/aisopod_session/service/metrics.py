"""Prometheus metrics of one app: requests, latencies, appends, sessions by status, and the
search index's build by maintenance."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from aisopod_session.models import SessionStatus
from aisopod_session.results import WebhookDelivery
from aisopod_session.store import AsyncSessionStore

MAX_WAITERS_TRACKED = 10_000
"""Refused run starts remembered for the wait histogram (the oldest are forgotten)."""


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
        # who was refused a busy session, and since when: a start that follows ends a wait
        self._refused: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self._run_wait = Histogram(
            "aisopod_run_start_wait_seconds",
            "Time from a run start's first refusal (session busy) to the start, per key and "
            "owner (0 when it was not refused)",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self._sessions = Gauge(
            "aisopod_sessions", "Sessions by status", ["status"], registry=self.registry
        )
        self._webhook_outcomes = Counter(
            "aisopod_webhook_outcomes",
            "Webhook delivery outcomes logged by this replica: delivered, failed (out of tries), "
            "retrying (a failed try) or interrupted", ["webhook", "status"],
            registry=self.registry)
        self._webhook_duplicates = Counter(
            "aisopod_webhook_duplicates",
            "Deliveries this replica made after losing the webhook's lease (sent again by the "
            "next holder)", ["webhook"], registry=self.registry)

        self._auth_throttled = Counter(
            "aisopod_auth_throttled",
            "Authentication attempts answered 429 after too many failures (api: bearer tokens, "
            "console: sign-ins)", ["surface"], registry=self.registry)

        self._search_pending = Gauge(
            "aisopod_search_index_pending",
            "Messages stored before search was turned on that the search index does not hold "
            "yet (maintenance indexes them a few batches a round)", registry=self.registry)
        self._search_indexed = Counter(
            "aisopod_search_index_built_messages",
            "Older messages the maintenance loop indexed for search", registry=self.registry)

    def search_pending(self, pending: int) -> None:
        self._search_pending.set(pending)

    def search_indexed(self, count: int) -> None:
        self._search_indexed.inc(count)

    def auth_throttled(self, surface: str) -> None:
        self._auth_throttled.labels(surface).inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def appended(self, count: int) -> None:
        self._appended.inc(count)

    def run_started(self, key: str, owner: str, *, took_over: bool) -> None:
        """A run started; its wait is the time since this owner was first refused this key."""
        self._runs_started.inc()
        with self._lock:
            refused = self._refused.pop((key, owner), None)
        self._run_wait.observe(0.0 if refused is None else time.monotonic() - refused)
        if took_over:
            self._run_takeovers.inc()

    def run_busy(self, key: str, owner: str) -> None:
        self._run_busy.inc()
        with self._lock:
            self._refused.setdefault((key, owner), time.monotonic())
            while len(self._refused) > MAX_WAITERS_TRACKED:  # the oldest gave up, probably
                self._refused.popitem(last=False)

    def webhook_outcome(self, delivery: WebhookDelivery) -> None:
        self._webhook_outcomes.labels(delivery.webhook, delivery.status.value).inc()
        if delivery.lease_lost and delivery.status.value == "delivered":
            self._webhook_duplicates.labels(delivery.webhook).inc()

    async def refresh_sessions(self, store: AsyncSessionStore) -> None:
        counts = await store.count_sessions_by_status()
        for status in SessionStatus:
            self._sessions.labels(status.value).set(counts.get(status, 0))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
