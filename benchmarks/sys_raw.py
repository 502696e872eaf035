"""The raw-driver baseline: sqlite3 and psycopg with only the statements a job needs.

It runs on databases with aisopod-session's schema (built by ``sys_aisopod``'s setup in another
process), so it maintains the same indexes and reads the same rows; it never imports the store.

Variants for appends:

* ``insert`` (SQLite): one INSERT and a commit per message, the least any durable append does.
* ``same``: the statements the store runs for one append, with the same parameters, so that the
  gap to the store is the store's own Python work. SQLite (traced with
  ``sqlite3.Connection.set_trace_callback`` on a store opened with its defaults, search on):
  ``BEGIN IMMEDIATE``, the counter ``UPDATE … RETURNING``, the ``INSERT … RETURNING id``, the
  message's token count (``UPDATE messages SET search_tokens``), the search index's staged
  entry (``INSERT INTO message_fts_staged``, the count of staged entries,
  and every ``STAGED_LIMIT``-th append the move of them all into ``message_fts``), the change
  feed's ``INSERT INTO changes`` (its position derived from the newest entry), ``COMMIT``.

PostgreSQL (``pg_w1``, one connection): per append the store's own statements with the same
parameters (search on, the default), sent as the store sends them, in one ``conn.pipeline()``
block: ``BEGIN``; on a second cursor the append's one statement (``WITH s AS (UPDATE sessions
… RETURNING …), m AS (INSERT INTO messages … RETURNING id, seq) SELECT …``), whose rows are
fetched (the one wait inside the block: a round trip); then, not waited for, the search index's
``INSERT INTO message_search`` (the tsvector and the token text from one parameter) and the
change feed's ``WITH p AS (UPDATE change_positions … RETURNING last) INSERT INTO changes …``;
``COMMIT``; the block's end syncs and waits for every answer (the second round trip).
``tests/test_benchmarks_smoke.py`` traces both through psycopg and compares the lists.

``pg_w6``: the same transaction per append, from ``writers`` asyncio tasks sharing a pool of the
store's default size (4). It is *not* a group commit: the store's W6 puts many writers' appends
in one transaction (one commit, their statements pipelined together), so aisopod ÷ this row
measures what group commit gains over plain per-append transactions, net of the store's work;
the ceiling for a hand-rolled group commit is not measured here.

Reads: W3 the newest 20 rows as the model path reads them (every column, not decoded); W3 lean
the newest 20 ``content`` texts, decoded with one ``json.loads`` as the store does (what the
store's ``get_contents`` returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from typing import Any

from benchmarks import common

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}

KEY_WHERE = "agent_id = ? AND channel = ? AND account_id = ? AND peer_kind = ? AND peer_id = ?"
LIVE = KEY_WHERE + " AND status <> 'archived'"
UPDATE_COUNTERS = (
    "UPDATE sessions SET message_count = message_count + ?, token_usage = token_usage + ?, "
    "last_seq = last_seq + ?, "
    "updated_at = CASE WHEN updated_at < ? THEN ? ELSE updated_at + 1 END, status = 'active' "
    f"WHERE {LIVE} RETURNING id, last_seq, token_usage"
)
INSERT_ONE = (
    "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, token_count, "
    "external_id, compacted, compacted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
"""SQLite: the store's INSERT of one appended message."""
COUNT_ONE = "UPDATE messages SET search_tokens = ? WHERE id = ?"
"""SQLite: the store's record of that message's token count (a ranked search reads it)."""
STAGE_ONE = "INSERT INTO message_fts_staged (id, body) VALUES (?, ?)"
"""SQLite: the store's search index entry of that message (search on, the default), staged."""
STAGED_COUNT = "SELECT count(*) FROM message_fts_staged"
STAGED_LIMIT = 32
"""The store's ``_search_index.STAGED_LIMIT`` (this module never imports the store)."""
STAGED_MOVE = ("INSERT INTO message_fts (rowid, body) SELECT id, body FROM message_fts_staged",
               "DELETE FROM message_fts_staged")
