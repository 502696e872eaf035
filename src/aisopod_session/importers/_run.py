"""The import driver: source sessions → the store's own JSON Lines import, batch by batch.

Every source session becomes export records (``store.import_jsonl``'s format), so the data goes
through exactly the checks of the store's own import and is stored by it: all or nothing per
call. A call is a *batch* of whole sessions (about ``BATCH_MESSAGES`` messages), so progress
is committed batch by batch and a session is never half imported. Each imported session carries
``imported_from`` in its metadata (source kind and session id): a later run finds it and skips
it, which makes a second run add nothing and a run killed halfway continue after the last batch
it committed.

A first, read-only pass over the source counts its sessions and looks for keys that already hold
a session not imported from this source: with ``on_conflict="fail"`` any such key stops the run
before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aisopod_session import _json
from aisopod_session.errors import (
    ConflictError,
    InvalidInputError,
    SessionNotFoundError,
)
from aisopod_session.importers._model import (
    MARKER,
    ImportReport,
    SessionReport,
    Skip,
    SourceMessage,
    SourceSession,
    external_id,
)
from aisopod_session.models import StoredMessage
from aisopod_session.results import ImportConflictPolicy
from aisopod_session.store import SessionStore

BATCH_MESSAGES = 5000
"""About how many messages one import call (one transaction) stores."""
BATCH_SESSIONS = 500
"""At most this many sessions per import call."""

Progress = Callable[[int, int, int], None]
"""Called with (source sessions done, source sessions in all, messages read) as the run
goes."""


class Source(Protocol):
    """What the driver reads: the source's sessions, one at a time."""

    kind: str

    def sessions(self) -> Iterator[SourceSession]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Tally:
    session: SourceSession
    slot: int = -1
    """Its place in the report (the report lists sessions in the source's order)."""
    read: int = 0
    imported: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.read += count

    def report(self, outcome: Any, reason: str | None = None) -> SessionReport:
        return SessionReport(source_id=self.session.source_id,
                             key=self.session.key.canonical(), outcome=outcome, read=self.read,
                             imported=self.imported if outcome in ("imported", "would-import")
                             else 0, skipped=dict(self.skipped), reason=reason)


def marker(kind: str, source_id: str) -> dict[str, str]:
    return {"kind": kind, "session": source_id}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _session_record(number: int, session: SourceSession, kind: str) -> str:
    updated = max(session.updated_at, session.created_at)
    return _json.dumps({
        "kind": "session", "id": number, "key": session.key.model_dump(mode="json"),
        "status": "active", "created_at": _iso(session.created_at), "updated_at": _iso(updated),
        "token_usage": session.token_usage, "metadata": {**session.metadata,
                                       MARKER: marker(kind, session.source_id)},
        "compaction_count": session.compaction_count,
        "last_compacted_at": None if session.last_compacted_at is None
        else _iso(session.last_compacted_at),
        "last_compaction_summary": session.last_compaction_summary,
    })


def _message_record(number: int, seq: int, message: SourceMessage, external: str) -> str:
    return _json.dumps({
        "kind": "message", "session": number, "seq": seq, "role": message.role.value,
        "content": message.content, "tool_calls": message.tool_calls,
        "created_at": _iso(message.created_at), "token_count": message.token_count,
        "external_id": external, "compacted": message.compacted_at is not None,
        "compacted_at": None if message.compacted_at is None else _iso(message.compacted_at),
    })


