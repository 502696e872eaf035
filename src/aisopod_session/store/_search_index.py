"""Keeping the search index: messages indexed in the transaction that stores them, erased
ones scrubbed from it in the one that deletes them, the index of older messages built in
batches, and the switch that turns it off.

SQLite: an FTS5 table ``message_fts`` (rowid = message id, body = the tokens), the entries of
short writes staged in ``message_fts_staged`` (see :data:`STAGED_LIMIT`), and each indexed
message's token count on its row (``messages.search_tokens``); PostgreSQL:
``message_search`` (a tsvector of the tokens, GIN-indexed, and body = the tokens as text). The
tokens come from ``_search_text``, so both backends index exactly what the matcher searches.
Deleting a message removes its row from the index in the same transaction on both (triggers on
SQLite, the foreign key's cascade on PostgreSQL).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from aisopod_session.errors import InvalidInputError, SearchDisabledError
from aisopod_session.limits import MAX_SEARCH_BUILD_BATCH
from aisopod_session.results import SearchIndexStatus
from aisopod_session.store._search_text import index_tokens
from aisopod_session.store._tx import Dialect, Tx, Work

_CHUNK = 200
"""Messages per multi-row INSERT into the index."""
BUILD_BATCH = 1000
"""Messages one batch of ``build_search_index`` indexes (one short write transaction)."""

STAGED_LIMIT = 32
"""SQLite: index entries a write of fewer messages stages in ``message_fts_staged``, and how many
the staged table holds before the write that fills it moves them all into ``message_fts``.

FTS5 writes a new segment (and rewrites its structure record) at every commit that indexed
anything: for a one-message append that doubled the index's cost (raw sqlite3, WAL,
``synchronous=FULL``: 153 µs of CPU per append with FTS5, 106 µs staged, 89 µs without an
index). A search confirms the staged entries with the matcher, as it does FTS5's candidates, so
it reads at most this many more rows."""

_STATE = "SELECT enabled, pending_below FROM search_state WHERE id = 1"

_NOT_INDEXING: weakref.WeakSet[Dialect] = weakref.WeakSet()
"""The dialects of stores opened with ``search=False``: their writes leave the index alone."""


def without_search(dialect: Dialect) -> Dialect:
    """A copy of ``dialect`` for an engine whose writes do not keep the search index."""
    twin = copy.copy(dialect)
    _NOT_INDEXING.add(twin)
    return twin


def indexing(tx: Tx) -> bool:
    """Whether this transaction's writes keep the search index."""
    return tx.dialect not in _NOT_INDEXING


def index_messages(tx: Tx, rows: Iterable[tuple[int, str, str | None]]) -> None:
    """Index messages this transaction stored, given as (id, content JSON, tool_calls JSON),
    unless the store was opened with search off.

    SQLite: at once, staged or into FTS5 (see :data:`STAGED_LIMIT`). PostgreSQL: recorded on
    the transaction, and written by :func:`index_recorded` just before it commits, or as soon as
    a chunk's worth is recorded: one statement, travelling with COMMIT, for a whole batch of
    appends.
    """
    if not indexing(tx):
        return
    if tx.dialect.name == "sqlite":
        _write(tx, rows, replace=False)
        return
    tx.to_index.extend(rows)
    if len(tx.to_index) >= _CHUNK:  # a long write (an import) keeps its memory bounded
        index_recorded(tx)


def index_recorded(tx: Tx) -> None:
    """Write the index entries the transaction recorded (the engine calls it before COMMIT).

    Joined to ``messages``: a message a later job of the batch deleted again (a pop, an erasure)
    is not indexed. A job rolled back to its savepoint took its entries with it (the engine
    cuts ``Tx.to_index``).
    """
    rows, tx.to_index = tx.to_index, []
    _write(tx, rows, replace=False)


