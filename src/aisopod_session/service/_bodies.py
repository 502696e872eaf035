"""Request and response bodies of the HTTP API that are not library models."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
)

from aisopod_session._time import RFC3339
from aisopod_session.limits import MAX_BATCH_MESSAGES
from aisopod_session.models import Session, SessionSummary, StoredMessage
from aisopod_session.results import CommitResult, Page


def _rfc3339(value: Any) -> Any:
    """Timestamps travel as RFC 3339 with an offset; pydantic alone would also read "589" as
    seconds since 1970, which is far more likely a client bug than a date."""
    if isinstance(value, str) and not RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with an offset, like "
                         "2024-05-01T12:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A timestamp in a query string: RFC 3339 with an offset, checked by the library's one
pattern (:data:`aisopod_session._time.RFC3339`)."""


Item = TypeVar("Item")


class _PageBody(BaseModel, Generic[Item]):
    """A page of a listing (the store's ``Page``) as JSON."""

    items: list[Item]
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page."
    )

    @classmethod
    def of(cls, page: Page[Item]) -> Self:
        return cls.model_construct(items=list(page), next_cursor=page.next_cursor)  # type: ignore[return-value]  # pydantic types model_construct as the generic base


class SessionPageBody(_PageBody[SessionSummary]):
    pass


_STORE_SETS = ("id", "compacted")
"""StoredMessage fields a client never sends: the store assigns ``id``, compaction sets
``compacted``."""

NewMessage = create_model(
    "NewMessage",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A message to append: StoredMessage's fields a client may set, validated the same.",
    **{name: (field.annotation, field) for name, field in StoredMessage.model_fields.items()
       if name not in _STORE_SETS},  # type: ignore[call-overload]
)


def _message_timestamps(value: Any) -> Any:
    """Each message's ``created_at`` text is RFC 3339 (see :func:`_rfc3339`)."""
    if isinstance(value, list):
        for index, message in enumerate(value):
            if isinstance(message, dict):
                try:
                    _rfc3339(message.get("created_at"))
                except ValueError as exc:
                    raise ValueError(f"messages.{index}.created_at: {exc}") from None
    return value


class AppendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[NewMessage], Field(max_length=MAX_BATCH_MESSAGES)]

    @field_validator("messages", mode="before")
    @classmethod
    def _timestamps(cls, value: Any) -> Any:
        return _message_timestamps(value)


def as_new_messages(messages: list[Any]) -> list[StoredMessage]:
    """Request messages as StoredMessages. NewMessage validated every field the way
    StoredMessage does, and the store checks each message again: no third pass here.

    Every field is passed (the fields the client set stay the set ones): a field left out
    would have ``model_construct`` call its default factory, and pydantic inspects the
    factory's signature on every such call (``created_at``'s: most of this function's time)."""
    return [StoredMessage.model_construct(_fields_set=message.model_fields_set,
                                          **message.__dict__)
            for message in messages]


MergeBody = dict[str, dict[str, Any]]


class SharedMergeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="The other session's canonical key (same agent)")
    merge: MergeBody | None = None


class CommitBody(BaseModel):
    """Append messages and merge metadata in one transaction (see ``agent.commit``)."""

    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[NewMessage], Field(max_length=MAX_BATCH_MESSAGES)] = []
    merge: MergeBody | None = None
    create: bool = False
    expect_updated_at: Timestamp | None = None
    shared: list[SharedMergeBody] = []

    @field_validator("messages", mode="before")
    @classmethod
    def _timestamps(cls, value: Any) -> Any:
        return _message_timestamps(value)


class SharedSessionBody(BaseModel):
    key: str
    session: Session | None


class CommitResultBody(BaseModel):
    session: Session
    messages: list[StoredMessage]
    applied: bool
    shared: list[SharedSessionBody]

    @classmethod
    def of(cls, result: CommitResult) -> CommitResultBody:
        return cls(session=result.session, messages=result.messages, applied=result.applied,
                   shared=[SharedSessionBody(key=key.canonical(), session=session)
                           for key, session in result.shared.items()])


class SessionDetailPageBody(_PageBody[Session]):
    pass


class InfoBody(BaseModel):
    """Who the token is and what the server stores into (what a client needs up front)."""

    admin: bool
    agent_id: str | None = Field(description="The one agent an agent token may use")
    backend: str = Field(description="`sqlite` or `postgresql`")
    durability: str


class SchemaBody(BaseModel):
    version: int


class PurgedBody(BaseModel):
    deleted: int


class DeletedBody(BaseModel):
    deleted: bool


class Health(BaseModel):
    status: str


class ClearedBody(BaseModel):
    deleted: int
