"""The tables as the operations see them: columns, key predicates, rows ↔ models, the list
cursor's position, and the few transaction primitives every concept shares (one copy each).

Rows are read by position only here: every other module names the columns it selects with the
constants below and turns rows into models with the functions below. Rows the store wrote itself
become models through ``Model._from_store`` (no second validation on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aisopod_session import _json, _time
from aisopod_session._time import EPOCH, ONE_US, from_us, to_us
from aisopod_session.compaction import CompactionRecord
from aisopod_session.errors import ConflictError, SessionNotFoundError
from aisopod_session.models import (
    PeerKind,
    Role,
    Session,
    SessionKey,
    SessionStatus,
    SessionSummary,
    StoredMessage,
)
from aisopod_session.results import ChangeKind, QueuedMessage
from aisopod_session.store._changes import record
from aisopod_session.store._search_index import index_messages, indexing
from aisopod_session.store._tx import LockKey, Tx

INSERT_CHUNK = 500
"""Rows per multi-row statement (INSERT, UPDATE … IN), well inside every backend's parameter
limit; also the page size of export and import."""

# --- keys ------------------------------------------------------------------------------------

KEY_WHERE = "agent_id = ? AND channel = ? AND account_id = ? AND peer_kind = ? AND peer_id = ?"
LIVE_KEY_WHERE = KEY_WHERE + " AND status <> 'archived'"

_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in SessionStatus}
_PEER_KINDS = {kind.value: kind for kind in PeerKind}
_KIND_TEXT = {kind: kind.value for kind in PeerKind}
ROLE_TEXT = {role: role.value for role in Role}


def key_params(key: SessionKey) -> tuple[str, str, str, str, str]:
    # A dict lookup: ``Enum.value`` is a Python-level property, and this runs on every call.
    return (key.agent_id, key.channel, key.account_id, _KIND_TEXT[key.peer_kind], key.peer_id)


def lock_order(key: SessionKey) -> LockKey:
    """The one order in which every write takes its session locks (batches and commits)."""
    return key_params(key)


# --- sessions --------------------------------------------------------------------------------

def _run_of_session(column: str) -> str:
    """A column of the run holding a *live* session's key (a primary-key lookup per row)."""
    return (f"(SELECT r.{column} FROM runs r WHERE r.agent_id = sessions.agent_id "
            "AND r.channel = sessions.channel AND r.account_id = sessions.account_id "
            "AND r.peer_kind = sessions.peer_kind AND r.peer_id = sessions.peer_id "
            "AND sessions.status <> 'archived')")


_RUN_OF_SESSION = f"{_run_of_session('owner')}, {_run_of_session('started_at')}"
SUMMARY_COLUMNS = (
    "id, agent_id, channel, account_id, peer_kind, peer_id, status, created_at, updated_at, "
    f"message_count, token_usage, {_RUN_OF_SESSION}"
)
SESSION_COLUMNS = (  # the summary's columns first: a session row is also a summary row
    f"{SUMMARY_COLUMNS}, metadata, compaction_count, last_compacted_at, last_compaction_summary"
)
EXPORT_SESSION_COLUMNS = SESSION_COLUMNS + ", last_seq, archived_at"
COMPACTION_COLUMNS = "compaction_count, last_compacted_at, last_compaction_summary"
TOUCH = "updated_at = CASE WHEN updated_at < ? THEN ? ELSE updated_at + 1 END"
"""Every write's SET clause for a session row: ``updated_at`` becomes the write's time, or the
old value + 1 µs if the clock has not passed it (it is ``commit(expect_updated_at=...)``'s token:
every write must change it). Parameters: :func:`touch_params`."""


def touch_params(now_us: int) -> tuple[int, int]:
    return (now_us, now_us)


def _key_from_row(row: Sequence[Any]) -> SessionKey:
    return SessionKey._from_store({"agent_id": row[1], "channel": row[2], "account_id": row[3],
                                   "peer_kind": _PEER_KINDS[row[4]], "peer_id": row[5]})


def _metadata_from_text(text: str) -> dict[str, Any]:
    # Most sessions have no metadata: skip the JSON decoder (a few microseconds per call).
    if text == "{}":
        return {}
    value: dict[str, Any] = _json.loads(text)
    return value


def _opt_from_us(value: int | None) -> Any:
    return None if value is None else from_us(value)


