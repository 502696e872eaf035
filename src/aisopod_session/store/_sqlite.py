"""The SQLite backend: one file (or memory), WAL mode, one writer at a time by design.

Reads run on a connection per thread, so readers never wait for the writer (WAL). Writes go
through the group committer and take the write lock with ``BEGIN IMMEDIATE``, so a transaction
never has to upgrade a read lock (the classic source of "database is locked" under concurrency);
another process holding the lock is waited for by ``busy_timeout``, then retried.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TypeVar

from aisopod_session.errors import InvalidInputError
from aisopod_session.store._engine import CommitRefusedError, Durability, Engine, Failure
from aisopod_session.store._migrations import migrate_sqlite
from aisopod_session.store._tx import Dialect, Tx

T = TypeVar("T")

log = logging.getLogger("aisopod_session.store")

BUSY_TIMEOUT_MS = 10_000
DATA_VERSION_POLL_SECONDS = 0.02
"""How often a watched database is checked for other processes' commits."""

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def sqlite_path(url: str) -> str:
    """``:memory:``, a plain path, ``sqlite:///relative`` or ``sqlite:////absolute``; any other
    ``scheme://`` is a mistake, not a file name."""
    if url in (":memory:", "sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    scheme = _SCHEME.match(url)
    if scheme is not None and scheme.group(1).lower() != "sqlite":
        raise InvalidInputError.for_field(
            "url", f"{url!r}: unknown scheme {scheme.group(1)!r}; use sqlite:///path, "
                   "postgresql://… or http(s)://… (a running service)")
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
    # julianday('now'): SQLite 3.40 has no sub-second unixepoch(); milliseconds are kept
    dialect = Dialect("sqlite", "?", "", "-1",
                      "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) * 1000",
                      "UPDATE run_fences SET value = value + 1 WHERE id = 1 RETURNING value",
                      # an entry is never deleted above pruned_through: the largest kept, or it
                      derived_last_position="max(coalesce((SELECT max(position) FROM changes), "
                                            "0), pruned_through)")

    def __init__(self, path: str, durability: Durability) -> None:
        self.path = path
        self.durability = durability
        self._memory = path == ":memory:"
        if not self._memory:
            self.path = str(Path(path).expanduser())
            _create_private(Path(self.path))
        self._local = threading.local()
        self._all: set[sqlite3.Connection] = set()
        self._all_lock = threading.Lock()
        # An in-memory database exists only inside its one connection: every read and batch
        # takes turns on it.
        self._shared_lock = threading.RLock()
        self._writer = self._connect()
        super().__init__(read_threads=4)
        self._poller: threading.Thread | None = None
        self._poller_lock = threading.Lock()
        if not self._memory:  # one connection: no other process can write to it
            self.feed.on_first_wait = self._start_polling
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
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            if not self._memory:
                mode = _switch_to_wal(conn)
                if mode != "wal":
                    raise RuntimeError(f"could not switch to WAL (got {mode})")
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.durability]}")
        except (sqlite3.Error, RuntimeError) as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        with self._all_lock:
            self._all.add(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._memory:
            return self._writer
        holder: _ThreadConnection | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = _ThreadConnection(self._connect())
            # When the thread ends, its holder goes and the connection is closed with it: a
            # thread per request must not leave a connection (and a file handle) behind each.
            weakref.finalize(holder, _forget, self._all_lock, self._all, holder.conn)
            self._local.holder = holder
        return holder.conn

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        conn = self._reader()
        with self._shared_lock if self._memory else nullcontext():
            cursor = conn.cursor()
            # A deferred transaction reads one snapshot across statements.
            cursor.execute("BEGIN")
            try:
                yield Tx(cursor, self.dialect, memo=self.memo)
            finally:
                cursor.execute("COMMIT")
                cursor.close()

    def _read_statement(self, fn: Callable[[Tx], T]) -> T:
        if self._memory:  # one connection shared with the writer: take turns, as any read
            return super()._read_statement(fn)
        conn = self._reader()
        if conn.in_transaction:  # never left open by a read, but a stale one would be a stale
            _roll_back(conn)    # snapshot
        # Autocommit: the statement is its own read transaction, ended when the cursor has
        # returned its last row or is closed.
        cursor = conn.cursor()
        try:
            return fn(Tx(cursor, self.dialect, memo=self.memo))
        finally:
            cursor.close()

    @contextmanager
    def _write_tx(self) -> Iterator[Tx]:
        with self._shared_lock if self._memory else nullcontext():
            writer = self._usable_writer()
            cursor = writer.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield Tx(cursor, self.dialect, memo=self.memo)
                except BaseException:
                    _roll_back(writer)
                    raise
                try:
                    cursor.execute("COMMIT")
                except sqlite3.Error as exc:
                    if not writer.in_transaction:
                        raise  # SQLite ended it itself (an I/O error...): outcome unknown
                    # Still open (busy, a deferred constraint...): nothing was committed.
                    _roll_back(writer)
                    raise CommitRefusedError(exc) from exc
            finally:
                cursor.close()

    def _usable_writer(self) -> sqlite3.Connection:
        """The writer, outside any transaction (one a failed rollback left open is ended)."""
        if self._writer.in_transaction:
            _roll_back(self._writer)
            if self._writer.in_transaction and not self._memory:  # stuck: use a new connection
                old, self._writer = self._writer, self._connect()
                _forget(self._all_lock, self._all, old)
        return self._writer

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

    def _start_polling(self) -> None:
        """Start (once) the thread that turns other processes' commits into feed wake-ups."""
        with self._poller_lock:
            if self._poller is not None or self.closed:
                return
            self._poller = threading.Thread(target=self._poll_data_version, daemon=True,
                                            name="aisopod-data-version")
            self._poller.start()

    def _poll_data_version(self) -> None:
        # PRAGMA data_version changes when another connection committed: it reads the WAL
        # index in shared memory, no page of the database. Only while someone watches.
        conn = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            seen = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self.closed:
                time.sleep(DATA_VERSION_POLL_SECONDS)
                if not self.feed.watched:
                    continue
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    seen = version
                    self.feed.changed()
        except sqlite3.Error:
            log.warning("watching %s for other processes' commits failed; watchers poll",
                        self.path, exc_info=True)
        finally:
            if conn is not None:
                conn.close()

    def _close_connections(self) -> None:
        if self._poller is not None:
            self._poller.join(timeout=5)
        with self._all_lock:
            connections = list(self._all)
            self._all.clear()
        for conn in connections:
            with suppress(sqlite3.Error):
                conn.close()


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only (SQLite gives its WAL and
    shared-memory files the same permissions); a missing folder is an error, not created: a
    mistyped path must not leave folders behind."""
    if not path.parent.is_dir():
        raise InvalidInputError.for_field(
            "url", f"{path}: the folder {path.parent} does not exist (create it first)")
    with suppress(FileExistsError):  # an existing database keeps the permissions it has
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class _ThreadConnection:
    """One thread's read connection (a weak-referenceable holder for it)."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _forget(lock: threading.Lock, connections: set[sqlite3.Connection],
            conn: sqlite3.Connection) -> None:
    with lock:
        connections.discard(conn)
    with suppress(sqlite3.Error):
        conn.close()


def _roll_back(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.rollback()
    except sqlite3.Error:
        pass  # the next write ends the transaction (or replaces the connection) before BEGIN


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """Put the database in WAL mode; the journal mode it ends in.

    WAL is recorded in the file, so usually there is nothing to switch. On a new file, the switch
    needs an exclusive lock, and SQLite answers "database is locked" at once, without waiting on
    the busy timeout, when another process is switching or migrating at that moment: several
    processes opening one new file together is how a gateway's workers start. So it is retried
    for up to the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return "wal"
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
