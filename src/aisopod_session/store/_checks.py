"""Checks of what callers pass to the store, run before any connection is touched.

Models validate when built, but ``model_construct`` and ``model_copy(update=...)`` skip it, and an
unchecked value reaching SQL fails as a driver error instead of InvalidInputError: so every model
a caller passes is checked once more here (cheaply: see :func:`model`). The bounds are those of
:mod:`aisopod_session.limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter, ValidationError

from aisopod_session import _json, _time
from aisopod_session._time import to_us
from aisopod_session.base import invalid_input_from, validated_twin
from aisopod_session.compaction import (
    CompactionStrategy,
    SlidingWindow,
    Summarize,
    TruncateToolResults,
)
from aisopod_session.errors import AccessDeniedError, InvalidInputError
from aisopod_session.lifecycle import LifecyclePolicy, ResetPolicy, RetentionPolicy
from aisopod_session.limits import (
    MAX_AUDIT_RECORDS,
    MAX_BATCH_MESSAGES,
    MAX_ID_LENGTH,
    MAX_MESSAGE_CHARS,
    MAX_METADATA_CHARS,
    MAX_SQL_INT,
    MAX_TOKEN_USAGE,
    MAX_USAGE_DAYS,
)
from aisopod_session.models import (
    HistoryQuery,
    Role,
    SessionFilter,
    SessionKey,
    SessionPatch,
    StoredMessage,
    normalize_name_or_raise,
    normalize_peer_id_or_raise,
)
from aisopod_session.results import MetadataMerge

T = TypeVar("T")
M = TypeVar("M", SessionKey, SessionFilter, SessionPatch, HistoryQuery)
P = TypeVar("P", LifecyclePolicy, ResetPolicy, RetentionPolicy)


def expect(value: Any, kind: type[T], field: str) -> T:
    if isinstance(value, kind):
        return value
    raise InvalidInputError.for_field(
        field, f"expected {kind.__name__}, got {type(value).__name__}"
    )


def model(value: Any, kind: type[M], field: str) -> M:
    """``value`` if it is a ``kind``, validated once more.

    A gateway passes the same few keys and queries again and again, and validating costs more
    than the database work, so an instance whose field values are those of one that passed
    validation is taken as it is (``base.validated_twin``); any other is validated now, which
    remembers its values for the next call.
    """
    checked = expect(value, kind, field)
    fields = tuple(checked.__dict__.items())
    try:
        twin = validated_twin(kind, fields)
    except TypeError:  # an unhashable field (metadata, or a model built without validation)
        twin = None
    return cast(M, twin) if twin is not None else kind.model_validate(dict(checked))


def aware(value: Any, field: str) -> datetime:
    checked = expect(value, datetime, field)
    if checked.utcoffset() is None:
        raise InvalidInputError.for_field(field, "must be timezone-aware")
    return checked


def flag(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise InvalidInputError.for_field(field, f"expected a bool, got {type(value).__name__}")
    return value


# --- keys, filters, queries ------------------------------------------------------------------


def agent_id(value: Any) -> str:
    return normalize_name_or_raise("agent_id", value)


def agent_or_none(value: Any) -> str | None:
    return None if value is None else agent_id(value)


def owned_key(key: Any, agent: str) -> SessionKey:
    """The key, if it belongs to the handle's agent; AccessDeniedError otherwise."""
    checked = model(key, SessionKey, "key")
    if checked.agent_id != agent:
        raise AccessDeniedError(
            f"session {checked} belongs to agent {checked.agent_id!r}; this handle is for agent "
            f"{agent!r}"
        )
    return checked


def agent_filter(filter: Any, agent: str) -> SessionFilter:
    if filter is None:
        return SessionFilter(agent_id=agent)
    checked = model(filter, SessionFilter, "filter")
    if checked.agent_id is None:
        return checked.model_copy(update={"agent_id": agent})
    if checked.agent_id != agent:
        raise AccessDeniedError(
            f"this handle is for agent {agent!r} and cannot list agent {checked.agent_id!r}"
        )
    return checked


