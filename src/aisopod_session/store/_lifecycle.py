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
from collections.abc import Generator
from datetime import datetime
from typing import Any

from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import (
    LifecyclePolicy,
    PurgeResult,
    ResetPolicy,
    RetentionPolicy,
    SweepResult,
)
from aisopod_session.models import (
    Session,
    SessionKey,
    _Model,
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

Plan = Generator[Any, Any, Any]


def _now(now: Any) -> datetime:
    if now is None:
        return utc_now()
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise InvalidInputError.for_field("now", "must be a timezone-aware datetime")
    return now


# --- sweep -----------------------------------------------------------------------------------

_IDLE_WHERE = "status IN ('active', 'compacted') AND updated_at <= ?"
_ARCHIVE_WHERE = "status = 'idle' AND updated_at <= ?"


def _transition_batch(where: str, setting: str, cutoff: int, extra: tuple[Any, ...],
                      batch: int) -> Work[int]:
    def write(tx: Tx) -> int:
        return tx.run(
            f"UPDATE sessions SET {setting} WHERE {where} AND id IN "
            f"(SELECT id FROM sessions WHERE {where} LIMIT ?)",
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
    """Active/compacted → idle, idle → archived, in batches; returns a SweepResult."""
    if not isinstance(policy, LifecyclePolicy):
        raise InvalidInputError.for_field("policy", "expected a LifecyclePolicy")
    at = _now(now)
    now_us = to_us(at)
    idled = archived = 0
    if policy.idle_after is not None:
        cutoff = to_us(at - policy.idle_after)
        if dry_run:
            idled = yield _count(_IDLE_WHERE, (cutoff,))
        else:
            while True:
                changed = yield _transition_batch(_IDLE_WHERE, "status = 'idle'", cutoff, (),
                                                  batch)
                idled += changed
                if changed < batch:
                    break
    if policy.archive_after is not None:
        cutoff = to_us(at - policy.archive_after)
        if dry_run:
            archived = yield _count(_ARCHIVE_WHERE, (cutoff,))
            if policy.idle_after is not None and policy.idle_after <= policy.archive_after:
                # what this sweep would first make idle and then archive in the same pass
                archived += yield _count(_IDLE_WHERE, (cutoff,))
        else:
            while True:
                changed = yield _transition_batch(
                    _ARCHIVE_WHERE, "status = 'archived', archived_at = ?", cutoff, (now_us,),
                    batch)
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


def resolve(key: SessionKey, policy: ResetPolicy | None, now: Any) -> Work[Resolution]:
    at = _now(now)

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
        row = tx.one(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {_ops.LIVE_KEY_WHERE}"
            f"{tx.dialect.for_update}",
            _ops.key_params(key),
        )
        if row is not None:
            current = session_from_row(row)
            if not stale(current):  # another caller reset it first
                return Resolution(session=current, started=False)
            now_us = to_us(utc_now())
            tx.run("UPDATE sessions SET status = 'archived', archived_at = ?, updated_at = ? "
                   "WHERE id = ?", (now_us, now_us, current.id))
        fresh = _ops._create(tx, key)
        return Resolution(session=fresh, started=True,
                          previous_id=None if row is None else int(row[0]))

    return Work(read=read, write=write)


# --- retention -------------------------------------------------------------------------------


def _purge_messages_batch(cutoff: int, batch: int) -> Work[int]:
    def write(tx: Tx) -> int:
        where = "compacted = 1 AND compacted_at < ?"
        return tx.run(
            f"DELETE FROM messages WHERE {where} AND id IN "
            f"(SELECT id FROM messages WHERE {where} LIMIT ?)",
            (cutoff, cutoff, batch),
        )

    return Work(write=write)


def _purge_sessions_batch(cutoff: int, batch: int) -> Work[tuple[int, int]]:
    def write(tx: Tx) -> tuple[int, int]:
        ids = [int(r[0]) for r in tx.all(
            "SELECT id FROM sessions WHERE status = 'archived' AND archived_at < ? LIMIT ?",
            (cutoff, batch))]
        if not ids:
            return 0, 0
        marks = ", ".join("?" for _ in ids)
        messages = int(tx.one(f"SELECT count(*) FROM messages WHERE session_id IN ({marks})",
                              ids)[0])
        tx.run(f"DELETE FROM messages WHERE session_id IN ({marks})", ids)
        sessions = tx.run(f"DELETE FROM sessions WHERE id IN ({marks})", ids)
        return sessions, messages

    return Work(write=write)


def purge_plan(
    policy: Any, now: Any, dry_run: bool, batch: int = SWEEP_BATCH
) -> Generator[Any, Any, PurgeResult]:
    if not isinstance(policy, RetentionPolicy):
        raise InvalidInputError.for_field("policy", "expected a RetentionPolicy")
    at = _now(now)
    messages = sessions = 0
    if policy.archived_sessions is not None:
        cutoff = to_us(at - policy.archived_sessions)
        if dry_run:
            sessions, messages = yield _dry_archived(cutoff)
        else:
            while True:
                gone, with_messages = yield _purge_sessions_batch(cutoff, batch)
                sessions += gone
                messages += with_messages
                if gone < batch:
                    break
    if policy.compacted_messages is not None:
        cutoff = to_us(at - policy.compacted_messages)
        if dry_run:
            messages += yield _count_compacted(cutoff)
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
            "WHERE session_id = s.id) AS m FROM sessions s "
            "WHERE status = 'archived' AND archived_at < ?) AS archived", (cutoff,))
        return int(row[0]), int(row[1])

    return Work(read=read)


def _count_compacted(cutoff: int) -> Work[int]:
    def read(tx: Tx) -> int:
        return int(tx.one("SELECT count(*) FROM messages WHERE compacted = 1 AND compacted_at < ?",
                          (cutoff,))[0])

    return Work(read=read)


# --- privacy ---------------------------------------------------------------------------------

PEER_WHERE = "channel = ? AND peer_id = ? AND peer_kind = 'dm'"


def peer_params(channel: Any, peer_id: Any) -> tuple[str, str]:
    """A person is a channel and their id there (``*`` and a linked name for PER_PEER keys)."""
    return (normalize_name_or_raise("channel", channel),
            normalize_peer_id_or_raise("peer_id", peer_id))


def subject(channel: str, peer_id: str) -> str:
    """What the audit log records about whom: a hash, so erasing a person erases their id."""
    return "sha256:" + hashlib.sha256(f"{channel}:{peer_id}".encode()).hexdigest()


def _actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 256:
        raise InvalidInputError.for_field("actor", "a non-empty name of at most 256 characters")
    return actor.strip()


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
        _audit(tx, who, "forget_peer", subject(*params), len(ids), messages)
        return PeerResult(sessions=len(ids), messages=messages)

    return Work(write=write)


def _audit_export(params: tuple[str, str], who: str) -> Work[None]:
    def write(tx: Tx) -> None:
        row = tx.one(
            f"SELECT count(*), coalesce(sum(m), 0) FROM (SELECT (SELECT count(*) FROM messages "
            f"WHERE session_id = s.id) AS m FROM sessions s WHERE {PEER_WHERE}) AS mine",
            params)
        _audit(tx, who, "export_peer", subject(*params), int(row[0]), int(row[1]))

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
