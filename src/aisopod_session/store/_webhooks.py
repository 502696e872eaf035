"""Webhooks in the database: each webhook's lease and position (``webhook_state``) and the log of
its deliveries (``webhook_deliveries``), as Work. The worker that uses them is
``_webhook_dispatch``.

One worker delivers a webhook at a time, across every replica: the one holding the webhook's
lease, which expires by the database's clock unless it is renewed. Every claim increments the
row's fence, and every write of a worker names the fence it claimed with, so a worker whose lease
was taken over cannot move the position any more: its outcome is still logged (marked
``lease_lost``: the next holder delivers that entry again). The position moves only in the
transaction that logs an entry's final outcome, so an entry that was sent but not yet logged is
sent again by the next holder: at least once.

A new webhook starts at the newest entry of the feed when it is first claimed (what happened
before it was configured is not sent). The log is kept as long as the feed keeps the entries it
delivered: :func:`prune_log` removes the rows of entries the feed has pruned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aisopod_session import _time
from aisopod_session.errors import InvalidInputError
from aisopod_session.results import (
    WEBHOOK_NAME,
    ChangeKind,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookState,
)
from aisopod_session.store._changes import cursor_of, last_position, limit, position_of
from aisopod_session.store._tx import Tx, Work

PRUNE_BATCH = 5000
"""Log rows deleted per transaction by :func:`prune_log`."""

_NAME = re.compile(WEBHOOK_NAME)
_KINDS = {kind.value: kind for kind in ChangeKind}
_STATUSES = {status.value: status for status in WebhookDeliveryStatus}
_FINAL = (WebhookDeliveryStatus.DELIVERED, WebhookDeliveryStatus.FAILED)
_AHEAD = "CASE WHEN position < ? THEN ? ELSE position END"
"""The position moved forward only (a renewal carries the worker's position, never back)."""


def name(value: Any, field: str = "webhook") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInputError.for_field(field, "a webhook name (lower-case letters, digits, "
                                                 "- and _, at most 64)")
    return value


def status(value: Any) -> WebhookDeliveryStatus | None:
    if value is None:
        return None
    found = _STATUSES.get(getattr(value, "value", value)) if isinstance(value, str) else None
    if found is None:
        raise InvalidInputError.for_field("status", f"one of {', '.join(_STATUSES)}")
    return found


def _now(tx: Tx) -> int:
    return int(tx.one(f"SELECT {tx.dialect.now_us}")[0])


# --- the lease -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """The lease, taken: the fence to write with, and the position to deliver after."""

    fence: int
    position: int


@dataclass(frozen=True, slots=True)
class Busy:
    """Another worker holds the lease, for ``seconds_left`` more unless it renews."""

    holder: str
    seconds_left: float


_STATE = "SELECT position, fence, owner, expires_at FROM webhook_state WHERE name = ?"


def _busy(owner: str, holder: str | None, expires: int | None, now: int) -> Busy | None:
    if holder is None or holder == owner or expires is None or expires <= now:
        return None
    return Busy(holder, (expires - now) / 1_000_000)


def claim(webhook: str, owner: str, lease_us: int) -> Work[Claim | Busy]:
    """Take the webhook's lease unless another worker's is still running; a webhook claimed for
    the first time starts after the feed's newest entry. A retrying delivery left behind by the
    previous holder is marked interrupted (this worker delivers that entry again)."""

    def read(tx: Tx) -> Busy | None:
        row = tx.one(f"SELECT owner, expires_at, {tx.dialect.now_us} FROM webhook_state "
                     "WHERE name = ?", (webhook,))
        return None if row is None else _busy(owner, row[0], row[1], row[2])

    def write(tx: Tx) -> Claim | Busy:
        now = _now(tx)
        row = tx.one(_STATE + tx.dialect.for_update, (webhook,))
        if row is None:  # two replicas may get here at once: one row all the same
            tx.run("INSERT INTO webhook_state (name, position, fence) VALUES "
                   f"(?, (SELECT {last_position(tx)} FROM change_positions WHERE id = 1), 1) "
                   "ON CONFLICT (name) DO NOTHING", (webhook,))
            row = tx.one(_STATE + tx.dialect.for_update, (webhook,))
        position, fence, holder, expires = row
        busy = _busy(owner, holder, expires, now)
        if busy is not None:
            return busy
        tx.run("UPDATE webhook_state SET fence = ?, owner = ?, expires_at = ? WHERE name = ?",
               (fence + 1, owner, now + lease_us, webhook))
        tx.run("UPDATE webhook_deliveries SET status = 'interrupted' "
               "WHERE status = 'retrying' AND webhook = ?", (webhook,))
        return Claim(fence + 1, position)

    return Work(read=read, write=write)


def renew(webhook: str, fence: int, lease_us: int, position: int) -> Work[bool]:
    """Extend the lease (and save how far the worker got past entries its filters skip);
    False when it was taken over."""

    def write(tx: Tx) -> bool:
        return tx.run(f"UPDATE webhook_state SET expires_at = {tx.dialect.now_us} + ?, "
                      f"position = {_AHEAD} WHERE name = ? AND fence = ?",
                      (lease_us, position, position, webhook, fence)) == 1

    return Work(write=write)


def release(webhook: str, fence: int, position: int) -> Work[bool]:
    """Give the lease up (a stopping worker: another replica's takes over at once)."""

    def write(tx: Tx) -> bool:
        return tx.run(f"UPDATE webhook_state SET owner = NULL, expires_at = NULL, "
                      f"position = {_AHEAD} WHERE name = ? AND fence = ?",
                      (position, position, webhook, fence)) == 1

    return Work(write=write)


def skip_pruned(webhook: str, fence: int) -> Work[int | None]:
    """Move a position the feed has pruned past to the oldest entry kept, counting what was
    skipped; the new position, or None when the lease was taken over."""

    def write(tx: Tx) -> int | None:
        pruned = int(tx.one("SELECT pruned_through FROM change_positions WHERE id = 1")[0])
        row = tx.one(_STATE + tx.dialect.for_update, (webhook,))
        if row is None or row[1] != fence:
            return None
        if row[0] < pruned:
            tx.run("UPDATE webhook_state SET skipped = skipped + ?, position = ? WHERE name = ?",
                   (pruned - row[0], pruned, webhook))
        return max(pruned, int(row[0]))

    return Work(write=write)


# --- the log -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the tries of one entry came to so far."""

    cursor: str
    kind: ChangeKind
    agent_id: str | None
    session_id: int | None
    status: WebhookDeliveryStatus
    attempts: int
    http_status: int | None
    error: str | None
    owner: str
    first_us: int
    last_us: int
    duration_us: int


@dataclass(frozen=True, slots=True)
class Logged:
    delivery: WebhookDelivery
    held: bool
    """The worker still held the lease: a final outcome moved the position."""


def log(webhook: str, fence: int, row_id: int | None, attempt: Attempt) -> Work[Logged]:
    """Log a try's outcome (a new row, or the entry's row ``row_id`` updated) and, when it is
    final and the worker still holds the lease, move the position past the entry, in one
    transaction."""
    position = position_of(attempt.cursor, "cursor")

    def write(tx: Tx) -> Logged:
        row = tx.one("SELECT fence FROM webhook_state WHERE name = ?" + tx.dialect.for_update,
                     (webhook,))
        held = row is not None and row[0] == fence
        values = (attempt.status.value, attempt.attempts, attempt.http_status, attempt.error,
                  attempt.owner, int(not held), attempt.last_us, attempt.duration_us)
        if row_id is None:
            found = int(tx.one(
                "INSERT INTO webhook_deliveries (status, attempts, http_status, error, owner, "
                "lease_lost, last_attempt_at, duration_us, webhook, position, kind, agent_id, "
                "session_id, first_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING id", (*values, webhook, position, attempt.kind.value,
                                 attempt.agent_id, attempt.session_id, attempt.first_us))[0])
        else:
            found = row_id
            tx.run("UPDATE webhook_deliveries SET status = ?, attempts = ?, http_status = ?, "
                   "error = ?, owner = ?, lease_lost = ?, last_attempt_at = ?, duration_us = ? "
                   "WHERE id = ?", (*values, row_id))
        if attempt.status in _FINAL:
            delivered = int(attempt.status is WebhookDeliveryStatus.DELIVERED)
            if held:
                tx.run(f"UPDATE webhook_state SET position = {_AHEAD}, "
                       "delivered = delivered + ?, failed = failed + ? WHERE name = ?",
                       (position, position, delivered, 1 - delivered, webhook))
            elif delivered:
                tx.run("UPDATE webhook_state SET duplicates = duplicates + 1 WHERE name = ?",
                       (webhook,))
        return Logged(_delivery(found, webhook, attempt, lease_lost=not held), held)

    return Work(write=write)


def _delivery(row_id: int, webhook: str, attempt: Attempt, *, lease_lost: bool
              ) -> WebhookDelivery:
    return WebhookDelivery._from_store({
        "id": row_id, "webhook": webhook, "cursor": attempt.cursor, "kind": attempt.kind,
        "agent_id": attempt.agent_id, "session_id": attempt.session_id,
        "status": attempt.status, "attempts": attempt.attempts,
        "http_status": attempt.http_status, "error": attempt.error,
        "delivered_by": attempt.owner, "lease_lost": lease_lost,
        "first_attempt_at": _time.from_us(attempt.first_us),
        "last_attempt_at": _time.from_us(attempt.last_us),
        "duration_seconds": attempt.duration_us / 1_000_000,
    })


_DELIVERIES = (
    "SELECT id, webhook, position, kind, agent_id, session_id, status, attempts, http_status, "
    "error, owner, lease_lost, first_attempt_at, last_attempt_at, duration_us "
    "FROM webhook_deliveries {where} ORDER BY id DESC LIMIT ?"
)


def _from_row(row: Any) -> WebhookDelivery:
    (row_id, webhook, position, kind, agent_id, session_id, state, attempts, http_status, error,
     owner, lease_lost, first_us, last_us, duration_us) = row
    return _delivery(int(row_id), webhook, Attempt(
        cursor_of(position), _KINDS[kind], agent_id, session_id, _STATUSES[state], attempts,
        http_status, error, owner, first_us, last_us, duration_us), lease_lost=bool(lease_lost))


def deliveries(webhook: Any, wanted: Any, count: Any) -> Work[list[WebhookDelivery]]:
    """The newest log rows first: of one webhook or all, of one status or all."""
    checked = None if webhook is None else name(webhook)
    found_status = status(wanted)
    most = limit(count)
    where, params = [], []
    if checked is not None:
        where.append("webhook = ?")
        params.append(checked)
    if found_status is not None:
        where.append("status = ?")
        params.append(found_status.value)
    sql = _DELIVERIES.format(where=("WHERE " + " AND ".join(where)) if where else "")

    def read(tx: Tx) -> list[WebhookDelivery]:
        return [_from_row(row) for row in tx.all(sql, (*params, most))]

    return Work(read=read)


def states() -> Work[list[WebhookState]]:
    """Where every webhook the database has delivered for stands, by name."""

    def read(tx: Tx) -> list[WebhookState]:
        last = int(tx.one(f"SELECT {last_position(tx)} FROM change_positions WHERE id = 1")[0])
        found = []
        for (webhook, position, owner, expires, delivered, failed, duplicates,
             skipped) in tx.all("SELECT name, position, owner, expires_at, delivered, failed, "
                                "duplicates, skipped FROM webhook_state ORDER BY name"):
            found.append(WebhookState._from_store({
                "name": webhook, "cursor": cursor_of(position),
                "behind": max(0, last - position), "holder": owner,
                "lease_expires_at": None if expires is None else _time.from_us(expires),
                "delivered": delivered, "failed": failed, "duplicates": duplicates,
                "skipped": skipped}))
        return found

    return Work(read=read)


def prune_log(batch: int = PRUNE_BATCH) -> Work[int]:
    """Delete up to ``batch`` log rows of entries the feed no longer keeps; how many."""

    def write(tx: Tx) -> int:
        return tx.run(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
            "WHERE position <= (SELECT pruned_through FROM change_positions WHERE id = 1) "
            "LIMIT ?)", (batch,))

    return Work(write=write)
