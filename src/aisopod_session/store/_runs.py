"""Runs: one active run per session key across every process and replica, fenced writes, the
inbox, and stop requests.

A key's run state is one row of ``runs`` (not per session: a fence outlives resets). Starting a
run locks the live session's row first, like every write of that key, then the run row: so a
start, a fenced append and a take from the inbox of one key are serialised by the database, and
batches keep taking their locks in one order. Lease times come from the database's clock
(``Dialect.now_us``); fences come from one counter for every key, so none is ever handed out twice.
"""

from __future__ import annotations

import math
from typing import Any

from aisopod_session import _time
from aisopod_session.errors import InvalidInputError, SessionBusyError
from aisopod_session.limits import (
    MAX_BATCH_MESSAGES,
    MAX_INBOX_BATCH,
    MAX_OWNER_LENGTH,
    MAX_RUN_TTL_SECONDS,
    MAX_RUN_WAIT_SECONDS,
)
from aisopod_session.models import SessionKey, StoredMessage, normalize_peer_id_or_raise
from aisopod_session.results import ChangeKind, QueuedMessage, Run
from aisopod_session.store import _checks
from aisopod_session.store._changes import record
from aisopod_session.store._fence import current, run_state
from aisopod_session.store._messages import (
    append_messages,
    message_row,
    stored_by_external_id,
)
from aisopod_session.store._schema import (
    INBOX_COLUMNS,
    INSERT_CHUNK,
    KEY_WHERE,
    LIVE_KEY_WHERE,
    RunRow,
    key_params,
    lock_order,
    locked_or_created,
    queued_from_row,
)
from aisopod_session.store._tx import OneStatement, Tx, Work
from aisopod_session.store._wakeups import key_name

MIN_PAUSE_SECONDS = 0.005
"""The shortest pause of a waiting ``start_run`` between two tries."""

_US = 1_000_000


def owner(value: Any) -> str:
    """Who holds a run: a non-empty name without control characters."""
    checked = normalize_peer_id_or_raise("owner", value)
    if len(checked) > MAX_OWNER_LENGTH:  # pragma: no cover - the normaliser bounds it already
        raise InvalidInputError.for_field("owner", f"at most {MAX_OWNER_LENGTH} characters")
    return checked


