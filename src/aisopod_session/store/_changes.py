"""The change feed: entries written in the transaction of the change they record, read back in
commit order, and pruned by age.

Why positions follow commit order, on every backend: an operation only *records* its entries
on the transaction (:func:`record`, into ``Tx.changes``); the engine writes them with
:func:`write_recorded` as the batch's last statements before COMMIT. That takes the positions
by updating the one ``change_positions`` row (on PostgreSQL in the same statement as the
insert), and the row stays locked until the transaction ends, so a second transaction that
wants positions waits until the first has committed (or rolled back, which hands the same
positions out again: the feed has no gaps). A transaction that committed later therefore always
has larger positions, and a reader that saw position *p* has seen every position below *p*. A
sequence (or an auto-increment id) does not promise that: a transaction that took 41 can commit
after one that took 42, and a reader resuming "after 42" would never see
41. SQLite runs one writer at a time, so there the positions simply follow the newest entry
kept (or ``pruned_through``), and the row's ``last`` column is not rewritten by every commit
(``Dialect.derived_last_position``; it stays at what an older version left there).

The cost is that transactions commit one at a time *from the moment they take positions*: on
PostgreSQL a write's commit (its WAL flush) holds the row. In one process the group committer
already runs one batch at a time, so only replicas writing at once wait for each other.
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aisopod_session import _json
from aisopod_session._time import EPOCH, ONE_US, to_us, utc_now
from aisopod_session.errors import CursorExpiredError, InvalidInputError
from aisopod_session.limits import MAX_PAGE_SIZE
from aisopod_session.models import PeerKind, SessionKey
from aisopod_session.results import Change, ChangeKind, ChangePage
from aisopod_session.store import _checks
from aisopod_session.store._tx import OneStatement, Tx, Work

PRUNE_BATCH = 5000
"""Entries deleted per transaction when the feed is pruned."""

before_commit_seconds = 0.0
"""Test hook: a pause between taking positions and committing (the late-commit case)."""

_CURSOR = re.compile(r"[0-9a-f]{16}")
_KINDS = {kind.value: kind for kind in ChangeKind}
_PEER_KINDS = {kind.value: kind for kind in PeerKind}


# --- cursors ---------------------------------------------------------------------------------

def cursor_of(position: int) -> str:
    """A position as the opaque cursor callers see (hex digits of one length, so cursors of one
    store also sort as text)."""
    return f"{position:016x}"


def position_of(cursor: Any, field: str = "since") -> int:
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise InvalidInputError.for_field(
            field, "not a change-feed cursor: pass back a cursor the feed gave (next_cursor, a "
                   "change's cursor, latest_cursor())")
    return int(cursor, 16)


def limit(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidInputError.for_field("limit", f"an int from 1 to {MAX_PAGE_SIZE}")
    return value


# --- writing ---------------------------------------------------------------------------------

def write_recorded(tx: Tx, entries: Sequence[tuple[str, str | None, int | None, str]]) -> None:
    """Store the entries a batch recorded: called by the engine just before COMMIT."""
    count, at = len(entries), to_us(utc_now())
    if tx.dialect.derived_last_position is not None:
        _write_after_the_last(tx, entries, at)
    elif tx.dialect.writable_ctes and count <= _INSERT_ROWS:
        # One statement: the position update feeds the insert. Sent, not waited for, so it
        # travels with COMMIT (no round trip of its own where statements are pipelined).
        params: list[Any] = [count, count, at]
        for offset, (kind, agent_id, session_id, data) in enumerate(entries, 1):
            params += (offset, kind, agent_id, session_id, data)
        tx.send(_one_statement(count), params)
    else:
        _write_in_chunks(tx, entries, count, at)
    if before_commit_seconds:
        time.sleep(before_commit_seconds)


_ONE_STATEMENT = (
    "WITH p AS (UPDATE change_positions SET last = last + ? WHERE id = 1 RETURNING last) "
    "INSERT INTO changes (position, at, kind, agent_id, session_id, data) "
    "SELECT p.last - CAST(? AS BIGINT) + v.o, CAST(? AS BIGINT), v.k, v.a, v.s, v.d "
    "FROM p, (VALUES {values}) AS v(o, k, a, s, d)"
)
_ROW = "(CAST(? AS BIGINT), ?, ?, CAST(? AS BIGINT), ?)"


@functools.cache
def _one_statement(count: int) -> str:
    return _ONE_STATEMENT.format(values=", ".join([_ROW] * count))


def _write_in_chunks(tx: Tx, entries: Sequence[tuple[str, str | None, int | None, str]],
                     count: int, at: int) -> None:
    last = tx.one("UPDATE change_positions SET last = last + ? WHERE id = 1 RETURNING last",
                  (count,))[0]
    first = last - count + 1
    for start in range(0, count, _INSERT_ROWS):
        chunk = entries[start:start + _INSERT_ROWS]
        params: list[Any] = []
        for offset, (kind, agent_id, session_id, data) in enumerate(chunk, first + start):
            params += (offset, at, kind, agent_id, session_id, data)
        tx.send("INSERT INTO changes (position, at, kind, agent_id, session_id, data) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk)), params)


_INSERT_ROWS = 150  # 6 parameters a row: well inside every backend's parameter limit

_AFTER_THE_LAST = (
    "INSERT INTO changes (position, at, kind, agent_id, session_id, data) "
    "SELECT p.last + v.column1, ?, v.column2, v.column3, v.column4, v.column5 "
    "FROM (SELECT {last} AS last FROM change_positions WHERE id = 1) AS p, (VALUES {values}) AS v"
)


_ONE_AFTER_THE_LAST = (
    "INSERT INTO changes (position, at, kind, agent_id, session_id, data) VALUES "
    "((SELECT {last} FROM change_positions WHERE id = 1) + 1, ?, ?, ?, ?, ?)"
)


def _write_after_the_last(tx: Tx, entries: Sequence[tuple[str, str | None, int | None, str]],
                          at: int) -> None:
    """One writer at a time (SQLite): each chunk's positions follow the newest entry."""
    last = tx.dialect.derived_last_position
    assert last is not None
    if len(entries) == 1:
        kind, agent_id, session_id, data = entries[0]
        tx.send(_after_the_last(last, 1), (at, kind, agent_id, session_id, data))
        return
    for start in range(0, len(entries), _INSERT_ROWS):
        chunk = entries[start:start + _INSERT_ROWS]
        params: list[Any] = [at]
        for offset, (kind, agent_id, session_id, data) in enumerate(chunk, 1):
            params += (offset, kind, agent_id, session_id, data)
        tx.send(_after_the_last(last, len(chunk)), params)


