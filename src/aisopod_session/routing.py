"""Which session an incoming message belongs to.

A gateway knows the agent and where a message came from (a :class:`ChannelContext`); the
:class:`DmScope` decides how widely direct messages share a session. Groups and threads are always
isolated by channel, account and group id: the scope only ever widens *direct* conversations.

Keys made here use ``*`` for a part that the scope deliberately leaves out (``MAIN`` puts every
direct message of an agent under channel ``*``, account ``*``, peer ``*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, StrictStr, field_validator, model_validator

from aisopod_session.base import Model, validates_directly
from aisopod_session.errors import InvalidInputError
from aisopod_session.models import (
    Kind,
    Name,
    PeerId,
    PeerKind,
    SessionKey,
    normalize_name_or_raise,
    normalize_peer_id,
    normalize_peer_id_or_raise,
)

__all__ = ["ANY", "ChannelContext", "DmScope", "IdentityLinks", "resolve_session_key"]

ANY = "*"
"""The value of a key part that a DM scope leaves out on purpose."""

IdentityLinks = Mapping[str, Iterable[str]]
"""Person name → the ``"<channel>:<peer id>"`` identities that are that person."""


class DmScope(StrEnum):
    """How direct messages to one agent are grouped into sessions."""

    MAIN = "main"
    """Every DM to the agent shares one session (a personal assistant with one owner)."""
    PER_PEER = "per-peer"
    """One session per person across channels and accounts (see identity links)."""
    PER_CHANNEL_PEER = "per-channel-peer"
    """One session per person per channel, shared by the channel's bot accounts."""
    PER_ACCOUNT_CHANNEL_PEER = "per-account-channel-peer"
    """One session per person, channel and bot account: full isolation, the default."""


class ChannelContext(Model):
    """Where a message came from. ``thread_id`` marks a thread inside a group.

    A thread inside a direct conversation belongs to that conversation (``thread_id`` is ignored
    for ``peer_kind='dm'``). ``peer_kind='thread'`` is accepted when ``thread_id`` is given, and
    then means the same as ``'group'`` with that thread.
    """

    channel: Name
    account_id: Name
    peer_kind: Kind
    peer_id: PeerId
    thread_id: Annotated[StrictStr, AfterValidator(normalize_peer_id)] | None = None

    @validates_directly
    def __init__(
        self,
        channel: str,
        account_id: str,
        peer_kind: PeerKind | str,
        peer_id: str,
        thread_id: str | None = None,
    ) -> None:
        super().__init__(
            channel=channel,
            account_id=account_id,
            peer_kind=peer_kind,
            peer_id=peer_id,
            thread_id=thread_id,
        )

    @field_validator("channel", "account_id")
    @classmethod
    def _not_any(cls, value: str) -> str:
        # ``*`` marks a part a DM scope leaves out; a real channel or account named ``*`` would
        # share sessions with every DM that the scope merges.
        if value == ANY:
            raise ValueError(f"{ANY!r} is reserved for key parts a DM scope leaves out")
        return value

    @model_validator(mode="after")
    def _thread_needs_id(self) -> ChannelContext:
        if self.peer_kind is PeerKind.THREAD and self.thread_id is None:
            raise ValueError("peer_kind 'thread' needs thread_id (peer_id is the group's id)")
        return self


def _link_index(identity_links: IdentityLinks | None) -> dict[tuple[str, str], str]:
    """``(channel, peer_id) → person`` from ``{"alice": ["discord:123", ...]}``, validated."""
    index: dict[tuple[str, str], str] = {}
    if identity_links is None:
        return index
    if not isinstance(identity_links, Mapping):
        raise InvalidInputError.for_field("identity_links", "must be a mapping of person to ids")
    for person, identities in identity_links.items():
        name = normalize_peer_id_or_raise("identity_links", person)
        if name == ANY:
            raise InvalidInputError.for_field("identity_links", f"{ANY!r} is not a person's name")
        if isinstance(identities, str) or not isinstance(identities, Iterable):
            raise InvalidInputError.for_field(
                f"identity_links.{name}", "must be a list of '<channel>:<peer id>' strings"
            )
        for identity in identities:
            if not isinstance(identity, str) or ":" not in identity:
                raise InvalidInputError.for_field(
                    f"identity_links.{name}", f"{identity!r} is not '<channel>:<peer id>'"
                )
            channel, _, peer_id = identity.partition(":")
            at = (
                normalize_name_or_raise(f"identity_links.{name}", channel),
                normalize_peer_id_or_raise(f"identity_links.{name}", peer_id),
            )
            if at[0] == ANY:
                raise InvalidInputError.for_field(
                    f"identity_links.{name}", f"{identity!r}: {ANY!r} is not a channel"
                )
            if index.setdefault(at, name) != name:
                raise InvalidInputError.for_field(
                    "identity_links", f"{identity!r} is linked to both {index[at]!r} and {name!r}"
                )
    return index


def resolve_session_key(
    agent_id: str,
    ctx: ChannelContext,
    dm_scope: DmScope = DmScope.PER_ACCOUNT_CHANNEL_PEER,
    identity_links: IdentityLinks | None = None,
) -> SessionKey:
    """The key of the session that a message from ``ctx`` to ``agent_id`` belongs to."""
    if not isinstance(ctx, ChannelContext):
        raise InvalidInputError.for_field("ctx", "must be a ChannelContext")
    try:
        scope = DmScope(dm_scope)
    except ValueError:
        raise InvalidInputError.for_field(
            "dm_scope", f"{dm_scope!r} is not one of {[s.value for s in DmScope]}"
        ) from None
    links = _link_index(identity_links)

    if ctx.peer_kind is not PeerKind.DM:
        if ctx.thread_id is not None:
            return SessionKey.for_thread(
                agent_id, ctx.channel, ctx.account_id, ctx.peer_id, ctx.thread_id
            )
        return SessionKey(agent_id, ctx.channel, ctx.account_id, PeerKind.GROUP, ctx.peer_id)

    if scope is DmScope.MAIN:
        return SessionKey(agent_id, ANY, ANY, PeerKind.DM, ANY)
    if scope is DmScope.PER_PEER:
        person = links.get((ctx.channel, ctx.peer_id))
        if person is not None:
            return SessionKey(agent_id, ANY, ANY, PeerKind.DM, person)
        return SessionKey(agent_id, ctx.channel, ANY, PeerKind.DM, ctx.peer_id)
    if scope is DmScope.PER_CHANNEL_PEER:
        return SessionKey(agent_id, ctx.channel, ANY, PeerKind.DM, ctx.peer_id)
    return SessionKey(agent_id, ctx.channel, ctx.account_id, PeerKind.DM, ctx.peer_id)