def seconds(value: Any, field: str, *, low: float, high: float, low_included: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidInputError.for_field(field, f"expected a number of seconds, got {value!r}")
    if not (low <= value if low_included else low < value) or value > high:
        bound = "at least" if low_included else "more than"
        raise InvalidInputError.for_field(field, f"must be {bound} {low} and at most {high} "
                                                 "seconds")
    return float(value)


MIN_RUN_TTL_SECONDS = 0.001
"""The shortest lease: the database's clock counts in milliseconds on SQLite."""


def ttl(value: Any) -> float:
    return seconds(value, "ttl", low=MIN_RUN_TTL_SECONDS, high=MAX_RUN_TTL_SECONDS,
                   low_included=True)


def wait(value: Any) -> float:
    return seconds(value, "wait", low=0.0, high=MAX_RUN_WAIT_SECONDS, low_included=True)


def until_expiry(busy: SessionBusyError) -> float:
    """Seconds until the busy session's lease expires (by this machine's clock: only a hint of
    when to look again; the database's clock decides)."""
    if busy.expires_at is None:
        return MIN_PAUSE_SECONDS
    left = (busy.expires_at - _time.utc_now()).total_seconds()
    return max(MIN_PAUSE_SECONDS, left + MIN_PAUSE_SECONDS)


def checked_run(value: Any, agent_id: str) -> Run:
    """A run of the handle's agent (AccessDeniedError for another agent's)."""
    run = _checks.expect(value, Run, "run")
    _checks.owned_key(run.key, agent_id)
    if type(run.fence) is not int or run.fence < 1:
        raise InvalidInputError.for_field("run.fence", "is not a fence start_run handed out")
    return run


def _now(tx: Tx) -> int:
    return int(tx.one(f"SELECT {tx.dialect.now_us}")[0])


def _as_run(key: SessionKey, row: RunRow) -> Run:
    assert row.owner is not None and row.started_at is not None and row.expires_at is not None
    return Run.model_construct(
        key=key, owner=row.owner, fence=row.fence, started_at=_time.from_us(row.started_at),
        expires_at=_time.from_us(row.expires_at), ttl=(row.ttl or 0) / _US,
        stop_requested=row.stop_requested, took_over=row.took_over)


def start_run(key: SessionKey, who: Any, lease: Any) -> Work[Run]:
    """Take the key's run lease (its live session created if missing); SessionBusyError while
    another run holds it and its lease has not expired."""
    holder, length = owner(who), round(ttl(lease) * _US)

    def write(tx: Tx) -> Run:
        session = locked_or_created(tx, key)
        now = _now(tx)
        state = run_state(tx, key, lock=True)
        if (state is not None and state.owner is not None
                and state.expires_at is not None and state.expires_at > now):
            raise SessionBusyError(
                f"session {key} is busy: run {state.fence} of {state.owner!r} holds it "
                f"until {_time.from_us(state.expires_at).isoformat()}",
                holder=state.owner, expires_at=_time.from_us(state.expires_at))
        fence = int(tx.one(tx.dialect.next_fence)[0])
        took_over = state is not None and state.owner is not None
        values = (fence, holder, now, now + length, length, int(took_over))
        if state is None:
            tx.run("INSERT INTO runs (agent_id, channel, account_id, peer_kind, peer_id, fence, "
                   "owner, started_at, expires_at, ttl, took_over, stop_requested) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", (*key_params(key), *values))
        else:
            tx.run("UPDATE runs SET fence = ?, owner = ?, started_at = ?, expires_at = ?, "
                   f"ttl = ?, took_over = ?, stop_requested = 0 WHERE {KEY_WHERE}",
                   (*values, *key_params(key)))
        record(tx, ChangeKind.RUN_STARTED, key.agent_id, session.id, fence=fence, owner=holder,
               took_over=took_over)
        return _as_run(key, RunRow(fence, holder, now, now + length, length, False, took_over))

    return Work(write=write, lock_key=lock_order(key))


def renew_run(run: Run, lease: Any) -> Work[Run]:
    length = None if lease is None else round(ttl(lease) * _US)

    def write(tx: Tx) -> Run:
        state = current(tx, run)
        # the lease's own length, as stored (never the caller's copy of the run)
        extend = length if length is not None else (state.ttl or round(MIN_RUN_TTL_SECONDS * _US))
        expires = _now(tx) + extend
        tx.run(f"UPDATE runs SET expires_at = ?, ttl = ? WHERE {KEY_WHERE}",
               (expires, extend, *key_params(run.key)))
        return _as_run(run.key, RunRow(state.fence, state.owner, state.started_at,
                                       expires, extend, state.stop_requested, state.took_over))

    return Work(write=write, lock_key=lock_order(run.key))


def _live_id(tx: Tx, key: SessionKey) -> int | None:
    """The live session's id, for a run's feed entry (None if the key has none)."""
    row = tx.one(f"SELECT id FROM sessions WHERE {LIVE_KEY_WHERE}", key_params(key))
    return None if row is None else int(row[0])


def _waiting(tx: Tx, key: SessionKey) -> int:
    return int(tx.one(f"SELECT count(*) FROM inbox WHERE {KEY_WHERE}", key_params(key))[0])


def finish_run(run: Run) -> Work[int]:
    """End the run; how many inbox messages wait. Finishing it again changes nothing and answers
    the same; a run that was taken over raises RunLostError (its holder must know that what it
    wrote after losing the lease was refused) and changes nothing of the newer run."""

    def write(tx: Tx) -> int:
        state = current(tx, run, finished_too=True)
        if state.owner is not None:
            tx.run("UPDATE runs SET owner = NULL, started_at = NULL, expires_at = NULL, "
                   f"ttl = NULL, stop_requested = 0 WHERE {KEY_WHERE}", key_params(run.key))
            if tx.dialect.notify_run_end is not None:
                tx.one(tx.dialect.notify_run_end, (key_name(lock_order(run.key)),))
            record(tx, ChangeKind.RUN_FINISHED, run.key.agent_id, _live_id(tx, run.key),
                   fence=run.fence, owner=state.owner)
        return _waiting(tx, run.key)

    return Work(write=write, lock_key=lock_order(run.key))


def current_run(key: SessionKey) -> Work[Run | None]:
    def read(tx: Tx) -> Run | None:
        state = run_state(tx, key)
        return None if state is None or state.owner is None else _as_run(key, state)

    return Work(read=read)


def request_stop(key: SessionKey) -> Work[bool]:
    """Mark the current run (its holder sees ``stop_requested`` on its next renewal); False
    when no run is active."""

    def write(tx: Tx) -> bool:
        row = tx.one(f"UPDATE runs SET stop_requested = 1 WHERE {KEY_WHERE} "
                     "AND owner IS NOT NULL RETURNING fence", key_params(key))
        if row is None:
            return False
        record(tx, ChangeKind.RUN_STOP_REQUESTED, key.agent_id, _live_id(tx, key), fence=row[0])
        return True

    return Work(write=write, lock_key=lock_order(key))


# --- the inbox -----------------------------------------------------------------------------------
#
# Kept by key, not by session: a reset, a resolve or an archived session strands nothing.


def enqueue(key: SessionKey, messages: Any) -> Work[list[QueuedMessage]]:
    """Keep incoming messages for a run to take, in order; one whose ``external_id`` is already
    waiting is returned as it waits, one already in the live history is not queued again (and
    not returned: a run has taken it)."""
    new = _checks.new_messages(messages)

    def write(tx: Tx) -> list[QueuedMessage]:
        session = locked_or_created(tx, key)
        ids = sorted({n.message.external_id for n in new if n.message.external_id is not None})
        waiting: dict[str, QueuedMessage] = {}
        taken: set[str] = set()
        if ids:
            marks = ", ".join("?" for _ in ids)
            for row in tx.all(f"SELECT {INBOX_COLUMNS} FROM inbox WHERE {KEY_WHERE} "
                              f"AND external_id IN ({marks})", (*key_params(key), *ids)):
                queued = queued_from_row(row)
                waiting[str(queued.message.external_id)] = queued
            taken = set(stored_by_external_id(tx, session.id, ids))
        now = _now(tx)
        result, added = [], []
        for item in new:
            external_id = item.message.external_id
            if external_id is not None and external_id in taken:
                continue
            if external_id is not None and external_id in waiting:
                result.append(waiting[external_id])
                continue
            row = message_row(0, item)
            inserted = tx.one(
                "INSERT INTO inbox (agent_id, channel, account_id, peer_kind, peer_id, role, "
                "content, tool_calls, created_at, token_count, external_id, enqueued_at) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {INBOX_COLUMNS}",
                (*key_params(key), row.role, row.content, row.tool_calls, row.created_at,
                 row.token_count, row.external_id, now))
            queued = queued_from_row(inserted)
            result.append(queued)
            if external_id is not None:
                waiting[external_id] = queued
            added.append(queued.id)
        if added:
            record(tx, ChangeKind.INBOX_ENQUEUED, key.agent_id, session.id, count=len(added),
                   queued_ids=added)
        return result

    return Work(write=write, lock_key=lock_order(key))


def _oldest(key: SessionKey, count: int) -> tuple[str, tuple[Any, ...]]:
    return (f"SELECT {INBOX_COLUMNS} FROM inbox WHERE {KEY_WHERE} ORDER BY id LIMIT ?",
            (*key_params(key), count))


def inbox(key: SessionKey, limit: Any) -> Work[list[QueuedMessage]]:
    """The messages waiting for the key, oldest first (at most ``limit``, or all)."""
    checked = _inbox_limit(limit)
    if checked is None:
        sql, params = (f"SELECT {INBOX_COLUMNS} FROM inbox WHERE {KEY_WHERE} ORDER BY id",
                       key_params(key))
    else:
        sql, params = _oldest(key, checked)

    def read(tx: Tx) -> list[QueuedMessage]:
        return [queued_from_row(row) for row in tx.all(sql, params)]

    return Work(read=OneStatement(read))


def _inbox_limit(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_INBOX_BATCH:
        raise InvalidInputError.for_field("limit", f"an int from 1 to {MAX_INBOX_BATCH}, or None")
    return value


def take_inbox(run: Run, limit: Any) -> Work[list[StoredMessage]]:
    """Move the oldest waiting messages (``limit`` of them, or as many as one append takes) into
    the live history under the run's fence, in one transaction; returns them as stored. Taken
    messages leave the inbox in the same commit that stores them: none is lost or taken twice,
    whenever the run dies."""
    count = _inbox_limit(limit) or MAX_BATCH_MESSAGES

    def write(tx: Tx) -> list[StoredMessage]:
        current(tx, run)
        taken = [queued_from_row(row) for row in tx.all(*_oldest(run.key, count))]
        if not taken:
            return []
        append = append_messages(run.key, [queued.message for queued in taken]).write
        assert append is not None
        stored = append(tx)
        for start in range(0, len(taken), INSERT_CHUNK):
            chunk = [queued.id for queued in taken[start : start + INSERT_CHUNK]]
            tx.run(f"DELETE FROM inbox WHERE id IN ({', '.join('?' for _ in chunk)})", chunk)
        return stored

    return Work(write=write, lock_key=lock_order(run.key))
