"""Operator operations on a whole store: counts, clearing, and export/import as JSON Lines.

Export streams: sessions are read by id in pages and each one's messages in position order,
a chunk at a time, so memory stays flat however large the store. The file is JSON Lines:

    {"kind": "aisopod-session-export", "version": 1}
    {"kind": "session", "id": 7, "key": {...}, "status": "archived", ..., "last_seq": 12}
    {"kind": "message", "session": 7, "seq": 1, "role": "user", "content": ..., ...}

Import reads the same lines in order. Each session is written with all its fields (status,
timestamps, counters, compaction state) and its messages keep their positions and compacted flags,
so importing an export into an empty store reproduces it exactly (ids aside: the target assigns
its own). A session that fails half-way (a bad line, a live key that already exists) is removed
again, so nothing is left half-written; sessions imported before it stay.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt

from aisopod_session import _json
from aisopod_session._time import to_us
from aisopod_session.base import Model
from aisopod_session.errors import ConflictError, InvalidInputError
from aisopod_session.limits import MAX_ID_LENGTH, MAX_SQL_INT, MAX_TOKEN_USAGE
from aisopod_session.models import (
    JsonValue,
    Role,
    SessionKey,
    SessionMetadata,
    SessionStatus,
    UtcDatetime,
)
from aisopod_session.results import ChangeKind, ImportResult
from aisopod_session.store import _checks
from aisopod_session.store._changes import record as record_change
from aisopod_session.store._changes import record_sessions
from aisopod_session.store._schema import (
    EXPORT_INBOX_COLUMNS,
    EXPORT_MESSAGE_COLUMNS,
    EXPORT_SESSION_COLUMNS,
    INSERT_CHUNK,
    LIVE_KEY_WHERE,
    MessageRow,
    export_message_from_row,
    export_queued_from_row,
    export_session_from_row,
    insert_messages,
    key_params,
    lock_order,
)
from aisopod_session.store._tx import Tx, Work

EXPORT_FORMAT = "aisopod-session-export"
EXPORT_VERSION = 1
PAGE = INSERT_CHUNK
"""Sessions per page and messages per chunk, on export and on import."""


# --- export ----------------------------------------------------------------------------------


SessionPages = Callable[[int], "Work[list[dict[str, Any]]]"]
"""Which sessions an export covers: the page of export records after a session id."""


def sessions_where(where: str, params: tuple[Any, ...]) -> SessionPages:
    """Pages of export records for the sessions matching ``where``, in id order."""

    def page(after_id: int) -> Work[list[dict[str, Any]]]:
        def read(tx: Tx) -> list[dict[str, Any]]:
            rows = tx.all(
                f"SELECT {EXPORT_SESSION_COLUMNS} FROM sessions "
                f"WHERE {where} AND id > ? ORDER BY id LIMIT {PAGE}",
                (*params, after_id),
            )
            return [export_session_from_row(row) for row in rows]

        return Work(read=read)

    return page


QueuedPages = Callable[[int], "Work[list[dict[str, Any]]]"]
"""Which inbox messages an export covers: the page of export records after an inbox id."""


def queued_where(where: str, params: tuple[Any, ...]) -> QueuedPages:
    """Pages of export records for the inbox messages of the keys matching ``where``."""

    def page(after_id: int) -> Work[list[dict[str, Any]]]:
        def read(tx: Tx) -> list[dict[str, Any]]:
            rows = tx.all(f"SELECT {EXPORT_INBOX_COLUMNS} FROM inbox WHERE {where} AND id > ? "
                          f"ORDER BY id LIMIT {PAGE}", (*params, after_id))
            return [export_queued_from_row(row) for row in rows]

        return Work(read=read)

    return page


def agent_inbox(agent_id: str | None, session_id: int | None = None) -> QueuedPages | None:
    """The inbox messages an export of :func:`agent_sessions` includes (none for one session:
    the inbox belongs to the key, not to one of its generations)."""
    if session_id is not None:
        return None
    return queued_where("agent_id = ?", (agent_id,)) if agent_id else queued_where("1 = 1", ())


def agent_sessions(agent_id: str | None, session_id: int | None = None) -> SessionPages:
    """The sessions of one agent or all, or the one session ``session_id`` (of that agent)."""
    clauses: list[str] = []
    params: list[Any] = []
    if agent_id:
        clauses.append("agent_id = ?")
        params.append(agent_id)
    if session_id is not None:
        clauses.append("id = ?")
        params.append(_checks.session_id(session_id))
    return sessions_where(" AND ".join(clauses) or "1 = 1", tuple(params))


def message_chunk(session_id: int, after: tuple[int, int]) -> Work[list[dict[str, Any]]]:
    def read(tx: Tx) -> list[dict[str, Any]]:
        rows = tx.all(
            f"SELECT {EXPORT_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? "
            f"AND (seq, id) > (?, ?) ORDER BY seq, id LIMIT {PAGE}",
            (session_id, *after),
        )
        return [export_message_from_row(row, session_id) for row in rows]

    return Work(read=read)


# --- import ----------------------------------------------------------------------------------


class ExportHeader(Model):
    kind: Literal["aisopod-session-export"]
    version: Annotated[StrictInt, Field(ge=1)]


class ExportedSession(Model):
    kind: Literal["session"]
    id: StrictInt
    key: SessionKey
    status: SessionStatus
    created_at: UtcDatetime
    updated_at: UtcDatetime
    message_count: Annotated[StrictInt, Field(ge=0)]
    token_usage: Annotated[StrictInt, Field(ge=0, le=MAX_TOKEN_USAGE)]
    metadata: SessionMetadata
    compaction_count: Annotated[StrictInt, Field(ge=0)]
    last_compacted_at: UtcDatetime | None = None
    last_compaction_summary: str | None = None
    last_seq: Annotated[StrictInt, Field(ge=0)]
    archived_at: UtcDatetime | None = None


class ExportedQueued(Model):
    """A message waiting in a key's inbox (``enqueue``), exported after the sessions."""

    kind: Literal["queued"]
    key: SessionKey
    role: Role
    content: JsonValue
    tool_calls: JsonValue | None = None
    created_at: UtcDatetime
    token_count: Annotated[StrictInt, Field(ge=0, le=MAX_SQL_INT)] | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = None
    enqueued_at: UtcDatetime


