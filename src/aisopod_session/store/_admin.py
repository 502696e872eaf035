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

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, ValidationError

from aisopod_session import _json
from aisopod_session.errors import ConflictError, InvalidInputError
from aisopod_session.base import Model as _Model, invalid_input_from
from aisopod_session.models import (
    JsonValue,
    Role,
    SessionKey,
    SessionMetadata,
    SessionStatus,
    UtcDatetime,


)
from aisopod_session.store._engine import Tx
from aisopod_session.store._migrations import MIGRATIONS_TABLE
from aisopod_session.store._ops import (
    KEY_WHERE,
    MESSAGE_COLUMNS,
    SESSION_COLUMNS,
    Work,
    from_us,
    key_params,
    message_from_row,
    session_from_row,
    to_us,
)

EXPORT_FORMAT = "aisopod-session-export"
EXPORT_VERSION = 1
PAGE = 500
"""Sessions per page and messages per chunk, on export and on import."""


def count_by_status(agent_id: str | None = None) -> Work[dict[SessionStatus, int]]:
    where, params = ("WHERE agent_id = ?", (agent_id,)) if agent_id else ("", ())

    def read(tx: Tx) -> dict[SessionStatus, int]:
        rows = tx.all(f"SELECT status, count(*) FROM sessions {where} GROUP BY status", params)
        return {SessionStatus(status): int(count) for status, count in rows}

    return Work(read=read)


def clear(agent_id: str | None) -> Work[int]:
    """Delete every session (of one agent), all generations and messages; returns how many."""

    def write(tx: Tx) -> int:
        if agent_id is None:
            tx.run("DELETE FROM messages")
            return tx.run("DELETE FROM sessions")
        return tx.run("DELETE FROM sessions WHERE agent_id = ?", (agent_id,))

    return Work(write=write)


def schema_version() -> Work[int]:
    def read(tx: Tx) -> int:
        return int(tx.one(f"SELECT max(version) FROM {MIGRATIONS_TABLE}")[0])

    return Work(read=read)


@dataclass(slots=True)
class StoreStats:
    sessions_by_status: dict[SessionStatus, int] = field(default_factory=dict)
    agents: int = 0
    messages_live: int = 0
    messages_compacted: int = 0


def stats() -> Work[StoreStats]:
    def read(tx: Tx) -> StoreStats:
        result = StoreStats()
        for status, count in tx.all("SELECT status, count(*) FROM sessions GROUP BY status"):
            result.sessions_by_status[SessionStatus(status)] = int(count)
        result.agents = int(tx.one("SELECT count(DISTINCT agent_id) FROM sessions")[0])
        for compacted, count in tx.all(
            "SELECT compacted, count(*) FROM messages GROUP BY compacted"
        ):
            if compacted:
                result.messages_compacted = int(count)
            else:
                result.messages_live = int(count)
        return result

    return Work(read=read)


DAY_US = 86_400_000_000
MAX_USAGE_DAYS = 366


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """Messages stored and their tokens (``token_count``) on one UTC day, for one agent."""

    day: date
    agent_id: str
    messages: int
    tokens: int


_EVERY_STATUS = ", ".join(f"'{status.value}'" for status in SessionStatus)


