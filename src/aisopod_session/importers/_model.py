"""What every source hands the import driver, and what the driver hands back.

A source yields :class:`SourceSession` objects one at a time; each reads its own messages
lazily (:meth:`SourceSession.read`), so a run holds one message at a time, never a whole source.
A message the source cannot turn into a :class:`SourceMessage` is a :class:`Skip` with its
reason, which the report counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from aisopod_session.base import Model
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import Role, SessionKey

SourceKind = Literal["openclaw", "openai-agents", "adk", "langchain"]
SOURCE_KINDS: tuple[str, ...] = ("openclaw", "openai-agents", "adk", "langchain")

MARKER = "imported_from"
"""The metadata field of an imported session that names its source (kind and session id): a
later run finds the session already imported by it and adds nothing."""


class SourceError(InvalidInputError):
    """A source that cannot be read at all: a missing file, a table without a column the
    importer needs, a schema version it does not know. Raised before anything is written."""


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message as the store will keep it (see ``StoredMessage``), plus its place."""

    source_id: str
    """Stable within its source session: the imported message's ``external_id`` is derived from
    it, so a message is never stored twice."""
    role: Role
    content: Any
    created_at: datetime
    tool_calls: Any = None
    token_count: int | None = None
    compacted_at: datetime | None = None
    """Set for a message an earlier compaction took out of the live history."""
    same_position: bool = False
    """True for a compaction summary: it takes the position of the last message it replaced."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Something of the source that is not imported as a message, and why."""

    reason: str
    count: int = 1


@dataclass(slots=True)
class SourceSession:
    """One conversation of the source, mapped to a key of the store."""

    source_id: str
    key: SessionKey
    created_at: datetime
    updated_at: datetime
    read: Callable[[], Iterator[SourceMessage | Skip]]
    metadata: dict[str, Any] = field(default_factory=dict)
    compaction_count: int = 0
    last_compacted_at: datetime | None = None
    last_compaction_summary: str | None = None
    token_usage: int = 0
    size_hint: int = 0
    """About how many messages the session has (batches are cut by it; 0 when unknown)."""
    prepare: Callable[[SourceSession], None] | None = None
    """Called before the session is written: fills what needs a full read of the source first
    (an OpenClaw transcript's compaction fields)."""
    problem: str | None = None
    """Set when the session cannot be imported at all (a transcript of an unknown version):
    it is reported as failed with this reason, nothing of it is written."""


def external_id(prefix: str, source_id: str) -> str:
    """``<prefix>:<source id>``, or a digest of it when that is too long or not printable (the
    store's rule for external ids: at most MAX_ID_LENGTH characters, no control characters)."""
    candidate = f"{prefix}:{source_id}"
    if len(candidate) <= MAX_ID_LENGTH and candidate.isprintable():
        return candidate
    return f"{prefix}#sha256:" + hashlib.sha256(source_id.encode("utf-8", "surrogatepass")
                                                ).hexdigest()


# --- the report --------------------------------------------------------------------------------

SessionOutcome = Literal["imported", "would-import", "already-imported", "skipped", "failed"]


class SessionReport(Model):
    """What happened to one source session."""

    source_id: str
    key: str
    """The canonical key it was (or would have been) imported under."""
    outcome: SessionOutcome
    read: int = 0
    """Messages read from the source (each message or entry counted once)."""
    imported: int = 0
    """Messages stored by this run (a dry run: messages that would be)."""
    skipped: dict[str, int] = Field(default_factory=dict)
    """Entries not imported, counted by reason."""
    reason: str | None = None
    """Why the whole session was skipped or failed."""


class ImportReport(Model):
    """The verification report of one run: every source session, and the totals."""

    source_kind: str
    dry_run: bool
    sessions: list[SessionReport] = Field(default_factory=list)

    def count(self, outcome: SessionOutcome) -> int:
        return sum(1 for session in self.sessions if session.outcome == outcome)

    @property
    def messages_read(self) -> int:
        return sum(session.read for session in self.sessions)

    @property
    def messages_imported(self) -> int:
        return sum(session.imported for session in self.sessions)

    @property
    def failed(self) -> bool:
        return any(session.outcome == "failed" for session in self.sessions)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(value: Any, fallback: datetime = EPOCH) -> datetime:
    """A source's timestamp as an aware UTC datetime: a datetime (naive ones are UTC, as the
    frameworks write them), ISO 8601 / SQL text, or seconds (milliseconds when ``> 1e11``)
    since the epoch. Anything else is ``fallback``."""
    try:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, bool):
            return fallback
        elif isinstance(value, int | float):
            seconds = value / 1000 if abs(value) > 1e11 else value
            return datetime.fromtimestamp(seconds, UTC)
        elif isinstance(value, str) and value.strip():
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        else:
            return fallback
    except (ValueError, OverflowError, OSError):
        return fallback
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class KeyMapping:
    """How source sessions map to keys: the agent they belong to (None: the source's own, or
    the kind's default) and the channel (None: the kind's default; for OpenClaw, ``channels``
    renames the channels of its keys)."""

    agent_id: str | None = None
    channel: str | None = None
    channels: dict[str, str] = field(default_factory=dict)