def _write(tx: Tx, rows: Iterable[Sequence[Any]], *, replace: bool) -> None:
    """Index (id, content JSON, tool_calls JSON) rows now. ``replace``: a message may be
    indexed already (the backfill).

    Both backends keep each message's tokens as text, in order, separated by spaces (the
    matcher reads them instead of tokenizing the message again); PostgreSQL builds the
    tsvector from that text itself (``array_to_tsvector`` sorts and drops repeated tokens), so
    the two are written from one parameter, in one statement."""
    entries = []
    sizes = []
    for id_, content, tool_calls in rows:
        found = index_tokens(content, tool_calls)
        if found:
            entries.append((int(id_), " ".join(found)))
            sizes.append((int(id_), len(found)))
    if tx.dialect.name == "sqlite":
        _count_tokens(tx, sizes)
        if not replace and len(entries) < STAGED_LIMIT:
            _stage(tx, entries)
            return
    for start in range(0, len(entries), _CHUNK):
        chunk = entries[start : start + _CHUNK]
        params: list[Any] = []
        for id_, body in chunk:
            params.extend((id_, body))
        if tx.dialect.name == "sqlite":
            if replace:
                # SQLite hands a deleted newest id out again: a message stored (and staged)
                # since may carry an id the backfill indexes; it leaves the staged table, or a
                # search would find it in both
                tx.run("DELETE FROM message_fts_staged WHERE id IN ("
                       + ", ".join("?" for _ in chunk) + ")", [id_ for id_, _ in chunk])
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            tx.run(f"{verb} INTO message_fts (rowid, body) VALUES "
                   + ", ".join("(?, ?)" for _ in chunk), params)
            continue
        # Joined to messages: a message deleted meanwhile (by a later job of the same batch, or
        # during the backfill) is skipped, not a foreign-key error.
        statement = ("INSERT INTO message_search (message_id, terms, body) "
                     "SELECT v.id, array_to_tsvector(string_to_array(v.body, ' ')), v.body "
                     "FROM (VALUES " + ", ".join("(CAST(? AS BIGINT), CAST(? AS text))"
                                                 for _ in chunk)
                     + ") AS v (id, body) JOIN messages m ON m.id = v.id")
        if replace:
            tx.run(statement + " ON CONFLICT (message_id) DO UPDATE SET terms = excluded.terms, "
                   "body = excluded.body", params)
        else:  # messages this transaction stored
            # Sent, not waited for: it travels with COMMIT, and its failure refuses the commit.
            tx.send(statement, params)


def _count_tokens(tx: Tx, sizes: list[tuple[int, int]]) -> None:
    """SQLite: record each indexed message's token count, given as (id, count), on its row
    (``search_tokens``): a ranked search scores a candidate from it and FTS5's counts of the
    query's terms, without reading the candidate's token text (migration 0014)."""
    if len(sizes) == 1:  # a one-message append: a third of the cost of the joined form
        tx.run("UPDATE messages SET search_tokens = ? WHERE id = ?", sizes[0][::-1])
        return
    for start in range(0, len(sizes), _CHUNK):
        chunk = sizes[start : start + _CHUNK]
        tx.run("UPDATE messages SET search_tokens = v.column2 FROM (VALUES "
               + ", ".join("(?, ?)" for _ in chunk) + ") AS v WHERE messages.id = v.column1",
               [value for size in chunk for value in size])


def _stage(tx: Tx, entries: list[tuple[int, str]]) -> None:
    """SQLite: stage a short write's entries; the write that fills the staged table moves
    every staged entry into FTS5 (one segment for :data:`STAGED_LIMIT` messages)."""
    if not entries:
        return
    tx.run("INSERT INTO message_fts_staged (id, body) VALUES "
           + ", ".join("(?, ?)" for _ in entries), [value for entry in entries for value in entry])
    if int(tx.one("SELECT count(*) FROM message_fts_staged")[0]) >= STAGED_LIMIT:
        tx.run("INSERT INTO message_fts (rowid, body) SELECT id, body FROM message_fts_staged")
        tx.run("DELETE FROM message_fts_staged")


