"""Import of export JSON Lines (see ``_transfer``): every record checked as the API checks it,
then the whole file stored in one transaction, or nothing of it.

Pass 1 (here) reads the lines once, in order. Each is parsed and checked with what the API uses
for the same data: ``SessionKey``, ``StoredMessage`` and ``_checks.new_messages`` (the checks of
``append_messages`` and ``enqueue``: JSON depth, 1 MiB per message, token counts, external ids),
``_checks.metadata_text`` (64 KiB), ``Summarize`` (a compaction summary), plus what only a file
can get wrong: the export header, a message outside its session, positions out of order, two
live messages at one position, ``updated_at`` before ``created_at``, a line over 4 MiB. The
first bad line stops the import with an InvalidInputError naming the line and the field
(``line 7.content``), before anything was written. The checked, encoded rows go to a spool (an
anonymous temporary file), so memory holds a line at a time whatever the size of the file.

Pass 2 (``_import_write``) reads the spool back inside one write transaction: what only the
database can tell (an existing session, per ``on_conflict``; an ``external_id`` twice in one
session) is checked there, and any error rolls the whole file back, change-feed entries
included. Counters (``message_count``, ``last_seq``) are computed from the rows stored.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Annotated, Any, Literal, TypeVar, get_args

from pydantic import Field, StrictInt, StrictStr

from aisopod_session import _json
from aisopod_session._time import to_us
from aisopod_session.base import Model
from aisopod_session.compaction import Summarize
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import (
    MAX_COUNTER,
    MAX_IMPORT_LINE_BYTES,
    MAX_JSON_DEPTH,
    MAX_SQL_INT,
    MAX_TOKEN_USAGE,
)
from aisopod_session.models import (
    SessionKey,
    SessionMetadata,
    Status,
    StoredMessage,
    UtcDatetime,
)
from aisopod_session.results import ImportConflictPolicy, ImportResult
from aisopod_session.store import _checks
from aisopod_session.store._import_write import publish_spool
from aisopod_session.store._schema import ROLE_TEXT, key_params
from aisopod_session.store._transfer import EXPORT_FORMAT, EXPORT_VERSION
from aisopod_session.store._tx import Work

CONFLICT_POLICIES: tuple[str, ...] = get_args(ImportConflictPolicy)


def conflict_policy(value: Any) -> ImportConflictPolicy:
    if value not in CONFLICT_POLICIES:
        raise InvalidInputError.for_field(
            "on_conflict", f"expected one of {', '.join(CONFLICT_POLICIES)}, got {value!r}")
    policy: ImportConflictPolicy = value
    return policy


# --- the records ------------------------------------------------------------------------------

M = TypeVar("M", bound=Model)
FileId = Annotated[StrictInt, Field(ge=1, le=MAX_SQL_INT)]
Counter = Annotated[StrictInt, Field(ge=0, le=MAX_COUNTER)]
Ignored = Annotated[StrictInt, Field(ge=0, le=MAX_SQL_INT)]


class ExportHeader(Model):
    kind: Literal["aisopod-session-export"]
    version: Annotated[StrictInt, Field(ge=1)]


class ExportedSession(Model):
    """A session line. ``message_count`` and ``last_seq`` are read but not used: they are
    computed from the messages stored."""

    kind: Literal["session"]
    id: FileId
    key: SessionKey
    status: Status
    created_at: UtcDatetime
    updated_at: UtcDatetime
    message_count: Ignored | None = None
    token_usage: Annotated[StrictInt, Field(ge=0, le=MAX_TOKEN_USAGE)]
    metadata: SessionMetadata
    compaction_count: Counter
    last_compacted_at: UtcDatetime | None = None
    last_compaction_summary: StrictStr | None = None
    last_seq: Ignored | None = None
    archived_at: UtcDatetime | None = None


class MessagePlace(Model):
    """What a message line has besides the message (checked as ``StoredMessage``)."""

    kind: Literal["message"]
    session: FileId
    seq: Annotated[StrictInt, Field(ge=1, le=MAX_COUNTER)]
    compacted_at: UtcDatetime | None = None


class QueuedPlace(Model):
    """What a waiting (inbox) message's line has besides the message."""

    kind: Literal["queued"]
    key: SessionKey
    enqueued_at: UtcDatetime


_MESSAGE_PLACE = frozenset(MessagePlace.model_fields)
_QUEUED_PLACE = frozenset(QueuedPlace.model_fields)


