"""Schema migrations: an ordered list of plain SQL files per backend, recorded in the database.

``migrations/<backend>/NNNN_name.sql`` are applied in order, each once, in one transaction with
its row in ``aisopod_schema``. A database whose recorded version is newer than the newest file
here was written by a newer aisopod-session: it is refused before anything is changed.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from aisopod_session.errors import SchemaVersionError

MIGRATIONS_TABLE = "aisopod_schema"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


@cache
def migrations(backend: str) -> tuple[Migration, ...]:
    folder = resources.files("aisopod_session.store").joinpath("migrations", backend)
    found = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, name = entry.name.removesuffix(".sql").partition("_")
        found.append(Migration(int(number), name, _statements(entry.read_text("utf-8"))))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {versions}")
    return tuple(found)


def latest_version(backend: str) -> int:
    return migrations(backend)[-1].version


_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def _statements(script: str) -> tuple[str, ...]:
    """Split a migration into statements: each ends with a ``;`` that ends its line (so a
    trigger's body, written on one line, keeps its inner ``;``)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in _STATEMENT_END.split("\n".join(lines)) if s.strip())


def _refuse_newer(found: int, backend: str, where: str) -> None:
    if found > latest_version(backend):
        raise SchemaVersionError(
            f"{where} has schema version {found}, but this aisopod-session knows only up to "
            f"{latest_version(backend)}: it was written by a newer version. Upgrade "
            "aisopod-session; the database was not changed."
        )


def _now_us() -> int:
    return time.time_ns() // 1000


def sqlite_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}").fetchone()
    return int(row[0])


def migrate_sqlite(conn: sqlite3.Connection) -> None:
    """Bring a SQLite database up to date; a no-op when it is (one read, no write lock)."""
    where = "this SQLite database"
    current = sqlite_version(conn)
    _refuse_newer(current, "sqlite", where)
    if current == latest_version("sqlite"):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = sqlite_version(conn)  # another process may have migrated meanwhile
        _refuse_newer(current, "sqlite", where)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for migration in migrations("sqlite")[current:]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, _now_us()),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def migrate_postgres(conn: Any, schema: str) -> int:
    """Bring a PostgreSQL schema up to date under an advisory lock; returns how many were applied.

    Many replicas may start at once: the first takes the lock and migrates, the others wait for
    it and then find nothing to do. ``conn`` is a psycopg connection outside any transaction.
    """
    from psycopg import sql

    where = f"PostgreSQL schema {schema!r}"
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"aisopod_session:{schema}",))
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".{MIGRATIONS_TABLE}',)
        ).fetchone()[0]
        current = 0
        if exists:
            current = conn.execute(
                sql.SQL("SELECT coalesce(max(version), 0) FROM {}.{}").format(
                    ident, sql.Identifier(MIGRATIONS_TABLE)
                )
            ).fetchone()[0]
        _refuse_newer(current, "postgres", where)
        pending = migrations("postgres")[current:]
        if not pending:
            return 0
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        for migration in pending:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, _now_us()),
            )
        return len(pending)
