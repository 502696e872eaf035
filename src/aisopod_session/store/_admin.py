"""Operator operations on a whole store: reads by id (archived generations included), counts,
statistics, usage by day, and clearing. They bypass agent isolation: the facades offer them on the
store, never on an agent handle."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aisopod_session import _time
from aisopod_session._time import to_us
from aisopod_session.errors import SessionNotFoundError
from aisopod_session.models import Session, SessionStatus
from aisopod_session.results import ChangeKind, DailyUsage, StoreStats
from aisopod_session.store import _checks
from aisopod_session.store._changes import record_sessions
from aisopod_session.store._fence import forget_runs
from aisopod_session.store._migrations import MIGRATIONS_TABLE
from aisopod_session.store._schema import SESSION_COLUMNS, session_from_row
from aisopod_session.store._search_index import scrub
from aisopod_session.store._tx import OneStatement, Tx, Work


def get_session_by_id(session_id: Any) -> Work[Session]:
    checked = _checks.session_id(session_id)

    def read(tx: Tx) -> Session:
        row = tx.one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (checked,))
        if row is None:
            raise SessionNotFoundError(f"no session with id {checked}")
        return session_from_row(row)

    return Work(read=OneStatement(read))


def count_by_status(agent_id: str | None = None) -> Work[dict[SessionStatus, int]]:
    where, params = ("WHERE agent_id = ?", (agent_id,)) if agent_id else ("", ())

    def read(tx: Tx) -> dict[SessionStatus, int]:
        rows = tx.all(f"SELECT status, count(*) FROM sessions {where} GROUP BY status", params)
        return {SessionStatus(status): int(count) for status, count in rows}

    return Work(read=read)


def clear(agent_id: str | None) -> Work[int]:
    """Delete every session (of one agent), all generations and messages; returns how many."""

    def write(tx: Tx) -> int:
        if agent_id is None:
            tx.run("DELETE FROM messages")
            gone = tx.all("DELETE FROM sessions RETURNING id, agent_id")
            forget_runs(tx)
        else:
            gone = tx.all("DELETE FROM sessions WHERE agent_id = ? RETURNING id, agent_id",
                          (agent_id,))
            forget_runs(tx, "agent_id = ?", (agent_id,))
        record_sessions(tx, ChangeKind.SESSION_DELETED, gone, reason="clear")
        if gone:
            scrub(tx)  # nothing of the deleted messages left in the search index
        return len(gone)

    return Work(write=write)


def schema_version() -> Work[int]:
    def read(tx: Tx) -> int:
        return int(tx.one(f"SELECT max(version) FROM {MIGRATIONS_TABLE}")[0])

    return Work(read=read)


def stats() -> Work[StoreStats]:
    def read(tx: Tx) -> StoreStats:
        by_status = {SessionStatus(status): int(count) for status, count in tx.all(
            "SELECT status, count(*) FROM sessions GROUP BY status")}
        agents = int(tx.one("SELECT count(DISTINCT agent_id) FROM sessions")[0])
        messages = {bool(compacted): int(count) for compacted, count in tx.all(
            "SELECT compacted, count(*) FROM messages GROUP BY compacted")}
        return StoreStats(sessions_by_status=by_status, agents=agents,
                          messages_live=messages.get(False, 0),
                          messages_compacted=messages.get(True, 0))

    return Work(read=read)


DAY_US = 86_400_000_000

_EVERY_STATUS = ", ".join(f"'{status.value}'" for status in SessionStatus)


def usage_by_day(agent_id: str | None, days: Any, now: Any) -> Work[list[DailyUsage]]:
    """Usage of the last ``days`` UTC days (today included), by the messages still stored.

    Sessions are reached through their recency index: a message appended on a day bumped its
    session's ``updated_at`` to that day or later, so sessions last updated before the window
    cannot hold a message of it, and the query never walks the whole message table. (The
    recency indexes lead with the status: naming every status lets the query seek them.)
    """
    days = _checks.usage_days(days)
    today = to_us(_time.utc_now() if now is None else _checks.aware(now, "now")) // DAY_US
    end = (today + 1) * DAY_US
    start = end - days * DAY_US
    agent_clause, agent_params = ("AND s.agent_id = ? ", (agent_id,)) if agent_id else ("", ())

    def read(tx: Tx) -> list[DailyUsage]:
        rows = tx.all(
            "SELECT s.agent_id, m.created_at / ? AS day, count(*), "
            "coalesce(sum(m.token_count), 0) FROM sessions s "
            "JOIN messages m ON m.session_id = s.id "
            f"WHERE s.status IN ({_EVERY_STATUS}) AND s.updated_at >= ? {agent_clause}"
            "AND m.created_at >= ? AND m.created_at < ? "
            "GROUP BY s.agent_id, day ORDER BY day, s.agent_id",
            (DAY_US, start, *agent_params, start, end),
        )
        epoch = date(1970, 1, 1)
        return [DailyUsage(day=epoch + timedelta(days=int(day)), agent_id=agent,
                           messages=int(count), tokens=int(tokens))
                for agent, day, count, tokens in rows]

    return Work(read=read)
