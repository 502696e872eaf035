"""Operator operations on a whole store: counts, clearing, and export/import as JSON Lines.

Export streams: sessions are read by id in pages and each one's messages in position order,
a chunk at a time, so memory stays flat however large the store. The file is JSON Lines:

    {"kind": "aisopod-session-export", "version": 1}
    {"kind": "session", "id": 7, "key": {...}, "status": "archived", ..., "last_seq": 12}
    {"kind": "message", "session": 7, "seq": 1, "role": "user", "content": ..., ...}

Import (``_import``, ``_import_write``) reads the same lines: every record checked as the API
checks it, then the whole file stored in one transaction or nothing of it. Sessions keep their
fields (status, timestamps, token usage, metadata, compaction state) and messages their
positions and compacted flags, so importing an export into an empty store reproduces it (ids
aside: the target assigns its own; counters are computed from the rows stored).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from aisopod_session import _json
from aisopod_session.store import _checks
from aisopod_session.store._schema import (
    EXPORT_INBOX_COLUMNS,
    EXPORT_MESSAGE_COLUMNS,
    EXPORT_SESSION_COLUMNS,
    INSERT_CHUNK,
    export_message_from_row,
    export_queued_from_row,
    export_session_from_row,
)
from aisopod_session.store._tx import Tx, Work

EXPORT_FORMAT = "aisopod-session-export"
EXPORT_VERSION = 1
PAGE = INSERT_CHUNK
"""Sessions per page and messages per chunk of an export."""


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