def usage_by_day(agent_id: str | None, days: int, now: datetime | None) -> Work[list[DailyUsage]]:
    """Usage of the last ``days`` UTC days (today included), by the messages still stored.

    Sessions are reached through their recency index: a message appended on a day bumped its
    session's ``updated_at`` to that day or later, so sessions last updated before the window
    cannot hold a message of it, and the query never walks the whole message table. (The
    recency indexes lead with the status: naming every status lets the query seek them.)
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_USAGE_DAYS:
        raise InvalidInputError.for_field("days", f"must be a whole number from 1 to "
                                                  f"{MAX_USAGE_DAYS}")
    end = to_us(now or datetime.now(UTC)) // DAY_US * DAY_US + DAY_US
    start = end - days * DAY_US
    agent_clause, agent_params = ("AND s.agent_id = ? ", (agent_id,)) if agent_id else ("", ())

    def read(tx: Tx) -> list[DailyUsage]:
        rows = tx.all(
            "SELECT s.agent_id, m.created_at / ? AS day, count(*), "
            "coalesce(sum(m.token_count), 0) FROM sessions s "
            "JOIN messages m ON m.session_id = s.id "
            f"WHERE s.status IN ({_EVERY_STATUS}) AND s.updated_at >= ? {agent_clause}"
            "AND m.created_at >= ? AND m.created_at < ? "
            "GROUP BY s.agent_id, day ORDER BY day, s.agent_id",
            (DAY_US, start, *agent_params, start, end),
        )
        epoch = date(1970, 1, 1)
        return [DailyUsage(epoch + timedelta(days=int(day)), agent, int(count), int(tokens))
                for agent, day, count, tokens in rows]

    return Work(read=read)


# --- export ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


SessionPages = Callable[[int], "Work[list[dict[str, Any]]]"]
"""Which sessions an export covers: the page of export records after a session id."""


def sessions_where(where: str, params: tuple[Any, ...]) -> SessionPages:
    """Pages of export records for the sessions matching ``where``, in id order."""

    def page(after_id: int) -> Work[list[dict[str, Any]]]:
        def read(tx: Tx) -> list[dict[str, Any]]:
            rows = tx.all(
                f"SELECT {SESSION_COLUMNS}, last_seq, archived_at FROM sessions "
                f"WHERE {where} AND id > ? ORDER BY id LIMIT {PAGE}",
                (*params, after_id),
            )
            records = []
            for row in rows:
                record = {"kind": "session", **session_from_row(row).model_dump(mode="json")}
                record["last_seq"] = row[15]
                record["archived_at"] = _iso(None if row[16] is None else from_us(row[16]))
                records.append(record)
            return records

        return Work(read=read)

    return page


def agent_sessions(agent_id: str | None, session_id: int | None = None) -> SessionPages:
    """The sessions of one agent or all, or the one session ``session_id`` (of that agent)."""
    clauses: list[str] = []
    params: list[Any] = []
    if agent_id:
        clauses.append("agent_id = ?")
        params.append(agent_id)
    if session_id is not None:
        if (isinstance(session_id, bool) or not isinstance(session_id, int)
                or not 1 <= session_id < 2**63):
            raise InvalidInputError.for_field("session_id", "must be a positive whole number")
        clauses.append("id = ?")
        params.append(session_id)
    return sessions_where(" AND ".join(clauses) or "1 = 1", tuple(params))


def message_chunk(session_id: int, after: tuple[int, int]) -> Work[list[dict[str, Any]]]:
    def read(tx: Tx) -> list[dict[str, Any]]:
        rows = tx.all(
            f"SELECT seq, compacted_at, {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? "
            f"AND (seq, id) > (?, ?) ORDER BY seq, id LIMIT {PAGE}",
            (session_id, *after),
        )
        records = []
        for row in rows:
            message = message_from_row(row[2:])
            record = {"kind": "message", "session": session_id, "seq": row[0],
                      **message.model_dump(mode="json", exclude={"id"})}
            record["compacted_at"] = _iso(None if row[1] is None else from_us(row[1]))
            record["_id"] = row[2]
            records.append(record)
        return records

    return Work(read=read)


# --- import ----------------------------------------------------------------------------------


class ExportHeader(_Model):
    kind: Literal["aisopod-session-export"]
    version: Annotated[StrictInt, Field(ge=1)]


class ExportedSession(_Model):
    kind: Literal["session"]
    id: StrictInt
    key: SessionKey
    status: SessionStatus
    created_at: UtcDatetime
    updated_at: UtcDatetime
    message_count: Annotated[StrictInt, Field(ge=0)]
    token_usage: Annotated[StrictInt, Field(ge=0, le=2**62)]
    metadata: SessionMetadata
    compaction_count: Annotated[StrictInt, Field(ge=0)]
    last_compacted_at: UtcDatetime | None = None
    last_compaction_summary: str | None = None
    last_seq: Annotated[StrictInt, Field(ge=0)]
    archived_at: UtcDatetime | None = None


class ExportedMessage(_Model):
    kind: Literal["message"]
    session: StrictInt
    seq: Annotated[StrictInt, Field(ge=1)]
    role: Role
    content: JsonValue
    tool_calls: JsonValue | None = None
    created_at: UtcDatetime
    token_count: Annotated[StrictInt, Field(ge=0)] | None = None
    external_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    compacted: StrictBool = False
    compacted_at: UtcDatetime | None = None


def parse_line(text: str, number: int) -> ExportHeader | ExportedSession | ExportedMessage:
    try:
        data = _json.loads(text)
    except ValueError as exc:
        raise InvalidInputError.for_field(f"line {number}", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError.for_field(f"line {number}", "expected a JSON object")
    data.pop("_id", None)
    kind = data.get("kind")
    model: type[ExportHeader | ExportedSession | ExportedMessage]
    if kind == EXPORT_FORMAT:
        model = ExportHeader
    elif kind == "session":
        model = ExportedSession
    elif kind == "message":
        model = ExportedMessage
    else:
        raise InvalidInputError.for_field(f"line {number}", f"unknown kind {kind!r}")
    try:
        return model.model_validate(data)
    except InvalidInputError as exc:
        errors = [{**e, "field": f"line {number}.{e['field']}"} for e in exc.errors]
        raise InvalidInputError(f"line {number}: {exc}", errors) from None
    except ValidationError as exc:  # pragma: no cover - _Model converts already
        raise invalid_input_from(exc, f"line {number}") from None


def insert_session(record: ExportedSession) -> Work[int]:
    def write(tx: Tx) -> int:
        if record.status is not SessionStatus.ARCHIVED and tx.one(
            f"SELECT id FROM sessions WHERE {KEY_WHERE} AND status <> 'archived'",
            key_params(record.key),
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
        return int(row[0])

    return Work(write=write)


def insert_messages(session_id: int, records: list[ExportedMessage]) -> Work[int]:
    def write(tx: Tx) -> int:
        values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" for _ in records)
        params: list[Any] = []
        for m in records:
            compacted_at = m.compacted_at or (m.created_at if m.compacted else None)
            params.extend((session_id, m.seq, m.role.value, _json.dumps(m.content),
                           None if m.tool_calls is None else _json.dumps(m.tool_calls),
                           to_us(m.created_at), m.token_count, m.external_id, int(m.compacted),
                           None if compacted_at is None else to_us(compacted_at)))
        tx.run(
            "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, "
            f"token_count, external_id, compacted, compacted_at) VALUES {values}",
            params,
        )
        return len(records)

    return Work(write=write)


def delete_session_by_id(session_id: int) -> Work[bool]:
    def write(tx: Tx) -> bool:
        return tx.run("DELETE FROM sessions WHERE id = ?", (session_id,)) > 0

    return Work(write=write)


@dataclass(slots=True)
class ImportResult:
    sessions: int = 0
    messages: int = 0


def line_text(line: str | bytes, number: int) -> str:
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError.for_field(f"line {number}", f"not UTF-8: {exc.reason}") from None


def numbered_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, start=1):
        text = line_text(line, number)
        if text.strip():
            yield number, text


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
# export, a line of output. _sync.py and _async.py each have a small driver.

Plan = Generator[Any, Any, None]


def export_plan(pages: SessionPages) -> Plan:
    yield _json.dumps({"kind": EXPORT_FORMAT, "version": EXPORT_VERSION})
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
        self.result = ImportResult()
        self._header_seen = False
        self._session: ExportedSession | None = None
        self._session_id: int | None = None
        self._pending: list[ExportedMessage] = []

    def line(self, number: int, text: str) -> Plan:
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
            self._session_id = yield insert_session(record)
            return
        message_record_ok(record, self._session, number)
        self._pending.append(record)
        if len(self._pending) >= PAGE:
            yield from self._flush()

    def _flush(self) -> Plan:
        if self._pending and self._session_id is not None:
            self.result.messages += yield insert_messages(self._session_id, self._pending)
        self._pending = []

    def _finish_session(self) -> Plan:
        if self._session_id is not None:
            yield from self._flush()
            self.result.sessions += 1
        self._session = None
        self._session_id = None

    def finish(self) -> Plan:
        if not self._header_seen:
            raise InvalidInputError.for_field("file", f"empty: no {EXPORT_FORMAT} header")
        yield from self._finish_session()

    def abort(self) -> Plan:
        """Remove the session that was being imported when a line failed."""
        if self._session_id is not None:
            yield delete_session_by_id(self._session_id)
        self._session_id = None
        self._pending = []
