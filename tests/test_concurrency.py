"""Many writers at once: threads, processes and asyncio tasks on one store.

Every check reads the database directly (sqlite3 / psycopg), not through the store: one live
session per key, ``message_count`` equal to the stored live rows, ``seq`` running 1..n without
gaps, and every acknowledged message stored exactly once, in the session it was sent to.

Workers never let an exception vanish: each one is formatted and sent back, and the test asserts
that there were none (a "database is locked" reaching a caller fails the test).
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os
import sqlite3
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aisopod_session import AsyncSessionStore, SessionStore, StoredMessage
from tests._threads import JOIN_SECONDS, key_for, run_threads

PG_URL = os.environ.get("AISOPOD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

Sent = list[tuple[str, str]]  # (peer_id of the key, message content), one per acknowledged message




def append_loop(
    store: SessionStore, proc: int, keys: int, rounds: int, *, per_call: Callable[[int], int]
) -> tuple[Callable[[int], None], Sent]:
    """A thread body: ``rounds`` times get_or_create + append on one of ``keys`` keys."""
    agent = store.for_agent("bot")
    sent: Sent = []
    lock = threading.Lock()

    def body(thread: int) -> None:
        for i in range(rounds):
            key = key_for((proc * 7 + thread * 3 + i * 5) % keys)
            session = agent.get_or_create(key)
            assert session.key == key
            contents = [f"p{proc}-t{thread}-{i}-{j}" for j in range(per_call(i))]
            stored = agent.append_messages(key, [StoredMessage.user(c) for c in contents])
            assert [m.content for m in stored] == contents
            assert all(m.id is not None for m in stored)
            with lock:
                sent.extend((key.peer_id, c) for c in contents)

    return body, sent


# --- reading the database directly -------------------------------------------------------------


Rows = list[tuple[Any, ...]]


def db_rows(url: str, options: dict[str, Any]) -> tuple[Rows, Rows]:
    """``(sessions, messages)``: (id, peer_id, status, message_count) and
    (session_id, seq, content, compacted), straight from the tables."""
    sessions_sql = "SELECT id, peer_id, status, message_count FROM {} ORDER BY id"
    messages_sql = "SELECT session_id, seq, content, compacted FROM {} ORDER BY session_id, seq"
    if "schema" in options:
        schema = options["schema"]
        with psycopg.connect(PG_URL) as conn:
            sessions = conn.execute(
                sql.SQL(sessions_sql).format(sql.Identifier(schema, "sessions"))
            ).fetchall()
            messages = conn.execute(
                sql.SQL(messages_sql).format(sql.Identifier(schema, "messages"))
            ).fetchall()
    else:
        conn = sqlite3.connect(url)
        try:
            sessions = conn.execute(sessions_sql.format("sessions")).fetchall()
            messages = conn.execute(messages_sql.format("messages")).fetchall()
        finally:
            conn.close()
    return ([tuple(r) for r in sessions],
            [(r[0], r[1], json.loads(r[2]), r[3]) for r in messages])


def check_consistent(url: str, options: dict[str, Any], sent: Sent, keys: int) -> None:
    sessions, messages = db_rows(url, options)
    live = [s for s in sessions if s[2] != "archived"]
    assert Counter(s[1] for s in live) == Counter(f"peer{i}" for i in range(keys)), (
        "exactly one live session per key"
    )
    peer_of = {s[0]: s[1] for s in sessions}
    rows_by_session: dict[int, list[tuple[Any, ...]]] = {s[0]: [] for s in sessions}
    for message in messages:
        rows_by_session[message[0]].append(message)
    for session_id, _peer, _status, message_count in sessions:
        rows = [m for m in rows_by_session[session_id] if m[3] == 0]
        assert message_count == len(rows), f"session {session_id}: counter vs rows"
        assert [m[1] for m in rows] == list(range(1, len(rows) + 1)), "seq is 1..n, no gaps"
    stored = Counter((peer_of[m[0]], m[2]) for m in messages)
    assert len(sent) == len(set(sent)), "the test sends unique contents"
    duplicated = [item for item, n in stored.items() if n > 1]
    assert not duplicated, f"stored more than once: {duplicated[:5]}"
    missing = set(sent) - set(stored)
    assert not missing, f"acknowledged but not stored: {sorted(missing)[:5]}"
    assert set(stored) == set(sent), "nothing stored that was not acknowledged"


# --- SQLite ------------------------------------------------------------------------------------


def test_sqlite_threads_share_keys(tmp_path: Path) -> None:
    path = str(tmp_path / "sessions.db")
    keys = 3
    with SessionStore.open(path) as store:
        body, sent = append_loop(store, 0, keys, rounds=40, per_call=lambda i: 1 + i % 3)
        errors = run_threads(8, body)
        assert errors == []
        assert len(store.list_all_sessions()) == keys
    check_consistent(path, {}, sent, keys)


def test_sqlite_short_lived_threads_leave_no_connections(tmp_path: Path) -> None:
    """Each reading thread gets its own connection; it is closed when the thread ends."""
    with SessionStore.open(str(tmp_path / "sessions.db")) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        engine: Any = store._engine
        before = len(engine._all)

        def read(_thread: int) -> None:
            agent.get(key_for(0))

        for round_ in range(10):
            assert run_threads(5, read) == []
            gc.collect()
            assert len(engine._all) <= before + 5, f"round {round_}: connections pile up"
        assert agent.get(key_for(0)).message_count == 0


def _sqlite_process(path: str, keys: int, proc: int, barrier: Any, results: Any) -> None:
    """One process: its own store on the shared file, a few threads appending."""
    errors: list[str] = []
    sent: Sent = []
    try:
        with SessionStore.open(path) as store:
            body, sent = append_loop(store, proc, keys, rounds=25, per_call=lambda i: 1 + i % 2)
            barrier.wait(timeout=JOIN_SECONDS)
            errors = run_threads(3, body)
    except BaseException:
        errors.append(f"process {proc}: {traceback.format_exc()}")
    results.put((proc, sent, errors))


def run_processes(target: Callable[..., None], count: int, *args: Any) -> tuple[Sent, list[str]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args, proc, barrier, results))
        for proc in range(count)
    ]
    for process in processes:
        process.start()
    sent: Sent = []
    errors: list[str] = []
    try:
        for _ in processes:
            _proc, proc_sent, proc_errors = results.get(timeout=JOIN_SECONDS)
            sent.extend(proc_sent)
            errors.extend(proc_errors)
    finally:
        for process in processes:
            process.join(timeout=JOIN_SECONDS)
            if process.is_alive():
                process.kill()
                errors.append(f"process {process.pid} hung")
    assert [p.exitcode for p in processes] == [0] * count
    return sent, errors


@pytest.mark.slow
def test_sqlite_processes_share_keys(tmp_path: Path) -> None:
    """Four processes open the same new file at once and append to the same keys."""
    path = str(tmp_path / "sessions.db")
    keys = 3
    sent, errors = run_processes(_sqlite_process, 4, path, keys)
    assert errors == []
    assert len(sent) == 4 * 3 * sum(1 + i % 2 for i in range(25))
    with SessionStore.open(path) as store:
        live = store.list_all_sessions()
        assert sorted(s.key.peer_id for s in live) == [f"peer{i}" for i in range(keys)]
        for summary in live:
            peer = summary.key.peer_id
            assert summary.message_count == sum(1 for p, _ in sent if p == peer)
    check_consistent(path, {}, sent, keys)


# --- PostgreSQL --------------------------------------------------------------------------------

PG_SESSIONS = 50


def _pg_process(schema: str, proc: int, barrier: Any, results: Any) -> None:
    errors: list[str] = []
    sent: Sent = []
    try:
        with SessionStore.open(PG_URL, schema=schema, pool_size=2) as store:
            body, sent = append_loop(
                store, proc, PG_SESSIONS, rounds=12, per_call=lambda i: 1 + i % 3
            )
            barrier.wait(timeout=JOIN_SECONDS)
            errors = run_threads(8, body)
    except BaseException:
        errors.append(f"process {proc}: {traceback.format_exc()}")
    results.put((proc, sent, errors))


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_processes_and_threads(pg_schema: str) -> None:
    """4 processes x 8 threads on 50 shared sessions: no loss, no duplicate, no deadlock."""
    sent, errors = run_processes(_pg_process, 4, pg_schema)
    assert errors == []
    assert len(sent) == 4 * 8 * sum(1 + i % 3 for i in range(12))
    check_consistent(PG_URL, {"schema": pg_schema}, sent, PG_SESSIONS)


# --- asyncio -----------------------------------------------------------------------------------


def test_async_tasks_append(backend_url: tuple[str, dict[str, Any]]) -> None:
    """64 tasks on one AsyncSessionStore, one message per call, all stored once."""
    url, options = backend_url
    keys, tasks, calls = 4, 64, 4

    async def main() -> Sent:
        sent: Sent = []
        async with await AsyncSessionStore.open(url, **options) as store:
            agent = store.for_agent("bot")
            start = asyncio.Event()

            async def task(index: int) -> None:
                await start.wait()
                for i in range(calls):
                    key = key_for((index + i) % keys)
                    await agent.get_or_create(key)
                    content = f"a{index}-{i}"
                    [stored] = await agent.append_messages(key, [StoredMessage.user(content)])
                    assert stored.id is not None
                    assert stored.content == content
                    sent.append((key.peer_id, content))

            running = [asyncio.create_task(task(i)) for i in range(tasks)]
            start.set()
            outcomes = await asyncio.wait_for(
                asyncio.gather(*running, return_exceptions=True), JOIN_SECONDS
            )
            errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
            assert errors == []
            for i in range(keys):
                session = await agent.get(key_for(i))
                assert session.message_count == sum(1 for p, _ in sent if p == f"peer{i}")
        return sent

    sent = asyncio.run(main())
    assert len(sent) == tasks * calls
    check_consistent(url, options, sent, keys)
