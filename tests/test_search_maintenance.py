"""The search index of messages stored before search was turned on is built by maintenance: the
service's loop (a bounded piece a round, progress in the log and ``/metrics``) and the CLI's
``maintenance`` command (until done), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SessionKey, SessionStore, StoredMessage
from aisopod_session.service import maintenance
from aisopod_session.service.app import create_app
from aisopod_session.service.metrics import Metrics
from tests.service.conftest import service_config, serving
from tests.test_cli import db_args, ok

KEY = SessionKey("bot", "discord", "acct", "dm", "alice")
OLDER = 50


def older_messages(url: str, options: dict[str, Any]) -> None:
    """``OLDER`` messages stored with search off, then search turned on: all of them pending."""
    with SessionStore.open(url, **options, search=False) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(KEY)
        agent.append_messages(KEY, [StoredMessage.user(f"older zanzibar note {i}")
                                    for i in range(OLDER)])
    with SessionStore.open(url, **options, search=True) as store:
        status = store.search_index_status()
        assert status.enabled and status.pending == OLDER
        assert store.for_agent("bot").search("zanzibar").hits == []  # not indexed yet


def assert_all_found(url: str, options: dict[str, Any]) -> None:
    with SessionStore.open(url, **options) as store:
        assert store.search_index_status().pending == 0
        page = store.for_agent("bot").search("zanzibar", limit=100)
        assert sorted(hit.seq for hit in page.hits) == list(range(1, OLDER + 1))
        assert page.complete


def metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith(name + " "))


@pytest.mark.anyio
async def test_one_round_indexes_a_bounded_piece(
        backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url, options = backend_url
    older_messages(url, options)
    monkeypatch.setattr(maintenance, "SEARCH_BATCH_SIZE", 10)
    monkeypatch.setattr(maintenance, "SEARCH_BATCHES_PER_ROUND", 2)
    caplog.set_level(logging.INFO, logger="aisopod_session.service")
    metrics = Metrics()
    store = await AsyncSessionStore.open(url, **options)
    try:
        assert await maintenance.index_step(store, metrics) is True
        assert (await store.search_index_status()).pending == OLDER - 20
        text = metrics.render()[0].decode()
        assert metric(text, "aisopod_search_index_pending") == OLDER - 20
        assert metric(text, "aisopod_search_index_built_messages_total") == 20
        assert "indexed 20 older messages for search, 30 still pending" in caplog.text
        while await maintenance.index_step(store, metrics):
            pass
        assert (await store.search_index_status()).pending == 0
        assert metric(metrics.render()[0].decode(), "aisopod_search_index_pending") == 0
        assert "the search index is complete" in caplog.text
        assert await maintenance.index_step(store, metrics) is False  # nothing left: no work
    finally:
        await store.close()
    assert_all_found(url, options)


@pytest.mark.anyio
async def test_the_services_maintenance_builds_the_index(
        backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Started on a database with older messages pending, the service indexes them soon after
    start-up (not an interval later: sweeping every hour here), and /metrics shows it."""
    url, options = backend_url
    older_messages(url, options)
    monkeypatch.setattr(maintenance, "SEARCH_BACKLOG_PAUSE", 0.01)
    caplog.set_level(logging.INFO, logger="aisopod_session.service")
    config = service_config(url, options)
    config = config.model_copy(update={"maintenance": config.maintenance.model_copy(
        update={"interval_seconds": 3600})})
    async with serving(create_app(config)) as api:
        deadline = time.monotonic() + 20
        while True:
            text = (await api.get("/metrics")).text
            if metric(text, "aisopod_search_index_built_messages_total") == OLDER:
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.05)
        assert metric(text, "aisopod_search_index_pending") == 0
    assert f"indexed {OLDER} older messages for search; the search index is complete" \
        in caplog.text
    assert_all_found(url, options)


def test_the_cli_maintenance_command_builds_the_index(
        backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url
    older_messages(url, options)
    out = ok([*db_args(url, options), "maintenance", "--batch-size", "7"]).stdout
    assert out.splitlines() == [
        "made 0 sessions idle, archived 0",
        "purged 0 archived sessions, 0 messages and 0 change-feed records",
        f"indexed {OLDER} older messages for search; the search index is complete"]
    assert_all_found(url, options)
    again = json.loads(ok([*db_args(url, options), "maintenance", "--json"]).stdout)
    assert again["search_index"] == {"indexed": 0, "enabled": True, "pending": 0}
    assert again["sweep"]["idled"] == 0 and again["purge"]["messages"] == 0
