"""aisopod-session through its public API (SessionStore / AsyncSessionStore).

Setup functions build the databases the workloads read (bulk loads go straight to SQL, which the
workloads never do); the workload functions only use the public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from typing import Any

from aisopod_session import (
    AsyncSessionStore,
    HistoryQuery,
    SessionFilter,
    SessionKey,
    SessionStore,
    StoredMessage,
)
from benchmarks import common

LIST_AGENTS = 10
"""W5: the sessions belong to this many agents."""
LIST_STATUSES = ("active", "active", "idle", "compacted", "archived")
"""W5: statuses, round-robin (the filter asks for one agent's idle sessions)."""


def key(i: int) -> SessionKey:
    return SessionKey(common.AGENT, common.CHANNEL, common.ACCOUNT, "dm", f"user{i}")


def message(i: int) -> StoredMessage:
    if i % 2 == 0:
        return StoredMessage.user(common.text(i))
    return StoredMessage.assistant(common.text(i))


def _settings(store: SessionStore | AsyncSessionStore) -> dict[str, Any]:
    found: dict[str, Any] = {"backend": store.backend, "durability": store.durability}
    if store.backend == "sqlite":  # what the store sets for each durability (see the README)
        found.update(journal_mode="WAL",
                     synchronous="FULL" if store.durability == "full" else "NORMAL")
    else:
        found["synchronous_commit"] = "on" if store.durability == "full" else "off"
    return found


def _url(path: str) -> str:
    return path if path.startswith("postgresql://") else f"sqlite:///{path}"


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"aisopod-session": version("aisopod-session"), "pydantic": version("pydantic"),
             "sqlite": sqlite3.sqlite_version}
    with contextlib.suppress(Exception):
        found["psycopg"] = version("psycopg")
    return found


# --- setup -----------------------------------------------------------------------------------


def prepare_sessions(path: str, sessions: int, schema: str | None = None) -> dict[str, Any]:
    """A fresh database holding ``sessions`` empty sessions (user0, user1, ...)."""
    with SessionStore.open(_url(path), durability="normal", schema=schema) as store:
        agent = store.for_agent(common.AGENT)
        for i in range(sessions):
            agent.get_or_create(key(i))
    return {}