@functools.cache
def _after_the_last(last: str, count: int) -> str:
    if count == 1:
        # One row, in VALUES: a statement that cannot stop halfway needs no statement journal,
        # whose savepoint would make FTS5 flush the transaction's index terms early (measured:
        # 46 µs instead of 9 for this statement after a message was indexed).
        return _ONE_AFTER_THE_LAST.format(last=last)
    return _AFTER_THE_LAST.format(last=last, values=", ".join(["(?, ?, ?, ?, ?)"] * count))


def last_position(tx: Tx) -> str:
    """The newest feed position, as an expression over the ``change_positions`` row."""
    return tx.dialect.derived_last_position or "last"


# --- reading ---------------------------------------------------------------------------------

_READ = (
    "SELECT c.position, c.at, c.kind, c.agent_id, c.session_id, c.data, s.channel, "
    "s.account_id, s.peer_kind, s.peer_id FROM changes c LEFT JOIN sessions s "
    "ON s.id = c.session_id WHERE c.position > ? {agent} ORDER BY c.position LIMIT ?"
)


def _change(row: Sequence[Any]) -> Change:
    position, at, kind, agent_id, session_id, data, channel, account, peer_kind, peer_id = row
    key = None
    if channel is not None:
        key = SessionKey._from_store({"agent_id": agent_id, "channel": channel,
                                      "account_id": account, "peer_kind": _PEER_KINDS[peer_kind],
                                      "peer_id": peer_id})
    return Change._from_store({
        "cursor": cursor_of(position), "kind": _KINDS[kind], "at": EPOCH + ONE_US * at,
        "agent_id": agent_id, "session_id": session_id, "key": key,
        "data": {} if data == "{}" else _json.loads(data),
    })


