"""The PostgreSQL backend: psycopg 3 with a psycopg_pool connection pool.

The same statements as SQLite (see ``_ops``); what differs is how races are settled: one live
session per key by a unique partial index and ``INSERT … ON CONFLICT DO NOTHING``, counters in the
same statement as the lock they take, external-id de-duplication by a unique index. Python locks
play no part, so any number of processes and replicas can share one database.

Failures: a batch that loses its connection (or deadlocks) *before* COMMIT is rolled back by the
server and run again on a fresh connection for up to ``RetryPolicy.window`` seconds; a connection
lost *during* COMMIT raises ``StoreUnavailableError(maybe_committed=True)`` and is never retried,
since running it again could store it twice. Reads are retried the same way.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aisopod_session.errors import InvalidInputError, StoreUnavailableError
from aisopod_session.store._engine import CommitRefusedError, Durability, Engine, Failure
from aisopod_session.store._migrations import migrate_postgres
from aisopod_session.store._tx import Dialect, Tx
from aisopod_session.store._wakeups import CHANNEL, FEED_CHANNEL

log = logging.getLogger("aisopod_session.store")

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "PostgreSQL support needs psycopg: pip install 'aisopod-session[postgres]'"
    ) from exc

T = TypeVar("T")

DEFAULT_SCHEMA = "aisopod_session"
DEFAULT_POOL_SIZE = 4
ANNOUNCE_INTERVAL_SECONDS = 0.02
"""Shortest time between two NOTIFYs of new change-feed entries from one store (what a watcher
in another process may wait longer, at most)."""
POOL_WAIT_SECONDS = 10.0

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresEngine(Engine):
    dialect = Dialect("postgres", "%s", " FOR UPDATE", "ALL",
                      "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
                      "SELECT nextval('run_fences')",
                      # delivered when the finishing transaction commits
                      f"SELECT pg_notify('{CHANNEL}', current_schema() || ' ' || %s)",
                      # woken by the notification; the poll is the safety net
                      run_poll_seconds=0.25,
                      notify_changes=f"SELECT pg_notify('{FEED_CHANNEL}', current_schema())",
                      writable_ctes=True)

    def __init__(
        self,
        url: str,
        *,
        durability: Durability,
        pool_size: int | None = None,
        schema: str | None = None,
    ) -> None:
        self.durability = durability
        self.schema = schema or DEFAULT_SCHEMA
        if not _SCHEMA_NAME.match(self.schema):
            raise InvalidInputError.for_field(
                "schema", f"{self.schema!r} is not a plain SQL identifier (letters, digits, _)"
            )
        size = DEFAULT_POOL_SIZE if pool_size is None else pool_size
        if type(size) is not int or not 1 <= size <= 100:
            raise InvalidInputError.for_field("pool_size", f"must be 1 to 100, got {size!r}")
        self._url = url
        self._safe_url = _without_password(url)
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                migrate_postgres(conn, self.schema)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"{self.describe()}: {exc}".strip()) from exc
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=POOL_WAIT_SECONDS,
            name="aisopod-session",
            open=True,
        )
        super().__init__(read_threads=size)
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self._announcer: threading.Thread | None = None
        self._announce = threading.Event()
        self.run_ends.on_first_wait = self._start_listening
        self.feed.on_first_wait = self._start_listening

    def describe(self) -> str:
        return f"PostgreSQL {self._safe_url} (schema {self.schema})"

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        if self.durability == "normal":
            # The server may lose the last moments of commits if *it* crashes; a crash of this
            # process loses nothing that was acknowledged.
            conn.execute("SET synchronous_commit TO off")

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.cursor() as cursor:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield Tx(cursor, self.dialect, memo=self.memo)
            finally:
                if not conn.broken:
                    cursor.execute("ROLLBACK")

    def _read_statement(self, fn: Callable[[Tx], T]) -> T:
        # The pool's connections are in autocommit: the one statement is its own transaction,
        # with its own snapshot, and costs no BEGIN / ROLLBACK round trips.
        with self._pool.connection() as conn, conn.cursor() as cursor:
            return fn(Tx(cursor, self.dialect, memo=self.memo))

    @contextmanager
    def _write_tx(self) -> Iterator[Tx]:
        # In pipeline mode: BEGIN travels with the first statement, and the statements whose
        # answer nobody waits for (the change feed's, see Tx.send) travel with COMMIT, so a
        # one-append transaction costs three round trips, not five.
        with self._pool.connection() as conn, conn.cursor() as cursor:
            committing = False
            try:
                with conn.pipeline() as pipeline:
                    cursor.execute("BEGIN")
                    yield Tx(cursor, self.dialect, pipeline.sync, conn.cursor, self.memo)
                    committing = True
                    cursor.execute("COMMIT")
            except BaseException as exc:
                if conn.broken:
                    raise
                # The server answered, so nothing was committed: a statement that travelled
                # with COMMIT failed, or COMMIT itself was refused (PostgreSQL rolls back).
                cursor.execute("ROLLBACK")
                if committing and isinstance(exc, psycopg.Error):
                    raise CommitRefusedError(exc) from exc
                raise

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, psycopg.OperationalError | PoolTimeout):
            return Failure.RETRY  # lost connection, restart, deadlock, serialization failure
        if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
            return Failure.JOB
        if isinstance(exc, psycopg.Error):
            return Failure.FATAL
        return Failure.JOB

    def _announce_changes(self) -> None:
        # NOTIFY from a thread of its own, after the commit: not a statement in every write
        # transaction (a round trip on the write's path). Commits that come while it sends
        # are told by its next NOTIFY, so a burst of writes costs a few.
        self._announce.set()
        if self._announcer is None:
            with self._listener_lock:
                if self._announcer is None and not self.closed:
                    self._announcer = threading.Thread(target=self._send_announcements,
                                                       name="aisopod-announce", daemon=True)
                    self._announcer.start()

    def _send_announcements(self) -> None:
        assert self.dialect.notify_changes is not None
        while True:
            self._announce.wait(1.0)
            sent = self._announce.is_set()
            if sent:
                self._announce.clear()  # before sending: a later commit sets it again
                try:
                    with self._pool.connection() as conn:
                        conn.execute(self.dialect.notify_changes)
                except Exception:  # watchers elsewhere poll meanwhile
                    if not self.closed:
                        log.warning("announcing new change-feed entries failed", exc_info=True)
            if self.closed:
                return
            if sent:  # at most one NOTIFY per interval: a steady writer's commits share them
                time.sleep(ANNOUNCE_INTERVAL_SECONDS)

    def _start_listening(self) -> None:
        """Start (once) the connection that turns other processes' run ends and feed entries
        into wake-ups."""
        with self._listener_lock:
            if self._listener is not None or self.closed:
                return
            self._listener = threading.Thread(target=self._listen, name="aisopod-listen",
                                              daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        prefix = self.schema + " "
        while not self.closed:
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {FEED_CHANNEL}")
                    # entries committed while the listener was (re)connecting
                    self.feed.changed()
                    while not self.closed:
                        for note in conn.notifies(timeout=0.2):  # closed: ends soon
                            if note.channel == FEED_CHANNEL:
                                if note.payload == self.schema:
                                    self.feed.changed()
                            elif note.payload.startswith(prefix):
                                self.run_ends.ended(note.payload[len(prefix):])
            except Exception:  # the server restarts, or worse: waiters poll meanwhile
                log.warning("listening for notifications failed; retrying", exc_info=True)
                time.sleep(1.0)

    def _close_connections(self) -> None:
        if self._announcer is not None:
            self._announce.set()  # wake it: it sends what may be pending, then ends
            self._announcer.join(timeout=5)
        self._pool.close()
        if self._listener is not None:
            self._listener.join(timeout=5)

    def drop_schema(self) -> None:
        """Remove the schema and everything in it (used by tests and ``db`` tooling)."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))


def _without_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