class ExportedMessage(Model):
    kind: Literal["message"]
    session: StrictInt
    seq: Annotated[StrictInt, Field(ge=1)]
    role: Role
    content: JsonValue
    tool_calls: JsonValue | None = None
    created_at: UtcDatetime
    token_count: Annotated[StrictInt, Field(ge=0)] | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = None
    compacted: StrictBool = False
    compacted_at: UtcDatetime | None = None


Record = ExportHeader | ExportedSession | ExportedMessage | ExportedQueued


def parse_line(text: str, number: int) -> Record:
    try:
        data = _json.loads(text)
    except ValueError as exc:
        raise InvalidInputError.for_field(f"line {number}", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError.for_field(f"line {number}", "expected a JSON object")
    data.pop("_id", None)
    kind = data.get("kind")
    model: type[Record]
    if kind == EXPORT_FORMAT:
        model = ExportHeader
    elif kind == "session":
        model = ExportedSession
    elif kind == "message":
        model = ExportedMessage
    elif kind == "queued":
        model = ExportedQueued
    else:
        raise InvalidInputError.for_field(f"line {number}", f"unknown kind {kind!r}")
    try:
        return model.model_validate(data)
    except InvalidInputError as exc:
        errors = [{**e, "field": f"line {number}.{e['field']}"} for e in exc.errors]
        raise InvalidInputError(f"line {number}: {exc}", errors) from None


def _insert_session(record: ExportedSession) -> Work[int]:
    def write(tx: Tx) -> int:
        if record.status is not SessionStatus.ARCHIVED and tx.one(
            f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}", key_params(record.key)
        ):
            raise ConflictError(f"a live session for {record.key} already exists")
        row = tx.one(
            "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
            "created_at, updated_at, message_count, token_usage, metadata, compaction_count, "
            "last_compacted_at, last_compaction_summary, last_seq, archived_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (*key_params(record.key), record.status.value, to_us(record.created_at),
             to_us(record.updated_at), record.message_count, record.token_usage,
             _json.dumps(record.metadata), record.compaction_count,
             None if record.last_compacted_at is None else to_us(record.last_compacted_at),
             record.last_compaction_summary, record.last_seq,
             None if record.archived_at is None else to_us(record.archived_at)),
        )
        record_change(tx, ChangeKind.SESSION_IMPORTED, record.key.agent_id, row[0],
                      status=record.status.value)
        return int(row[0])

    return Work(write=write)


