"""Every store operation, written once against a :class:`Tx`, for every backend and both APIs.

An operation is validated here, before any connection is touched, and becomes a :class:`Work`: a
read, a write (a job for the group committer) or a read that falls back to a write. The blocking
and asyncio front ends only decide how to wait for it.

Rows the store wrote itself are turned back into models with ``_Model._from_store`` (no second
validation on the hot path); everything coming from a caller is validated.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from pydantic import TypeAdapter, ValidationError

from aisopod_session import _json
from aisopod_session.compaction import (
    CompactionRecord,
    CompactionStrategy,
    LiveMessage,
    SlidingWindow,
    Summarize,
    TruncateToolResults,
    plan_compaction,
)
from aisopod_session.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    SessionNotFoundError,
)
from aisopod_session.base import invalid_input_from, validated_twin
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    Role,
    Session,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    SessionSummary,
    StoredMessage,

    utc_now,

)
from aisopod_session.store._engine import LockKey, OneStatement, Tx

T = TypeVar("T")

MAX_MESSAGE_CHARS = 1_048_576
"""Largest content + tool_calls of one message, as serialised JSON characters."""
MAX_METADATA_CHARS = 65_536
"""Largest session metadata, as serialised JSON characters."""
MAX_BATCH_MESSAGES = 10_000
"""Most messages in one append call."""
MAX_TOKEN_USAGE = 2**62 - 1
"""Largest token_usage of a session (and of one append batch): the sum of both still fits the
64-bit integer columns, so an overflow is reported as bad input rather than by the database."""
MAX_SQL_INT = 2**63 - 1
"""Largest integer every backend can bind as a parameter."""

_INSERT_CHUNK = 500  # rows per multi-row INSERT, well inside every backend's parameter limit

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    return (value - _EPOCH) // _ONE_US


def from_us(value: int) -> datetime:
    return _EPOCH + _ONE_US * value


def _opt_from_us(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


@dataclass(frozen=True, slots=True)
class Work(Generic[T]):
    """What an operation needs run: a read, a write, or a read with a write as fallback.

    With both, the write runs only when the read returned None (get-or-create: the common case,
    a session that exists, never queues behind writers).
    """

    read: Callable[[Tx], T | None] | None = None
    write: Callable[[Tx], T] | None = None
    lock_key: LockKey | None = None
    """The session a write locks (see lock_order), so batches lock in one order: no deadlocks."""


# --- rows ↔ models ---------------------------------------------------------------------------

KEY_WHERE = "agent_id = ? AND channel = ? AND account_id = ? AND peer_kind = ? AND peer_id = ?"
LIVE_KEY_WHERE = KEY_WHERE + " AND status <> 'archived'"

SESSION_COLUMNS = (
    "id, agent_id, channel, account_id, peer_kind, peer_id, status, created_at, updated_at, "
    "message_count, token_usage, metadata, compaction_count, last_compacted_at, "
    "last_compaction_summary"
)
SUMMARY_COLUMNS = (
    "id, agent_id, channel, account_id, peer_kind, peer_id, status, created_at, updated_at, "
    "message_count, token_usage"
)
MESSAGE_COLUMNS = (
    "id, role, content, tool_calls, created_at, token_count, external_id, compacted"
)


def key_params(key: SessionKey) -> tuple[str, str, str, str, str]:
    # A dict lookup: ``Enum.value`` is a Python-level property, and this runs on every call.
    return (key.agent_id, key.channel, key.account_id, _KIND_TEXT[key.peer_kind], key.peer_id)


def lock_order(key: SessionKey) -> LockKey:
    """The one order in which every write takes its session locks (batches and commits)."""
    return key_params(key)


def _key_from_row(row: Sequence[Any]) -> SessionKey:
    return SessionKey._from_store({
        "agent_id": row[1],
        "channel": row[2],
        "account_id": row[3],
        "peer_kind": _PEER_KINDS[row[4]],
        "peer_id": row[5],
    })


def _metadata_from_text(text: str) -> dict[str, Any]:
    # Most sessions have no metadata: skip the JSON decoder (a few microseconds per call).
    if text == "{}":
        return {}
    value: dict[str, Any] = _json.loads(text)
    return value


def session_from_row(row: Sequence[Any]) -> Session:
    return Session._from_store({
        "id": row[0],
        "key": _key_from_row(row),
        "created_at": _EPOCH + _ONE_US * row[7],
        "updated_at": _EPOCH + _ONE_US * row[8],
        "message_count": row[9],
        "token_usage": row[10],
        "metadata": _metadata_from_text(row[11]),
        "status": _STATUSES[row[6]],
        "compaction_count": row[12],
        "last_compacted_at": _opt_from_us(row[13]),
        "last_compaction_summary": row[14],
    })


def summary_from_row(row: Sequence[Any]) -> SessionSummary:
    return SessionSummary._from_store({
        "id": row[0],
        "key": _key_from_row(row),
        "status": _STATUSES[row[6]],
        "message_count": row[9],
        "token_usage": row[10],
        "created_at": from_us(row[7]),
        "updated_at": from_us(row[8]),
    })


_ROLES = {role.value: role for role in Role}
_STATUSES = {status.value: status for status in SessionStatus}
_PEER_KINDS = {kind.value: kind for kind in PeerKind}
_KIND_TEXT = {kind: kind.value for kind in PeerKind}
_ROLE_TEXT = {role: role.value for role in Role}


def _loads(text: str) -> Any:
    """JSON text the store wrote; a string without escapes (most chat text) is its interior."""
    if text[0] == '"' and "\\" not in text:
        return text[1:-1]
    return _json.loads(text)


def message_from_row(row: Sequence[Any]) -> StoredMessage:
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
    roles, loads, epoch, one_us = _ROLES, _json.loads, _EPOCH, _ONE_US
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


# --- validation of what callers pass ---------------------------------------------------------


def _expect(value: Any, kind: type[T], field: str) -> T:
    if isinstance(value, kind):
        return value
    raise InvalidInputError.for_field(
        field, f"expected {kind.__name__}, got {type(value).__name__}"
    )


M = TypeVar("M", SessionKey, SessionFilter, SessionPatch, HistoryQuery)


def _model(value: Any, kind: type[M], field: str) -> M:
    """``value`` if it is a ``kind``, validated once more.

    Models validate when built, but ``model_construct`` and ``model_copy(update=...)`` skip it,
    and an unchecked value reaching SQL fails as a driver error instead of InvalidInputError.
    A gateway passes the same few keys and queries again and again, and validating costs more
    than the database work, so models already found valid are remembered by their field values.
    """
    checked = _expect(value, kind, field)
    fields = tuple(checked.__dict__.items())
    try:
        # Built by validation (the usual case: see models._remember_validated), or equal to
        # one that was; else validated now, and the outcome kept for the same values.
        twin = validated_twin(kind, fields)
        return cast(M, _revalidated(kind, fields) if twin is None else twin)
    except TypeError:  # an unhashable field (metadata, or a model built without validation)
        return kind.model_validate(dict(checked))


@functools.lru_cache(maxsize=16_384)
def _revalidated(kind: type[M], fields: tuple[tuple[str, Any], ...]) -> M:
    return kind.model_validate(dict(fields))


def owned_key(key: Any, agent_id: str) -> SessionKey:
    """The key, if it belongs to the handle's agent; AccessDeniedError otherwise."""
    checked = _model(key, SessionKey, "key")
    if checked.agent_id != agent_id:
        raise AccessDeniedError(
            f"session {checked} belongs to agent {checked.agent_id!r}; this handle is for agent "
            f"{agent_id!r}"
        )
    return checked


