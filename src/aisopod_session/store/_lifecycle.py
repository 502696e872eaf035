"""Store operations for the lifecycle: sweeps (idle, archived), resets by policy (resolve) and
retention (purges).

Sweeps and purges run as plans of bounded batches: each batch is its own short write (a job in
the group committer), so a sweep over a million sessions holds no more than one batch in memory
and never keeps appends waiting for longer than one batch.

Every condition of a batch's UPDATE/DELETE is repeated on the outer statement, so a row changed
between the inner SELECT and the write (a message arriving at that moment) is re-checked by the
database and left alone.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from aisopod_session import _time
from aisopod_session._time import to_us
from aisopod_session.lifecycle import (
    LifecyclePolicy,
    PurgeResult,
    ResetPolicy,
    RetentionPolicy,
    SweepResult,
)
from aisopod_session.models import Session, SessionKey
from aisopod_session.results import ChangeKind, Resolution
from aisopod_session.store import _changes, _checks
from aisopod_session.store._changes import record, record_removed_messages, record_sessions
from aisopod_session.store._schema import archive_live, create_live, live_session, lock_order
from aisopod_session.store._search_index import scrub
from aisopod_session.store._tx import Tx, Work

SWEEP_BATCH = 1000
"""Sessions (or messages) one batch of a sweep or purge changes."""

_BEFORE_ANY_ROW = -(2**62)  # a cutoff older than every stored timestamp


def _cutoff(at: datetime, age: timedelta) -> int:
    """``at - age`` in stored microseconds; older than every row if that is before year 1."""
    try:
        return to_us(at - age)
    except OverflowError:
        return _BEFORE_ANY_ROW


# --- sweep -----------------------------------------------------------------------------------

# Each condition twice: as the inner SELECT uses it (served by an index) and as the outer
# statement re-checks it, written so that no index can serve it (``|| ''``, ``+ 0``). Otherwise
# SQLite walks the whole matching range of the status index for every batch, checking each row
# against the batch's ids, and a sweep over N sessions costs N²/batch; this way the outer
# statement finds the batch's rows by primary key. Both forms mean the same on every backend.
_IDLE_WHERE = "status IN ('active', 'compacted') AND updated_at <= ?"
_IDLE_RECHECK = "status || '' IN ('active', 'compacted') AND updated_at + 0 <= ?"
_ARCHIVE_WHERE = "status = 'idle' AND updated_at <= ?"
_ARCHIVE_RECHECK = "status || '' = 'idle' AND updated_at + 0 <= ?"


def _transition_batch(where: tuple[str, str], setting: str, cutoff: int,
                      extra: tuple[Any, ...], batch: int) -> Work[int]:
    select, recheck = where

    def write(tx: Tx) -> int:
        changed = tx.all(
            f"UPDATE sessions SET {setting} WHERE {recheck} AND id IN "
            f"(SELECT id FROM sessions WHERE {select} LIMIT ?) RETURNING id, agent_id, status",
            (*extra, cutoff, cutoff, batch),
        )
        for session_id, agent_id, status in changed:
            record(tx, ChangeKind.SESSION_UPDATED, agent_id, int(session_id), fields=["status"],
                   status=status, reason="sweep")
        return len(changed)

    return Work(write=write)


def _count(where: str, params: tuple[Any, ...]) -> Work[int]:
    def read(tx: Tx) -> int:
        return int(tx.one(f"SELECT count(*) FROM sessions WHERE {where}", params)[0])

    return Work(read=read)


def sweep_plan(
    policy: Any, now: Any, dry_run: bool, batch: int = SWEEP_BATCH
) -> Generator[Any, Any, SweepResult]:
    """Active/compacted → idle, idle → archived, in batches; returns a SweepResult.

    A session goes idle once ``idle_after`` has passed since its ``updated_at`` (at exactly that
    instant, not a microsecond before) and is archived once ``archive_after`` has; the sweep
    never changes ``updated_at``, and a session idled by this sweep that is also due for
    archiving is archived by it too (a dry run counts it the same way).
    """
    policy = _checks.policy(policy, LifecyclePolicy, "policy")
    dry_run = _checks.flag(dry_run, "dry_run")
    at = _checks.now(now)
    now_us = to_us(at)
    idled = archived = 0
    if policy.idle_after is not None:
        cutoff = _cutoff(at, policy.idle_after)
        if dry_run:
            idled = yield _count(_IDLE_WHERE, (cutoff,))
        else:
            while True:
                changed = yield _transition_batch((_IDLE_WHERE, _IDLE_RECHECK), "status = 'idle'",
                                                  cutoff, (), batch)
                idled += changed
                if changed < batch:
                    break
    if policy.archive_after is not None:
        cutoff = _cutoff(at, policy.archive_after)
        if dry_run:
            archived = yield _count(_ARCHIVE_WHERE, (cutoff,))
            if policy.idle_after is not None and policy.idle_after <= policy.archive_after:
                # what this sweep would first make idle and then archive in the same pass
                archived += yield _count(_IDLE_WHERE, (cutoff,))
        else:
            while True:
                changed = yield _transition_batch(
                    (_ARCHIVE_WHERE, _ARCHIVE_RECHECK), "status = 'archived', archived_at = ?",
                    cutoff, (now_us,), batch)
                archived += changed
                if changed < batch:
                    break
    return SweepResult(idled=idled, archived=archived, dry_run=dry_run, at=at)


# --- resets ----------------------------------------------------------------------------------


def resolve(key: SessionKey, policy: Any, now: Any) -> Work[Resolution]:
    """The live session of ``key``, or a fresh one if there is none or the policy finds it stale.

    With ``now`` given, the reset happens at that instant: the old session is archived and the
    fresh one started at ``now`` (so a second resolve at the same ``now`` finds it fresh, not
    stale again). Concurrent resolves of one stale session reset it once: the write locks the
    live row and checks staleness again.
    """
    if policy is not None:
        policy = _checks.policy(policy, ResetPolicy, "policy")
    at = _checks.now(now)
    clock_given = now is not None

    def stale(session: Session) -> bool:
        return policy is not None and policy.is_stale(session.updated_at, at)

    def read(tx: Tx) -> Resolution | None:
        session = live_session(tx, key)
        if session is None or stale(session):
            return None
        return Resolution(session=session, started=False)

    def write(tx: Tx) -> Resolution:
        current = live_session(tx, key, lock=True)
        stamp = to_us(at if clock_given else _time.utc_now())
        if current is not None:
            if not stale(current):  # another caller reset it first
                return Resolution(session=current, started=False)
            archive_live(tx, key, at=stamp, session_id=current.id)
        created, started = create_live(tx, key, at=stamp)
        # not started: a concurrent first contact created it, and theirs is the one
        return Resolution(session=created, started=started,
                          previous_id=None if current is None or not started else current.id)

    return Work(read=read, write=write, lock_key=lock_order(key))


# --- retention ------------------------------------------------------------------------------
#
# Something is purged once its retention period has fully passed: a message compacted at C under
# ``compacted_messages=D`` goes at C + D (not a microsecond before), like the sweep's thresholds.

_COMPACTED_WHERE = "compacted = 1 AND compacted_at <= ?"
_COMPACTED_RECHECK = "compacted + 0 = 1 AND compacted_at + 0 <= ?"  # by id: see the sweep
_ARCHIVED_WHERE = "status = 'archived' AND archived_at <= ?"


def _purge_messages_batch(cutoff: int, batch: int) -> Work[int]:
    def write(tx: Tx) -> int:
        gone = tx.all(
            f"DELETE FROM messages WHERE {_COMPACTED_RECHECK} AND id IN "
            f"(SELECT id FROM messages WHERE {_COMPACTED_WHERE} LIMIT ?) RETURNING session_id",
            (cutoff, cutoff, batch),
        )
        record_removed_messages(tx, [row[0] for row in gone], "retention")
        if gone:
            scrub(tx)  # nothing of the purged messages left in the search index
        return len(gone)

    return Work(write=write)


def _purge_sessions_batch(cutoff: int, batch: int) -> Work[tuple[int, int]]:
    def write(tx: Tx) -> tuple[int, int]:
        ids = [int(r[0]) for r in tx.all(
            f"SELECT id FROM sessions WHERE {_ARCHIVED_WHERE} LIMIT ?", (cutoff, batch))]
        if not ids:
            return 0, 0
        marks = ", ".join("?" for _ in ids)
        messages = tx.run(f"DELETE FROM messages WHERE session_id IN ({marks})", ids)
        gone = tx.all(f"DELETE FROM sessions WHERE id IN ({marks}) RETURNING id, agent_id", ids)
        record_sessions(tx, ChangeKind.SESSION_DELETED, gone, reason="retention")
        if messages:
            scrub(tx)
        return len(gone), messages

    return Work(write=write)


def purge_compacted(older_than: Any) -> Work[int]:
    """Delete messages compacted out of the live history before ``older_than`` (all if None);
    one statement, for operators (``purge_plan`` applies the retention policy in batches)."""
    bound = None if older_than is None else to_us(_checks.aware(older_than, "older_than"))

    def write(tx: Tx) -> int:
        if bound is None:
            gone = tx.all("DELETE FROM messages WHERE compacted = 1 RETURNING session_id")
        else:
            gone = tx.all("DELETE FROM messages WHERE compacted = 1 AND compacted_at < ? "
                          "RETURNING session_id", (bound,))
        record_removed_messages(tx, [row[0] for row in gone], "retention")
        if gone:
            scrub(tx)
        return len(gone)

    return Work(write=write)


def purge_plan(
    policy: Any, now: Any, dry_run: Any, batch: int = SWEEP_BATCH
) -> Generator[Any, Any, PurgeResult]:
    """Archived sessions (with all their messages) past ``archived_sessions``, then compacted
    messages past ``compacted_messages``, in batches; returns a PurgeResult. A dry run counts
    exactly what a real run would delete (a compacted message of a purged archived session once).
    """
    policy = _checks.policy(policy, RetentionPolicy, "policy")
    dry_run = _checks.flag(dry_run, "dry_run")
    at = _checks.now(now)
    messages = sessions = 0
    archived_cutoff: int | None = None
    if policy.archived_sessions is not None:
        archived_cutoff = _cutoff(at, policy.archived_sessions)
        if dry_run:
            sessions, messages = yield _dry_archived(archived_cutoff)
        else:
            while True:
                gone, with_messages = yield _purge_sessions_batch(archived_cutoff, batch)
                sessions += gone
                messages += with_messages
                if gone < batch:
                    break
    if policy.compacted_messages is not None:
        cutoff = _cutoff(at, policy.compacted_messages)
        if dry_run:
            messages += yield _count_compacted(cutoff, archived_cutoff)
        else:
            while True:
                gone = yield _purge_messages_batch(cutoff, batch)
                messages += gone
                if gone < batch:
                    break
    changes = 0
    if policy.changes is not None:
        cutoff = _cutoff(at, policy.changes)
        if dry_run:
            changes = yield _changes.count_prunable(cutoff)
        else:
            while True:
                gone = yield _changes.prune(cutoff)
                changes += gone
                if not gone:
                    break
    return PurgeResult(messages=messages, sessions=sessions, changes=changes, dry_run=dry_run,
                       at=at)


def _dry_archived(cutoff: int) -> Work[tuple[int, int]]:
    def read(tx: Tx) -> tuple[int, int]:
        row = tx.one(
            "SELECT count(*), coalesce(sum(m), 0) FROM (SELECT (SELECT count(*) FROM messages "
            f"WHERE session_id = s.id) AS m FROM sessions s WHERE {_ARCHIVED_WHERE}) AS archived",
            (cutoff,))
        return int(row[0]), int(row[1])

    return Work(read=read)


def _count_compacted(cutoff: int, archived_cutoff: int | None) -> Work[int]:
    """Compacted messages past ``cutoff``, except those of sessions the same purge removes
    first (they are already counted with their session)."""
    sql = f"SELECT count(*) FROM messages WHERE {_COMPACTED_WHERE}"
    params: tuple[int, ...] = (cutoff,)
    if archived_cutoff is not None:
        sql += f" AND session_id NOT IN (SELECT id FROM sessions WHERE {_ARCHIVED_WHERE})"
        params = (cutoff, archived_cutoff)

    def read(tx: Tx) -> int:
        return int(tx.one(sql, params)[0])

    return Work(read=read)


