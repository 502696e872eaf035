"""A session's messages: append (de-duplicated on ``external_id``), history reads, and popping
the newest message (for the integrations' ``pop_item``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from aisopod_session import _json, _time
from aisopod_session._time import to_us
from aisopod_session.errors import InvalidInputError, SessionNotFoundError
from aisopod_session.limits import MAX_TOKEN_USAGE
from aisopod_session.models import HistoryQuery, SessionKey, StoredMessage
from aisopod_session.results import ChangeKind, Run
from aisopod_session.store import _checks
from aisopod_session.store._changes import record
from aisopod_session.store._checks import NewMessage
from aisopod_session.store._fence import check_fence
from aisopod_session.store._schema import (
    LIVE_KEY_WHERE,
    MESSAGE_COLUMNS,
    ROLE_TEXT,
    TOUCH,
    MessageRow,
    insert_messages,
    key_params,
    live_id,
    lock_order,
    message_from_row,
    messages_from_rows,
    not_found,
    touch_params,
    twice,
)
from aisopod_session.store._search_index import index_messages
from aisopod_session.store._tx import OneStatement, OutOfTurnError, Pending, Tx, Work

_COUNT_APPEND = (
    "UPDATE sessions SET message_count = message_count + ?, token_usage = token_usage + ?, "
    f"last_seq = last_seq + ?, {TOUCH}, status = 'active' WHERE {LIVE_KEY_WHERE} "
    "RETURNING id, last_seq, token_usage"
)


# PostgreSQL: the counters' update feeds the insert, so an append is one statement whose answer
# (the new ids) can wait until the batch's other jobs have sent theirs (``append_messages``).
_APPEND_IN_ONE = (
    "WITH s AS (" + _COUNT_APPEND + "), m AS ("
    "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, token_count) "
    "SELECT s.id, s.last_seq - CAST(? AS BIGINT) + v.o, v.r, v.c, v.t, v.a, v.n "
    "FROM s, (VALUES {values}) AS v (o, r, c, t, a, n) ORDER BY v.o RETURNING id, seq) "
    "SELECT s.id, s.last_seq, s.token_usage, m.id FROM s, m ORDER BY m.seq"
)
_APPEND_ROW = "(CAST(? AS BIGINT), ?, ?, CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT))"
MAX_APPEND_IN_ONE = 100
"""Messages an append sends in that one statement (a larger append takes the general way)."""


@functools.cache
def _append_in_one(count: int) -> str:
    return _APPEND_IN_ONE.format(values=", ".join([_APPEND_ROW] * count))


def message_row(seq: int, new: NewMessage) -> MessageRow:
    """The row of a caller's new message at position ``seq``."""
    m = new.message
    return MessageRow(seq, ROLE_TEXT[m.role], new.content, new.tool_calls, new.created_at,
                      m.token_count, m.external_id)


def _with_id(message: StoredMessage, new_id: int) -> StoredMessage:
    """``message.model_copy(update={"id": new_id})``; for a plain StoredMessage, built the way
    a read builds it (every field already checked by ``_checks.new_messages``)."""
    if type(message) is not StoredMessage:  # a subclass may carry more than its fields
        return message.model_copy(update={"id": new_id})
    values = dict(message.__dict__)
    values["id"] = new_id
    return StoredMessage._from_store(values)


def stored_by_external_id(tx: Tx, session_id: int,
                          external_ids: Sequence[str]) -> dict[str, StoredMessage]:
    """The session's messages (live or compacted) with these ``external_id``s."""
    if not external_ids:
        return {}
    marks = ", ".join("?" for _ in external_ids)
    rows = tx.all(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND external_id IN ({marks})",
        (session_id, *external_ids),
    )
    return {str(message.external_id): message for message in map(message_from_row, rows)}


_APPENDED = ChangeKind.MESSAGES_APPENDED.value


def record_appended(tx: Tx, agent_id: str, session_id: int, ids: list[int],
                    first_seq: int) -> None:
    """The feed entry of messages stored at positions ``first_seq`` onwards."""
    # The hottest entry, of ints only: its JSON written directly (the same text as
    # ``record(..., count=, message_ids=, first_seq=, last_seq=)`` would write).
    tx.changes.append((_APPENDED, agent_id, session_id,
                       f'{{"count":{len(ids)},"message_ids":[{",".join(map(str, ids))}],'
                       f'"first_seq":{first_seq},"last_seq":{first_seq + len(ids) - 1}}}'))


