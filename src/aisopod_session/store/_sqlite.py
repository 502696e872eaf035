"""The SQLite backend: one file (or memory), WAL mode, one writer at a time by design.

Reads run on a connection per thread, so readers never wait for the writer (WAL). Writes go
through the group committer and take the write lock with ``BEGIN IMMEDIATE``, so a transaction
never has to upgrade a read lock (the classic source of "database is locked" under concurrency);
another process holding the lock is waited for by ``busy_timeout``, then retried.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from aisopod_session.errors import InvalidInputError
from aisopod_session.store._engine import Dialect, Durability, Engine, Failure, Tx
from aisopod_session.store._migrations import migrate_sqlite

BUSY_TIMEOUT_MS = 10_000

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


def sqlite_path(url: str) -> str:
    """``:memory:``, a plain path, ``sqlite:///relative`` or ``sqlite:////absolute``."""
    if url == ":memory:" or url == "sqlite://" or url == "sqlite:///:memory:":
        return ":memory:"
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
    elif url.startswith("sqlite:"):
        raise InvalidInputError.for_field(
            "url", f"{url!r}: use sqlite:///relative/path or sqlite:////absolute/path"
        )
    else:
        path = url
    if not path or "\x00" in path:
        raise InvalidInputError.for_field("url", f"{url!r} is not a file path")
    return path


class SQLiteEngine(Engine):
    dialect = Dialect("sqlite", "?", "", "-1")

    def __init__(self, path: str, durability: Durability) -> None:
        self.path = path
        self.durability = durability
        self._memory = path == ":memory:"
        if not self._memory:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(path).expanduser())
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # An in-memory database exists only inside its one connection: every read and batch
        # takes turns on it.
        self._shared_lock = threading.RLock()
        self._writer = self._connect()
        super().__init__(read_threads=4)
        try:
            migrate_sqlite(self._writer)
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        return f"SQLite database {self.path}"

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE / COMMIT
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not self._memory:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.close()
                raise self._unavailable(RuntimeError(f"could not switch to WAL (got {mode})"))
        conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.durability]}")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._memory:
            return self._writer
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        conn = self._reader()
        with self._shared_lock if self._memory else nullcontext():
            cursor = conn.cursor()
            # A deferred transaction reads one snapshot across statements.
            cursor.execute("BEGIN")
            try:
                yield Tx(cursor, self.dialect)
            finally:
                cursor.execute("COMMIT")
                cursor.close()

    @contextmanager
    def _write_tx(self) -> Iterator[Tx]:
        with self._shared_lock if self._memory else nullcontext():
            cursor = self._writer.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cursor, self.dialect)
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.rollback()
                raise
            else:
                cursor.execute("COMMIT")
            finally:
                cursor.close()

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, sqlite3.OperationalError):
            message = str(exc).lower()
            if "locked" in message or "busy" in message:
                return Failure.RETRY
            return Failure.FATAL
        if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
            return Failure.JOB
        if isinstance(exc, sqlite3.Error):
            return Failure.FATAL
        return Failure.JOB

    def _close_connections(self) -> None:
        with self._all_lock:
            connections, self._all = self._all, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