def _bulk(conn: sqlite3.Connection, table: str, sql: str, rows: Any) -> None:
    """Insert ``rows`` with the table's indexes dropped and then rebuilt exactly as they were
    (a sorted build is much faster than a million random index inserts)."""
    indexes = [row[0] for row in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL", (table,))]
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL", (table,))]
    conn.execute("BEGIN")
    for name in names:
        conn.execute(f'DROP INDEX "{name}"')
    conn.executemany(sql, rows)
    for ddl in indexes:
        conn.execute(ddl)
    conn.execute("COMMIT")


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    """One session (user0) with ``messages`` messages, bulk-loaded with SQL."""
    prepare_sessions(path, 1)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -200000")
        session_id = conn.execute("SELECT id FROM sessions").fetchone()[0]
        base = int(time.time() * 1_000_000) - messages * 1000
        _bulk(conn, "messages",
              "INSERT INTO messages (session_id, seq, role, content, created_at) "
              "VALUES (?, ?, ?, ?, ?)",
              ((session_id, i + 1, common.role_of(i), json.dumps(common.text(i)),
                base + i * 1000) for i in range(messages)))
        conn.execute(
            "UPDATE sessions SET message_count = ?, last_seq = ?, updated_at = ? WHERE id = ?",
            (messages, messages, base + messages * 1000, session_id),
        )
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return {}


def prepare_many_sessions(path: str, sessions: int, mixed: bool) -> dict[str, Any]:
    """``sessions`` sessions bulk-loaded with SQL, session i with peer id ``user{i}``.

    ``mixed`` (W5): they belong to LIST_AGENTS agents (``agent{i % LIST_AGENTS}``) in mixed
    statuses; otherwise (W4) all are live sessions of ``bench``. ``updated_at`` is a scramble of
    i, so that list order is not insertion order.
    """
    prepare_sessions(path, 0)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -400000")
        base = int(time.time() * 1_000_000) - sessions * 1000

        def row(i: int) -> tuple[Any, ...]:
            agent, status = common.AGENT, "active"
            if mixed:
                agent, status = f"agent{i % LIST_AGENTS}", list_status(i)
            return (agent, common.CHANNEL, common.ACCOUNT, f"user{i}", status,
                    base + i * 1000, base + (i * 7_919) % sessions * 1000,
                    base if status == "archived" else None)

        _bulk(conn, "sessions",
              "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
              "created_at, updated_at, message_count, metadata, archived_at) "
              "VALUES (?, ?, ?, 'dm', ?, ?, ?, ?, 0, '{}', ?)",
              (row(i) for i in range(sessions)))
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return {}


def list_status(i: int) -> str:
    return LIST_STATUSES[(i // LIST_AGENTS) % len(LIST_STATUSES)]


def lookup_index(i: int, sessions: int) -> int:
    """W4: the session the i-th lookup asks for (spread over the whole table)."""
    return (i * 7_919) % sessions


def prepare_pg_schemas(url: str, schemas: dict[str, int]) -> dict[str, Any]:
    """Each schema made fresh, holding its number of empty sessions."""
    drop_pg_schemas(url, list(schemas))
    for schema, sessions in schemas.items():
        prepare_sessions(url, sessions, schema=schema)
    return {}


def drop_pg_schemas(url: str, schemas: list[str]) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
    return {}


# --- workloads -------------------------------------------------------------------------------


def w1(path: str, durability: str, appends: int, budget: float,
       schema: str | None = None) -> dict[str, Any]:
    """One session, one message per append_messages call."""
    with SessionStore.open(_url(path), durability=durability, schema=schema) as store:  # type: ignore[arg-type]
        agent = store.for_agent(common.AGENT)
        k = key(0)
        result = common.timed_loop(appends, budget,
                                   lambda i: agent.append_messages(k, [message(i)]))
        assert agent.get(k).message_count == result["ops"]
        result["settings"] = _settings(store)
    return result


def w2(path: str, durability: str, sessions: int, per_session: int,
       budget: float) -> dict[str, Any]:
    """``sessions`` sessions, appends round-robin, one message per call."""
    with SessionStore.open(_url(path), durability=durability) as store:  # type: ignore[arg-type]
        agent = store.for_agent(common.AGENT)
        keys = [key(i) for i in range(sessions)]
        result = common.timed_loop(
            sessions * per_session, budget,
            lambda i: agent.append_messages(keys[i % sessions], [message(i)]))
        result["settings"] = _settings(store)
    return result


def _newest_20(path: str, reads: int, budget: float, read: str) -> dict[str, Any]:
    """``reads`` calls of the agent handle's ``read`` method (``get_history`` or
    ``get_contents``) for the newest 20 messages of a long session."""
    with SessionStore.open(_url(path)) as store:
        agent = store.for_agent(common.AGENT)
        k = key(0)
        query = HistoryQuery(limit=20, tail=True)
        method = getattr(agent, read)
        assert len(method(k, query)) == 20
        result = common.latency_loop(reads, budget, lambda i: method(k, query))
        result["messages"] = agent.get(k).message_count
    return result


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    """The newest 20 messages of a long session (prompt building), ``reads`` times."""
    return _newest_20(path, reads, budget, "get_history")


def w3_lean(path: str, reads: int, budget: float) -> dict[str, Any]:
    """W3 on the lean path: the ``content`` of the newest 20 messages (``get_contents``, what
    the integrations build prompts from; no ``StoredMessage`` per row), ``reads`` times."""
    return _newest_20(path, reads, budget, "get_contents")


def w4(path: str, lookups: int, sessions: int, budget: float) -> dict[str, Any]:
    """``get`` of one session among ``sessions``."""
    with SessionStore.open(_url(path)) as store:
        agent = store.for_agent(common.AGENT)
        keys = [key(lookup_index(i, sessions)) for i in range(lookups)]
        return common.latency_loop(lookups, budget, lambda i: agent.get(keys[i]))


def w5(path: str, repeats: int, budget: float) -> dict[str, Any]:
    """First page (50) of one agent's idle sessions, among all the sessions in the file."""
    with SessionStore.open(_url(path)) as store:
        agent = store.for_agent("agent3")
        filt = SessionFilter(status="idle", limit=50)
        started = time.perf_counter()
        first = agent.list(filt)
        cold_ms = (time.perf_counter() - started) * 1000
        assert len(first) == 50 and first.next_cursor is not None
        result = common.latency_loop(repeats, budget, lambda i: agent.list(filt))
        result["first_call_ms"] = cold_ms
        result["sessions"] = sum(store.count_sessions_by_status().values())
    return result


def w6(path: str, durability: str, writers: int, per_writer: int, budget: float,
       schema: str | None = None) -> dict[str, Any]:
    """``writers`` asyncio tasks on one AsyncSessionStore, each on its own session."""

    async def main() -> dict[str, Any]:
        store = await AsyncSessionStore.open(_url(path), durability=durability,  # type: ignore[arg-type]
                                             schema=schema)
        async with store:
            agent = store.for_agent(common.AGENT)
            keys = [key(i) for i in range(writers)]
            result = await common.concurrent_writers(
                writers, per_writer, budget,
                lambda w, i: agent.append_messages(keys[w], [message(i)]))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())