"""SQLite: what the append that fills the staged table also runs."""
FEED_ONE = (
    "INSERT INTO changes (position, at, kind, agent_id, session_id, data) VALUES "
    "((SELECT max(coalesce((SELECT max(position) FROM changes), 0), pruned_through) "
    "FROM change_positions WHERE id = 1) + 1, ?, ?, ?, ?, ?)"
)
"""SQLite: the store's change feed entry of that append (``messages.appended``)."""
WORD = re.compile(r"\w+")
APPEND_IN_ONE = (
    "WITH s AS (" + UPDATE_COUNTERS + "), m AS ("
    "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, token_count) "
    "SELECT s.id, s.last_seq - CAST(? AS BIGINT) + v.o, v.r, v.c, v.t, v.a, v.n "
    "FROM s, (VALUES (CAST(? AS BIGINT), ?, ?, CAST(? AS TEXT), CAST(? AS BIGINT), "
    "CAST(? AS BIGINT))) AS v (o, r, c, t, a, n) ORDER BY v.o RETURNING id, seq) "
    "SELECT s.id, s.last_seq, s.token_usage, m.id FROM s, m ORDER BY m.seq"
)
"""PostgreSQL: the store's append of one message, the counters' update feeding the insert."""
INDEX_IN_ONE = (
    "INSERT INTO message_search (message_id, terms, body) "
    "SELECT v.id, array_to_tsvector(string_to_array(v.body, ' ')), v.body "
    "FROM (VALUES (CAST(? AS BIGINT), CAST(? AS text))) AS v (id, body) "
    "JOIN messages m ON m.id = v.id"
)
"""PostgreSQL: the store's search index entry of that message (its tokens, space-separated)."""
FEED_IN_ONE = (
    "WITH p AS (UPDATE change_positions SET last = last + ? WHERE id = 1 RETURNING last) "
    "INSERT INTO changes (position, at, kind, agent_id, session_id, data) "
    "SELECT p.last - CAST(? AS BIGINT) + v.o, CAST(? AS BIGINT), v.k, v.a, v.s, v.d "
    "FROM p, (VALUES (CAST(? AS BIGINT), ?, ?, CAST(? AS BIGINT), ?)) AS v(o, k, a, s, d)"
)
"""PostgreSQL: the store's change feed entry of that append, its position taken in the same
statement."""
INSERT_PLAIN = (
    "INSERT INTO messages (session_id, seq, role, content, created_at) VALUES (?, ?, ?, ?, ?)"
)
SESSION_COLUMNS = (
    "id, agent_id, channel, account_id, peer_kind, peer_id, status, created_at, updated_at, "
    "message_count, token_usage, metadata, compaction_count, last_compacted_at, "
    "last_compaction_summary"
)
TAIL = (
    "SELECT id, role, content, tool_calls, created_at, token_count, external_id, compacted "
    "FROM messages WHERE session_id = (SELECT id FROM sessions WHERE " + LIVE + ") "
    "AND compacted = 0 ORDER BY seq DESC LIMIT 20"
)
TAIL_CONTENTS = (
    "SELECT content FROM messages WHERE session_id = (SELECT id FROM sessions WHERE " + LIVE
    + ") AND compacted = 0 ORDER BY seq DESC LIMIT 20"
)
LIST = (
    "SELECT id, agent_id, channel, account_id, peer_kind, peer_id, status, created_at, "
    "updated_at, message_count, token_usage FROM sessions WHERE agent_id = ? AND status = ? "
    "ORDER BY updated_at DESC, id DESC LIMIT 51"
)


APPENDED = "messages.appended"
"""The change feed's kind of an append's entry."""


def index_body(text: str) -> str:
    """What the store's search index holds for a message of plain text: its words,
    lower-cased, joined by spaces."""
    return " ".join(WORD.findall(text.lower()))


def appended_data(message_id: int, seq: int) -> str:
    """The change feed entry's data of one message appended at position ``seq`` (the store's
    JSON text, byte for byte)."""
    return (f'{{"count":1,"message_ids":[{message_id}],'
            f'"first_seq":{seq},"last_seq":{seq}}}')


def key_params(i: int, agent: str = common.AGENT) -> tuple[str, ...]:
    return (agent, common.CHANNEL, common.ACCOUNT, "dm", f"user{i}")


def now_us() -> int:
    return time.time_ns() // 1000


def versions() -> dict[str, str]:
    found = {"sqlite": sqlite3.sqlite_version}
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        found["psycopg"] = version("psycopg")
    return found


def _connect(path: str, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    assert str(mode).lower() == "wal"
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS[durability]}")
    return conn


def _settings(durability: str, variant: str) -> dict[str, Any]:
    return {"backend": "sqlite", "journal_mode": "WAL",
            "synchronous": SYNCHRONOUS[durability], "variant": variant}


