"""Store operations for lifecycle, resets, retention and privacy.

Sweeps and purges run as plans of bounded batches: each batch is its own short write (a job in
the group committer), so a sweep over a million sessions holds no more than one batch of ids in
memory and never keeps appends waiting for longer than one batch.

Every condition of a batch's UPDATE/DELETE is repeated on the outer statement, so a row changed
between the inner SELECT and the write (a message arriving at that moment) is re-checked by the
database and left alone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import (
    LifecyclePolicy,
    PurgeResult,
    ResetPolicy,
    RetentionPolicy,
    SweepResult,
)
from aisopod_session.base import Model as _Model, invalid_input_from
from aisopod_session.models import (
    Session,
    SessionKey,

    normalize_name_or_raise,
    normalize_peer_id_or_raise,
    utc_now,
)
from aisopod_session.store import _ops
from aisopod_session.store._admin import export_plan, sessions_where
from aisopod_session.store._engine import Tx
from aisopod_session.store._ops import (
    SESSION_COLUMNS,
    Work,
    from_us,
    session_from_row,
    to_us,
)

SWEEP_BATCH = 1000

P = TypeVar("P", LifecyclePolicy, ResetPolicy, RetentionPolicy)

Plan = Generator[Any, Any, Any]


_EARLIEST = datetime(1, 1, 3, tzinfo=UTC)
_LATEST = datetime(9999, 12, 29, tzinfo=UTC)
_BEFORE_ANY_ROW = -(2**62)  # a cutoff older than every stored timestamp


def _now(now: Any) -> datetime:
    """The operation's clock: ``now`` if given (timezone-aware), else the current time."""
    if now is None:
        return utc_now()
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise InvalidInputError.for_field("now", "must be a timezone-aware datetime")
    try:
        in_range = _EARLIEST <= now <= _LATEST
    except OverflowError:  # pragma: no cover - comparing aware datetimes never overflows
        in_range = False
    if not in_range:
        # a day either side is needed for daily boundaries in any time zone
        raise InvalidInputError.for_field("now", "must be between 0001-01-03 and 9999-12-29")
    return now


def _cutoff(at: datetime, age: timedelta) -> int:
    """``at - age`` in stored microseconds; older than every row if that is before year 1."""
    try:
        return to_us(at - age)
    except OverflowError:
        return _BEFORE_ANY_ROW


def _checked(policy: Any, kind: type[P], field: str) -> P:
    """The policy, validated once more: ``model_construct`` and ``model_copy(update=...)``
    skip validation, and an unchecked negative duration would sweep or purge everything."""
    if not isinstance(policy, kind):
        raise InvalidInputError.for_field(field, f"expected a {kind.__name__}, got "
                                          f"{type(policy).__name__}")
    return kind.model_validate(dict(policy))