def session_from_row(row: Sequence[Any]) -> Session:
    """A row of :data:`SESSION_COLUMNS` (or :data:`EXPORT_SESSION_COLUMNS`)."""
    return Session._from_store({
        "id": row[0],
        "key": _key_from_row(row),
        "created_at": EPOCH + ONE_US * row[7],
        "updated_at": EPOCH + ONE_US * row[8],
        "message_count": row[9],
        "token_usage": row[10],
        "metadata": _metadata_from_text(row[13]),
        "status": _STATUSES[row[6]],
        "compaction_count": row[14],
        "last_compacted_at": _opt_from_us(row[15]),
        "last_compaction_summary": row[16],
        "run_owner": row[11],
        "run_since": _opt_from_us(row[12]),
    })


def summary_from_row(row: Sequence[Any]) -> SessionSummary:
    """A row of :data:`SUMMARY_COLUMNS`."""
    return SessionSummary._from_store({
        "id": row[0],
        "key": _key_from_row(row),
        "status": _STATUSES[row[6]],
        "message_count": row[9],
        "token_usage": row[10],
        "created_at": from_us(row[7]),
        "updated_at": from_us(row[8]),
        "run_owner": row[11],
        "run_since": _opt_from_us(row[12]),
    })


def export_session_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :data:`EXPORT_SESSION_COLUMNS` as an export record."""
    # a run is the live gateway's state, not the conversation's: it is not exported
    record = {"kind": "session", **session_from_row(row).model_dump(
        mode="json", exclude={"run_owner", "run_since"})}
    record["last_seq"] = row[17]
    record["archived_at"] = _opt_iso(row[18])
    return record


def compaction_record_from_row(row: Sequence[Any]) -> CompactionRecord:
    """A row of :data:`COMPACTION_COLUMNS`."""
    return CompactionRecord.model_construct(
        compaction_count=row[0], last_compacted_at=_opt_from_us(row[1]), summary=row[2]
    )


def _opt_iso(value: int | None) -> str | None:
    return None if value is None else from_us(value).isoformat()


# --- messages --------------------------------------------------------------------------------

MESSAGE_COLUMNS = (
    "id, role, content, tool_calls, created_at, token_count, external_id, compacted"
)
EXPORT_MESSAGE_COLUMNS = "seq, compacted_at, " + MESSAGE_COLUMNS
COMPACTION_INPUT_COLUMNS = "seq, " + MESSAGE_COLUMNS


def _loads(text: str) -> Any:
    """JSON text the store wrote; a string without escapes (most chat text) is its interior."""
    if text[0] == '"' and "\\" not in text:
        return text[1:-1]
    return _json.loads(text)


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    """A row of :data:`MESSAGE_COLUMNS`."""
    return StoredMessage._from_store({
        "id": row[0],
        "role": _ROLES[row[1]],
        "content": _loads(row[2]),
        "tool_calls": None if row[3] is None else _loads(row[3]),
        "created_at": from_us(row[4]),
        "token_count": row[5],
        "external_id": row[6],
        "compacted": bool(row[7]),
    })


def messages_from_rows(rows: Iterable[Sequence[Any]]) -> list[StoredMessage]:
    """``[message_from_row(row) for row in rows]``, inlined: a history read builds a model per
    row, and the two calls per row were a large part of its cost."""
    build = StoredMessage._from_store_many
    roles, loads, epoch, one_us = _ROLES, _json.loads, EPOCH, ONE_US
    values = []
    for id_, role, content, tool_calls, created_at, token_count, external_id, compacted in rows:
        values.append({
            "id": id_,
            "role": roles[role],
            "content": (content[1:-1] if content[0] == '"' and "\\" not in content
                        else loads(content)),
            "tool_calls": None if tool_calls is None else _loads(tool_calls),
            "created_at": epoch + one_us * created_at,
            "token_count": token_count,
            "external_id": external_id,
            "compacted": bool(compacted),
        })
    return build(values)


def compaction_input_from_row(row: Sequence[Any]) -> tuple[int, StoredMessage]:
    """A row of :data:`COMPACTION_INPUT_COLUMNS`: the position and the message."""
    return int(row[0]), message_from_row(row[1:])


def export_message_from_row(row: Sequence[Any], session_id: int) -> dict[str, Any]:
    """A row of :data:`EXPORT_MESSAGE_COLUMNS` as an export record; ``_id`` (the row id, for
    paging) is removed by the exporter before the record is written."""
    message = message_from_row(row[2:])
    record = {"kind": "message", "session": session_id, "seq": row[0],
              **message.model_dump(mode="json", exclude={"id"})}
    record["compacted_at"] = _opt_iso(row[1])
    record["_id"] = row[2]
    return record


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message row to insert, already encoded (JSON text, microseconds)."""

    seq: int
    role: str
    content: str
    tool_calls: str | None
    created_at: int
    token_count: int | None
    external_id: str | None
    compacted: bool = False
    compacted_at: int | None = None