def _appender(conn: sqlite3.Connection, variant: str, sessions: int) -> Any:
    ids = [conn.execute(f"SELECT id FROM sessions WHERE {LIVE}", key_params(i)).fetchone()[0]
           for i in range(sessions)]
    seqs = [0] * sessions

    def insert(i: int) -> None:
        s = i % sessions
        seqs[s] += 1
        conn.execute("BEGIN")
        conn.execute(INSERT_PLAIN, (ids[s], seqs[s], common.role_of(i),
                                    json.dumps(common.text(i)), now_us()))
        conn.execute("COMMIT")

    def same(i: int) -> None:
        s = i % sessions
        text = common.text(i)
        cursor = conn.cursor()
        now = now_us()
        cursor.execute("BEGIN IMMEDIATE")
        session_id, last_seq, _ = cursor.execute(
            UPDATE_COUNTERS, (1, 0, 1, now, now, *key_params(s))).fetchone()
        (message_id,) = cursor.execute(INSERT_ONE, (session_id, last_seq, common.role_of(i),
                                                    json.dumps(text), None, now_us(), None,
                                                    None, 0, None)).fetchone()
        body = index_body(text)
        cursor.execute(COUNT_ONE, (body.count(" ") + 1, message_id))
        cursor.execute(STAGE_ONE, (message_id, body))
        if cursor.execute(STAGED_COUNT).fetchone()[0] >= STAGED_LIMIT:
            for statement in STAGED_MOVE:
                cursor.execute(statement)
        cursor.execute(FEED_ONE, (now_us(), APPENDED, common.AGENT, session_id,
                                  appended_data(message_id, last_seq)))
        cursor.execute("COMMIT")
        cursor.close()

    return insert if variant == "insert" else same


def w1(path: str, durability: str, appends: int, budget: float,
       variant: str = "insert") -> dict[str, Any]:
    conn = _connect(path, durability)
    try:
        result = common.timed_loop(appends, budget, _appender(conn, variant, 1))
        _check_same(conn, variant, result)
    finally:
        conn.close()
    result["settings"] = _settings(durability, variant)
    return result


def w2(path: str, durability: str, sessions: int, per_session: int, budget: float,
       variant: str = "insert") -> dict[str, Any]:
    conn = _connect(path, durability)
    try:
        result = common.timed_loop(sessions * per_session, budget,
                                   _appender(conn, variant, sessions))
        _check_same(conn, variant, result)
    finally:
        conn.close()
    result["settings"] = _settings(durability, variant)
    return result


def _check_same(conn: sqlite3.Connection, variant: str, result: dict[str, Any]) -> None:
    """``same`` wrote what the store writes: a search index entry and a feed entry a message."""
    if variant == "same":  # on a database whose sessions have no messages yet
        for table, where in (("messages", ""),
                             ("(SELECT id FROM message_fts_staged UNION ALL "
                              "SELECT rowid FROM message_fts)", ""),
                             ("changes", " WHERE kind = 'messages.appended'")):
            count = conn.execute(f"SELECT count(*) FROM {table}{where}").fetchone()[0]
            assert count == result["ops"], (table, count, result["ops"])


def tail_contents(conn: sqlite3.Connection, params: tuple[str, ...]) -> list[Any]:
    """W3 lean: the newest 20 ``content`` texts, oldest first, decoded. As the store does it
    (one ``json.loads`` of the texts joined as an array, cheaper than one per row), so that the
    ratio measures the store's own work and not a slower way of decoding."""
    rows = conn.execute(TAIL_CONTENTS, params).fetchall()
    rows.reverse()
    found: list[Any] = json.loads("[" + ",".join([row[0] for row in rows]) + "]")
    return found


def w3_lean(path: str, reads: int, budget: float) -> dict[str, Any]:
    conn = _connect(path, "full")
    params = key_params(0)
    try:
        assert len(tail_contents(conn, params)) == 20
        result = common.latency_loop(reads, budget, lambda i: tail_contents(conn, params))
    finally:
        conn.close()
    return result


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    conn = _connect(path, "full")
    params = key_params(0)
    try:
        assert len(conn.execute(TAIL, params).fetchall()) == 20
        result = common.latency_loop(reads, budget,
                                     lambda i: conn.execute(TAIL, params).fetchall())
    finally:
        conn.close()
    return result


def w4(path: str, lookups: int, sessions: int, budget: float) -> dict[str, Any]:
    conn = _connect(path, "full")
    sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {LIVE}"
    keys = [key_params((i * 7_919) % sessions) for i in range(lookups)]
    try:
        assert conn.execute(sql, keys[0]).fetchone() is not None
        result = common.latency_loop(lookups, budget,
                                     lambda i: conn.execute(sql, keys[i]).fetchone())
    finally:
        conn.close()
    return result


def w5(path: str, repeats: int, budget: float) -> dict[str, Any]:
    conn = _connect(path, "full")
    params = ("agent3", "idle")
    try:
        started = time.perf_counter()
        assert len(conn.execute(LIST, params).fetchall()) == 51
        cold_ms = (time.perf_counter() - started) * 1000
        result = common.latency_loop(repeats, budget,
                                     lambda i: conn.execute(LIST, params).fetchall())
        result["first_call_ms"] = cold_ms
    finally:
        conn.close()
    return result


