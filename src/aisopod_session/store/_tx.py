"""The transaction wrapper every operation is written against, and the unit of work.

Statements are written once with ``?`` placeholders; :class:`Dialect` holds the few differences
between the backends. An operation becomes a :class:`Work`, which an engine runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

LockKey = tuple[str, ...]
"""What a write locks, compared to order a batch (the parts of a session key)."""


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def close(self) -> None: ...


class Dialect:
    """The few differences between the SQL the backends accept."""

    def __init__(self, name: str, placeholder: str, for_update: str, unlimited: str,
                 now_us: str, next_fence: str, notify_run_end: str | None = None,
                 run_poll_seconds: float = 0.02, notify_changes: str | None = None,
                 writable_ctes: bool = False, derived_last_position: str | None = None) -> None:
        self.name = name
        self.for_update = for_update
        self.unlimited = unlimited  # a LIMIT that means "no limit" (needed before OFFSET)
        self.now_us = now_us
        """The database's clock, in stored microseconds: run leases expire by it, never by a
        comparison of the replicas' clocks."""
        self.next_fence = next_fence
        """A statement answering the next run fence (one counter for every key)."""
        self.notify_run_end = notify_run_end
        """A statement telling other processes that a key's run ended (its one parameter: the
        key's name, see ``_wakeups``); None where only this process can be told."""
        self.run_poll_seconds = run_poll_seconds
        """How often a waiting start_run looks again without being woken."""
        self.notify_changes = notify_changes
        """A statement telling other processes that the feed grew (sent after a commit that
        wrote entries); None where only this process can be told."""
        self.derived_last_position = derived_last_position
        """Where one writer at a time takes feed positions (SQLite): the newest position as
        an expression over the ``change_positions`` row, derived from the entries kept, so a
        commit does not rewrite that row too. None: its ``last`` column is kept (PostgreSQL,
        where taking positions by updating the row is what orders concurrent writers)."""
        self.writable_ctes = writable_ctes
        """Whether an UPDATE can feed an INSERT in one statement (``WITH … UPDATE … RETURNING``)."""
        self._placeholder = placeholder
        self._translated: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """Statements are written with ``?`` placeholders; psycopg wants ``%s``."""
        translated = self._translated.get(text)
        if translated is None:
            translated = text if self._placeholder == "?" else text.replace("?", self._placeholder)
            self._translated[text] = translated
        return translated