def agent_filter(filter: Any, agent_id: str) -> SessionFilter:
    if filter is None:
        return SessionFilter(agent_id=agent_id)
    checked = _model(filter, SessionFilter, "filter")
    if checked.agent_id is None:
        return checked.model_copy(update={"agent_id": agent_id})
    if checked.agent_id != agent_id:
        raise AccessDeniedError(
            f"this handle is for agent {agent_id!r} and cannot list agent {checked.agent_id!r}"
        )
    return checked


def _query(query: Any) -> HistoryQuery:
    if query is None:
        return HistoryQuery()
    checked = _model(query, HistoryQuery, "query")
    # HistoryQuery has no upper bound; the databases bind at most a signed 64-bit integer.
    for field in ("limit", "offset"):
        value = getattr(checked, field)
        if value is not None and value > MAX_SQL_INT:
            raise InvalidInputError.for_field(field, f"must be at most {MAX_SQL_INT}")
    return checked


_strategy_adapter: TypeAdapter[SlidingWindow | Summarize | TruncateToolResults] = TypeAdapter(
    CompactionStrategy
)


def _strategy(strategy: Any) -> SlidingWindow | Summarize | TruncateToolResults:
    if isinstance(strategy, SlidingWindow | Summarize | TruncateToolResults):
        # Validated again: ``model_construct`` or ``model_copy(update=...)`` skip validation, and
        # an unchecked ``SlidingWindow(max_messages=0)`` would empty the live history.
        strategy = dict(strategy)
    if isinstance(strategy, dict):
        try:
            return _strategy_adapter.validate_python(strategy)
        except ValidationError as exc:
            raise invalid_input_from(exc, "compaction strategy") from None
    raise InvalidInputError.for_field(
        "strategy",
        f"expected SlidingWindow, Summarize or TruncateToolResults, got {type(strategy).__name__}",
    )


