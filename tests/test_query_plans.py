"""Every statement the SQLite store runs is served by an index (EXPLAIN QUERY PLAN).

The test records every statement the store sends while a workload touches every operation,
then asks SQLite how it would run each one. A plan line that scans ``sessions`` or ``messages``
without an index fails the test, naming the statement.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aisopod_session import (
    HistoryQuery,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStore,
    SlidingWindow,
    StoredMessage,
    Summarize,
    TruncateToolResults,
)
from tests.conftest import TracedOpen

FULL_SCAN = re.compile(r"\bSCAN (sessions|messages)\b(?! USING)")
SORTED_IN_MEMORY = "USE TEMP B-TREE FOR ORDER BY"


@pytest.fixture
def traced(traced_sqlite: TracedOpen) -> tuple[SessionStore, list[str]]:
    return traced_sqlite("plans.db")


def _workload(store: SessionStore) -> None:
    agent = store.for_agent("bot")
    keys = [SessionKey("bot", "discord", "acct", "dm", f"user{i}") for i in range(30)]
    for key in keys:
        agent.get_or_create(key)
        agent.append_messages(key, [StoredMessage.user("hi", external_id="e1"),
                                    StoredMessage.assistant("hello", token_count=4),
                                    StoredMessage.tool("x" * 500)])
    key = keys[0]
    agent.append_messages(key, [StoredMessage.user("again", external_id="e1")])
    agent.get(key)
    now = datetime.now(UTC)
    agent.list()
    listing = {"status": "active", "channel": "discord", "updated_after": now - timedelta(days=1)}
    page = agent.list(SessionFilter(limit=5, **listing))
    assert page.next_cursor is not None
    # A cursor is bound to its listing: the next page repeats the same filters.
    agent.list(SessionFilter(limit=5, cursor=page.next_cursor, **listing))
    agent.list(SessionFilter(peer_id="user3", peer_kind="dm", account_id="acct",
                             created_before=now + timedelta(days=1)))
    agent.patch(key, SessionPatch(metadata={"a": 1}, add_tokens=3, status="idle"))
    for query in (None, HistoryQuery(limit=2, tail=True), HistoryQuery(limit=2, offset=1),
                  HistoryQuery(after=now - timedelta(days=1), before=now + timedelta(days=1)),
                  HistoryQuery(include_compacted=True), HistoryQuery(offset=1, tail=True)):
        agent.get_history(key, query)
    agent.compact(key, TruncateToolResults(max_chars=100))
    agent.compact(key, SlidingWindow(max_messages=2))
    agent.compact(keys[1], Summarize(summary="s", keep_recent=1))
    agent.get_compaction_record(key)
    agent.reset(key)
    session = store.list_all_sessions(SessionFilter(status="archived"))[0]
    store.get_session_by_id(session.id)
    store.get_history_by_id(session.id, HistoryQuery(include_compacted=True))
    store.list_all_sessions(SessionFilter(limit=3))
    # The console: live counts, the usage chart, one session's export, a person's sessions.
    store.count_sessions_by_status("bot")
    store.usage_by_day(7)
    store.usage_by_day(7, agent_id="bot")
    list(store.export_jsonl(session_id=session.id))
    store.list_all_sessions(SessionFilter(channel="discord", peer_id="user3"))
    store.purge_compacted()
    store.purge_compacted(now + timedelta(days=1))
    agent.delete(keys[2])


def test_every_statement_uses_an_index(traced: tuple[SessionStore, list[str]],
                                       tmp_path: Path) -> None:
    store, statements = traced
    _workload(store)
    store.close()
    queries = sorted({s for s in statements if s.lstrip().upper().startswith(
        ("SELECT", "UPDATE", "DELETE", "INSERT")) and "aisopod_schema" not in s
        and "sqlite_master" not in s})
    assert len(queries) > 20, "the workload did not exercise the store"
    conn = sqlite3.connect(tmp_path / "plans.db")
    scans, sorts = {}, {}
    for query in queries:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
        if FULL_SCAN.search(plan):
            scans[query] = plan
        # A page of a list must come off an index in order, not from sorting every match:
        # the only sorts allowed are of a status's subquery (its rows are at most the page).
        lines = plan.split(" | ")
        if "ORDER BY updated_at" in query and any(
            line == SORTED_IN_MEMORY and not lines[number - 1].startswith("SCAN status")
            for number, line in enumerate(lines)
        ):
            sorts[query] = plan
    conn.close()
    assert not scans, "statements scanning a whole table:\n" + "\n".join(
        f"{q}\n    -> {p}" for q, p in scans.items())
    assert not sorts, "list statements sorting their matches:\n" + "\n".join(
        f"{q}\n    -> {p}" for q, p in sorts.items())
    assert sum("ORDER BY updated_at" in query for query in queries) >= 5