def _flag(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise InvalidInputError.for_field(field, f"expected a bool, got {type(value).__name__}")
    return value


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
        return tx.run(
            f"UPDATE sessions SET {setting} WHERE {recheck} AND id IN "
            f"(SELECT id FROM sessions WHERE {select} LIMIT ?)",
            (*extra, cutoff, cutoff, batch),
        )

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
    policy = _checked(policy, LifecyclePolicy, "policy")
    dry_run = _flag(dry_run, "dry_run")
    at = _now(now)
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


class Resolution(_Model):
    """The session a new message belongs to, and whether it was just started."""

    session: Session
    started: bool
    """True when this call created the session (first contact, or a reset of a stale one)."""
    previous_id: int | None = None
    """The id of the session that a reset archived, if any."""


def resolve(key: SessionKey, policy: Any, now: Any) -> Work[Resolution]:
    """The live session of ``key``, or a fresh one if there is none or the policy finds it stale.

    With ``now`` given, the reset happens at that instant: the old session is archived and the
    fresh one started at ``now`` (so a second resolve at the same ``now`` finds it fresh, not
    stale again). Concurrent resolves of one stale session reset it once: the write locks the
    live row and checks staleness again.
    """
    if policy is not None:
        policy = _checked(policy, ResetPolicy, "policy")
    at = _now(now)
    clock_given = now is not None

    def stale(session: Session) -> bool:
        return policy is not None and policy.is_stale(session.updated_at, at)

    def read(tx: Tx) -> Resolution | None:
        row = tx.one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {_ops.LIVE_KEY_WHERE}",
                     _ops.key_params(key))
        if row is None:
            return None
        session = session_from_row(row)
        return None if stale(session) else Resolution(session=session, started=False)

    def write(tx: Tx) -> Resolution:
        # Twice: under PostgreSQL's READ COMMITTED, a resolve that waited for a concurrent
        # reset finds the archived row no longer live and the fresh one only on a second look.
        row = _ops._twice(
            tx,
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {_ops.LIVE_KEY_WHERE}"
            f"{tx.dialect.for_update}",
            _ops.key_params(key),
        )
        stamp = to_us(at if clock_given else utc_now())
        if row is not None:
            current = session_from_row(row)
            if not stale(current):  # another caller reset it first
                return Resolution(session=current, started=False)
            tx.run("UPDATE sessions SET status = 'archived', archived_at = ?, updated_at = ? "
                   "WHERE id = ?", (stamp, stamp, current.id))
        created = tx.one(
            "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
            "created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, '{}') "
            f"ON CONFLICT DO NOTHING RETURNING {SESSION_COLUMNS}",
            (*_ops.key_params(key), stamp, stamp),
        )
        if created is None:  # a concurrent first contact created it: theirs is the one
            existing = _ops._live_session(tx, key)
            if existing is None:  # pragma: no cover - the conflicting row is live
                raise AssertionError(f"insert of {key} conflicted but no live session exists")
            return Resolution(session=existing, started=False)
        return Resolution(session=session_from_row(created), started=True,
                          previous_id=None if row is None else int(row[0]))

    return Work(read=read, write=write, lock_key=_ops.lock_order(key))


# --- retention ------------------------------------------------------------------------------
#
# Something is purged once its retention period has fully passed: a message compacted at C under
# ``compacted_messages=D`` goes at C + D (not a microsecond before), like the sweep's thresholds.

_COMPACTED_WHERE = "compacted = 1 AND compacted_at <= ?"
_COMPACTED_RECHECK = "compacted + 0 = 1 AND compacted_at + 0 <= ?"  # by id: see the sweep
_ARCHIVED_WHERE = "status = 'archived' AND archived_at <= ?"


def _purge_messages_batch(cutoff: int, batch: int) -> Work[int]:
    def write(tx: Tx) -> int:
        return tx.run(
            f"DELETE FROM messages WHERE {_COMPACTED_RECHECK} AND id IN "
            f"(SELECT id FROM messages WHERE {_COMPACTED_WHERE} LIMIT ?)",
            (cutoff, cutoff, batch),
        )

    return Work(write=write)


def _purge_sessions_batch(cutoff: int, batch: int) -> Work[tuple[int, int]]:
    def write(tx: Tx) -> tuple[int, int]:
        ids = [int(r[0]) for r in tx.all(
            f"SELECT id FROM sessions WHERE {_ARCHIVED_WHERE} LIMIT ?", (cutoff, batch))]
        if not ids:
            return 0, 0
        marks = ", ".join("?" for _ in ids)
        messages = tx.run(f"DELETE FROM messages WHERE session_id IN ({marks})", ids)
        sessions = tx.run(f"DELETE FROM sessions WHERE id IN ({marks})", ids)
        return sessions, messages

    return Work(write=write)


def purge_plan(
    policy: Any, now: Any, dry_run: Any, batch: int = SWEEP_BATCH
) -> Generator[Any, Any, PurgeResult]:
    """Archived sessions (with all their messages) past ``archived_sessions``, then compacted
    messages past ``compacted_messages``, in batches; returns a PurgeResult. A dry run counts
    exactly what a real run would delete (a compacted message of a purged archived session once).
    """
    policy = _checked(policy, RetentionPolicy, "policy")
    dry_run = _flag(dry_run, "dry_run")
    at = _now(now)
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
    return PurgeResult(messages=messages, sessions=sessions, dry_run=dry_run, at=at)


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