def _insert_records(session: ExportedSession, session_id: int,
                    records: list[ExportedMessage]) -> Work[int]:
    rows = []
    for m in records:
        compacted_at = m.compacted_at or (m.created_at if m.compacted else None)
        rows.append(MessageRow(
            m.seq, m.role.value, _json.dumps(m.content),
            None if m.tool_calls is None else _json.dumps(m.tool_calls), to_us(m.created_at),
            m.token_count, m.external_id, m.compacted,
            None if compacted_at is None else to_us(compacted_at)))

    def write(tx: Tx) -> int:
        insert_messages(tx, session_id, rows, returning=False)
        record_change(tx, ChangeKind.MESSAGES_APPENDED, session.key.agent_id, session_id,
                      count=len(rows), first_seq=rows[0].seq, last_seq=rows[-1].seq,
                      reason="import")
        return len(records)

    return Work(write=write)


def _insert_queued(record: ExportedQueued) -> Work[int]:
    """Keep the message in the key's inbox (not again if its ``external_id`` waits already)."""
    content = _json.dumps(record.content)
    tool_calls = None if record.tool_calls is None else _json.dumps(record.tool_calls)

    def write(tx: Tx) -> int:
        added = tx.all(
            "INSERT INTO inbox (agent_id, channel, account_id, peer_kind, peer_id, role, "
            "content, tool_calls, created_at, token_count, external_id, enqueued_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (*key_params(record.key), record.role.value, content, tool_calls,
             to_us(record.created_at), record.token_count, record.external_id,
             to_us(record.enqueued_at)))
        if added:
            row = tx.one(f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}",
                         key_params(record.key))
            record_change(tx, ChangeKind.INBOX_ENQUEUED, record.key.agent_id,
                          None if row is None else row[0], count=1,
                          queued_ids=[added[0][0]], reason="import")
        return len(added)

    return Work(write=write, lock_key=lock_order(record.key))


def _import_done(result: ImportResult) -> Work[None]:
    def write(tx: Tx) -> None:
        record_change(tx, ChangeKind.IMPORT_DONE, None, None, **result.model_dump())

    return Work(write=write)


def _delete_session_by_id(session_id: int) -> Work[bool]:
    def write(tx: Tx) -> bool:
        gone = tx.all("DELETE FROM sessions WHERE id = ? RETURNING id, agent_id", (session_id,))
        record_sessions(tx, ChangeKind.SESSION_DELETED, gone, reason="import failed")
        return bool(gone)

    return Work(write=write)


def line_text(line: str | bytes, number: int) -> str:
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError.for_field(f"line {number}", f"not UTF-8: {exc.reason}") from None


def message_record_ok(record: ExportedMessage, session: ExportedSession | None,
                      number: int) -> None:
    if session is None or record.session != session.id:
        raise InvalidInputError.for_field(
            f"line {number}", "a message must follow the session line it belongs to"
        )
    if record.seq > session.last_seq:
        raise InvalidInputError.for_field(
            f"line {number}", f"seq {record.seq} is past the session's last_seq {session.last_seq}"
        )