def admin_filter(filter: Any) -> SessionFilter:
    return SessionFilter() if filter is None else model(filter, SessionFilter, "filter")


def query(value: Any) -> HistoryQuery:
    """A history query; its ``limit`` and ``offset`` are bounded by the model itself."""
    return HistoryQuery() if value is None else model(value, HistoryQuery, "query")


def session_id(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SQL_INT:
        raise InvalidInputError.for_field("session_id", f"expected a positive int, got {value!r}")
    return value


_strategy_adapter: TypeAdapter[SlidingWindow | Summarize | TruncateToolResults] = TypeAdapter(
    CompactionStrategy
)


def strategy(value: Any) -> SlidingWindow | Summarize | TruncateToolResults:
    if isinstance(value, SlidingWindow | Summarize | TruncateToolResults):
        # Validated again: ``model_construct`` or ``model_copy(update=...)`` skip validation, and
        # an unchecked ``SlidingWindow(max_messages=0)`` would empty the live history.
        value = dict(value)
    if isinstance(value, dict):
        try:
            return _strategy_adapter.validate_python(value)
        except ValidationError as exc:
            raise invalid_input_from(exc, "compaction strategy") from None
    raise InvalidInputError.for_field(
        "strategy",
        f"expected SlidingWindow, Summarize or TruncateToolResults, got {type(value).__name__}",
    )


# --- messages and metadata -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A caller's message, checked and encoded for its INSERT."""

    message: StoredMessage
    content: str
    tool_calls: str | None
    created_at: int


def json_text(value: Any, field: str) -> str:
    """``value`` as stored JSON text. Checked again here: a message built with
    ``model_construct`` or ``model_copy(update=...)`` was never validated."""
    try:
        _json.check_json(value)
    except _json.JsonError as exc:
        raise InvalidInputError.for_field(field, str(exc)) from None
    return _json.dumps(value)


def _check_unvalidated_fields(message: StoredMessage, field: str) -> None:
    """The cheap checks a validated StoredMessage always passes (see :func:`json_text`)."""
    problems = []
    if not isinstance(message.role, Role):
        problems.append(("role", f"expected a Role, got {message.role!r}"))
    created_at = message.created_at
    if not isinstance(created_at, datetime) or created_at.utcoffset() is None:
        problems.append(("created_at", "expected a timezone-aware datetime"))
    token_count = message.token_count
    if token_count is not None and (type(token_count) is not int
                                    or not 0 <= token_count <= MAX_SQL_INT):
        problems.append(("token_count", f"expected a non-negative int, got {token_count!r}"))
    external_id = message.external_id
    if external_id is not None and (type(external_id) is not str or not external_id.strip()):
        problems.append(("external_id", f"expected a non-empty string, got {external_id!r}"))
    if type(message.compacted) is not bool:
        problems.append(("compacted", f"expected a bool, got {message.compacted!r}"))
    if problems:
        name, problem = problems[0]
        raise InvalidInputError.for_field(f"{field}.{name}", problem)


def new_messages(messages: Any) -> list[NewMessage]:
    """A caller's batch of new messages, checked against every limit and encoded."""
    if isinstance(messages, StoredMessage) or not isinstance(messages, list | tuple):
        raise InvalidInputError.for_field(
            "messages", f"expected a list of StoredMessage, got {type(messages).__name__}"
        )
    if len(messages) > MAX_BATCH_MESSAGES:
        raise InvalidInputError.for_field(
            "messages", f"at most {MAX_BATCH_MESSAGES} messages per call, got {len(messages)}"
        )
    prepared = []
    tokens = 0
    for index, given in enumerate(messages):
        field = f"messages[{index}]"
        message = expect(given, StoredMessage, field)
        if message.id is not None:
            raise InvalidInputError.for_field(f"{field}.id", "must be None for a new message")
        _check_unvalidated_fields(message, field)
        content = json_text(message.content, f"{field}.content")
        tool_calls = (
            None if message.tool_calls is None
            else json_text(message.tool_calls, f"{field}.tool_calls")
        )
        size = len(content) + (len(tool_calls) if tool_calls else 0)
        if size > MAX_MESSAGE_CHARS:
            raise InvalidInputError.for_field(
                f"{field}.content",
                f"content and tool_calls are {size} characters of JSON; at most "
                f"{MAX_MESSAGE_CHARS} are stored per message",
            )
        tokens += message.token_count or 0
        if tokens > MAX_TOKEN_USAGE:
            raise InvalidInputError.for_field(
                f"{field}.token_count", f"the batch's token counts add up to more than "
                f"{MAX_TOKEN_USAGE}"
            )
        prepared.append(NewMessage(message, content, tool_calls, to_us(message.created_at)))
    return prepared


def metadata_text(metadata: dict[str, Any]) -> str:
    text = _json.dumps(metadata)
    if len(text) > MAX_METADATA_CHARS:
        raise InvalidInputError.for_field(
            "metadata", f"is {len(text)} characters of JSON; at most {MAX_METADATA_CHARS}"
        )
    return text


def merge(value: Any, field: str) -> MetadataMerge:
    """A metadata merge (see :data:`~aisopod_session.results.MetadataMerge`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError.for_field(
            field, f"expected a dict of objects to merge, got {type(value).__name__}"
        )
    checked: MetadataMerge = {}
    for name, entries in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_ID_LENGTH:
            raise InvalidInputError.for_field(
                field, f"metadata names are non-empty strings of at most {MAX_ID_LENGTH} "
                f"characters: {name!r}"
            )
        if not isinstance(entries, dict):
            raise InvalidInputError.for_field(
                f"{field}.{name}", f"expected a dict of entries, got {type(entries).__name__}"
            )
        try:
            _json.check_json(entries, f"{field}.{name}")
        except _json.JsonError as exc:
            raise InvalidInputError.for_field(f"{field}.{name}", str(exc)) from None
        if entries:
            checked[name] = dict(entries)
    return checked


# --- lifecycle and privacy -------------------------------------------------------------------

_EARLIEST = datetime(1, 1, 3, tzinfo=UTC)
_LATEST = datetime(9999, 12, 29, tzinfo=UTC)


def now(value: Any) -> datetime:
    """The operation's clock: ``value`` if given (timezone-aware), else the current time."""
    if value is None:
        return _time.utc_now()
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError.for_field("now", "must be a timezone-aware datetime")
    if not _EARLIEST <= value <= _LATEST:
        # a day either side is needed for daily boundaries in any time zone
        raise InvalidInputError.for_field("now", "must be between 0001-01-03 and 9999-12-29")
    return value


def policy(value: Any, kind: type[P], field: str) -> P:
    """The policy, validated once more: ``model_construct`` and ``model_copy(update=...)``
    skip validation, and an unchecked negative duration would sweep or purge everything."""
    if not isinstance(value, kind):
        raise InvalidInputError.for_field(field, f"expected a {kind.__name__}, got "
                                          f"{type(value).__name__}")
    return kind.model_validate(dict(value))


def peer(channel: Any, peer_id: Any) -> tuple[str, str]:
    """A person is a channel and their id there (``*`` and a linked name for PER_PEER keys)."""
    return (normalize_name_or_raise("channel", channel),
            normalize_peer_id_or_raise("peer_id", peer_id))


def actor(value: Any) -> str:
    """Who asked: a non-empty name of at most 256 characters, without control characters."""
    return normalize_peer_id_or_raise("actor", value)


def audit_limit(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_AUDIT_RECORDS:
        raise InvalidInputError.for_field("limit", f"an int from 1 to {MAX_AUDIT_RECORDS}")
    return value


def usage_days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_USAGE_DAYS:
        raise InvalidInputError.for_field("days", f"must be a whole number from 1 to "
                                                  f"{MAX_USAGE_DAYS}")
    return value