def append_messages(key: SessionKey, messages: Any,
                    run: Run | None = None) -> Work[list[StoredMessage]]:
    """Append atomically (de-duplicated on ``external_id``); with ``run``, fenced by it."""
    prepared = _checks.new_messages(messages)
    with_ids = [p for p in prepared if p.message.external_id is not None]

    def pipelined(tx: Tx) -> list[StoredMessage] | Pending[list[StoredMessage]]:
        if with_ids or not prepared or len(prepared) > MAX_APPEND_IN_ONE \
                or not tx.dialect.writable_ctes:
            return write(tx)
        check_fence(tx, run)
        return _append_in_one_statement(tx, key, prepared, write)

    def write(tx: Tx) -> list[StoredMessage]:
        check_fence(tx, run)
        if not prepared:
            live_id(tx, key)
            return []
        stored: list[StoredMessage | None] = [None] * len(prepared)
        by_external: dict[str, StoredMessage] = {}
        new_indexes = list(range(len(prepared)))
        if with_ids:
            # Lock the session first: concurrent redeliveries of one message queue here.
            session_id = live_id(tx, key, lock=True)
            by_external = stored_by_external_id(tx, session_id, sorted({
                p.message.external_id for p in with_ids if p.message.external_id is not None}))
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
            row = twice(
                tx, _COUNT_APPEND,
                (len(new), tokens, len(new), *touch_params(to_us(_time.utc_now())),
                 *key_params(key)),
            )
            if row is None:
                raise not_found(key)
            if int(row[2]) > MAX_TOKEN_USAGE:  # raising rolls the update back
                raise _token_usage_exceeded()
            session_id, last_seq = int(row[0]), int(row[1])
            first_seq = last_seq - len(new) + 1
            ids = insert_messages(tx, session_id, [
                message_row(first_seq + offset, p) for offset, p in enumerate(new)])
            record_appended(tx, key.agent_id, session_id, ids, first_seq)
            for index, new_id in zip(new_indexes, ids, strict=True):
                message = _with_id(prepared[index].message, new_id)
                stored[index] = message
                if message.external_id is not None:
                    by_external[message.external_id] = message
        return [
            message if message is not None else by_external[str(p.message.external_id)]
            for message, p in zip(stored, prepared, strict=True)
        ]

    return Work(write=write, pipelined=pipelined, lock_key=lock_order(key))


def _append_in_one_statement(
    tx: Tx, key: SessionKey, prepared: Sequence[NewMessage],
    write: Callable[[Tx], list[StoredMessage]],
) -> Pending[list[StoredMessage]]:
    """An append without ``external_id``s as one statement, its answer read with the batch's
    (PostgreSQL). ``write``, the general way, runs if it found no live session: to tell why, or
    to find the fresh row of a reset that committed meanwhile (see ``_schema.twice``)."""
    count = len(prepared)
    params: list[Any] = [
        count, sum(p.message.token_count or 0 for p in prepared), count,
        *touch_params(to_us(_time.utc_now())), *key_params(key), count]
    for offset, p in enumerate(prepared, 1):
        params += (offset, ROLE_TEXT[p.message.role], p.content, p.tool_calls, p.created_at,
                   p.message.token_count)
    rows_of = tx.later(_append_in_one(count), params)

    def finish(in_turn: bool) -> list[StoredMessage]:
        rows = rows_of()
        if not rows:
            if not in_turn:
                raise OutOfTurnError
            return write(tx)
        session_id, last_seq, token_usage, _ = rows[0]  # the session's, on every row
        if int(token_usage) > MAX_TOKEN_USAGE:  # raising rolls the statement back
            raise _token_usage_exceeded()
        ids = [int(message_id) for *_, message_id in rows]
        index_messages(tx, [(id_, p.content, p.tool_calls)
                            for id_, p in zip(ids, prepared, strict=True)])
        record_appended(tx, key.agent_id, int(session_id), ids, int(last_seq) - count + 1)
        return [_with_id(p.message, id_) for id_, p in zip(ids, prepared, strict=True)]

    return Pending(finish)