def changes(since: Any, agent_id: str | None, count: Any) -> Work[ChangePage]:
    """The entries after ``since`` (None: the oldest kept), of one agent or all, oldest first."""
    after = None if since is None else position_of(since)
    checked = limit(count)
    agent = _checks.agent_or_none(agent_id)

    def read(tx: Tx) -> ChangePage:
        last, pruned = tx.one(f"SELECT {last_position(tx)}, pruned_through FROM "
                              "change_positions WHERE id = 1")
        start = pruned if after is None else after
        if start < pruned:
            raise CursorExpiredError(
                f"the cursor {cursor_of(start)} is older than the change feed keeps (entries "
                f"up to {cursor_of(pruned)} were pruned): read from latest_cursor(), or from "
                "the start of the feed after re-reading what you keep")
        if start > last:
            raise InvalidInputError.for_field(
                "since", f"the cursor {cursor_of(start)} is ahead of this store's feed (newest "
                         f"{cursor_of(last)}): it comes from another database")
        if agent is None:
            rows = tx.all(_READ.format(agent=""), (start, checked))
        else:
            rows = tx.all(_READ.format(agent="AND c.agent_id = ?"), (start, agent, checked))
        found = [_change(row) for row in rows]
        # A short page read everything up to the newest entry (of this snapshot): go on from
        # there, so an agent whose changes are rare does not scan the same entries every poll.
        end = found[-1].cursor if len(found) == checked else cursor_of(last)
        return ChangePage(found, next_cursor=end)

    return Work(read=read)


def latest_cursor() -> Work[str]:
    def read(tx: Tx) -> str:
        return cursor_of(tx.one(f"SELECT {last_position(tx)} FROM change_positions "
                                "WHERE id = 1")[0])

    return Work(read=OneStatement(read))


def prune(cutoff: int, batch: int = PRUNE_BATCH) -> Work[int]:
    """Delete up to ``batch`` of the oldest entries recorded at or before ``cutoff`` (µs): an
    entry goes once its retention has fully passed, like everything purge deletes. How many."""

    def write(tx: Tx) -> int:
        pruned = tx.one("SELECT pruned_through FROM change_positions WHERE id = 1")[0]
        row = tx.one("SELECT max(position) FROM changes WHERE position <= ? AND at <= ?",
                     (pruned + batch, cutoff))
        if row is None or row[0] is None:
            return 0
        through = row[0]
        deleted = tx.run("DELETE FROM changes WHERE position <= ?", (through,))
        tx.run("UPDATE change_positions SET pruned_through = ? WHERE id = 1", (through,))
        return deleted

    return Work(write=write)


def count_prunable(cutoff: int) -> Work[int]:
    """How many entries :func:`prune` would delete (a dry run)."""

    def read(tx: Tx) -> int:
        row = tx.one("SELECT max(position) FROM changes WHERE at <= ?", (cutoff,))
        if row is None or row[0] is None:
            return 0
        return int(tx.one("SELECT count(*) FROM changes WHERE position <= ?", (row[0],))[0])

    return Work(read=read)


def record(tx: Tx, kind: ChangeKind, agent_id: str | None, session_id: int | None,
           **data: Any) -> None:
    """Record one entry on the transaction (written before it commits, see the module)."""
    tx.changes.append((kind.value, agent_id, session_id, _json.dumps(data) if data else "{}"))


def record_sessions(tx: Tx, kind: ChangeKind, sessions: Sequence[Sequence[Any]],
                    **data: Any) -> None:
    """One entry per session of rows ``(id, agent_id)`` (e.g. a DELETE's RETURNING)."""
    for session_id, agent_id in sessions:
        record(tx, kind, agent_id, int(session_id), **data)


def record_removed_messages(tx: Tx, session_ids: Sequence[Any], reason: str) -> None:
    """One ``messages.removed`` entry per session, from the session ids of deleted messages
    (a DELETE's RETURNING)."""
    counts = Counter(int(session_id) for session_id in session_ids)
    ids = sorted(counts)
    for start in range(0, len(ids), _INSERT_ROWS):
        chunk = ids[start:start + _INSERT_ROWS]
        marks = ", ".join("?" for _ in chunk)
        for session_id, agent_id in tx.all(
                f"SELECT id, agent_id FROM sessions WHERE id IN ({marks}) ORDER BY id", chunk):
            record(tx, ChangeKind.MESSAGES_REMOVED, agent_id, session_id,
                   count=counts[session_id], reason=reason)
