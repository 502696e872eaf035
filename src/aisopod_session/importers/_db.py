"""Reading another system's database with the drivers this project already uses: ``sqlite3``
(the standard library) and psycopg (the ``postgres`` extra), never the other system's code.

A source is a file path or a SQLAlchemy-style URL (``sqlite:///…``, ``sqlite+aiosqlite:///…``,
``postgresql://…``, ``postgresql+psycopg://…``, ``postgresql+asyncpg://…``): the driver part of
the scheme is dropped, so the URL an application gives its framework works here as it is.
Every source is opened read-only (SQLite ``mode=ro``; a PostgreSQL transaction set READ ONLY).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aisopod_session.importers._model import SourceError

PAGE = 1000
"""Rows fetched per round trip: memory holds one page."""
_CURSORS = itertools.count(1)


class Database:
    """One read-only connection to a SQLite or PostgreSQL source."""

    def __init__(self, source: str) -> None:
        self.source = source
        scheme = urlsplit(source).scheme.split("+", 1)[0].lower() if "://" in source else ""
        self._pg: Any = None
        self._lite: sqlite3.Connection | None = None
        if scheme in ("postgres", "postgresql"):
            self.dialect = "postgres"
            self._pg = _connect_postgres(source)
        elif scheme in ("", "sqlite"):
            self.dialect = "sqlite"
            self._lite = _connect_sqlite(_sqlite_path(source) if scheme else source)
        else:
            raise SourceError.for_field(
                "source", f"unsupported database URL scheme {scheme!r}: give a SQLite file, a "
                "sqlite:/// URL or a postgresql:// URL")

    def close(self) -> None:
        if self._lite is not None:
            self._lite.close()
        if self._pg is not None:
            self._pg.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    def rows(self, statement: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a query, a page at a time (a server-side cursor on PostgreSQL); a
        database error is a SourceError."""
        try:
            yield from self._rows(statement, params)
        except SourceError:
            raise
        except Exception as exc:
            if not _driver_error(exc):
                raise
            raise SourceError.for_field(
                "source", f"reading {self.describe()} failed: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None

    def _rows(self, statement: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        if self._lite is not None:
            cursor = self._lite.execute(statement, tuple(params))
        else:
            # a named (server-side) cursor: PostgreSQL sends a page per fetch; sessions and
            # their messages are read at once, so each cursor has its own name
            cursor = self._pg.cursor(name=f"aisopod_import_{next(_CURSORS)}")
            cursor.execute(self._sql(statement), tuple(params))
        try:
            while True:
                page = cursor.fetchmany(PAGE)
                if not page:
                    return
                yield from (tuple(row) for row in page)
        finally:
            cursor.close()

    def one(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        if self._lite is not None:
            row = self._lite.execute(statement, tuple(params)).fetchone()
        else:
            with self._pg.cursor() as cursor:
                cursor.execute(self._sql(statement), tuple(params))
                row = cursor.fetchone()
        return None if row is None else tuple(row)

    def columns(self, table: str) -> set[str]:
        """The table's columns; an empty set when there is no such table."""
        if self._lite is not None:
            return {str(row[1]) for row in self._lite.execute(
                "SELECT * FROM pragma_table_info(?)", (table,))}
        with self._pg.cursor() as cursor:
            cursor.execute("SELECT column_name FROM information_schema.columns WHERE "
                           "table_name = %s AND table_schema = ANY(current_schemas(false))",
                           (table,))
            return {str(row[0]) for row in cursor.fetchall()}

    def require(self, table: str, needed: Sequence[str], what: str) -> None:
        """SourceError unless ``table`` exists with every column of ``needed``."""
        if not _identifier(table):
            raise SourceError.for_field("table", f"{table!r} is not a plain table name")
        have = self.columns(table)
        if not have:
            raise SourceError.for_field(
                "source", f"{self.describe()} has no table {table!r}: not {what}")
        missing = [column for column in needed if column not in have]
        if missing:
            raise SourceError.for_field(
                "source", f"table {table!r} of {self.describe()} has no column "
                f"{', '.join(map(repr, missing))}: not {what} (or a version this importer "
                "does not read)")

    def describe(self) -> str:
        """The source without a password, for messages."""
        if "://" not in self.source:
            return self.source
        parts = urlsplit(self.source)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _driver_error(exc: Exception) -> bool:
    """An error of sqlite3 or psycopg (a file changed under the import, a lost connection)."""
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("psycopg")


def _identifier(name: str) -> bool:
    return name.replace("_", "a").isalnum() and name.isascii() and not name[:1].isdigit()


def _sqlite_path(url: str) -> str:
    """``sqlite:///relative`` / ``sqlite:////absolute`` (SQLAlchemy's form) as a file path."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise SourceError.for_field("source", f"{url!r}: expected sqlite:///path")
    return unquote(rest[1:].split("?", 1)[0])


def _connect_sqlite(path: str) -> sqlite3.Connection:
    file = Path(path)
    if not file.is_file():
        raise SourceError.for_field("source", f"{path}: no such file")
    try:
        connection = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise SourceError.for_field("source", f"{path}: not a SQLite database ({exc})") from None
    return connection


def _connect_postgres(url: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise SourceError.for_field(
            "source", "reading PostgreSQL needs psycopg: pip install "
            "'aisopod-session[postgres]'") from None
    scheme, rest = url.split("://", 1)
    plain = f"postgresql://{rest}"
    try:
        connection = psycopg.connect(plain)
    except psycopg.Error as exc:
        host = urlsplit(plain).hostname
        raise SourceError.for_field(
            "source", f"cannot connect to PostgreSQL at {host}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    connection.read_only = True
    del scheme
    return connection