# --- plans: the multi-step operations, written once for both front ends ------------------------
#
# A plan is a generator that yields Work (the driver runs it and sends the result back) or, for
# export, a line of output. The facades each have a small driver.

Plan = Generator[Any, Any, None]


def export_plan(pages: SessionPages, queued: QueuedPages | None = None) -> Plan:
    yield _json.dumps({"kind": EXPORT_FORMAT, "version": EXPORT_VERSION})
    yield from _sessions_and_messages(pages)
    after_id = 0
    while queued is not None:
        page: list[dict[str, Any]] = yield queued(after_id)
        if not page:
            return
        for record in page:
            after_id = record.pop("_id")
            yield _json.dumps(record)


def _sessions_and_messages(pages: SessionPages) -> Plan:
    after_id = 0
    while True:
        page: list[dict[str, Any]] = yield pages(after_id)
        if not page:
            return
        for record in page:
            after_id = record["id"]
            yield _json.dumps(record)
            position = (0, 0)
            while True:
                chunk: list[dict[str, Any]] = yield message_chunk(record["id"], position)
                if not chunk:
                    break
                for message in chunk:
                    position = (message["seq"], message.pop("_id"))
                    yield _json.dumps(message)


class Importer:
    """Feeds export lines into a store, one session (and its messages) at a time."""

    def __init__(self) -> None:
        self._sessions = 0
        self._messages = 0
        self._queued = 0
        self._number = 0
        self._header_seen = False
        self._session: ExportedSession | None = None
        self._session_id: int | None = None
        self._pending: list[ExportedMessage] = []

    @property
    def result(self) -> ImportResult:
        return ImportResult(sessions=self._sessions, messages=self._messages,
                            queued=self._queued)

    def line(self, line: str | bytes) -> Plan:
        """The next line of the file (numbered here, for the errors; blank lines are skipped)."""
        self._number += 1
        number = self._number
        text = line_text(line, number)
        if not text.strip():
            return
        record = parse_line(text, number)
        if isinstance(record, ExportHeader):
            if self._header_seen:
                raise InvalidInputError.for_field(f"line {number}", "a second export header")
            if record.version > EXPORT_VERSION:
                raise InvalidInputError.for_field(
                    f"line {number}", f"export version {record.version} is newer than this "
                    f"aisopod-session reads ({EXPORT_VERSION})"
                )
            self._header_seen = True
            return
        if not self._header_seen:
            raise InvalidInputError.for_field(
                f"line {number}", f"the file does not start with a {EXPORT_FORMAT} header"
            )
        if isinstance(record, ExportedSession):
            yield from self._finish_session()
            self._session = record
            self._session_id = yield _insert_session(record)
            return
        if isinstance(record, ExportedQueued):
            yield from self._finish_session()
            self._queued += yield _insert_queued(record)
            return
        message_record_ok(record, self._session, number)
        self._pending.append(record)
        if len(self._pending) >= PAGE:
            yield from self._flush()

    def _flush(self) -> Plan:
        if self._pending and self._session_id is not None:
            assert self._session is not None
            self._messages += yield _insert_records(self._session, self._session_id,
                                                    self._pending)
        self._pending = []

    def _finish_session(self) -> Plan:
        if self._session_id is not None:
            yield from self._flush()
            self._sessions += 1
        self._session = None
        self._session_id = None

    def finish(self) -> Plan:
        if not self._header_seen:
            raise InvalidInputError.for_field("file", f"empty: no {EXPORT_FORMAT} header")
        yield from self._finish_session()
        yield _import_done(self.result)

    def abort(self) -> Plan:
        """Remove the session that was being imported when a line failed."""
        if self._session_id is not None:
            yield _delete_session_by_id(self._session_id)
        self._session_id = None
        self._pending = []