class Tx:
    """One connection inside one transaction (or one read), with the dialect applied."""

    __slots__ = ("_cursor", "_new_cursor", "_sent", "_sql", "_wait", "changes", "dialect",
                 "memo", "to_index")

    def __init__(self, cursor: Cursor, dialect: Dialect,
                 wait: Callable[[], None] | None = None,
                 new_cursor: Callable[[], Cursor] | None = None,
                 memo: dict[str, Any] | None = None) -> None:
        self._cursor = cursor
        self._sql = dialect.sql
        self._wait = wait
        """Where statements are pipelined (PostgreSQL's write transactions): waits until every
        statement sent so far has been answered, raising the error of one that failed. A
        statement whose rows are fetched is waited for by the fetch itself."""
        self._new_cursor = new_cursor
        """Where statements are pipelined: another cursor of the transaction's connection, to
        hold the rows of a statement read later (see :meth:`later`)."""
        self._sent = False  # a statement was sent (see send) and nothing answered since
        self.dialect = dialect
        self.memo: dict[str, Any] = {} if memo is None else memo
        """The store's memo, shared by its transactions: what an operation read from the
        database and may reuse for a while, where a stale value can only choose a slower plan,
        never change an answer (see ``_search_candidates.sorts_every_match``)."""
        self.changes: list[tuple[str, str | None, int | None, str]] = []
        """Change-feed entries recorded by the transaction's writes (kind, agent, session,
        JSON data), written just before it commits (see ``_changes``)."""
        self.to_index: list[tuple[int, str, str | None]] = []
        """Messages the transaction stored, as (id, content JSON, tool_calls JSON), added to the
        search index just before it commits, all in one statement (see ``_search_index``)."""

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._cursor.execute(self._sql(sql), params)
        self._sent = False  # the answer comes after those of the statements sent before it
        return self._cursor.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cursor.execute(self._sql(sql), params)
        self._sent = False
        return self._cursor.fetchone()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """A statement whose count of affected rows is wanted (waited for)."""
        self._cursor.execute(self._sql(sql), params)
        if self._wait is not None:
            self._wait()
            self._sent = False
        return self._cursor.rowcount

    def send(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement whose answer is not wanted. Where statements are pipelined it travels
        with the next one that needs an answer, or with COMMIT: no round trip of its own. Its
        failure surfaces there (see :meth:`answer_sent`), and fails the transaction."""
        self._cursor.execute(self._sql(sql), params)
        self._sent = self._wait is not None

    def later(self, sql: str, params: Sequence[Any] = ()) -> Callable[[], list[Any]]:
        """Send a statement whose rows are read later, by calling the function returned.

        Where statements are pipelined, nothing waits for its answer now: the first read of
        such rows fetches the answers of everything sent before it, so the statements of many
        jobs (see :class:`Pending`) share one round trip. Elsewhere it runs at once. Its failure
        surfaces when its rows (or those of a statement sent after it) are read.
        """
        if self._new_cursor is None:
            self._cursor.execute(self._sql(sql), params)
            rows = self._cursor.fetchall()
            return lambda: rows
        cursor = self._new_cursor()
        cursor.execute(self._sql(sql), params)

        def rows_of_statement() -> list[Any]:
            try:
                return cursor.fetchall()
            finally:
                cursor.close()

        return rows_of_statement

    def answer_sent(self) -> None:
        """Raise now the failure of a statement sent and not answered yet (a round trip only
        if there is one): the engine calls it after each job of a batch, so that such a
        failure is blamed on the job that sent it, not on the next one."""
        if self._sent and self._wait is not None:
            self._sent = False
            self._wait()

    def settle(self) -> None:
        """Wait for every statement sent so far, ignoring their errors: after a failed
        statement, before ``ROLLBACK TO SAVEPOINT`` (a pipeline skips what follows an error
        until it is settled)."""
        if self._wait is not None:
            # The failure was already raised where it belongs, by the statement that failed.
            self._sent = False
            with contextlib.suppress(Exception):
                self._wait()


class OneStatement(Generic[T]):
    """A read that needs one SQL statement, so no transaction around it.

    A single statement reads one consistent snapshot on every backend (SQLite's autocommit
    statement, PostgreSQL's per-statement snapshot), so BEGIN and COMMIT would only add two round
    trips to the hottest reads. When ``run`` returns None and there is a ``fallback`` (a read of
    several statements), the fallback runs inside a read transaction, as any other read: e.g. a
    history read whose one statement found nothing, where telling a missing session from an
    empty history takes a second statement that must see the same snapshot.

    Called directly (inside another read's transaction) it runs ``run``, then the fallback
    if that found nothing: the same answer, in the caller's snapshot.
    """

    __slots__ = ("fallback", "run")

    def __init__(
        self, run: Callable[[Tx], T | None], fallback: Callable[[Tx], T] | None = None
    ) -> None:
        self.run = run
        self.fallback = fallback

    def __call__(self, tx: Tx) -> T | None:
        found = self.run(tx)
        if found is None and self.fallback is not None:
            return self.fallback(tx)
        return found



class Pending(Generic[T]):
    """A write's result still waiting for the answers of statements it sent with
    :meth:`Tx.later`: ``finish(in_turn)`` reads them and gives the result (or raises the write's
    error).

    The engine finishes a batch's pending writes after every job of the batch has sent its
    statements, so that, where statements are pipelined, a batch of appends costs one round trip
    for all of them instead of one per statement. Until finished, a pending write has changed
    the database but may still fail: ``finish`` runs inside the transaction, and raising there
    fails the job like raising in ``write``. ``in_turn`` is False when later jobs of the batch
    have run since: a write that would need more statements then raises :class:`OutOfTurnError`
    (they would run after those jobs'), and the batch runs again with each job finished in its
    turn. The feed entries ``finish`` records are put where the job's turn was.
    """

    __slots__ = ("finish",)

    def __init__(self, finish: Callable[[bool], T]) -> None:
        self.finish = finish


class OutOfTurnError(Exception):
    """Raised by :meth:`Pending.finish` out of turn when the write must go on with more
    statements: the engine runs the batch again, finishing each job in its turn."""


@dataclass(frozen=True, slots=True)
class Work(Generic[T]):
    """What an operation needs run: a read, a write, or a read with a write as fallback.

    With both, the write runs only when the read returned None (get-or-create: the common case,
    a session that exists, never queues behind writers).
    """

    read: Callable[[Tx], T | None] | None = None
    write: Callable[[Tx], T] | None = None
    pipelined: Callable[[Tx], T | Pending[T]] | None = None
    """The same write as ``write``, which may answer :class:`Pending`: what the engine runs
    when given (``write`` is what another operation's write calls to include this one)."""
    lock_key: LockKey | None = None
    """The session a write locks (see ``_schema.lock_order``), so batches lock in one order: no
    deadlocks."""