# --- privacy ---------------------------------------------------------------------------------

PEER_WHERE = "channel = ? AND peer_id = ? AND peer_kind = 'dm'"


def peer_params(channel: Any, peer_id: Any) -> tuple[str, str]:
    """A person is a channel and their id there (``*`` and a linked name for PER_PEER keys)."""
    return (normalize_name_or_raise("channel", channel),
            normalize_peer_id_or_raise("peer_id", peer_id))


def subject(tx: Tx, channel: str, peer_id: str) -> str:
    """What the audit log records about whom: a keyed hash, so erasing a person erases their id.

    HMAC-SHA-256 under the database's own random key (migration 0004): a plain hash of a
    guessable id, such as a phone number, could be reversed by hashing every candidate. The
    parts are joined with NUL, which neither may contain, so that no two people share a subject
    (with ``:``, channel ``a:b`` with id ``c`` and channel ``a`` with id ``b:c`` would).
    """
    key = tx.one("SELECT key FROM audit_key WHERE id = 1")[0]
    digest = hmac.new(str(key).encode(), f"{channel}\0{peer_id}".encode(), hashlib.sha256)
    return "hmac-sha256:" + digest.hexdigest()


def _actor(actor: Any) -> str:
    """Who asked: a non-empty name of at most 256 characters, without control characters."""
    return normalize_peer_id_or_raise("actor", actor)


def _audit(tx: Tx, actor: str, action: str, about: str | None, sessions: int,
           messages: int) -> None:
    tx.run("INSERT INTO audit_log (at, actor, action, subject, sessions, messages) "
           "VALUES (?, ?, ?, ?, ?, ?)",
           (to_us(utc_now()), actor, action, about, sessions, messages))


class PeerResult(_Model):
    sessions: int
    messages: int


def forget_peer(channel: Any, peer_id: Any, actor: Any) -> Work[PeerResult]:
    params = peer_params(channel, peer_id)
    who = _actor(actor)

    def write(tx: Tx) -> PeerResult:
        ids = [int(r[0]) for r in tx.all(f"SELECT id FROM sessions WHERE {PEER_WHERE}", params)]
        messages = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            messages += tx.run(f"DELETE FROM messages WHERE session_id IN ({marks})", chunk)
            tx.run(f"DELETE FROM sessions WHERE id IN ({marks})", chunk)
        _audit(tx, who, "forget_peer", subject(tx, *params), len(ids), messages)
        return PeerResult(sessions=len(ids), messages=messages)

    return Work(write=write)


def _audit_export(params: tuple[str, str], who: str) -> Work[None]:
    def write(tx: Tx) -> None:
        row = tx.one(
            f"SELECT count(*), coalesce(sum(m), 0) FROM (SELECT (SELECT count(*) FROM messages "
            f"WHERE session_id = s.id) AS m FROM sessions s WHERE {PEER_WHERE}) AS mine",
            params)
        _audit(tx, who, "export_peer", subject(tx, *params), int(row[0]), int(row[1]))

    return Work(write=write)


def export_peer_plan(channel: Any, peer_id: Any, actor: Any) -> Plan:
    """Everything held about a person, as export JSON Lines; audited before the first line."""
    params = peer_params(channel, peer_id)
    who = _actor(actor)
    yield _audit_export(params, who)
    yield from export_plan(sessions_where(PEER_WHERE, params))


class AuditRecord(_Model):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    sessions: int
    messages: int


def audit_log(limit: Any) -> Work[list[AuditRecord]]:
    if type(limit) is not int or not 1 <= limit <= 10_000:
        raise InvalidInputError.for_field("limit", "an int from 1 to 10000")

    def read(tx: Tx) -> list[AuditRecord]:
        rows = tx.all("SELECT id, at, actor, action, subject, sessions, messages FROM audit_log "
                      "ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditRecord(id=r[0], at=from_us(r[1]), actor=r[2], action=r[3], subject=r[4],
                            sessions=r[5], messages=r[6]) for r in rows]

    return Work(read=read)