_MESSAGE_INSERT = (
    "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, "
    "token_count, external_id, compacted, compacted_at) VALUES "
)
_ONE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_ONE = f"{_MESSAGE_INSERT}{_ONE_ROW} RETURNING id"


def insert_messages(tx: Tx, session_id: int, rows: Sequence[MessageRow], *,
                    returning: bool = True) -> list[int]:
    """The one INSERT of messages: in chunks, returning the new ids in the order given (or
    nothing, without ``returning``).

    With ``returning``, positions (``seq``) must be distinct within the call: the ids are matched
    back by them.
    """
    if len(rows) == 1 and returning:  # the usual append: one message, one fixed statement
        r = rows[0]
        row = tx.one(_INSERT_ONE, (session_id, r.seq, r.role, r.content, r.tool_calls,
                                   r.created_at, r.token_count, r.external_id,
                                   int(r.compacted), r.compacted_at))
        index_messages(tx, ((row[0], r.content, r.tool_calls),))
        return [int(row[0])]
    ids_by_seq: dict[int, int] = {}
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        params: list[Any] = []
        for r in chunk:
            params.extend((session_id, r.seq, r.role, r.content, r.tool_calls, r.created_at,
                           r.token_count, r.external_id, int(r.compacted), r.compacted_at))
        values = ", ".join(_ONE_ROW for _ in chunk)
        if not returning:
            if not indexing(tx):
                tx.run(f"{_MESSAGE_INSERT}{values}", params)
                continue
            # Positions may repeat here (an import's compacted originals): the ids, handed out
            # in the order of the rows, are matched back in that order.
            new_ids = sorted(int(found[0]) for found in tx.all(
                f"{_MESSAGE_INSERT}{values} RETURNING id", params))
            index_messages(tx, ((id_, r.content, r.tool_calls)
                                for id_, r in zip(new_ids, chunk, strict=True)))
            continue
        found = tx.all(f"{_MESSAGE_INSERT}{values} RETURNING seq, id", params)
        ids_by_seq.update((int(seq), int(id_)) for seq, id_ in found)
    if not returning:
        return []
    ids = [ids_by_seq[r.seq] for r in rows]
    index_messages(tx, ((id_, r.content, r.tool_calls) for id_, r in zip(ids, rows, strict=True)))
    return ids


# --- runs and the inbox -----------------------------------------------------------------------

