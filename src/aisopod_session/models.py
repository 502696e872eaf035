"""The session types: keys, sessions, messages, filters and patches (pydantic v2 models).

Every model validates on construction and turns pydantic's ``ValidationError`` into
:class:`~aisopod_session.errors.InvalidInputError` whose message names each bad field. Models are
immutable; the store builds new ones rather than mutating.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aisopod_session._json import JsonError, check_json
from aisopod_session._time import check_rfc3339, utc_now
from aisopod_session.base import (
    Model,
    remember_validated_kinds,
    validates_directly,
)
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import (
    MAX_CURSOR_LENGTH,
    MAX_ID_LENGTH,
    MAX_KEY_BYTES,
    MAX_PAGE_SIZE,
    MAX_SQL_INT,
)

__all__ = [
    "HistoryQuery",
    "JsonValue",
    "PeerKind",
    "Role",
    "Session",
    "SessionFilter",
    "SessionKey",
    "SessionMetadata",
    "SessionPatch",
    "SessionStatus",
    "SessionSummary",
    "StoredMessage",
    "utc_now",
]

class SessionStatus(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"
    COMPACTED = "compacted"
    ARCHIVED = "archived"


class PeerKind(StrEnum):
    DM = "dm"
    GROUP = "group"
    THREAD = "thread"


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"


# --- field validators -------------------------------------------------------------------------


def _check_controls(value: str) -> None:
    for char in value:
        category = unicodedata.category(char)
        if category == "Cc":
            raise ValueError(f"must not contain control characters (found U+{ord(char):04X})")
        if category == "Cs":
            raise ValueError("must not contain lone surrogates")


def _check_text(value: str) -> str:
    if not value or value.isspace():
        raise ValueError("must not be empty or whitespace only")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}")
    _check_controls(value)
    return value


def _normal_form(value: str, *, fold_case: bool) -> str:
    """Trimmed, NFC and (for names) lower-cased, applied until it no longer changes.

    One pass is not always enough: lower-casing can make a sequence composable under NFC
    (``J`` + U+030C lower-cases to ``j`` + U+030C, which NFC composes to U+01F0), and a key must
    come out the same when its normalised parts are normalised again.
    """
    # Control characters are refused before trimming: ``strip`` would silently drop a trailing
    # newline or a leading U+001F, and a key part must never be cleaned up behind the caller.
    _check_controls(value)
    text = value
    for _ in range(4):
        step = unicodedata.normalize("NFC", text.lower() if fold_case else text).strip()
        if step == text:
            return _check_text(text)
        text = step
    raise ValueError("has no stable Unicode normal form")  # pragma: no cover - never seen


def normalize_name(value: str) -> str:
    """Agent ids, channels and account ids: trimmed, NFC and lower-cased."""
    return _normal_form(value, fold_case=True)


def normalize_peer_id(value: str) -> str:
    """Peer ids: trimmed and NFC, never case-folded (ids are case-sensitive on some platforms)."""
    return _normal_form(value, fold_case=False)


def _json_value(value: Any) -> Any:
    try:
        return check_json(value)
    except JsonError as exc:
        raise ValueError(str(exc)) from None


def _datetime_input(value: Any) -> Any:
    # pydantic would read a number, or a string of digits, as a Unix timestamp; here that is far
    # more likely a bug than a time, so text must be an RFC 3339 timestamp.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return check_rfc3339(value)
    raise ValueError(f"expected a timezone-aware datetime, got {type(value).__name__}")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


def _one_of(kind: type[StrEnum]) -> BeforeValidator:
    """Accept an enum member or its value as ``str`` only (pydantic would also take bytes)."""
    names = ", ".join(repr(member.value) for member in kind)

    def check(value: Any) -> Any:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected one of {names}, got {type(value).__name__}")

    return BeforeValidator(check)


def _status_set(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not isinstance(value, dict | bytes | bytearray):
        return tuple(value)
    raise ValueError(f"expected a status or a list of statuses, got {type(value).__name__}")


def _sorted_statuses(value: tuple[SessionStatus, ...] | SessionStatus | None) -> Any:
    if value is None:
        return None
    statuses = (value,) if isinstance(value, SessionStatus) else value
    if not statuses:
        raise ValueError("must name at least one status")
    return tuple(sorted(set(statuses)))


Status = Annotated[SessionStatus, _one_of(SessionStatus)]
Kind = Annotated[PeerKind, _one_of(PeerKind)]
Name = Annotated[StrictStr, AfterValidator(normalize_name)]
PeerId = Annotated[StrictStr, AfterValidator(normalize_peer_id)]
JsonValue = Annotated[Any, AfterValidator(_json_value)]
"""Any plain JSON value: dict, list, str, int, finite float, bool or None."""
MetadataKey = Annotated[StrictStr, AfterValidator(_check_text)]
SessionMetadata = Annotated[dict[MetadataKey, Any], AfterValidator(_json_value)]
"""Free-form session metadata: a JSON object (non-empty str keys up to 256 characters, JSON
values)."""
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_datetime_input), AfterValidator(_to_utc)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0, le=MAX_SQL_INT)]
RowId = Annotated[StrictInt, Field(ge=1, le=MAX_SQL_INT)]


# --- keys ------------------------------------------------------------------------------------

_KEY_PREFIX = "agent"
# Characters escaped in a canonical key: the separator, the escape itself and whitespace, so that
# the string is one token on a command line and splits unambiguously on ":".
_ESCAPED = frozenset(":%")
_HEX = frozenset("0123456789abcdefABCDEF")
THREAD_SEPARATOR = "/"


def _escape(part: str) -> str:
    if not any(c in _ESCAPED or c.isspace() for c in part):
        return part
    out = []
    for char in part:
        if char in _ESCAPED or char.isspace():
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def _unescape(part: str) -> str:
    if "%" not in part:
        return part
    raw = bytearray()
    index = 0
    while index < len(part):
        char = part[index]
        if char == "%":
            code = part[index + 1 : index + 3]
            if len(code) != 2 or not all(c in _HEX for c in code):
                raise ValueError(f"bad escape {part[index : index + 3]!r}")
            raw.append(int(code, 16))
            index += 3
        else:
            raw.extend(char.encode("utf-8"))
            index += 1
    return raw.decode("utf-8")


def _escape_group(group: str) -> str:
    """A group id as the first half of a thread key's peer id: ``%`` and ``/`` escaped."""
    return group.replace("%", "%25").replace(THREAD_SEPARATOR, "%2F")


