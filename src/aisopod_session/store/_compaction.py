"""Compaction of a live history: the plan comes from :mod:`aisopod_session.compaction` (pure),
this module reads its input and applies it in one transaction. Nothing is deleted here: what
leaves the live history is flagged ``compacted`` (retention purges it later, see
``_lifecycle``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aisopod_session import _time
from aisopod_session._time import to_us
from aisopod_session.compaction import (
    CompactionRecord,
    LiveMessage,
    TruncateToolResults,
    plan_compaction,
)
from aisopod_session.models import Role, SessionKey
from aisopod_session.results import ChangeKind, Run
from aisopod_session.store import _checks
from aisopod_session.store._changes import record
from aisopod_session.store._fence import check_fence
from aisopod_session.store._messages import message_row
from aisopod_session.store._schema import (
    COMPACTION_COLUMNS,
    COMPACTION_INPUT_COLUMNS,
    INSERT_CHUNK,
    LIVE_KEY_WHERE,
    TOUCH,
    compaction_input_from_row,
    compaction_record_from_row,
    insert_messages,
    key_params,
    live_session,
    lock_order,
    not_found,
    touch_params,
)
from aisopod_session.store._tx import OneStatement, Tx, Work


def compact(key: SessionKey, strategy: Any, run: Run | None = None) -> Work[CompactionRecord]:
    checked = _checks.strategy(strategy)

    def write(tx: Tx) -> CompactionRecord:
        check_fence(tx, run)
        session = live_session(tx, key, lock=True)
        if session is None:
            raise not_found(key)
        live: list[LiveMessage]
        if isinstance(checked, TruncateToolResults):
            rows = tx.all(
                f"SELECT {COMPACTION_INPUT_COLUMNS} FROM messages "
                "WHERE session_id = ? AND compacted = 0 AND role = 'tool' ORDER BY seq",
                (session.id,),
            )
            live = []
            for row in rows:
                seq, message = compaction_input_from_row(row)
                assert message.id is not None
                live.append(LiveMessage(message.id, seq, Role.TOOL, message))
        else:
            rows = tx.all(
                "SELECT id, seq, role FROM messages WHERE session_id = ? AND compacted = 0 "
                "ORDER BY seq",
                (session.id,),
            )
            live = [LiveMessage(int(id_), int(seq), Role(role)) for id_, seq, role in rows]
        now = _time.utc_now()
        plan = plan_compaction(checked, live, now)
        if not plan.changes_anything:
            return CompactionRecord.model_construct(
                compaction_count=session.compaction_count,
                last_compacted_at=session.last_compacted_at,
                summary=session.last_compaction_summary,
            )
        for start in range(0, len(plan.remove), INSERT_CHUNK):
            chunk = plan.remove[start : start + INSERT_CHUNK]
            tx.run(
                "UPDATE messages SET compacted = 1, compacted_at = ? "
                f"WHERE id IN ({', '.join('?' for _ in chunk)})",
                (to_us(now), *chunk),
            )
        if plan.insert:
            # Checked one by one (a compaction is not a caller's batch), and stored without an
            # external_id: a summary or a shortened result is the store's own message, never a
            # redelivery of the caller's.
            insert_messages(tx, session.id, [
                replace(message_row(seq, _checks.new_messages([message])[0]), external_id=None)
                for seq, message in plan.insert])
        live_count = session.message_count - len(plan.remove) + len(plan.insert)
        now_us = to_us(now)
        row = tx.one(
            "UPDATE sessions SET message_count = ?, compaction_count = compaction_count + 1, "
            "last_compacted_at = ?, "
            "last_compaction_summary = coalesce(?, last_compaction_summary), "
            f"status = 'compacted', {TOUCH} WHERE id = ? RETURNING {COMPACTION_COLUMNS}",
            (live_count, now_us, plan.summary, *touch_params(now_us), session.id),
        )
        record(tx, ChangeKind.SESSION_COMPACTED, key.agent_id, session.id,
               compacted=len(plan.remove), inserted=len(plan.insert))
        return compaction_record_from_row(row)

    return Work(write=write, lock_key=lock_order(key))


def get_compaction_record(key: SessionKey) -> Work[CompactionRecord]:
    def read(tx: Tx) -> CompactionRecord:
        row = tx.one(
            f"SELECT {COMPACTION_COLUMNS} FROM sessions WHERE {LIVE_KEY_WHERE}", key_params(key)
        )
        if row is None:
            raise not_found(key)
        return compaction_record_from_row(row)

    return Work(read=OneStatement(read))
