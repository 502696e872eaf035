"""Schema migrations: applied once, a no-op on reopen, and a newer database refused untouched."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aisopod_session import (
    InvalidInputError,
    SchemaVersionError,
    SessionFilter,
    SessionKey,
    SessionStore,
)
from aisopod_session.store._migrations import latest_version, migrations
from tests.conftest import PG_URL


def _versions_sqlite(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM aisopod_schema ORDER BY 1")]


def _versions_pg(schema: str) -> list[int]:
    with psycopg.connect(PG_URL) as conn:
        query = sql.SQL("SELECT version FROM {}.aisopod_schema ORDER BY 1").format(
            sql.Identifier(schema)
        )
        return [row[0] for row in conn.execute(query)]


def test_migration_files_are_numbered_and_parallel() -> None:
    assert [m.version for m in migrations("sqlite")] == [m.version for m in migrations("postgres")]
    assert latest_version("sqlite") >= 1


def test_sqlite_open_creates_schema_and_reopen_is_a_noop(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SessionStore.open(str(path)) as store:
        store.for_agent("a").get_or_create(SessionKey("a", "c", "x", "dm", "p"))
    with sqlite3.connect(path) as conn:
        before = list(conn.iterdump())
    with SessionStore.open(str(path)) as store:
        assert store.for_agent("a").get(SessionKey("a", "c", "x", "dm", "p")).id == 1
    with sqlite3.connect(path) as conn:
        assert list(conn.iterdump()) == before
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert _versions_sqlite(path) == list(range(1, latest_version("sqlite") + 1))


def test_sqlite_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SessionStore.open(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO aisopod_schema VALUES (999, 'from_the_future', 0)")
        before = list(conn.iterdump())
    with pytest.raises(SchemaVersionError, match="newer"):
        SessionStore.open(str(path))
    with sqlite3.connect(path) as conn:
        assert list(conn.iterdump()) == before


def test_postgres_newer_schema_is_refused_and_left_alone(pg_schema: str) -> None:
    SessionStore.open(PG_URL, schema=pg_schema, pool_size=1).close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.aisopod_schema VALUES (999, 'from_the_future', 0)").format(
                sql.Identifier(pg_schema)
            )
        )
    with pytest.raises(SchemaVersionError, match="newer"):
        SessionStore.open(PG_URL, schema=pg_schema, pool_size=1)
    assert _versions_pg(pg_schema)[-1] == 999
    assert len(_versions_pg(pg_schema)) == latest_version("postgres") + 1


def _open_at_once(url: str, options: dict[str, Any], barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=60)
        with SessionStore.open(url, **options) as store:
            store.for_agent("a").get_or_create(SessionKey("a", "c", "x", "dm", "p"))
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_ten_processes_open_a_fresh_database_at_once(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    url, options = backend_url
    options = {**options, "pool_size": 1} if "schema" in options else options
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(10)
    results = context.Queue()
    processes = [
        context.Process(target=_open_at_once, args=(url, options, barrier, results))
        for _ in range(10)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert outcomes == ["ok"] * 10
    if "schema" in options:
        versions = _versions_pg(options["schema"])
    else:
        versions = _versions_sqlite(Path(url))
    assert versions == list(range(1, latest_version("sqlite") + 1))  # each applied exactly once
    with SessionStore.open(url, **options) as store:
        page = store.list_all_sessions()
        assert len(page) == 1  # one live session for the key, whoever created it


def _cursor_keys(url: str, options: dict[str, Any]) -> list[tuple[str, str]]:
    if "schema" in options:
        with psycopg.connect(PG_URL) as conn:
            query = sql.SQL("SELECT name, value FROM {}.store_secret").format(
                sql.Identifier(options["schema"]))
            return [tuple(row) for row in conn.execute(query)]
    with sqlite3.connect(url) as conn:
        return [tuple(row) for row in conn.execute("SELECT name, value FROM store_secret")]


def test_each_database_has_its_own_cursor_key_and_refuses_anothers_cursors(
    backend_url: tuple[str, dict[str, Any]], request: pytest.FixtureRequest,
) -> None:
    url, options = backend_url
    if "schema" in options:
        second_url, second_options = url, {**options,
                                           "schema": request.getfixturevalue("pg_schema")}
    else:
        second_url, second_options = str(Path(url).with_name("second.db")), options
    keys = []
    cursors = []
    for where, how in ((url, options), (second_url, second_options)):
        with SessionStore.open(where, **how) as store:
            for peer in ("p1", "p2"):
                store.for_agent("a").get_or_create(SessionKey("a", "c", "x", "dm", peer))
            cursors.append(store.list_all_sessions(SessionFilter(limit=1)).next_cursor)
        found = _cursor_keys(where, how)
        assert [name for name, _ in found] == ["cursor"]
        assert re.fullmatch(r"[0-9a-f]{64}", found[0][1])
        keys.append(found[0][1])
    assert keys[0] != keys[1]
    # same listing, same position, another database: refused, as is nothing made up
    with SessionStore.open(second_url, **second_options) as store:
        with pytest.raises(InvalidInputError, match="cursor"):
            store.list_all_sessions(SessionFilter(limit=1, cursor=cursors[0]))
        assert len(store.list_all_sessions(SessionFilter(limit=1, cursor=cursors[1]))) == 1


def test_a_removed_cursor_key_is_made_again_on_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SessionStore.open(str(path)) as store:
        for peer in ("p1", "p2"):
            store.for_agent("a").get_or_create(SessionKey("a", "c", "x", "dm", peer))
        old_cursor = store.list_all_sessions(SessionFilter(limit=1)).next_cursor
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM store_secret")
    with SessionStore.open(str(path)) as store:
        with pytest.raises(InvalidInputError, match="cursor"):  # a new key: old cursors end
            store.list_all_sessions(SessionFilter(limit=1, cursor=old_cursor))
        cursor = store.list_all_sessions(SessionFilter(limit=1)).next_cursor
        assert len(store.list_all_sessions(SessionFilter(limit=1, cursor=cursor))) == 1
    assert len(_cursor_keys(str(path), {})) == 1