def _line_error(number: int, exc: InvalidInputError, old: str = "",
                new: str = "") -> InvalidInputError:
    """``exc`` with its fields named ``line N.field`` (a leading ``old`` renamed ``new``)."""
    errors = []
    for error in exc.errors or [{"field": "", "message": str(exc)}]:
        field = str(error["field"])
        if old and (field == old or field.startswith(old + ".")):
            field = (new + field[len(old):]).lstrip(".")
        errors.append({**error, "field": f"line {number}.{field}" if field else f"line {number}"})
    return InvalidInputError("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)


def _validated(model: type[M], data: dict[str, Any], number: int) -> M:
    try:
        return model.model_validate(data)
    except InvalidInputError as exc:
        raise _line_error(number, exc) from None


def _checked_message(data: dict[str, Any], number: int) -> _checks.NewMessage:
    """The message of a line, checked exactly as ``append_messages`` checks one."""
    message = _validated(StoredMessage, data, number)
    try:
        return _checks.new_messages([message])[0]
    except InvalidInputError as exc:
        raise _line_error(number, exc, "messages[0]") from None


# --- lines ------------------------------------------------------------------------------------


def line_text(line: str | bytes, number: int) -> str:
    """A line as text: at most MAX_IMPORT_LINE_BYTES (its line end aside), UTF-8."""
    size = len(line)
    if size and line[-1:] in ("\n", b"\n"):
        size -= 1
    if isinstance(line, str) and size * 4 > MAX_IMPORT_LINE_BYTES and not line.isascii():
        size = len(line.encode("utf-8", "surrogatepass")) - (line[-1:] == "\n")
    if size > MAX_IMPORT_LINE_BYTES:
        raise InvalidInputError.for_field(f"line {number}",
                                          f"is longer than {MAX_IMPORT_LINE_BYTES} bytes")
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError.for_field(f"line {number}", f"not UTF-8: {exc.reason}") from None


def parse_line(text: str, number: int) -> dict[str, Any]:
    """A line's JSON object (a value nested too deep for the parser is named by its field)."""
    try:
        data = _json.loads(text)
    except RecursionError:
        raise _too_deep(text, number) from None
    except ValueError as exc:
        raise InvalidInputError.for_field(f"line {number}", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError.for_field(f"line {number}", "expected a JSON object")
    data.pop("_id", None)
    return data


def _too_deep(text: str, number: int) -> InvalidInputError:
    """The error for a line nested deeper than the parser goes, naming the field whose value it
    is: the top-level values are decoded one at a time until the one that is too deep."""
    decoder = json.JSONDecoder()
    field = ""
    try:
        position = text.index("{") + 1
        while True:
            key, position = decoder.raw_decode(text, _after_space(text, position))
            position = _after_space(text, position) + 1  # the colon
            field = str(key)
            _, position = decoder.raw_decode(text, _after_space(text, position))
            position = _after_space(text, position) + 1  # the comma
    except (ValueError, RecursionError):
        pass
    problem = f"nested deeper than {MAX_JSON_DEPTH} levels"
    return InvalidInputError.for_field(f"line {number}.{field}" if field else f"line {number}",
                                       problem)


def _after_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


# --- the spool --------------------------------------------------------------------------------


class _Plain(pickle.Unpickler):
    """Reads back what the spool wrote: tuples of str, int, bool and None, never a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the import spool holds no {module}.{name}")


class Spool:
    """The checked rows of one import, in an anonymous temporary file (gone when closed)."""

    def __init__(self) -> None:
        # closed by close() (the facades use the spool as a context manager)
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="aisopod-import-")  # noqa: SIM115

    def add(self, record: tuple[Any, ...]) -> None:
        self._file.write(pickle.dumps(record, protocol=5))

    def records(self) -> Iterator[tuple[Any, ...]]:
        """Every record, from the first (again on each call: a batch may be run twice)."""
        self._file.seek(0)
        while True:
            try:
                yield _Plain(self._file).load()
            except EOFError:
                return

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def publish(spool: Spool, policy: ImportConflictPolicy) -> Work[ImportResult]:
    """The one transaction that stores a checked file (see ``_import_write``)."""
    return publish_spool(spool.records, policy)


# --- pass 1 -----------------------------------------------------------------------------------


def _us(value: Any) -> int | None:
    return None if value is None else to_us(value)


class Checker:
    """Checks the lines of one file in order and spools their rows (pass 1)."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self.number = 0
        """Lines read so far (blank ones too: errors name lines by this number)."""
        self._header_seen = False
        self._session: int | None = None  # the file's id of the session messages belong to
        self._seq = 0  # the position of the session's last message
        self._live_at_seq = False  # whether a live message has that position

    def line(self, line: str | bytes) -> None:
        self.number += 1
        number = self.number
        text = line_text(line, number)
        if not text.strip():
            return
        try:
            self._record(parse_line(text, number), number)
        except RecursionError:  # pragma: no cover - the parser refuses such depths first
            raise _too_deep(text, number) from None

    def finish(self) -> None:
        if not self._header_seen:
            raise InvalidInputError.for_field("file", f"empty: no {EXPORT_FORMAT} header")

    def _record(self, data: dict[str, Any], number: int) -> None:
        kind = data.get("kind")
        if kind == EXPORT_FORMAT:
            self._header(_validated(ExportHeader, data, number), number)
            return
        if not self._header_seen:
            raise InvalidInputError.for_field(
                f"line {number}", f"the file does not start with a {EXPORT_FORMAT} header")
        if kind == "session":
            self._new_session(_validated(ExportedSession, data, number), number)
        elif kind == "message":
            self._message(data, number)
        elif kind == "queued":
            self._queued(data, number)
        else:
            raise InvalidInputError.for_field(f"line {number}.kind", f"unknown kind {kind!r}")

    def _header(self, header: ExportHeader, number: int) -> None:
        if self._header_seen:
            raise InvalidInputError.for_field(f"line {number}", "a second export header")
        if header.version > EXPORT_VERSION:
            raise InvalidInputError.for_field(
                f"line {number}.version", f"export version {header.version} is newer than this "
                f"aisopod-session reads ({EXPORT_VERSION})")
        self._header_seen = True

    def _new_session(self, record: ExportedSession, number: int) -> None:
        if record.updated_at < record.created_at:
            raise InvalidInputError.for_field(
                f"line {number}.updated_at", f"{record.updated_at.isoformat()} is before "
                f"created_at {record.created_at.isoformat()}")
        try:
            metadata = _checks.metadata_text(record.metadata)
        except InvalidInputError as exc:
            raise _line_error(number, exc) from None
        summary = record.last_compaction_summary
        if summary is not None:
            try:
                Summarize(summary=summary)
            except InvalidInputError as exc:
                raise _line_error(number, exc, "summary", "last_compaction_summary") from None
        self._spool.add((
            "s", number, *key_params(record.key), record.status.value, to_us(record.created_at),
            to_us(record.updated_at), record.token_usage, metadata, record.compaction_count,
            _us(record.last_compacted_at), summary, _us(record.archived_at)))
        self._session, self._seq, self._live_at_seq = record.id, 0, False

    def _message(self, data: dict[str, Any], number: int) -> None:
        place = _validated(MessagePlace, {k: data.pop(k) for k in _MESSAGE_PLACE if k in data},
                           number)
        if self._session is None or place.session != self._session:
            raise InvalidInputError.for_field(
                f"line {number}.session", "a message must follow the session line it belongs to")
        if place.seq < self._seq:
            raise InvalidInputError.for_field(
                f"line {number}.seq", f"{place.seq} comes after position {self._seq}: a "
                f"session's messages are in position order")
        new = _checked_message(data, number)
        message = new.message
        if place.seq > self._seq:
            self._seq, self._live_at_seq = place.seq, False
        if not message.compacted:
            if self._live_at_seq:
                raise InvalidInputError.for_field(
                    f"line {number}.seq", f"a second live message at position {place.seq} (only "
                    f"compacted messages share a position with a live one)")
            if place.compacted_at is not None:
                raise InvalidInputError.for_field(
                    f"line {number}.compacted_at", "only a compacted message has compacted_at")
            self._live_at_seq = True
        compacted_at = place.compacted_at or (message.created_at if message.compacted else None)
        self._spool.add((
            "m", number, place.seq, ROLE_TEXT[message.role], new.content, new.tool_calls,
            new.created_at, message.token_count, message.external_id, message.compacted,
            _us(compacted_at)))

    def _queued(self, data: dict[str, Any], number: int) -> None:
        place = _validated(QueuedPlace, {k: data.pop(k) for k in _QUEUED_PLACE if k in data},
                           number)
        new = _checked_message(data, number)
        message = new.message
        self._spool.add((
            "q", number, *key_params(place.key), ROLE_TEXT[message.role], new.content,
            new.tool_calls, new.created_at, message.token_count, message.external_id,
            to_us(place.enqueued_at)))
        self._session = None  # messages follow their session line, never a waiting message