RUN_COLUMNS = "fence, owner, started_at, expires_at, ttl, stop_requested, took_over"
INBOX_COLUMNS = (
    "id, role, content, tool_calls, created_at, token_count, external_id, enqueued_at"
)
"""Of the ``inbox`` table (whose key columns are those of :data:`KEY_WHERE`)."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """A key's row of ``runs``: the newest fence, and the run holding it while ``owner`` is
    set."""

    fence: int
    owner: str | None
    started_at: int | None
    expires_at: int | None
    ttl: int | None
    stop_requested: bool
    took_over: bool = False


def run_row(row: Sequence[Any] | None) -> RunRow | None:
    """A row of :data:`RUN_COLUMNS`."""
    if row is None:
        return None
    return RunRow(int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]))


EXPORT_INBOX_COLUMNS = (
    "id, agent_id, channel, account_id, peer_kind, peer_id, role, content, tool_calls, "
    "created_at, token_count, external_id, enqueued_at"
)


def export_queued_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """A row of :data:`EXPORT_INBOX_COLUMNS` as an export record (``_id``: for paging)."""
    message = message_from_row((None, *row[6:12], 0))
    return {"kind": "queued", "key": _key_from_row(row).model_dump(mode="json"),
            **message.model_dump(mode="json", exclude={"id", "compacted"}),
            "enqueued_at": from_us(row[12]).isoformat(), "_id": row[0]}


def queued_from_row(row: Sequence[Any]) -> QueuedMessage:
    """A row of :data:`INBOX_COLUMNS`."""
    message = message_from_row((None, *row[1:7], 0))
    return QueuedMessage.model_construct(id=int(row[0]), message=message,
                                         enqueued_at=from_us(row[7]))


# --- the list cursor -------------------------------------------------------------------------


def summary_position(row: Sequence[Any]) -> tuple[int, int]:
    """Where a row of :data:`SUMMARY_COLUMNS` is in a listing: its ``updated_at`` and id (what
    the list cursor after it holds; see ``_cursors``)."""
    return int(row[8]), int(row[0])


# --- transaction primitives ------------------------------------------------------------------

_LIVE_SESSION_SQL = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {LIVE_KEY_WHERE}"


def not_found(key: SessionKey) -> SessionNotFoundError:
    return SessionNotFoundError(f"no live session for {key}")


def twice(tx: Tx, sql: str, params: Sequence[Any]) -> Any:
    """Run a locking statement on the live row of a key, once more if it found nothing.

    Under PostgreSQL's READ COMMITTED, a statement that waited for a concurrent ``reset`` sees
    the archived row fail its condition while the fresh row that reset inserted is outside its
    snapshot; a second statement sees the fresh row. On SQLite the second run is never needed.
    """
    row = tx.one(sql, params)
    return row if row is not None else tx.one(sql, params)


def live_session(tx: Tx, key: SessionKey, *, lock: bool = False) -> Session | None:
    """The live session of ``key``; with ``lock``, its row locked (re-read: see :func:`twice`)."""
    if lock:
        row = twice(tx, _LIVE_SESSION_SQL + tx.dialect.for_update, key_params(key))
    else:
        row = tx.one(_LIVE_SESSION_SQL, key_params(key))
    return None if row is None else session_from_row(row)


def live_id(tx: Tx, key: SessionKey, *, lock: bool = False) -> int:
    """The id of the live session of ``key``; SessionNotFoundError if there is none."""
    suffix = tx.dialect.for_update if lock else ""
    row = twice(tx, f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}{suffix}", key_params(key))
    if row is None:
        raise not_found(key)
    return int(row[0])


def create_live(tx: Tx, key: SessionKey, *, at: int | None = None,
                must_be_new: bool = False) -> tuple[Session, bool]:
    """Create the live session of ``key`` (status active, no metadata, created at ``at``).

    Returns the session and whether this call created it. If a live session already exists (a
    concurrent first contact won the race), that one is returned, or ConflictError raised when
    ``must_be_new``.
    """
    now = to_us(_time.utc_now()) if at is None else at
    while True:
        row = tx.one(
            "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
            "created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, '{}') "
            f"ON CONFLICT DO NOTHING RETURNING {SESSION_COLUMNS}",
            (*key_params(key), now, now),
        )
        if row is not None:
            record(tx, ChangeKind.SESSION_CREATED, key.agent_id, row[0])
            return session_from_row(row), True
        if must_be_new:
            raise ConflictError(f"a live session for {key} already exists")
        existing = live_session(tx, key)  # someone else created it first: theirs is the one
        if existing is not None:
            return existing, False
        # PostgreSQL: another process deleted (or archived) it between the two statements,
        # each with its own snapshot: try again (SQLite, one writer, never gets here).


def locked_or_created(tx: Tx, key: SessionKey) -> Session:
    """The live session of ``key``, created when missing, its row locked either way."""
    session = live_session(tx, key, lock=True)
    if session is None:
        create_live(tx, key)
        session = live_session(tx, key, lock=True)
    if session is None:  # pragma: no cover - created just above, in this transaction
        raise not_found(key)
    return session


def archive_live(tx: Tx, key: SessionKey, *, at: int | None = None,
                 session_id: int | None = None) -> int:
    """Archive the live session of ``key`` (or the one row ``session_id``) at ``at`` for a
    reset; its history is kept. Returns how many rows were archived (0 or 1)."""
    now = to_us(_time.utc_now()) if at is None else at
    setting = f"UPDATE sessions SET status = 'archived', archived_at = ?, {TOUCH} WHERE "
    if session_id is not None:
        row = tx.one(setting + "id = ? RETURNING id", (now, *touch_params(now), session_id))
    else:
        # twice: a reset that waited for a concurrent one archives the session that one
        # started (each reset archives what is live when it runs)
        row = twice(tx, setting + LIVE_KEY_WHERE + " RETURNING id",
                    (now, *touch_params(now), *key_params(key)))
    if row is None:
        return 0
    record(tx, ChangeKind.SESSION_RESET, key.agent_id, row[0])
    return 1