def _session_id(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SQL_INT:
        raise InvalidInputError.for_field("session_id", f"expected a positive int, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class _NewMessage:
    message: StoredMessage
    content: str
    tool_calls: str | None
    created_at: int


def _json_text(value: Any, field: str) -> str:
    """``value`` as stored JSON text. Checked again here: a message built with
    ``model_construct`` or ``model_copy(update=...)`` was never validated."""
    try:
        _json.check_json(value)
    except _json.JsonError as exc:
        raise InvalidInputError.for_field(field, str(exc)) from None
    return _json.dumps(value)


def _check_unvalidated_fields(message: StoredMessage, field: str) -> None:
    """The cheap checks a validated StoredMessage always passes (see :func:`_json_text`)."""
    problems = []
    if not isinstance(message.role, Role):
        problems.append(("role", f"expected a Role, got {message.role!r}"))
    created_at = message.created_at
    if not isinstance(created_at, datetime) or created_at.utcoffset() is None:
        problems.append(("created_at", "expected a timezone-aware datetime"))
    token_count = message.token_count
    if token_count is not None and (type(token_count) is not int
                                    or not 0 <= token_count <= MAX_SQL_INT):
        problems.append(("token_count", f"expected a non-negative int, got {token_count!r}"))
    external_id = message.external_id
    if external_id is not None and (type(external_id) is not str or not external_id.strip()):
        problems.append(("external_id", f"expected a non-empty string, got {external_id!r}"))
    if type(message.compacted) is not bool:
        problems.append(("compacted", f"expected a bool, got {message.compacted!r}"))
    if problems:
        name, problem = problems[0]
        raise InvalidInputError.for_field(f"{field}.{name}", problem)


def _prepare_messages(messages: Any) -> list[_NewMessage]:
    if isinstance(messages, StoredMessage) or not isinstance(messages, list | tuple):
        raise InvalidInputError.for_field(
            "messages", f"expected a list of StoredMessage, got {type(messages).__name__}"
        )
    if len(messages) > MAX_BATCH_MESSAGES:
        raise InvalidInputError.for_field(
            "messages", f"at most {MAX_BATCH_MESSAGES} messages per call, got {len(messages)}"
        )
    prepared = []
    tokens = 0
    for index, given in enumerate(messages):
        field = f"messages[{index}]"
        message = _expect(given, StoredMessage, field)
        if message.id is not None:
            raise InvalidInputError.for_field(f"{field}.id", "must be None for a new message")
        _check_unvalidated_fields(message, field)
        content = _json_text(message.content, f"{field}.content")
        tool_calls = (
            None if message.tool_calls is None
            else _json_text(message.tool_calls, f"{field}.tool_calls")
        )
        size = len(content) + (len(tool_calls) if tool_calls else 0)
        if size > MAX_MESSAGE_CHARS:
            raise InvalidInputError.for_field(
                f"{field}.content",
                f"content and tool_calls are {size} characters of JSON; at most "
                f"{MAX_MESSAGE_CHARS} are stored per message",
            )
        tokens += message.token_count or 0
        if tokens > MAX_TOKEN_USAGE:
            raise InvalidInputError.for_field(
                f"{field}.token_count", f"the batch's token counts add up to more than "
                f"{MAX_TOKEN_USAGE}"
            )
        prepared.append(_NewMessage(message, content, tool_calls, to_us(message.created_at)))
    return prepared


def _metadata_text(metadata: dict[str, Any]) -> str:
    text = _json.dumps(metadata)
    if len(text) > MAX_METADATA_CHARS:
        raise InvalidInputError.for_field(
            "metadata", f"is {len(text)} characters of JSON; at most {MAX_METADATA_CHARS}"
        )
    return text


# --- cursors ---------------------------------------------------------------------------------


def encode_cursor(updated_at: int, session_id: int) -> str:
    raw = f"{updated_at}.{session_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        updated_at, session_id = (int(part) for part in raw.split("."))
        if not (-MAX_SQL_INT <= updated_at <= MAX_SQL_INT and 1 <= session_id <= MAX_SQL_INT):
            raise ValueError("out of range")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError.for_field(
            "cursor", "is not a cursor returned by list (pass next_cursor back unchanged)"
        ) from None
    return updated_at, session_id


class SessionPage(list[SessionSummary]):
    """One page of a session list; pass ``next_cursor`` back in the filter for the next one."""

    next_cursor: str | None

    def __init__(self, items: Iterable[SessionSummary] = (), next_cursor: str | None = None):
        super().__init__(items)
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"SessionPage({list.__repr__(self)}, next_cursor={self.next_cursor!r})"


# --- the operations --------------------------------------------------------------------------


_LIVE_SESSION_SQL = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {LIVE_KEY_WHERE}"


def _live_session(tx: Tx, key: SessionKey, *, lock: bool = False) -> Session | None:
    if lock:
        row = _twice(tx, _LIVE_SESSION_SQL + tx.dialect.for_update, key_params(key))
    else:
        row = tx.one(_LIVE_SESSION_SQL, key_params(key))
    return None if row is None else session_from_row(row)


def _twice(tx: Tx, sql: str, params: Sequence[Any]) -> Any:
    """Run a locking statement on the live row of a key, once more if it found nothing.

    Under PostgreSQL's READ COMMITTED, a statement that waited for a concurrent ``reset`` sees
    the archived row fail its condition while the fresh row that reset inserted is outside its
    snapshot; a second statement sees the fresh row. On SQLite the second run is never needed.
    """
    row = tx.one(sql, params)
    return row if row is not None else tx.one(sql, params)


def _live_id(tx: Tx, key: SessionKey, *, lock: bool = False) -> int:
    suffix = tx.dialect.for_update if lock else ""
    row = _twice(tx, f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}{suffix}", key_params(key))
    if row is None:
        raise _not_found(key)
    return int(row[0])


def _not_found(key: SessionKey) -> SessionNotFoundError:
    return SessionNotFoundError(f"no live session for {key}")


def _create(tx: Tx, key: SessionKey, metadata: str = "{}") -> Session:
    now = to_us(utc_now())
    row = tx.one(
        "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
        "created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?) "
        f"ON CONFLICT DO NOTHING RETURNING {SESSION_COLUMNS}",
        (*key_params(key), now, now, metadata),
    )
    if row is not None:
        return session_from_row(row)
    existing = _live_session(tx, key)  # someone else created it first: theirs is the one
    if existing is None:
        raise AssertionError(f"insert of {key} conflicted but no live session exists")
    return existing


def get_or_create(key: SessionKey) -> Work[Session]:
    return Work(read=OneStatement(lambda tx: _live_session(tx, key)),
                write=lambda tx: _create(tx, key), lock_key=lock_order(key))


def get(key: SessionKey) -> Work[Session]:
    params = key_params(key)

    def read(tx: Tx) -> Session:
        row = tx.one(_LIVE_SESSION_SQL, params)
        if row is None:
            raise _not_found(key)
        return session_from_row(row)

    return Work(read=OneStatement(read))


def list_sessions(filter: SessionFilter) -> Work[SessionPage]:
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("agent_id", "channel", "account_id", "peer_id"):
        value = getattr(filter, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filter.peer_kind is not None:
        clauses.append("peer_kind = ?")
        params.append(filter.peer_kind.value)
    for column, op, bound in (
        ("created_at", ">", filter.created_after),
        ("created_at", "<", filter.created_before),
        ("updated_at", ">", filter.updated_after),
        ("updated_at", "<", filter.updated_before),
    ):
        if bound is not None:
            clauses.append(f"{column} {op} ?")
            params.append(to_us(bound))
    if filter.cursor is not None:
        clauses.append("(updated_at, id) < (?, ?)")
        params.extend(decode_cursor(filter.cursor))
    # The recency indexes lead with the status (then updated_at): one SELECT per status reads
    # one index range in order and stops at the limit; the page is the newest of those few
    # rows. (``status IN (...)`` would read and sort every session of those statuses; and
    # PostgreSQL 15 does not merge the ranges of a plain UNION ALL in order.)
    where = "".join(f" AND {clause}" for clause in clauses)
    page = " ORDER BY updated_at DESC, id DESC LIMIT ?"
    one_status = f"SELECT {SUMMARY_COLUMNS} FROM sessions WHERE status = ?{where}{page}"
    if len(filter.statuses) == 1:
        sql = one_status
    else:
        sql = " UNION ALL ".join(
            f"SELECT * FROM ({one_status}) AS status{index}"
            for index in range(len(filter.statuses))
        ) + page
    limit = filter.limit + 1
    params = [value for status in filter.statuses for value in (status.value, *params, limit)]
    if len(filter.statuses) > 1:
        params.append(limit)

    def read(tx: Tx) -> SessionPage:
        rows = tx.all(sql, params)
        more = len(rows) > filter.limit
        rows = rows[: filter.limit]
        cursor = encode_cursor(rows[-1][8], rows[-1][0]) if more else None
        return SessionPage([summary_from_row(row) for row in rows], cursor)

    return Work(read=OneStatement(read))


def patch(key: SessionKey, change: Any) -> Work[Session]:
    change = _model(change, SessionPatch, "patch")
    if change.replace_metadata:
        replacement = {k: v for k, v in (change.metadata or {}).items() if v is not None}
        replacement_text: str | None = _metadata_text(replacement)
    else:
        replacement_text = None

    def write(tx: Tx) -> Session:
        current = _live_session(tx, key, lock=True)
        if current is None:
            raise _not_found(key)
        if replacement_text is not None:
            metadata = replacement_text
        elif change.metadata:
            merged = dict(current.metadata)
            for name, value in change.metadata.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            metadata = _metadata_text(merged)
        else:
            metadata = _json.dumps(current.metadata)
        tokens = current.token_usage
        if change.token_usage is not None:
            tokens = change.token_usage
        elif change.add_tokens is not None:
            tokens += change.add_tokens
        if tokens > MAX_TOKEN_USAGE:
            field = "token_usage" if change.token_usage is not None else "add_tokens"
            raise InvalidInputError.for_field(
                field, f"token_usage would be {tokens}; at most {MAX_TOKEN_USAGE}"
            )
        status = change.status or current.status
        now = to_us(utc_now())
        archived_at = now if status is SessionStatus.ARCHIVED else None
        row = tx.one(
            "UPDATE sessions SET status = ?, token_usage = ?, metadata = ?, updated_at = ?, "
            f"archived_at = ? WHERE id = ? RETURNING {SESSION_COLUMNS}",
            (status.value, tokens, metadata, now, archived_at, current.id),
        )
        return session_from_row(row)

    return Work(write=write, lock_key=lock_order(key))


def delete(key: SessionKey) -> Work[bool]:
    def write(tx: Tx) -> bool:
        return tx.run(f"DELETE FROM sessions WHERE {KEY_WHERE}", key_params(key)) > 0

    return Work(write=write, lock_key=lock_order(key))


_INSERT_ONE = (
    "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, "
    "token_count, external_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


def _insert_messages(tx: Tx, session_id: int, first_seq: int, new: list[_NewMessage]) -> list[int]:
    """Insert in order from ``first_seq``; returns the new ids in the same order."""
    if len(new) == 1:  # the usual append: one message, one fixed statement
        item = new[0]
        m = item.message
        row = tx.one(_INSERT_ONE, (session_id, first_seq, _ROLE_TEXT[m.role], item.content,
                                   item.tool_calls, item.created_at, m.token_count,
                                   m.external_id))
        return [int(row[0])]
    ids_by_seq: dict[int, int] = {}
    for start in range(0, len(new), _INSERT_CHUNK):
        chunk = new[start : start + _INSERT_CHUNK]
        params: list[Any] = []
        for offset, item in enumerate(chunk):
            m = item.message
            params.extend(
                (session_id, first_seq + start + offset, m.role.value, item.content,
                 item.tool_calls, item.created_at, m.token_count, m.external_id)
            )
        values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
        rows = tx.all(
            "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, "
            f"token_count, external_id) VALUES {values} RETURNING seq, id",
            params,
        )
        ids_by_seq.update((int(seq), int(id_)) for seq, id_ in rows)
    return [ids_by_seq[first_seq + index] for index in range(len(new))]


_COUNT_APPEND = (
    "UPDATE sessions SET message_count = message_count + ?, token_usage = token_usage + ?, "
    f"last_seq = last_seq + ?, updated_at = ?, status = 'active' WHERE {LIVE_KEY_WHERE} "
    "RETURNING id, last_seq, token_usage"
)


def _with_id(message: StoredMessage, new_id: int) -> StoredMessage:
    """``message.model_copy(update={"id": new_id})``; for a plain StoredMessage, built the way
    a read builds it (every field already checked by ``_prepare_messages``)."""
    if type(message) is not StoredMessage:  # a subclass may carry more than its fields
        return message.model_copy(update={"id": new_id})
    values = dict(message.__dict__)
    values["id"] = new_id
    return StoredMessage._from_store(values)


def append_messages(key: SessionKey, messages: Any) -> Work[list[StoredMessage]]:
    prepared = _prepare_messages(messages)
    with_ids = [p for p in prepared if p.message.external_id is not None]

    def write(tx: Tx) -> list[StoredMessage]:
        if not prepared:
            _live_id(tx, key)
            return []
        stored: list[StoredMessage | None] = [None] * len(prepared)
        by_external: dict[str, StoredMessage] = {}
        new_indexes = list(range(len(prepared)))
        if with_ids:
            # Lock the session first: concurrent redeliveries of one message queue here.
            session_id = _live_id(tx, key, lock=True)
            external_ids = sorted({p.message.external_id for p in with_ids
                                   if p.message.external_id is not None})
            marks = ", ".join("?" for _ in external_ids)
            for row in tx.all(
                f"SELECT {MESSAGE_COLUMNS} FROM messages "
                f"WHERE session_id = ? AND external_id IN ({marks})",
                (session_id, *external_ids),
            ):
                by_external[row[6]] = message_from_row(row)
            new_indexes, first_seen = [], set(by_external)
            for index, p in enumerate(prepared):
                external_id = p.message.external_id
                if external_id is None or external_id not in first_seen:
                    new_indexes.append(index)
                    if external_id is not None:
                        first_seen.add(external_id)
        if new_indexes:
            new = [prepared[index] for index in new_indexes]
            tokens = sum(p.message.token_count or 0 for p in new)
            row = _twice(
                tx, _COUNT_APPEND,
                (len(new), tokens, len(new), to_us(utc_now()), *key_params(key)),
            )
            if row is None:
                raise _not_found(key)
            if int(row[2]) > MAX_TOKEN_USAGE:  # raising rolls the update back
                raise InvalidInputError.for_field(
                    "messages", f"the session's token_usage would exceed {MAX_TOKEN_USAGE}"
                )
            session_id, last_seq = int(row[0]), int(row[1])
            ids = _insert_messages(tx, session_id, last_seq - len(new) + 1, new)
            for index, new_id in zip(new_indexes, ids, strict=True):
                message = _with_id(prepared[index].message, new_id)
                stored[index] = message
                if message.external_id is not None:
                    by_external[message.external_id] = message
        return [
            message if message is not None else by_external[str(p.message.external_id)]
            for message, p in zip(stored, prepared, strict=True)
        ]

    return Work(write=write, lock_key=lock_order(key))


_BY_SESSION_ID = "session_id = ?"
_BY_LIVE_KEY = f"session_id = (SELECT id FROM sessions WHERE {LIVE_KEY_WHERE})"


@functools.lru_cache(maxsize=1024)
def _history_sql(
    unlimited: str, query: HistoryQuery, session: str = _BY_SESSION_ID
) -> tuple[str, tuple[Any, ...]]:
    """The statement and its parameters after the session's (cached: a gateway reads with the
    same few queries, and ``query`` is the one validated instance for its values)."""
    clauses = [session]
    params: list[Any] = []
    if not query.include_compacted:
        clauses.append("compacted = 0")
    if query.after is not None:
        clauses.append("created_at > ?")
        params.append(to_us(query.after))
    if query.before is not None:
        clauses.append("created_at < ?")
        params.append(to_us(query.before))
    order = "seq, id" if query.include_compacted else "seq"
    if query.tail:
        order = "seq DESC, id DESC" if query.include_compacted else "seq DESC"
    sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(clauses)} ORDER BY {order}"
    if query.limit is not None:
        sql += " LIMIT ?"
        params.append(query.limit)
    elif query.offset:
        sql += f" LIMIT {unlimited}"
    if query.offset:
        sql += " OFFSET ?"
        params.append(query.offset)
    return sql, tuple(params)


def _read_history(tx: Tx, session: Sequence[Any], query: HistoryQuery,
                  where: str = _BY_SESSION_ID) -> list[StoredMessage]:
    sql, params = _history_sql(tx.dialect.unlimited, query, where)
    messages = messages_from_rows(tx.all(sql, (*session, *params)))
    if query.tail:
        messages.reverse()
    return messages


def get_history(key: SessionKey, query: Any) -> Work[list[StoredMessage]]:
    checked = _query(query)
    params = key_params(key)

    def first(tx: Tx) -> list[StoredMessage] | None:
        # One statement finds the live session and reads its messages. Only an empty result
        # needs a second look, to tell a missing session from an empty history; both must see
        # one snapshot, so that look runs again in a read transaction.
        return _read_history(tx, params, checked, _BY_LIVE_KEY) or None

    def read(tx: Tx) -> list[StoredMessage]:
        messages = _read_history(tx, params, checked, _BY_LIVE_KEY)
        if not messages:
            _live_id(tx, key)
        return messages

    return Work(read=OneStatement(first, read))


def reset(key: SessionKey) -> Work[Session]:
    def write(tx: Tx) -> Session:
        now = to_us(utc_now())
        tx.run(
            f"UPDATE sessions SET status = 'archived', archived_at = ?, updated_at = ? "
            f"WHERE {LIVE_KEY_WHERE}",
            (now, now, *key_params(key)),
        )
        return _create(tx, key)

    return Work(write=write, lock_key=lock_order(key))


def _compaction_record(row: Sequence[Any]) -> CompactionRecord:
    return CompactionRecord.model_construct(
        compaction_count=row[0], last_compacted_at=_opt_from_us(row[1]), summary=row[2]
    )


def compact(key: SessionKey, strategy: Any) -> Work[CompactionRecord]:
    checked = _strategy(strategy)

    def write(tx: Tx) -> CompactionRecord:
        session = _live_session(tx, key, lock=True)
        if session is None:
            raise _not_found(key)
        live: list[LiveMessage]
        if isinstance(checked, TruncateToolResults):
            rows = tx.all(
                f"SELECT seq, {MESSAGE_COLUMNS} FROM messages "
                "WHERE session_id = ? AND compacted = 0 AND role = 'tool' ORDER BY seq",
                (session.id,),
            )
            live = [LiveMessage(r[1], r[0], Role.TOOL, message_from_row(r[1:])) for r in rows]
        else:
            rows = tx.all(
                "SELECT id, seq, role FROM messages WHERE session_id = ? AND compacted = 0 "
                "ORDER BY seq",
                (session.id,),
            )
            live = [LiveMessage(r[0], r[1], Role(r[2])) for r in rows]
        now = utc_now()
        plan = plan_compaction(checked, live, now)
        if not plan.changes_anything:
            return CompactionRecord.model_construct(
                compaction_count=session.compaction_count,
                last_compacted_at=session.last_compacted_at,
                summary=session.last_compaction_summary,
            )
        for start in range(0, len(plan.remove), _INSERT_CHUNK):
            chunk = plan.remove[start : start + _INSERT_CHUNK]
            tx.run(
                "UPDATE messages SET compacted = 1, compacted_at = ? "
                f"WHERE id IN ({', '.join('?' for _ in chunk)})",
                (to_us(now), *chunk),
            )
        for seq, message in plan.insert:
            prepared = _prepare_messages([message])[0]
            tx.run(
                "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, "
                "token_count, external_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, seq, message.role.value, prepared.content, prepared.tool_calls,
                 prepared.created_at, message.token_count, None),
            )
        live_count = session.message_count - len(plan.remove) + len(plan.insert)
        now_us = to_us(now)
        row = tx.one(
            "UPDATE sessions SET message_count = ?, compaction_count = compaction_count + 1, "
            "last_compacted_at = ?, "
            "last_compaction_summary = coalesce(?, last_compaction_summary), "
            "status = 'compacted', updated_at = ? WHERE id = ? "
            "RETURNING compaction_count, last_compacted_at, last_compaction_summary",
            (live_count, now_us, plan.summary, now_us, session.id),
        )
        return _compaction_record(row)

    return Work(write=write, lock_key=lock_order(key))


def get_compaction_record(key: SessionKey) -> Work[CompactionRecord]:
    def read(tx: Tx) -> CompactionRecord:
        row = tx.one(
            "SELECT compaction_count, last_compacted_at, last_compaction_summary FROM sessions "
            f"WHERE {LIVE_KEY_WHERE}",
            key_params(key),
        )
        if row is None:
            raise _not_found(key)
        return _compaction_record(row)

    return Work(read=OneStatement(read))


# --- admin (no agent scope) ------------------------------------------------------------------


def admin_filter(filter: Any) -> SessionFilter:
    return SessionFilter() if filter is None else _model(filter, SessionFilter, "filter")


def get_session_by_id(session_id: Any) -> Work[Session]:
    checked = _session_id(session_id)

    def read(tx: Tx) -> Session:
        row = tx.one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (checked,))
        if row is None:
            raise SessionNotFoundError(f"no session with id {checked}")
        return session_from_row(row)

    return Work(read=OneStatement(read))


def get_history_by_id(session_id: Any, query: Any) -> Work[list[StoredMessage]]:
    checked_id = _session_id(session_id)
    checked_query = _query(query)

    def read(tx: Tx) -> list[StoredMessage]:
        if tx.one("SELECT id FROM sessions WHERE id = ?", (checked_id,)) is None:
            raise SessionNotFoundError(f"no session with id {checked_id}")
        return _read_history(tx, (checked_id,), checked_query)

    return Work(read=read)


def purge_compacted(older_than: Any) -> Work[int]:
    """Delete messages compacted out of the live history before ``older_than`` (all if None)."""
    bound = None
    if older_than is not None:
        checked = _expect(older_than, datetime, "older_than")
        if checked.utcoffset() is None:
            raise InvalidInputError.for_field("older_than", "must be timezone-aware")
        bound = to_us(checked)

    def write(tx: Tx) -> int:
        if bound is None:
            return tx.run("DELETE FROM messages WHERE compacted = 1")
        return tx.run("DELETE FROM messages WHERE compacted = 1 AND compacted_at < ?", (bound,))

    return Work(write=write)


# --- operations for the framework integrations -----------------------------------------------
# (aisopod_session.integrations: OpenAI Agents SDK, Google ADK, LangChain)


def pop_message(key: SessionKey) -> Work[StoredMessage | None]:
    """Remove the newest live message and return it; None when the history is empty.

    The exact inverse of appending it: the row is deleted (its ``external_id`` may be stored
    again), ``message_count`` goes down by one and ``token_usage`` by its ``token_count``
    (never below zero). Positions are never handed out twice: the next append still takes the
    next position after the removed one.
    """

    def write(tx: Tx) -> StoredMessage | None:
        session_id = _live_id(tx, key, lock=True)
        row = tx.one(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND compacted = 0 "
            "ORDER BY seq DESC LIMIT 1",
            (session_id,),
        )
        if row is None:
            return None
        message = message_from_row(row)
        tokens = message.token_count or 0
        tx.run("DELETE FROM messages WHERE id = ?", (message.id,))
        tx.run(
            "UPDATE sessions SET message_count = message_count - 1, "
            "token_usage = CASE WHEN token_usage > ? THEN token_usage - ? ELSE 0 END, "
            "updated_at = ? WHERE id = ?",
            (tokens, tokens, to_us(utc_now()), session_id),
        )
        return message

    return Work(write=write, lock_key=lock_order(key))


class SessionDetailPage(list[Session]):
    """One page of a detailed session list (whole sessions, metadata included)."""

    next_cursor: str | None

    def __init__(self, items: Iterable[Session] = (), next_cursor: str | None = None):
        super().__init__(items)
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"SessionDetailPage({list.__repr__(self)}, next_cursor={self.next_cursor!r})"


def list_detailed(filter: SessionFilter) -> Work[SessionDetailPage]:
    """:func:`list_sessions`, with whole sessions (metadata included) read in the same snapshot."""
    summaries = list_sessions(filter)
    assert summaries.read is not None

    def read(tx: Tx) -> SessionDetailPage:
        assert summaries.read is not None
        page = summaries.read(tx)
        if page is None or not page:
            return SessionDetailPage([], None if page is None else page.next_cursor)
        ids = [summary.id for summary in page]
        rows = tx.all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id IN ({', '.join('?' for _ in ids)})",
            ids,
        )
        by_id = {int(row[0]): session_from_row(row) for row in rows}
        return SessionDetailPage([by_id[i] for i in ids if i in by_id], page.next_cursor)

    return Work(read=read)