class _Run:
    def __init__(self, store: SessionStore, source: Source, on_conflict: ImportConflictPolicy,
                 dry_run: bool, progress: Progress | None, external_prefix: str) -> None:
        self.store = store
        self.source = source
        self.policy = on_conflict
        self.dry_run = dry_run
        self.progress = progress
        self.prefix = external_prefix
        self.report = ImportReport(source_kind=source.kind, dry_run=dry_run)
        self.sessions_done = 0
        self.sessions_total = 0
        self.messages_read = 0

    # --- what to do with a session ---------------------------------------------------------

    def _stored_metadata(self, session: SourceSession) -> dict[str, Any] | None:
        """The metadata of the live session of the key, None when there is none."""
        try:
            stored = self.store.for_agent(session.key.agent_id).get(session.key)
        except SessionNotFoundError:
            return None
        return dict(stored.metadata)

    def decide(self, session: SourceSession, seen: set[str]) -> str | None:
        """None to import the session, or why it is not imported ("already-imported:…",
        "conflict:…", "skipped:…", "failed:…")."""
        if session.problem is not None:
            return f"failed:{session.problem}"
        canonical = session.key.canonical()
        if canonical in seen:
            return ("skipped:another session of this source maps to the same key (give a "
                    "different --agent or channel mapping)")
        seen.add(canonical)
        stored = self._stored_metadata(session)
        if stored is None:
            return None
        if stored.get(MARKER) == marker(self.source.kind, session.source_id):
            return "already-imported:imported by an earlier run"
        if self.policy == "archive-existing":
            return None
        return ("conflict:the key already has a live session that was not imported from this "
                "source")

    # --- the passes -------------------------------------------------------------------------

    def check_conflicts(self) -> int:
        """The read-only first pass: how many sessions the source has; with ``fail``, a
        ConflictError naming the keys that already hold another session."""
        seen: set[str] = set()
        conflicts: list[str] = []
        total = 0
        for session in self.source.sessions():
            total += 1
            decision = self.decide(session, seen)
            if decision is not None and decision.startswith("conflict:"):
                conflicts.append(session.key.canonical())
        if conflicts and self.policy == "fail":
            shown = ", ".join(conflicts[:5]) + (" …" if len(conflicts) > 5 else "")
            raise ConflictError(
                f"{len(conflicts)} key(s) already hold a session that was not imported from "
                f"this source ({shown}); nothing was imported (--on-conflict skip keeps the "
                "stored sessions, archive-existing archives them)")
        return total

    def run(self) -> ImportReport:
        self.sessions_total = self.check_conflicts()
        seen: set[str] = set()
        batch: list[_Tally] = []
        weight = 0
        for session in self.source.sessions():
            decision = self.decide(session, seen)
            if decision is not None:
                self._not_imported(session, decision)
                continue
            batch.append(self._placed(_Tally(session)))
            weight += 1 + session.size_hint
            if weight >= BATCH_MESSAGES or len(batch) >= BATCH_SESSIONS:
                self._flush(batch)
                batch, weight = [], 0
        self._flush(batch)
        return self.report

    def _placed(self, tally: _Tally) -> _Tally:
        tally.slot = len(self.report.sessions)
        self.report.sessions.append(tally.report("failed", "interrupted before it was written"))
        return tally

    def _done(self, tally: _Tally, outcome: Any, reason: str | None = None) -> None:
        self.report.sessions[tally.slot] = tally.report(outcome, reason)
        self._advance(tally.read)

    def _not_imported(self, session: SourceSession, decision: str) -> None:
        outcome, reason = decision.split(":", 1)
        tally = _Tally(session)
        if outcome == "conflict":
            outcome, reason = "skipped", reason + "; the stored one is kept"
        self.report.sessions.append(tally.report(outcome, reason))
        self._advance(0)

    def _advance(self, messages: int) -> None:
        self.sessions_done += 1
        self.messages_read += messages
        if self.progress is not None:
            self.progress(self.sessions_done, self.sessions_total, self.messages_read)

    # --- writing ----------------------------------------------------------------------------

    def _lines(self, batch: list[_Tally]) -> Iterator[str]:
        yield _json.dumps({"kind": "aisopod-session-export", "version": 1})
        for number, tally in enumerate(batch, 1):
            session = tally.session
            tally.read, tally.imported, tally.skipped = 0, 0, {}
            if session.prepare is not None:
                session.prepare(session)
            yield _session_record(number, session, self.source.kind)
            seq = 0
            for item in session.read():
                if isinstance(item, Skip):
                    tally.skip(item.reason, item.count)
                    continue
                tally.read += 1
                if not item.same_position or seq == 0:
                    seq += 1
                tally.imported += 1
                yield _message_record(number, seq, item,
                                      external_id(self.prefix, item.source_id))

    def _flush(self, batch: list[_Tally]) -> None:
        if not batch:
            return
        if self.dry_run:
            for tally in batch:
                self._dry(tally)
            return
        policy: ImportConflictPolicy = ("archive-existing" if self.policy == "archive-existing"
                                        else "fail")
        try:
            self.store.import_jsonl(self._lines(batch), on_conflict=policy)
        except (InvalidInputError, ConflictError) as exc:
            if len(batch) > 1:  # find the session at fault: each of the batch on its own
                for tally in batch:
                    self._flush([tally])
                return
            self._done(batch[0], "failed", _explained(exc))
            return
        for tally in batch:
            self._done(tally, "imported")

    def _dry(self, tally: _Tally) -> None:
        """Counted and checked as a message (StoredMessage), nothing written."""
        session = tally.session
        if session.prepare is not None:
            session.prepare(session)
        problem = None
        for item in session.read():
            if isinstance(item, Skip):
                tally.skip(item.reason, item.count)
                continue
            tally.read += 1
            try:
                StoredMessage(role=item.role, content=item.content, tool_calls=item.tool_calls,
                              created_at=item.created_at, token_count=item.token_count)
            except InvalidInputError as exc:
                problem = problem or f"message {tally.read}: {exc}"
            tally.imported += 1
        self._done(tally, "failed" if problem else "would-import", problem)


_LINE = re.compile(r"line (\d+)")


def _explained(exc: Exception) -> str:
    """The store's error about a one-session batch, in the source's terms: line 1 is the
    header, line 2 the session, line N the session's message N - 2."""

    def message(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return "the session" if number <= 2 else f"message {number - 2}"

    return "nothing of this session was imported: " + _LINE.sub(message, str(exc))


def import_sessions(store: SessionStore, source: Source, *,
                    on_conflict: ImportConflictPolicy = "fail", dry_run: bool = False,
                    progress: Progress | None = None) -> ImportReport:
    """Import every session of ``source`` into ``store`` (see the module docstring)."""
    if on_conflict not in ("fail", "skip", "archive-existing"):
        raise InvalidInputError.for_field(
            "on_conflict", f"expected fail, skip or archive-existing, got {on_conflict!r}")
    return _Run(store, source, on_conflict, dry_run, progress, source.kind).run()
