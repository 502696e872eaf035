"""Pass 2 of an import (see ``_import``): the checked rows of a whole file, stored in one write
transaction.

Read back from the spool in file order, inside the transaction: what only the database can tell
is checked here, and any error raised rolls back everything the file stored, change-feed entries
included (the feed then shows nothing of it):

* a session that already exists, by ``on_conflict``: a live session of the same key (the
  database keeps one per key), or for an archived session of the file an archived generation of
  the same key created at the same microsecond (one imported before). ``fail`` refuses the file
  (ConflictError, naming the line); ``skip`` keeps the stored one and leaves out the file's (with
  its messages); ``archive-existing`` archives the stored live session (as a reset does) and
  imports the file's (an archived duplicate is left out, as with ``skip``);
* a file with two live sessions of one key, or one ``external_id`` twice in a session
  (InvalidInputError, naming the line).

Counters are computed from the rows stored: ``message_count`` is the session's live
(not compacted) messages, ``last_seq`` its highest position. Messages go in by chunks of at most
``PAGE`` rows and ``CHUNK_CHARS`` characters; memory holds one chunk.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from aisopod_session.errors import ConflictError, InvalidInputError
from aisopod_session.models import PeerKind, SessionKey
from aisopod_session.results import ChangeKind, ImportConflictPolicy, ImportResult
from aisopod_session.store._changes import record as record_change
from aisopod_session.store._changes import write_recorded
from aisopod_session.store._schema import (
    INSERT_CHUNK,
    KEY_WHERE,
    LIVE_KEY_WHERE,
    MessageRow,
    archive_live,
    insert_messages,
)
from aisopod_session.store._tx import Tx, Work

PAGE = INSERT_CHUNK
CHUNK_CHARS = 8 * 1024 * 1024
"""Most characters of content and tool calls one chunk of messages holds."""
FEED_FLUSH = 10_000
"""Change-feed entries of an import kept in memory before they are written (they stay part of
the transaction; writing them takes the feed's positions, which on PostgreSQL makes other
writers' commits wait until the import commits)."""

Records = Callable[[], Iterable[tuple[Any, ...]]]
"""The spool's records, from the first, as ``_import`` writes them:

* ``("s", line, agent_id, channel, account_id, peer_kind, peer_id, status, created_at,
  updated_at, token_usage, metadata, compaction_count, last_compacted_at,
  last_compaction_summary, archived_at)``
* ``("m", line, seq, role, content, tool_calls, created_at, token_count, external_id,
  compacted, compacted_at)``
* ``("q", line, agent_id, channel, account_id, peer_kind, peer_id, role, content, tool_calls,
  created_at, token_count, external_id, enqueued_at)``

(timestamps in stored microseconds, JSON as text)."""


def publish_spool(records: Records, policy: ImportConflictPolicy) -> Work[ImportResult]:
    def write(tx: Tx) -> ImportResult:
        return _Publisher(tx, policy).run(records())

    return Work(write=write)


def _key(parts: tuple[Any, ...]) -> SessionKey:
    agent_id, channel, account_id, peer_kind, peer_id = parts
    return SessionKey._from_store({"agent_id": agent_id, "channel": channel,
                                   "account_id": account_id, "peer_kind": PeerKind(peer_kind),
                                   "peer_id": peer_id})


class _Publisher:
    def __init__(self, tx: Tx, policy: ImportConflictPolicy) -> None:
        self._tx = tx
        self._policy = policy
        self._first_change = len(tx.changes)  # entries before these belong to other writes
        self._counts = dict.fromkeys(("sessions", "messages", "queued", "skipped", "archived"), 0)
        self._mine = array("q")  # the ids of the sessions stored here, increasing
        # the session receiving messages: id, agent, counters; skipping: its messages are not
        self._session_id: int | None = None
        self._agent = ""
        self._skipping = False
        self._live = self._last_seq = 0
        self._rows: list[MessageRow] = []
        self._lines: list[int] = []
        self._chars = 0

    def run(self, records: Iterable[tuple[Any, ...]]) -> ImportResult:
        for record in records:
            kind = record[0]
            if kind == "m":
                self._message(record)
                continue
            self._end_session()
            if kind == "s":
                self._session(record)
            else:
                self._queued(record)
            self._flush_feed()
        self._end_session()
        result = ImportResult(**self._counts)
        record_change(self._tx, ChangeKind.IMPORT_DONE, None, None, **result.model_dump())
        return result

    # --- sessions -----------------------------------------------------------------------------

    def _is_mine(self, session_id: int) -> bool:
        at = bisect_left(self._mine, session_id)
        return at < len(self._mine) and self._mine[at] == session_id

    def _existing(self, line: int, key: tuple[Any, ...], live: bool, created_at: int
                  ) -> int | None:
        """The stored session the file's one collides with (None: none does)."""
        if live:
            row = self._tx.one(f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}"
                               f"{self._tx.dialect.for_update}", key)
        else:
            row = self._tx.one(f"SELECT id FROM sessions WHERE {KEY_WHERE} AND "
                               "status = 'archived' AND created_at = ? ORDER BY id LIMIT 1",
                               (*key, created_at))
        if row is None:
            return None
        if self._is_mine(int(row[0])):
            what = "live session" if live else "archived session created at the same time"
            raise InvalidInputError.for_field(
                f"line {line}.key", f"a second {what} for {_key(key)} in this file")
        return int(row[0])

    def _session(self, record: tuple[Any, ...]) -> None:
        line, key, (status, created_at, *fields) = record[1], record[2:7], record[7:]
        live = status != "archived"
        existing = self._existing(line, key, live, created_at)
        if existing is not None:
            if self._policy == "fail":
                what = "a live session" if live else "this archived session"
                raise ConflictError(
                    f"line {line}.key: {what} for {_key(key)} already exists; nothing was "
                    "imported (on_conflict: 'skip' keeps the stored sessions and leaves out "
                    "the file's, 'archive-existing' archives the stored live sessions)")
            if self._policy == "skip" or not live:
                self._counts["skipped"] += 1
                self._skipping = True
                return
            self._counts["archived"] += archive_live(self._tx, _key(key), session_id=existing)
        row = self._tx.one(
            "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
            "created_at, updated_at, token_usage, metadata, compaction_count, "
            "last_compacted_at, last_compaction_summary, archived_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (*key, status, created_at, *fields))
        if row is None:  # a live session of the key committed since it was looked for
            raise ConflictError(f"line {line}.key: a live session for {_key(key)} was created "
                                "while this file was imported; nothing was imported")
        self._session_id, self._agent = int(row[0]), key[0]
        self._mine.append(self._session_id)
        self._counts["sessions"] += 1
        record_change(self._tx, ChangeKind.SESSION_IMPORTED, self._agent, self._session_id,
                      status=status)

    def _end_session(self) -> None:
        self._flush_messages()
        if self._session_id is not None and self._last_seq:
            self._tx.run("UPDATE sessions SET message_count = ?, last_seq = ? WHERE id = ?",
                         (self._live, self._last_seq, self._session_id))
        self._session_id = None
        self._skipping = False
        self._live = self._last_seq = 0

    # --- messages -----------------------------------------------------------------------------

    def _message(self, record: tuple[Any, ...]) -> None:
        if self._skipping:
            return
        line, seq, role, content, tool_calls, created_at, tokens, external_id, compacted, \
            compacted_at = record[1:]
        self._rows.append(MessageRow(seq, role, content, tool_calls, created_at, tokens,
                                     external_id, compacted, compacted_at))
        self._lines.append(line)
        self._live += not compacted
        self._last_seq = seq  # the file's positions never go down (checked in pass 1)
        self._chars += len(content) + len(tool_calls or "")
        if len(self._rows) >= PAGE or self._chars >= CHUNK_CHARS:
            self._flush_messages()

    def _flush_messages(self) -> None:
        rows, session_id = self._rows, self._session_id
        if not rows or session_id is None:
            return
        self._refuse_repeated_external_ids(session_id, rows, self._lines)
        insert_messages(self._tx, session_id, rows, returning=False)
        record_change(self._tx, ChangeKind.MESSAGES_APPENDED, self._agent, session_id,
                      count=len(rows), first_seq=rows[0].seq, last_seq=rows[-1].seq,
                      reason="import")
        self._counts["messages"] += len(rows)
        self._rows, self._lines, self._chars = [], [], 0

    def _refuse_repeated_external_ids(self, session_id: int, rows: list[MessageRow],
                                      lines: list[int]) -> None:
        """One ``external_id`` per session (the database's unique index, which would fail the
        whole transaction without naming a line): within the chunk, and against the chunks
        stored before it."""
        seen: dict[str, int] = {}
        for row, line in zip(rows, lines, strict=True):
            if row.external_id is None:
                continue
            if row.external_id in seen:
                raise _repeated(line, row.external_id, seen[row.external_id])
            seen[row.external_id] = row.seq
        if not seen:
            return
        marks = ", ".join("?" for _ in seen)
        found = self._tx.one(f"SELECT external_id, seq FROM messages WHERE session_id = ? AND "
                             f"external_id IN ({marks}) LIMIT 1", (session_id, *seen))
        if found is not None:
            line = next(line for row, line in zip(rows, lines, strict=True)
                        if row.external_id == found[0])
            raise _repeated(line, found[0], found[1])

    # --- waiting messages and the feed ----------------------------------------------------------

    def _queued(self, record: tuple[Any, ...]) -> None:
        """Kept in the key's inbox (not again if its ``external_id`` waits already)."""
        key, fields = record[2:7], record[7:]
        added = self._tx.all(
            "INSERT INTO inbox (agent_id, channel, account_id, peer_kind, peer_id, role, "
            "content, tool_calls, created_at, token_count, external_id, enqueued_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (*key, *fields))
        if added:
            row = self._tx.one(f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}", key)
            record_change(self._tx, ChangeKind.INBOX_ENQUEUED, key[0],
                          None if row is None else row[0], count=1,
                          queued_ids=[added[0][0]], reason="import")
            self._counts["queued"] += 1

    def _flush_feed(self) -> None:
        """Write this import's feed entries once they are many (see FEED_FLUSH)."""
        changes = self._tx.changes
        if len(changes) - self._first_change >= FEED_FLUSH:
            write_recorded(self._tx, changes[self._first_change:])
            del changes[self._first_change:]


def _repeated(line: int, external_id: str, seq: int) -> InvalidInputError:
    return InvalidInputError.for_field(
        f"line {line}.external_id", f"{external_id!r} is already the external_id of the "
        f"session's message at position {seq} (one message per external_id and session)")

