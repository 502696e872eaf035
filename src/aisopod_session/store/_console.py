"""Console sign-outs, kept in the database (``console_revocations``) so that every replica
refuses a signed-out cookie.

The console's cookie is signed, not stored: signing out records the sign-in's id (the service
passes a digest of the cookie's random nonce, never the cookie) with the time the cookie would
have expired anyway. A row is kept only until then (and an hour more, for clocks that disagree):
each revocation prunes the rows past it.

Exposed as functions over :class:`AsyncSessionStore` (``revoke_console_sign_in``,
``console_sign_in_revoked``) until the facades carry them as methods.

Also here, for the transcript page: :func:`messages_after`, where a message (a search hit) stands
counted from the newest, so that the page showing it can be read with the history's own paging.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aisopod_session.errors import InvalidInputError
from aisopod_session.store._agent_async import run_work
from aisopod_session.store._tx import Tx, Work

if TYPE_CHECKING:
    from aisopod_session.store._async import AsyncSessionStore

MAX_SIGN_IN_ID = 128
PRUNE_GRACE_SECONDS = 3600
"""Revocations are kept this long past the cookie's expiry (replicas' clocks may disagree)."""


def _sign_in_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SIGN_IN_ID:
        raise InvalidInputError.for_field("sign_in_id", f"1 to {MAX_SIGN_IN_ID} characters")
    return value


def revoke(sign_in_id: str, expires_at: float, now: float) -> Work[int]:
    """Record a sign-out; answers how many expired revocations were pruned."""
    checked = _sign_in_id(sign_in_id)
    expires_us = int(expires_at * 1_000_000)
    horizon_us = int((now - PRUNE_GRACE_SECONDS) * 1_000_000)

    def write(tx: Tx) -> int:
        tx.run("INSERT INTO console_revocations (nonce_digest, expires_at) VALUES (?, ?) "
               "ON CONFLICT (nonce_digest) DO NOTHING", (checked, expires_us))
        return tx.run("DELETE FROM console_revocations WHERE expires_at < ?", (horizon_us,))

    return Work(write=write)


def is_revoked(sign_in_id: str) -> Work[bool]:
    checked = _sign_in_id(sign_in_id)

    def read(tx: Tx) -> bool:
        return tx.one("SELECT 1 FROM console_revocations WHERE nonce_digest = ?",
                      (checked,)) is not None

    return Work(read=read)


async def revoke_console_sign_in(store: AsyncSessionStore, sign_in_id: str, expires_at: float,
                                 now: float | None = None) -> int:
    """Sign a console sign-in out on every replica until ``expires_at`` (seconds since the
    epoch); prunes revocations past their expiry and answers how many it pruned."""
    return await run_work(store._engine,
                          revoke(sign_in_id, expires_at, time.time() if now is None else now))


async def console_sign_in_revoked(store: AsyncSessionStore, sign_in_id: str) -> bool:
    """Whether a console sign-in was signed out (by any replica)."""
    return await run_work(store._engine, is_revoked(sign_in_id))


def count_after(session_id: int, message_id: int) -> Work[int | None]:
    def read(tx: Tx) -> int | None:
        row = tx.one("SELECT seq FROM messages WHERE id = ? AND session_id = ?",
                     (message_id, session_id))
        if row is None:
            return None
        seq = int(row[0])
        # the transcript's order with compacted messages: seq, then id (a compaction's summary
        # shares the seq of a message it replaced)
        return int(tx.one("SELECT count(*) FROM messages WHERE session_id = ? "
                          "AND (seq > ? OR (seq = ? AND id > ?))",
                          (session_id, seq, seq, message_id))[0])

    return Work(read=read)


async def messages_after(store: AsyncSessionStore, session_id: int, message_id: int
                         ) -> int | None:
    """How many messages of the session, compacted ones included, come after ``message_id`` in
    its history (``HistoryQuery(include_compacted=True, tail=True, offset=…)`` reads from
    there); None if the session has no such message (deleted, or purged since)."""
    return await run_work(store._engine, count_after(session_id, message_id))
