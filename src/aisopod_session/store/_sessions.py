"""Sessions of one key: get-or-create, read, list, patch, reset and delete.

Each operation is validated here before any connection is touched and becomes a
:class:`~aisopod_session.store._tx.Work` that the facades run.
"""

from __future__ import annotations

from typing import Any

from aisopod_session import _json, _time
from aisopod_session._time import to_us
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import MAX_TOKEN_USAGE
from aisopod_session.models import Session, SessionFilter, SessionKey, SessionPatch, SessionStatus
from aisopod_session.results import ChangeKind, Page, Run, SessionDetailPage, SessionPage
from aisopod_session.store import _checks
from aisopod_session.store._changes import record
from aisopod_session.store._cursors import Listing
from aisopod_session.store._fence import check_fence, forget_runs
from aisopod_session.store._schema import (
    KEY_WHERE,
    LIVE_KEY_WHERE,
    SESSION_COLUMNS,
    SUMMARY_COLUMNS,
    TOUCH,
    archive_live,
    create_live,
    key_params,
    live_session,
    lock_order,
    not_found,
    session_from_row,
    summary_from_row,
    summary_position,
    touch_params,
)
from aisopod_session.store._search_index import scrub
from aisopod_session.store._tx import OneStatement, Tx, Work

_LIVE_SESSION_SQL = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {LIVE_KEY_WHERE}"


def get_or_create(key: SessionKey) -> Work[Session]:
    return Work(read=OneStatement(lambda tx: live_session(tx, key)),
                write=lambda tx: create_live(tx, key)[0], lock_key=lock_order(key))


def get(key: SessionKey) -> Work[Session]:
    params = key_params(key)

    def read(tx: Tx) -> Session:
        row = tx.one(_LIVE_SESSION_SQL, params)
        if row is None:
            raise not_found(key)
        return session_from_row(row)

    return Work(read=OneStatement(read))


def list_sessions(filter: SessionFilter, cursor_key: bytes, scope: str | None
                  ) -> Work[SessionPage]:
    """A page of sessions; ``cursor_key`` signs its cursor, which only the same listing
    (``scope``: the listing agent's handle, None for the admin; the same filters) accepts."""
    listing = Listing.of(cursor_key, filter, scope)
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
        params.extend(listing.position(filter.cursor))
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
        return Page([summary_from_row(row) for row in rows],
                    listing.cursor(summary_position(rows[-1])) if more else None)

    return Work(read=OneStatement(read))


def list_detailed(filter: SessionFilter, cursor_key: bytes, scope: str | None
                  ) -> Work[SessionDetailPage]:
    """:func:`list_sessions`, with whole sessions (metadata included) read in the same snapshot
    (the same listing: their cursors are interchangeable)."""
    summaries = list_sessions(filter, cursor_key, scope)
    assert summaries.read is not None
    read_summaries = summaries.read

    def read(tx: Tx) -> SessionDetailPage:
        page = read_summaries(tx)
        if page is None or not page:
            return Page([], None if page is None else page.next_cursor)
        ids = [summary.id for summary in page]
        rows = tx.all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id IN ({', '.join('?' for _ in ids)})",
            ids,
        )
        by_id = {int(row[0]): session_from_row(row) for row in rows}
        return Page([by_id[i] for i in ids if i in by_id], page.next_cursor)

    return Work(read=read)


def patch(key: SessionKey, change: Any, run: Run | None = None) -> Work[Session]:
    change = _checks.model(change, SessionPatch, "patch")
    fields = sorted(name for name in change.model_fields_set
                    if getattr(change, name) not in (None, False))
    if change.replace_metadata:
        replacement = {k: v for k, v in (change.metadata or {}).items() if v is not None}
        replacement_text: str | None = _checks.metadata_text(replacement)
    else:
        replacement_text = None

    def write(tx: Tx) -> Session:
        check_fence(tx, run)
        current = live_session(tx, key, lock=True)
        if current is None:
            raise not_found(key)
        if replacement_text is not None:
            metadata = replacement_text
        elif change.metadata:
            merged = dict(current.metadata)
            for name, value in change.metadata.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            metadata = _checks.metadata_text(merged)
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
        now = to_us(_time.utc_now())
        archived_at = now if status is SessionStatus.ARCHIVED else None
        row = tx.one(
            f"UPDATE sessions SET status = ?, token_usage = ?, metadata = ?, {TOUCH}, "
            f"archived_at = ? WHERE id = ? RETURNING {SESSION_COLUMNS}",
            (status.value, tokens, metadata, *touch_params(now), archived_at, current.id),
        )
        record(tx, ChangeKind.SESSION_UPDATED, key.agent_id, current.id, fields=fields,
               status=status.value)
        return session_from_row(row)

    return Work(write=write, lock_key=lock_order(key))


def delete(key: SessionKey) -> Work[bool]:
    def write(tx: Tx) -> bool:
        delete = f"DELETE FROM sessions WHERE {KEY_WHERE} RETURNING id"
        gone = tx.all(delete, key_params(key))
        if gone:
            # Under PostgreSQL's READ COMMITTED, a delete that waited for a concurrent reset
            # does not see the session that reset started: a second statement does.
            gone += tx.all(delete, key_params(key))
        for (session_id,) in gone:
            record(tx, ChangeKind.SESSION_DELETED, key.agent_id, session_id, reason="delete")
        forget_runs(tx, KEY_WHERE, key_params(key))
        if gone:
            scrub(tx)  # nothing of the deleted messages left in the search index
        return bool(gone)

    return Work(write=write, lock_key=lock_order(key))


def reset(key: SessionKey) -> Work[Session]:
    def write(tx: Tx) -> Session:
        archive_live(tx, key)
        return create_live(tx, key)[0]

    return Work(write=write, lock_key=lock_order(key))