MetadataMerge = dict[str, dict[str, Any]]
"""For each top-level metadata name, the entries merged into the JSON object stored there
(created when absent). A null entry is stored as null: merging never removes."""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What :func:`commit` did."""

    session: Session
    """The session after the commit."""
    messages: list[StoredMessage]
    """The stored messages, as ``append_messages`` returns them."""
    applied: bool
    """False when every message given was already stored (a redelivery): nothing was changed."""
    shared: dict[SessionKey, Session | None]
    """Each shared session after the commit; None for one that does not exist (and had nothing
    merged into it)."""


def _merge_text(merge: Any, field: str) -> MetadataMerge:
    if merge is None:
        return {}
    if not isinstance(merge, dict):
        raise InvalidInputError.for_field(
            field, f"expected a dict of objects to merge, got {type(merge).__name__}"
        )
    checked: MetadataMerge = {}
    for name, entries in merge.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise InvalidInputError.for_field(
                field, f"metadata names are non-empty strings of at most 256 characters: {name!r}"
            )
        if not isinstance(entries, dict):
            raise InvalidInputError.for_field(
                f"{field}.{name}", f"expected a dict of entries, got {type(entries).__name__}"
            )
        try:
            _json.check_json(entries, f"{field}.{name}")
        except _json.JsonError as exc:
            raise InvalidInputError.for_field(f"{field}.{name}", str(exc)) from None
        if entries:
            checked[name] = dict(entries)
    return checked


def _merged_metadata(current: dict[str, Any], merge: MetadataMerge, key: SessionKey) -> str:
    metadata = dict(current)
    for name, entries in merge.items():
        existing = metadata.get(name)
        if existing is None:
            existing = {}
        if not isinstance(existing, dict):
            raise InvalidInputError.for_field(
                f"merge.{name}",
                f"metadata {name!r} of {key} is a {type(existing).__name__}, not an object",
            )
        metadata[name] = {**existing, **entries}
    return _metadata_text(metadata)


def _locked_or_created(tx: Tx, key: SessionKey) -> Session:
    session = _live_session(tx, key, lock=True)
    if session is not None:
        return session
    _create(tx, key)
    session = _live_session(tx, key, lock=True)
    if session is None:  # pragma: no cover - created just above, in this transaction
        raise _not_found(key)
    return session


def _update_metadata(tx: Tx, session: Session, metadata: str) -> Session:
    """Store ``metadata``; ``updated_at`` strictly increases (the revision compare-and-set sees)."""
    updated_at = max(to_us(utc_now()), to_us(session.updated_at) + 1)
    row = tx.one(
        "UPDATE sessions SET metadata = ?, updated_at = ? WHERE id = ? "
        f"RETURNING {SESSION_COLUMNS}",
        (metadata, updated_at, session.id),
    )
    return session_from_row(row)


def _lock_for_commit(
    tx: Tx, key: SessionKey, shared_merge: dict[SessionKey, MetadataMerge], *, create: bool
) -> dict[SessionKey, Session | None]:
    """The sessions a commit touches, locked in key order (created where the commit says)."""
    current: dict[SessionKey, Session | None] = {}
    for one in sorted({key, *shared_merge}, key=lock_order):
        if one == key and create:
            now = to_us(utc_now())
            row = tx.one(
                "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
                "created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, '{}') "
                f"ON CONFLICT DO NOTHING RETURNING {SESSION_COLUMNS}",
                (*key_params(key), now, now),
            )
            if row is None:
                raise ConflictError(f"a live session for {key} already exists")
            current[one] = session_from_row(row)
        elif one == key:
            found = _live_session(tx, key, lock=True)
            if found is None:
                raise _not_found(key)
            current[one] = found
        elif shared_merge[one]:
            current[one] = _locked_or_created(tx, one)
        else:
            current[one] = _live_session(tx, one)
    return current


def commit(
    key: SessionKey,
    messages: Any,
    merge: Any,
    *,
    create: bool,
    expect_updated_at: Any,
    shared: dict[SessionKey, Any],
) -> Work[CommitResult]:
    """Append messages and merge metadata into this session and into ``shared`` ones, atomically.

    * ``create``: the session must not exist yet (ConflictError if a live one does); it is
      created in the same transaction.
    * ``expect_updated_at``: compare-and-set. The commit applies only if the session's
      ``updated_at`` is still this value (ConflictError otherwise). Every commit moves
      ``updated_at`` strictly forward, so the value read back is a revision.
    * Messages de-duplicate on ``external_id`` as in ``append_messages``; when *every* message
      given is already stored the call is a redelivery: nothing changes (the precondition is not
      checked) and ``applied`` is False.
    * ``shared``: other sessions of the same agent whose metadata is merged in the same
      transaction, created when missing; one with nothing to merge is only read.

    Sessions are locked in key order, so concurrent commits touching the same shared sessions
    never deadlock.
    """
    prepared = _prepare_messages([] if messages is None else messages)
    own_merge = _merge_text(merge, "merge")
    shared_merge = {k: _merge_text(m, f"shared[{k}]") for k, m in shared.items()}
    if key in shared_merge:
        raise InvalidInputError.for_field("shared", f"{key} is the session being committed")
    if type(create) is not bool:
        raise InvalidInputError.for_field("create", f"expected a bool, got {create!r}")
    expected: int | None = None
    if expect_updated_at is not None:
        checked = _expect(expect_updated_at, datetime, "expect_updated_at")
        if checked.utcoffset() is None:
            raise InvalidInputError.for_field("expect_updated_at", "must be timezone-aware")
        expected = to_us(checked)
    with_ids = sorted({p.message.external_id for p in prepared
                       if p.message.external_id is not None})
    all_have_ids = bool(prepared) and all(p.message.external_id is not None for p in prepared)
    append = append_messages(key, [p.message for p in prepared])
    assert append.write is not None

    def write(tx: Tx) -> CommitResult:
        assert append.write is not None
        current = _lock_for_commit(tx, key, shared_merge, create=create)
        session = current[key]
        assert session is not None
        if all_have_ids:
            marks = ", ".join("?" for _ in with_ids)
            found_ids = tx.all(
                f"SELECT external_id FROM messages WHERE session_id = ? "
                f"AND external_id IN ({marks})",
                (session.id, *with_ids),
            )
            if len(found_ids) == len(with_ids):  # a redelivery of the whole commit
                stored = append.write(tx)  # changes nothing: returns the stored messages
                return CommitResult(session, stored, False, {
                    k: v for k, v in current.items() if k != key
                })
        if expected is not None and to_us(session.updated_at) != expected:
            raise ConflictError(
                f"session {key} was changed since it was read (updated_at is "
                f"{session.updated_at.isoformat()}, expected {from_us(expected).isoformat()})"
            )
        stored = append.write(tx) if prepared else []
        metadata = _merged_metadata(session.metadata, own_merge, key)
        session = _update_metadata(tx, session, metadata)
        after: dict[SessionKey, Session | None] = {}
        for one, merge_one in shared_merge.items():
            existing = current[one]
            if merge_one and existing is not None:
                existing = _update_metadata(
                    tx, existing, _merged_metadata(existing.metadata, merge_one, one)
                )
            after[one] = existing
        return CommitResult(session, stored, True, after)

    # It locks its sessions in key order, starting with the smallest: sorting batches on that
    # one keeps its first lock in the order every other write takes its own.
    locked = [lock_order(key), *(lock_order(k) for k, m in shared_merge.items() if m)]
    return Work(write=write, lock_key=min(locked))