def scrub(tx: Tx) -> None:
    """Leave nothing of deleted messages in the index's storage (call after deleting them).

    FTS5 (without ``secure-delete``, which SQLite 3.40 lacks) records a delete as a marker in a
    new segment: the words stay in the older segments of ``message_fts_data`` until those are
    merged. ``optimize`` merges every segment into one, dropping deleted entries, in this
    transaction; it rewrites the whole index (measured in the README). On PostgreSQL the rows
    are gone for every query at once; their dead tuples are reclaimed by VACUUM.
    """
    if tx.dialect.name == "sqlite":
        tx.run("INSERT INTO message_fts (message_fts) VALUES ('optimize')")


def _clear(tx: Tx) -> None:
    if tx.dialect.name == "sqlite":
        tx.run("DELETE FROM message_fts_staged")
        tx.run("DELETE FROM message_fts")
        scrub(tx)
    else:
        tx.run("TRUNCATE message_search")


def configure(search: bool | None) -> Work[bool]:
    """Make the database's search state what the store was opened with, and answer it
    (``search=None``: the database's state as it is).

    Turning search off empties the index (nothing is kept that is not maintained); turning it
    back on marks every stored message as pending, for ``build_search_index``.
    """

    def read(tx: Tx) -> bool | None:
        enabled = bool(tx.one(_STATE)[0])
        return enabled if search is None or enabled == search else None

    def write(tx: Tx) -> bool:
        assert search is not None  # the read answered None
        if bool(tx.one(_STATE + tx.dialect.for_update)[0]) == search:
            return search
        _clear(tx)
        below = 0
        if search:
            below = int(tx.one("SELECT coalesce(max(id) + 1, 0) FROM messages")[0])
        tx.run("UPDATE search_state SET enabled = ?, pending_below = ? WHERE id = 1",
               (int(search), below))
        return search

    return Work(read=read, write=write)


def status() -> Work[SearchIndexStatus]:
    def read(tx: Tx) -> SearchIndexStatus:
        enabled, below = tx.one(_STATE)
        pending = 0
        if enabled and below:
            pending = int(tx.one("SELECT count(*) FROM messages WHERE id < ?", (below,))[0])
        return SearchIndexStatus(enabled=bool(enabled), pending=pending)

    return Work(read=read)


def build_batch(size: Any) -> Work[tuple[int, bool]]:
    """Index the newest ``size`` of the messages still pending: how many it indexed, and
    whether none is left. Each batch is one short write, so appends keep going meanwhile."""
    if type(size) is not int or not 1 <= size <= MAX_SEARCH_BUILD_BATCH:
        raise InvalidInputError.for_field("batch_size",
                                          f"must be 1 to {MAX_SEARCH_BUILD_BATCH}")

    def write(tx: Tx) -> tuple[int, bool]:
        enabled, below = tx.one(_STATE + tx.dialect.for_update)
        if not enabled:
            raise SearchDisabledError("search is turned off for this store (search=False)")
        if not below:
            return 0, True
        rows = tx.all("SELECT id, content, tool_calls FROM messages WHERE id < ? "
                      f"ORDER BY id DESC LIMIT ?{tx.dialect.for_update}", (below, size))
        _write(tx, rows, replace=True)
        left = int(rows[-1][0]) if len(rows) == size else 0
        if left and tx.one("SELECT 1 FROM messages WHERE id < ? LIMIT 1", (left,)) is None:
            left = 0  # that was the last batch
        tx.run("UPDATE search_state SET pending_below = ? WHERE id = 1", (left,))
        if not left and tx.dialect.name == "postgres":
            # the planner's statistics of a table that just grew by every message: without
            # them it may scan the whole table instead of the GIN index (autovacuum would, later)
            tx.run("ANALYZE message_search")
        return len(rows), not left

    return Work(write=write)