def _token_usage_exceeded() -> InvalidInputError:
    return InvalidInputError.for_field(
        "messages", f"the session's token_usage would exceed {MAX_TOKEN_USAGE}")


# --- history ---------------------------------------------------------------------------------

_BY_SESSION_ID = "session_id = ?"
_BY_LIVE_KEY = f"session_id = (SELECT id FROM sessions WHERE {LIVE_KEY_WHERE})"


@functools.lru_cache(maxsize=1024)
def _history_sql(
    unlimited: str, query: HistoryQuery, session: str = _BY_SESSION_ID,
    columns: str = MESSAGE_COLUMNS,
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
    sql = f"SELECT {columns} FROM messages WHERE {' AND '.join(clauses)} ORDER BY {order}"
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
    checked = _checks.query(query)
    params = key_params(key)

    def first(tx: Tx) -> list[StoredMessage] | None:
        # One statement finds the live session and reads its messages. Only an empty result
        # needs a second look, to tell a missing session from an empty history; both must see
        # one snapshot, so that look runs again in a read transaction.
        return _read_history(tx, params, checked, _BY_LIVE_KEY) or None

    def read(tx: Tx) -> list[StoredMessage]:
        messages = _read_history(tx, params, checked, _BY_LIVE_KEY)
        if not messages:
            live_id(tx, key)
        return messages

    return Work(read=OneStatement(first, read))


def get_contents(key: SessionKey, query: Any) -> Work[list[Any]]:
    """What :func:`get_history` reads, only each message's ``content``: no model is built per
    row, for callers that turn the history straight into a prompt (the integrations)."""
    checked = _checks.query(query)
    params = key_params(key)

    def contents(tx: Tx) -> list[Any]:
        sql, extra = _history_sql(tx.dialect.unlimited, checked, _BY_LIVE_KEY, "content")
        rows = tx.all(sql, (*params, *extra))
        if checked.tail:
            rows.reverse()
        # One decode of the stored JSON texts joined as an array: a decode per row costs
        # more than the read itself.
        found: list[Any] = _json.loads("[" + ",".join([row[0] for row in rows]) + "]")
        return found

    def first(tx: Tx) -> list[Any] | None:
        return contents(tx) or None  # empty: a missing session or an empty history (see read)

    def read(tx: Tx) -> list[Any]:
        found = contents(tx)
        if not found:
            live_id(tx, key)
        return found

    return Work(read=OneStatement(first, read))


def get_history_by_id(session_id: Any, query: Any) -> Work[list[StoredMessage]]:
    """Any session's history by id, archived generations included (admin)."""
    checked_id = _checks.session_id(session_id)
    checked_query = _checks.query(query)

    def read(tx: Tx) -> list[StoredMessage]:
        if tx.one("SELECT id FROM sessions WHERE id = ?", (checked_id,)) is None:
            raise SessionNotFoundError(f"no session with id {checked_id}")
        return _read_history(tx, (checked_id,), checked_query)

    return Work(read=read)


def pop_message(key: SessionKey) -> Work[StoredMessage | None]:
    """Remove the newest live message and return it; None when the history is empty.

    The exact inverse of appending it: the row is deleted (its ``external_id`` may be stored
    again), ``message_count`` goes down by one and ``token_usage`` by its ``token_count``
    (never below zero). Positions are never handed out twice: the next append still takes the
    next position after the removed one.
    """

    def write(tx: Tx) -> StoredMessage | None:
        session_id = live_id(tx, key, lock=True)
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
        record(tx, ChangeKind.MESSAGES_REMOVED, key.agent_id, session_id, count=1,
               message_ids=[message.id], reason="pop")
        tx.run(
            "UPDATE sessions SET message_count = message_count - 1, "
            "token_usage = CASE WHEN token_usage > ? THEN token_usage - ? ELSE 0 END, "
            f"{TOUCH} WHERE id = ?",
            (tokens, tokens, *touch_params(to_us(_time.utc_now())), session_id),
        )
        return message

    return Work(write=write, lock_key=lock_order(key))