# --- PostgreSQL: psycopg with the store's statements ------------------------------------------


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


def _pg_settings(conn: Any, durability: str) -> dict[str, Any]:
    return {"backend": "postgres", "durability": durability,
            "synchronous_commit": conn.execute("SHOW synchronous_commit").fetchone()[0]}


def _append_params(i: int, session: int) -> tuple[Any, ...]:
    """:data:`APPEND_IN_ONE`'s parameters: one message of no tokens, appended as message ``i``
    to session ``session``."""
    now = now_us()
    return (1, 0, 1, now, now, *key_params(session), 1,
            1, common.role_of(i), json.dumps(common.text(i)), None, now_us(), None)


def _feed_params(session_id: int, message_id: int, seq: int) -> tuple[Any, ...]:
    return (1, 1, now_us(), 1, APPENDED, common.AGENT, session_id,
            appended_data(message_id, seq))


def _check_pg_same(conn: Any, ops: int) -> None:
    """Each append wrote what the store writes: a message, its index entry, its feed entry (on a
    schema whose sessions had no messages yet)."""
    for table, where in (("messages", ""), ("message_search", ""),
                         ("changes", f" WHERE kind = '{APPENDED}'")):
        count = conn.execute(f"SELECT count(*) FROM {table}{where}").fetchone()[0]
        assert count == ops, (table, count, ops)


def pg_w1(path: str, durability: str, appends: int, budget: float,
          schema: str | None = None) -> dict[str, Any]:
    """One connection; per append the store's statements, pipelined as it sends them (see the
    module's docstring)."""
    import psycopg
    from psycopg import sql

    append, index, feed = _pg(APPEND_IN_ONE), _pg(INDEX_IN_ONE), _pg(FEED_IN_ONE)
    with psycopg.connect(path, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema or "")))
        if durability == "normal":
            conn.execute("SET synchronous_commit TO off")

        def step(i: int) -> None:
            with conn.cursor() as cursor, conn.pipeline():
                cursor.execute("BEGIN")
                # its own cursor, as the store's: the rows fetched are this statement's only
                appended = conn.cursor()
                appended.execute(append, _append_params(i, 0))
                try:
                    session_id, last_seq, _, message_id = appended.fetchall()[0]
                finally:
                    appended.close()
                cursor.execute(index, (message_id, index_body(common.text(i))))
                cursor.execute(feed, _feed_params(session_id, message_id, last_seq))
                cursor.execute("COMMIT")

        result = common.timed_loop(appends, budget, step)
        _check_pg_same(conn, result["ops"])
        result["settings"] = _pg_settings(conn, durability)
    return result


def pg_w6(path: str, durability: str, writers: int, per_writer: int, budget: float,
          schema: str | None = None, pool_size: int = 4) -> dict[str, Any]:
    """``writers`` asyncio tasks sharing a psycopg AsyncConnectionPool (the store's default
    size), each append its own transaction with :func:`pg_w1`'s statements and waits: no group
    commit (see the module's docstring)."""
    import psycopg
    from psycopg import sql
    from psycopg_pool import AsyncConnectionPool

    append, index, feed = _pg(APPEND_IN_ONE), _pg(INDEX_IN_ONE), _pg(FEED_IN_ONE)

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema or "")))
        if durability == "normal":
            await conn.execute("SET synchronous_commit TO off")

    async def main() -> dict[str, Any]:
        async with AsyncConnectionPool(path, min_size=pool_size, max_size=pool_size,
                                       kwargs={"autocommit": True}, configure=configure,
                                       open=False) as pool:
            await pool.wait()

            async def step(w: int, i: int) -> None:
                async with pool.connection() as conn, conn.cursor() as cursor, \
                        conn.pipeline():
                    await cursor.execute("BEGIN")
                    appended = conn.cursor()
                    await appended.execute(append, _append_params(i, w))
                    try:
                        session_id, last_seq, _, message_id = (await appended.fetchall())[0]
                    finally:
                        await appended.close()
                    await cursor.execute(index, (message_id, index_body(common.text(i))))
                    await cursor.execute(feed, _feed_params(session_id, message_id, last_seq))
                    await cursor.execute("COMMIT")

            result = await common.concurrent_writers(writers, per_writer, budget, step)
            async with pool.connection() as conn:
                row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
            result["settings"] = {"backend": "postgres", "durability": durability,
                                  "synchronous_commit": row[0] if row else "?",
                                  "pool_size": pool_size}
            return result

    result = asyncio.run(main())
    with psycopg.connect(path, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema or "")))
        _check_pg_same(conn, result["ops"])  # a failed append was rolled back whole
    return result
