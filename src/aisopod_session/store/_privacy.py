"""Privacy: erasing a person (``forget_peer``), exporting what is held about them
(``export_peer``), and the audit log both write to (who, when, how much; never content)."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from aisopod_session import _time
from aisopod_session._time import from_us, to_us
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import MAX_SQL_INT
from aisopod_session.models import normalize_peer_id_or_raise
from aisopod_session.results import AuditRecord, ChangeKind, PeerResult
from aisopod_session.store import _checks
from aisopod_session.store._changes import record_sessions
from aisopod_session.store._fence import forget_runs
from aisopod_session.store._schema import INSERT_CHUNK
from aisopod_session.store._search_index import scrub
from aisopod_session.store._transfer import Plan, export_plan, queued_where, sessions_where
from aisopod_session.store._tx import Tx, Work

PEER_WHERE = "channel = ? AND peer_id = ? AND peer_kind = 'dm'"


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


def _audit(tx: Tx, actor: str, action: str, about: str | None, sessions: int,
           messages: int) -> None:
    tx.run("INSERT INTO audit_log (at, actor, action, subject, sessions, messages) "
           "VALUES (?, ?, ?, ?, ?, ?)",
           (to_us(_time.utc_now()), actor, action, about, sessions, messages))


AGENT_ACTION = re.compile(r"tool\.[a-z_]{1,60}")
"""What an agent may record about itself: the session tools' calls (``tool.<name>``), never an
operator's action such as ``forget_peer``."""


def record_agent_audit(agent_id: str, action: Any, about: Any, sessions: Any,
                       messages: Any) -> Work[None]:
    """An audit record whose actor is ``agent:<agent_id>`` (the facade's own agent: an agent
    cannot write in another's name)."""
    if not isinstance(action, str) or not AGENT_ACTION.fullmatch(action):
        raise InvalidInputError.for_field("action", "must be 'tool.<name>' (a-z and _)")
    checked = None if about is None else normalize_peer_id_or_raise("subject", about)
    counts = []
    for field, value in (("sessions", sessions), ("messages", messages)):
        if type(value) is not int or not 0 <= value <= MAX_SQL_INT:
            raise InvalidInputError.for_field(field, "must be a whole number >= 0")
        counts.append(value)

    def write(tx: Tx) -> None:
        _audit(tx, f"agent:{agent_id}", action, checked, counts[0], counts[1])

    return Work(write=write)


def forget_peer(channel: Any, peer_id: Any, actor: Any) -> Work[PeerResult]:
    params = _checks.peer(channel, peer_id)
    who = _checks.actor(actor)

    def write(tx: Tx) -> PeerResult:
        found = tx.all(f"SELECT id, agent_id FROM sessions WHERE {PEER_WHERE}", params)
        ids = [int(r[0]) for r in found]
        messages = 0
        for start in range(0, len(ids), INSERT_CHUNK):
            chunk = ids[start : start + INSERT_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            messages += tx.run(f"DELETE FROM messages WHERE session_id IN ({marks})", chunk)
            tx.run(f"DELETE FROM sessions WHERE id IN ({marks})", chunk)
        if messages:
            scrub(tx)  # nothing of the erased messages left in the search index's storage
        messages += forget_runs(tx, PEER_WHERE, params)  # and what waited in their inbox
        record_sessions(tx, ChangeKind.PERSON_ERASED, found)
        _audit(tx, who, "forget_peer", subject(tx, *params), len(ids), messages)
        return PeerResult(sessions=len(ids), messages=messages)

    return Work(write=write)


def _audit_export(params: tuple[str, str], who: str) -> Work[None]:
    def write(tx: Tx) -> None:
        row = tx.one(
            f"SELECT count(*), coalesce(sum(m), 0) FROM (SELECT (SELECT count(*) FROM messages "
            f"WHERE session_id = s.id) AS m FROM sessions s WHERE {PEER_WHERE}) AS mine",
            params)
        waiting = int(tx.one(f"SELECT count(*) FROM inbox WHERE {PEER_WHERE}", params)[0])
        _audit(tx, who, "export_peer", subject(tx, *params), int(row[0]),
               int(row[1]) + waiting)

    return Work(write=write)


def export_peer_plan(channel: Any, peer_id: Any, actor: Any) -> Plan:
    """Everything held about a person, as export JSON Lines; audited before the first line."""
    params = _checks.peer(channel, peer_id)
    who = _checks.actor(actor)
    yield _audit_export(params, who)
    yield from export_plan(sessions_where(PEER_WHERE, params), queued_where(PEER_WHERE, params))


def audit_log(limit: Any) -> Work[list[AuditRecord]]:
    limit = _checks.audit_limit(limit)

    def read(tx: Tx) -> list[AuditRecord]:
        rows = tx.all("SELECT id, at, actor, action, subject, sessions, messages FROM audit_log "
                      "ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditRecord(id=r[0], at=from_us(r[1]), actor=r[2], action=r[3], subject=r[4],
                            sessions=r[5], messages=r[6]) for r in rows]

    return Work(read=read)
