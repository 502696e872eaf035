"""What the store's operations return, beyond sessions and messages: one page type and the
result models of the admin, lifecycle, privacy and integration operations.

Every result is an immutable :class:`~aisopod_session.base.Model` (or, for pages, a list that
carries ``next_cursor``), so the local and the remote store return the same things and the
service serialises them the same way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
)

from aisopod_session.base import Model
from aisopod_session.limits import MAX_CURSOR_LENGTH
from aisopod_session.models import (
    Kind,
    Name,
    PeerId,
    Role,
    Session,
    SessionKey,
    SessionStatus,
    SessionSummary,
    StoredMessage,
    UtcDatetime,
)

__all__ = [
    "AuditRecord",
    "Change",
    "ChangeKind",
    "ChangePage",
    "CommitResult",
    "DailyUsage",
    "ImportConflictPolicy",
    "ImportResult",
    "MetadataMerge",
    "Page",
    "PeerResult",
    "QueuedMessage",
    "Resolution",
    "Run",
    "SearchFilter",
    "SearchHit",
    "SearchIndexStatus",
    "SearchOrder",
    "SearchPage",
    "SessionDetailPage",
    "SessionPage",
    "SnippetSegment",
    "StoreStats",
    "Webhook",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookState",
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


ImportConflictPolicy = Literal["fail", "skip", "archive-existing"]
"""What an import does with a session of the file that already exists (``on_conflict``):
``fail`` refuses the file (nothing imported), ``skip`` keeps the stored session and leaves the
file's out, ``archive-existing`` archives the stored live session and imports the file's."""


class ImportResult(Model):
    """How many sessions, messages and waiting (inbox) messages an import stored; how many of
    the file's sessions it left out as already stored (``skipped``), and how many stored live
    sessions it archived to import the file's (``archived``)."""

    sessions: int = 0
    messages: int = 0
    queued: int = 0
    skipped: int = 0
    archived: int = 0


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
    """The live session was archived and a new one started (``reset``, ``resolve``, an import's
    ``archive-existing``)."""
    SESSION_COMPACTED = "session.compacted"
    SESSION_DELETED = "session.deleted"
    """``delete``, ``clear`` or a retention purge."""
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


# --- webhooks ------------------------------------------------------------------------------------

WEBHOOK_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_WEBHOOK_URL_LENGTH = 2048
MAX_WEBHOOK_ATTEMPTS = 50
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = (24, 64)
"""A Standard Webhooks secret: ``whsec_`` and the base64 of 24 to 64 random bytes."""


