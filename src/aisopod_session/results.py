"""What the store's operations return, beyond sessions and messages: one page type and the
result models of the admin, lifecycle, privacy and integration operations.

Every result is an immutable :class:`~aisopod_session.base.Model` (or, for pages, a list that
carries ``next_cursor``), so the local and the remote store return the same things and the
service serialises them the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import Field

from aisopod_session.base import Model
from aisopod_session.models import Session, SessionKey, SessionStatus, SessionSummary, StoredMessage

__all__ = [
    "AuditRecord",
    "Change",
    "ChangeKind",
    "ChangePage",
    "CommitResult",
    "DailyUsage",
    "ImportResult",
    "MetadataMerge",
    "Page",
    "PeerResult",
    "QueuedMessage",
    "Resolution",
    "Run",
    "SessionDetailPage",
    "SessionPage",
    "StoreStats",
]

T = TypeVar("T")


class Page(list[T]):
    """One page of a listing; pass ``next_cursor`` back (in the filter) for the next page.

    ``next_cursor`` is None on the last page.
    """

    next_cursor: str | None

    def __init__(self, items: Iterable[T] = (), next_cursor: str | None = None) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"Page({list.__repr__(self)}, next_cursor={self.next_cursor!r})"


SessionPage = Page[SessionSummary]
"""A page of ``list`` / ``list_all_sessions``: session summaries, newest update first."""
SessionDetailPage = Page[Session]
"""A page of ``list_detailed``: whole sessions (metadata included)."""


class StoreStats(Model):
    """Sessions by status, agents, live and compacted messages (``store.stats()``)."""

    sessions_by_status: dict[SessionStatus, int] = Field(default_factory=dict)
    agents: int = 0
    messages_live: int = 0
    messages_compacted: int = 0


class DailyUsage(Model):
    """Messages stored and their tokens (``token_count``) on one UTC day, for one agent."""

    day: date
    agent_id: str
    messages: int
    tokens: int


class ImportResult(Model):
    """How many sessions, messages and waiting (inbox) messages an import stored."""

    sessions: int = 0
    messages: int = 0
    queued: int = 0


class Resolution(Model):
    """The session a new message belongs to (``agent.resolve``), and whether it was just
    started."""

    session: Session
    started: bool
    """True when this call created the session (first contact, or a reset of a stale one)."""
    previous_id: int | None = None
    """The id of the session that a reset archived, if any."""


class PeerResult(Model):
    """How many sessions and messages of a person were erased (or exported)."""

    sessions: int
    messages: int


class AuditRecord(Model):
    """One audited privacy operation: who, when, what, how much; never content."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    sessions: int
    messages: int


MetadataMerge = dict[str, dict[str, Any]]
"""For each top-level metadata name, the entries merged into the JSON object stored there
(created when absent). A null entry is stored as null: merging never removes."""


class CommitResult(Model):
    """What ``agent.commit`` did."""

    session: Session
    """The session after the commit."""
    messages: list[StoredMessage]
    """The stored messages, as ``append_messages`` returns them."""
    applied: bool
    """False when every message given was already stored (a redelivery): nothing was changed."""
    shared: dict[SessionKey, Session | None]
    """Each shared session after the commit; None for one that does not exist (and had nothing
    merged into it)."""


class Run(Model):
    """A session's run lease (``agent.start_run``): while it is current, no other run starts on
    the key, and writes given ``run=`` it are fenced by it."""

    key: SessionKey
    owner: str
    """Who holds it (a gateway replica, a worker): shown to whoever finds the session busy."""
    fence: int
    """Strictly increasing for every run ever started on the key, across resets and replicas."""
    started_at: datetime
    expires_at: datetime
    """By the database's clock; after it, the next ``start_run`` takes the session over."""
    ttl: float
    """The lease's length in seconds: what ``renew_run`` extends it by unless told otherwise."""
    stop_requested: bool = False
    """Someone asked this run to stop (``request_stop``); seen on ``renew_run``."""
    took_over: bool = False
    """This start took the session over from a run whose lease had expired."""


class ChangeKind(StrEnum):
    """What a change-feed entry records (the README lists each kind's ``data``)."""

    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    """``patch``, a sweep's status change, a metadata merge of ``commit``."""
    SESSION_RESET = "session.reset"
    """The live session was archived and a new one started (``reset``, ``resolve``)."""
    SESSION_COMPACTED = "session.compacted"
    SESSION_DELETED = "session.deleted"
    """``delete``, ``clear``, a retention purge or a replaced session of an import."""
    SESSION_IMPORTED = "session.imported"
    MESSAGES_APPENDED = "messages.appended"
    MESSAGES_REMOVED = "messages.removed"
    """``pop``, or a retention purge of compacted messages."""
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    RUN_STOP_REQUESTED = "run.stop_requested"
    INBOX_ENQUEUED = "inbox.enqueued"
    PERSON_ERASED = "person.erased"
    """One per erased session of ``forget_peer`` (no personal data in the entry)."""
    IMPORT_DONE = "import.done"
    """The end of an import (no agent: admin consumers only)."""


class Change(Model):
    """One committed change, as the change feed reports it: identifiers, kinds and counts, never
    message content. ``cursor`` is this entry's position: resume after it with ``since=``."""

    cursor: str
    kind: ChangeKind
    at: datetime
    agent_id: str | None = None
    session_id: int | None = None
    key: SessionKey | None = None
    """Read from the session when the feed is read: None once the session no longer exists
    (deleted, purged, erased), so the feed never keeps a person's identifiers."""
    data: dict[str, Any] = Field(default_factory=dict)


class ChangePage(list[Change]):
    """One page of the change feed, oldest first; pass ``next_cursor`` as ``since`` to go on.

    Unlike a listing's page, ``next_cursor`` is never None: an empty page gives back the cursor
    it was asked for, which is where the next changes will appear.
    """

    next_cursor: str

    def __init__(self, items: Iterable[Change] = (), *, next_cursor: str) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"ChangePage({list.__repr__(self)}, next_cursor={self.next_cursor!r})"


class QueuedMessage(Model):
    """A message waiting in a session's inbox (``agent.enqueue``) for a run to take it."""

    id: int
    """The inbox entry's id (the message gets its history id when a run takes it)."""
    message: StoredMessage
    enqueued_at: datetime