def _split_thread(peer_id: str) -> tuple[str, str]:
    """``(group id, thread id)`` of a thread key's peer id, which must be exactly what
    :meth:`SessionKey.for_thread` builds, so that every thread has one key and one parent."""
    escaped_group, sep, thread = peer_id.partition(THREAD_SEPARATOR)
    usage = "a thread key's peer_id must be '<group id>/<thread id>' (build it with for_thread)"
    if not sep or not escaped_group or not thread:
        raise ValueError(usage)
    group = escaped_group.replace("%2F", THREAD_SEPARATOR).replace("%25", "%")
    if _escape_group(group) != escaped_group:
        raise ValueError(f"{usage}; in the group id, '%' and '/' are written %25 and %2F")
    try:
        normal = normalize_peer_id(group) == group and normalize_peer_id(thread) == thread
    except ValueError as exc:
        raise ValueError(f"{usage}: {exc}") from None
    if not normal:
        raise ValueError(f"{usage}; the group and thread ids are each trimmed and NFC-normalised")
    return group, thread


class SessionKey(Model):
    """Which conversation a session belongs to: agent, channel, bot account, peer kind and id.

    ``agent_id``, ``channel`` and ``account_id`` are trimmed and lower-cased; ``peer_id`` is trimmed
    and NFC-normalised but keeps its case. ``str(key)`` is :meth:`canonical`.
    """

    agent_id: Name
    channel: Name
    account_id: Name
    peer_kind: Kind
    peer_id: PeerId

    THREAD_SEPARATOR: ClassVar[str] = THREAD_SEPARATOR

    @validates_directly
    def __init__(
        self,
        agent_id: str,
        channel: str,
        account_id: str,
        peer_kind: PeerKind | str,
        peer_id: str,
    ) -> None:
        super().__init__(
            agent_id=agent_id,
            channel=channel,
            account_id=account_id,
            peer_kind=peer_kind,
            peer_id=peer_id,
        )

    @field_validator("peer_id")
    @classmethod
    def _thread_has_parent(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("peer_kind") is PeerKind.THREAD:
            _split_thread(value)
        return value

    @model_validator(mode="after")
    def _fits_an_index(self) -> Self:
        size = sum(
            len(part.encode("utf-8"))
            for part in (self.agent_id, self.channel, self.account_id, self.peer_id)
        )
        if size > MAX_KEY_BYTES:
            raise ValueError(
                f"agent_id, channel, account_id and peer_id together are {size} bytes of UTF-8;"
                f" at most {MAX_KEY_BYTES}"
            )
        return self

    @classmethod
    def for_thread(
        cls, agent_id: str, channel: str, account_id: str, group_id: str, thread_id: str
    ) -> SessionKey:
        """The key of a thread inside a group; ``parent()`` gives the group's key back.

        The thread key's ``peer_id`` is ``<group id>/<thread id>`` (``%`` and ``/`` of the group id
        escaped), so group and thread ids together must fit in :data:`MAX_ID_LENGTH`.
        """
        group = normalize_peer_id_or_raise("group_id", group_id)
        thread = normalize_peer_id_or_raise("thread_id", thread_id)
        peer_id = f"{_escape_group(group)}{THREAD_SEPARATOR}{thread}"
        if len(peer_id) > MAX_ID_LENGTH:
            raise InvalidInputError.for_field(
                "thread_id",
                f"group id and thread id make a {len(peer_id)}-character thread peer_id; at most"
                f" {MAX_ID_LENGTH}",
            )
        return cls(agent_id, channel, account_id, PeerKind.THREAD, peer_id)

    def parent(self) -> SessionKey | None:
        """For a thread, the key of the group it belongs to; ``None`` for DMs and groups."""
        if self.peer_kind is not PeerKind.THREAD:
            return None
        group, _ = _split_thread(self.peer_id)
        return SessionKey(self.agent_id, self.channel, self.account_id, PeerKind.GROUP, group)

    def canonical(self) -> str:
        """``agent:<agent>:<channel>:<account>:<kind>:<peer>``; ``:``, ``%`` and spaces escaped."""
        parts = (self.agent_id, self.channel, self.account_id, self.peer_kind.value, self.peer_id)
        return ":".join((_KEY_PREFIX, *(_escape(part) for part in parts)))

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        """The exact inverse of :meth:`canonical`."""
        if not isinstance(text, str):
            raise InvalidInputError.for_field(
                "key", f"expected a string, got {type(text).__name__}"
            )
        parts = text.split(":")
        if len(parts) != 6 or parts[0] != _KEY_PREFIX:
            raise InvalidInputError.for_field(
                "key",
                f"{text[:300]!r} is not 'agent:<agent>:<channel>:<account>:<peer kind>:<peer id>'"
                " (escape ':' inside a part as %3A)",
            )
        try:
            fields = [_unescape(part) for part in parts[1:]]
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError.for_field("key", f"bad percent-escape: {exc}") from None
        return cls(*fields)

    def __str__(self) -> str:
        return self.canonical()


def normalize_peer_id_or_raise(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError.for_field(field, f"expected a string, got {type(value).__name__}")
    try:
        return normalize_peer_id(value)
    except ValueError as exc:
        raise InvalidInputError.for_field(field, str(exc)) from None


def normalize_name_or_raise(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInputError.for_field(field, f"expected a string, got {type(value).__name__}")
    try:
        return normalize_name(value)
    except ValueError as exc:
        raise InvalidInputError.for_field(field, str(exc)) from None


# --- sessions --------------------------------------------------------------------------------


class SessionSummary(Model):
    """The light view of a session used by lists."""

    id: RowId
    key: SessionKey
    status: Status
    message_count: NonNegativeInt
    token_usage: NonNegativeInt
    created_at: UtcDatetime
    updated_at: UtcDatetime
    run_owner: StrictStr | None = None
    """Who holds the live session's run (``agent.start_run``), if one does."""
    run_since: UtcDatetime | None = None
    """When that run started."""


class Session(Model):
    """A conversation's state. ``message_count`` counts the live (not compacted-away) history."""

    id: RowId
    key: SessionKey
    created_at: UtcDatetime
    updated_at: UtcDatetime
    message_count: NonNegativeInt = 0
    token_usage: NonNegativeInt = 0
    metadata: SessionMetadata = Field(default_factory=dict)
    status: Status = SessionStatus.ACTIVE
    compaction_count: NonNegativeInt = 0
    last_compacted_at: UtcDatetime | None = None
    last_compaction_summary: StrictStr | None = None
    run_owner: StrictStr | None = None
    """Who holds the live session's run (``agent.start_run``), if one does (its lease may have
    expired: ``current_run`` has the whole run)."""
    run_since: UtcDatetime | None = None
    """When that run started."""

    def summary(self) -> SessionSummary:
        return SessionSummary.model_construct(
            id=self.id,
            key=self.key,
            status=self.status,
            message_count=self.message_count,
            token_usage=self.token_usage,
            created_at=self.created_at,
            updated_at=self.updated_at,
            run_owner=self.run_owner,
            run_since=self.run_since,
        )


class SessionFilter(Model):
    """Which sessions to list. All bounds are exclusive; ``cursor`` continues a previous page."""

    agent_id: Name | None = None
    channel: Name | None = None
    account_id: Name | None = None
    peer_kind: Kind | None = None
    peer_id: PeerId | None = None
    status: Annotated[
        tuple[Status, ...] | Status | None,
        BeforeValidator(_status_set),
        AfterValidator(_sorted_statuses),
    ] = None
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    updated_after: UtcDatetime | None = None
    updated_before: UtcDatetime | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE_SIZE)] = 50
    cursor: Annotated[StrictStr, Field(min_length=1, max_length=MAX_CURSOR_LENGTH)] | None = None

    @property
    def statuses(self) -> tuple[SessionStatus, ...]:
        """The statuses to list; archived generations only when asked for."""
        if self.status is None:
            return (SessionStatus.ACTIVE, SessionStatus.IDLE, SessionStatus.COMPACTED)
        assert isinstance(self.status, tuple)
        return self.status


class SessionPatch(Model):
    """A partial update. ``metadata`` merges (a key given as None is removed) unless
    ``replace_metadata`` is set, in which case it becomes the whole metadata."""

    status: Status | None = None
    token_usage: NonNegativeInt | None = None
    add_tokens: NonNegativeInt | None = None
    metadata: SessionMetadata | None = None
    replace_metadata: StrictBool = False

    @field_validator("add_tokens")
    @classmethod
    def _one_token_change(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("token_usage") is not None:
            raise ValueError("give token_usage (set) or add_tokens (increment), not both")
        return value


# --- messages --------------------------------------------------------------------------------


class StoredMessage(Model):
    """One message of a conversation.

    ``id`` is None until the store assigns it. ``compacted`` is true for a message that compaction
    removed from the live history (only returned with ``include_compacted``).
    """

    id: RowId | None = None
    role: Annotated[Role, _one_of(Role)]
    content: JsonValue
    tool_calls: JsonValue | None = None
    created_at: UtcDatetime = Field(default_factory=utc_now)
    token_count: NonNegativeInt | None = None
    external_id: Annotated[StrictStr, AfterValidator(_check_text)] | None = None
    compacted: StrictBool = False

    @classmethod
    def user(cls, content: Any, **fields: Any) -> StoredMessage:
        return cls(role=Role.USER, content=content, **fields)

    @classmethod
    def assistant(cls, content: Any, **fields: Any) -> StoredMessage:
        return cls(role=Role.ASSISTANT, content=content, **fields)

    @classmethod
    def system(cls, content: Any, **fields: Any) -> StoredMessage:
        return cls(role=Role.SYSTEM, content=content, **fields)

    @classmethod
    def tool(cls, content: Any, **fields: Any) -> StoredMessage:
        return cls(role=Role.TOOL, content=content, **fields)


class HistoryQuery(Model):
    """Which part of a history to read.

    Without ``limit`` the whole (live) history. ``tail`` reads the newest ``limit`` messages and
    returns them oldest first; with ``tail``, ``offset`` skips that many of the newest.
    ``before``/``after`` are exclusive bounds on ``created_at``.
    """

    limit: Annotated[StrictInt, Field(ge=1, le=MAX_SQL_INT)] | None = None
    offset: NonNegativeInt = 0
    before: UtcDatetime | None = None
    after: UtcDatetime | None = None
    tail: StrictBool = False
    include_compacted: StrictBool = False


remember_validated_kinds(SessionKey, SessionFilter, SessionPatch, HistoryQuery)
# The models the store validates again on every call (see ``base.validated_twin``).