def _webhook_url(value: str) -> str:
    if len(value) > MAX_WEBHOOK_URL_LENGTH:
        raise ValueError(f"at most {MAX_WEBHOOK_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("no spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (a port that is not a number raises ValueError)
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("no user name or password in the URL: the receiver checks the "
                         "signature instead (the URL is shown to admins)")
    return value


def _webhook_secret(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    low, high = WEBHOOK_SECRET_BYTES
    problem = (f"expected a Standard Webhooks secret: {WEBHOOK_SECRET_PREFIX!r} and the base64 "
               f"of {low} to {high} random bytes")
    if not text.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(problem)
    try:
        raw = base64.b64decode(text[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None
    if not low <= len(raw) <= high:
        raise ValueError(problem)
    return value


class Webhook(Model):
    """Where the service POSTs change-feed entries (``[[webhooks]]`` in its config; see
    ``AsyncSessionStore.deliver_webhooks``): signed as Standard Webhooks describes, in commit
    order, at least once, retried with exponential backoff up to ``max_attempts`` tries."""

    name: Annotated[StrictStr, Field(pattern=WEBHOOK_NAME)]
    """A short unique id (lower-case letters, digits, ``-`` and ``_``): the delivery position
    and log are kept by it, so renaming a webhook starts it afresh."""
    url: Annotated[StrictStr, AfterValidator(_webhook_url)]
    secret: Annotated[SecretStr, AfterValidator(_webhook_secret)]
    """``whsec_…``: the receiver verifies ``webhook-signature`` with it. Never shown."""
    agents: tuple[Name, ...] = ()
    """Only these agents' entries (empty: every agent's, and entries without an agent)."""
    kinds: tuple[ChangeKind, ...] = ()
    """Only entries of these kinds (empty: every kind)."""
    max_attempts: Annotated[StrictInt, Field(ge=1, le=MAX_WEBHOOK_ATTEMPTS)] = 8
    """Tries per entry; after the last failed one the entry is logged ``failed`` and delivery
    goes on with the next."""
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    """How long one try may take (connecting, sending, the answer)."""
    backoff_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """The pause after the first failed try; it doubles after each further one."""
    max_backoff_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    """The longest pause between two tries (a ``Retry-After`` answer is honoured up to it)."""

    def matches(self, change: Change) -> bool:
        """Whether the webhook's filters let ``change`` through."""
        return ((not self.agents or change.agent_id in self.agents)
                and (not self.kinds or change.kind in self.kinds))


class WebhookDeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    FAILED = "failed"
    """Every try failed (``max_attempts``); delivery went on with the next entry."""
    RETRYING = "retrying"
    """A try failed and the next one waits for its backoff."""
    INTERRUPTED = "interrupted"
    """Its worker stopped while retrying; the next holder delivers the entry again."""


class WebhookDelivery(Model):
    """One feed entry's delivery to one webhook (``webhook_deliveries``): never the payload,
    never the secret."""

    id: int
    webhook: str
    cursor: str
    """The delivered change's cursor (the payload's ``data.cursor``)."""
    kind: ChangeKind
    agent_id: str | None = None
    session_id: int | None = None
    status: WebhookDeliveryStatus
    attempts: int
    http_status: int | None = None
    """The last try's answer (None: no answer, see ``error``)."""
    error: str | None = None
    """Why the last failed try failed (kept once delivered; None when no try failed)."""
    delivered_by: str
    """The worker (``owner``) that tried."""
    lease_lost: bool = False
    """The worker had lost the webhook's lease when it logged this: the next holder delivers
    the entry again (a duplicate, which the receiver recognises by ``webhook-id``)."""
    first_attempt_at: datetime
    last_attempt_at: datetime
    duration_seconds: float
    """How long the last try took."""


class WebhookState(Model):
    """Where one webhook's delivery stands (every webhook the database has delivered for)."""

    name: str
    cursor: str
    """The feed entry handled last (delivered, failed or filtered out): delivery goes on after
    it."""
    behind: int
    """Feed entries committed after ``cursor`` (before the webhook's filters)."""
    holder: str | None = None
    """The worker delivering it (None: none since the last one stopped)."""
    lease_expires_at: datetime | None = None
    """By the database's clock: after it, another replica's worker takes over."""
    delivered: int = 0
    failed: int = 0
    duplicates: int = 0
    """Outcomes logged by a worker that had lost the lease (each entry delivered again)."""
    skipped: int = 0
    """Feed positions pruned before they were delivered (the webhook was stopped longer than
    the feed's retention): at most this many entries were never sent."""


# --- search ------------------------------------------------------------------------------------


def _one_or_many(value: Any) -> Any:
    """A single value or a sequence of them, as a tuple (None stays None)."""
    if value is None or isinstance(value, str):
        return value if value is None else (value,)
    if isinstance(value, Iterable) and not isinstance(value, dict | bytes | bytearray):
        return tuple(value)
    return (value,)


SearchOrder = Literal["best", "newest"]
"""``best``: highest score first (ties: newest first); ``newest``: newest ``created_at`` first."""


class SearchFilter(Model):
    """Which messages a search looks at. By default the live history of live sessions: compacted
    originals with ``include_compacted``, archived generations with ``include_archived`` (or a
    ``status`` naming ``archived``). ``after`` / ``before`` are exclusive bounds on the message's
    ``created_at``."""

    channel: Name | None = None
    account_id: Name | None = None
    peer_kind: Kind | None = None
    peer_id: PeerId | None = None
    role: Annotated[tuple[Role, ...] | None, BeforeValidator(_one_or_many)] = None
    status: Annotated[tuple[SessionStatus, ...] | None, BeforeValidator(_one_or_many)] = None
    after: UtcDatetime | None = None
    before: UtcDatetime | None = None
    include_compacted: StrictBool = False
    include_archived: StrictBool = False

    @property
    def statuses(self) -> tuple[SessionStatus, ...]:
        """The session statuses searched."""
        chosen = self.status or (SessionStatus.ACTIVE, SessionStatus.IDLE,
                                 SessionStatus.COMPACTED)
        if self.include_archived and SessionStatus.ARCHIVED not in chosen:
            chosen = (*chosen, SessionStatus.ARCHIVED)
        return tuple(sorted(set(chosen)))


class SnippetSegment(Model):
    """A piece of a hit's snippet: ``match`` is true for the characters of a matched term.
    Plain text, never markup: a renderer escapes it (HTML) and highlights the matched ones."""

    text: str
    match: bool = False


class SearchHit(Model):
    """One message a search found, with its session."""

    session_id: int
    key: SessionKey
    session_status: SessionStatus
    message_id: int
    seq: int
    """The message's position in its session's history (``HistoryQuery`` reads around it)."""
    role: Role
    created_at: datetime
    compacted: bool = False
    score: float
    """Relevance computed from the message alone (see the README), the same on every backend."""
    snippet: list[SnippetSegment]


class SearchPage(Model):
    """One page of search hits; pass ``next_cursor`` back (with the same query, filter and
    order) for the next one. ``next_cursor`` is None on the last page."""

    hits: list[SearchHit]
    next_cursor: Annotated[StrictStr, Field(max_length=MAX_CURSOR_LENGTH)] | None = None
    complete: bool = True
    """False while the search index of messages stored before search existed is still being
    built (``build_search_index``): older messages may be missing."""
    partial_ranking: bool = False
    """``best`` order only: more messages matched than the ``MAX_RANKED_MATCHES`` most recently
    stored ones that were ranked; narrow the search (a time range, a session filter) or page by
    ``newest``."""


class SearchIndexStatus(Model):
    """Whether search is on, and how much of the messages stored before it is still to index."""

    enabled: bool
    pending: int
    """Messages stored before the index existed (or was turned back on) not yet indexed."""

