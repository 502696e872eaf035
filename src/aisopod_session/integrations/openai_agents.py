"""A ``Session`` of the OpenAI Agents SDK stored in aisopod-session.

The one-line switch::

    session = SQLiteSession("user-123", "conversations.db")        # before
    session = AisopodSession("user-123", store, agent_id="support")  # after

``store`` is a :class:`~aisopod_session.SessionStore` or :class:`~aisopod_session.AsyncSessionStore`
(or one agent's handle of either). Every SDK item is one stored message whose ``content`` is the
item exactly as the SDK wrote it; ``get_items(limit=n)`` reads only the tail and never returns a
tool result without the call that produced it (nor a reasoning item without what follows it).

Key mapping (reversible): a string session id ``sid`` of agent ``agent_id`` is the key
``SessionKey(agent_id, "openai-agents", "default", "dm", sid)`` (a ``%``, white space or a character
Unicode normalisation would change is ``%XX``-escaped in the peer id); :func:`session_id_for_key`
gives ``sid`` back. A :class:`~aisopod_session.SessionKey` can be given instead (a gateway's own
key), and ``session_id`` is then its canonical string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

try:
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
    from agents.models.fake_id import FAKE_RESPONSES_ID
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    from aisopod_session.integrations._common import missing_framework

    raise missing_framework("openai-agents", "openai-agents") from exc

from aisopod_session.errors import InvalidInputError, SessionNotFoundError
from aisopod_session.integrations._common import (
    AnyStore,
    Pairing,
    StoreCalls,
    plain_id,
    plain_key,
    read_tail,
    tail_query,
)
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import Role, SessionKey, StoredMessage

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = [
    "CHANNEL",
    "DEFAULT_AGENT",
    "AisopodSession",
    "key_for_session_id",
    "session_id_for_key",
]

CHANNEL = "openai-agents"
"""The channel of the keys built from plain SDK session ids."""
DEFAULT_AGENT = "openai-agents"
"""The agent id used when none is given."""

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM,
          "developer": Role.SYSTEM}


def key_for_session_id(session_id: str, agent_id: str = DEFAULT_AGENT) -> SessionKey:
    """The key an SDK session id is stored under (see the module docstring)."""
    return plain_key(agent_id, CHANNEL, session_id)


def session_id_for_key(key: SessionKey) -> str:
    """The inverse of :func:`key_for_session_id`; another key is named by its canonical string."""
    return plain_id(key, CHANNEL)


def _call_ids(item: Any) -> tuple[str, ...]:
    if not isinstance(item, dict):
        return ()
    kind = item.get("type")
    if not isinstance(kind, str) or kind.endswith("_output"):
        return ()
    if kind == "mcp_approval_request" and isinstance(item.get("id"), str):
        return (item["id"],)
    call_id = item.get("call_id")
    return (call_id,) if isinstance(call_id, str) and "role" not in item else ()


def _answers(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "mcp_approval_response":
        answered = item.get("approval_request_id")
    elif isinstance(kind, str) and kind.endswith("_output"):
        answered = item.get("call_id")
    else:
        return None
    return answered if isinstance(answered, str) else None


def _leads(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "reasoning"


PAIRING = Pairing(calls=_call_ids, answers=_answers, leads=_leads)
"""Calls (``function_call``, ``computer_call``, ``shell_call``, ... by ``call_id``; MCP approval
requests by ``id``) and their results (``*_output`` items by ``call_id``, approval responses by
``approval_request_id``); a reasoning item leads the item after it."""


def _role(item: dict[str, Any]) -> Role:
    role = item.get("role")
    if isinstance(role, str) and role in _ROLES:
        return _ROLES[role]
    if _answers(item) is not None or str(item.get("type", "")).endswith("_output"):
        return Role.TOOL
    return Role.ASSISTANT


def _as_dict(item: Any, index: int) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        dumped = dump(exclude_unset=True, mode="json")
        if isinstance(dumped, dict):
            return dumped
    raise InvalidInputError.for_field(
        f"items[{index}]", f"expected an input item (a dict), got {type(item).__name__}"
    )


class AisopodSession:
    """An OpenAI Agents SDK ``Session`` in aisopod-session (see the module docstring).

    * ``session_settings``: the SDK's ``SessionSettings`` (or a dict); its ``limit`` is the
      default of :meth:`get_items`, as in the SDK's own sessions.
    * ``dedupe_item_ids``: store an item that carries a provider item id (``id``, other than the
      SDK's placeholder) with the external id ``<type>:<id>``, so that adding it again (a retried
      write) does not store it twice. Off by default: some providers and test models reuse ids,
      and the SDK itself keeps such repeats.
    * ``on_clear``: ``"delete"`` (default) deletes the session as the SDK's sessions do;
      ``"archive"`` archives it instead (history kept for operators, a fresh session starts).
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str | SessionKey,
        store: AnyStore,
        *,
        agent_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        dedupe_item_ids: bool = False,
        on_clear: Literal["delete", "archive"] = "delete",
    ) -> None:
        if isinstance(session_id, SessionKey):
            self._calls = StoreCalls(store, agent_id or session_id.agent_id)
            self.key = session_id
            self.session_id = session_id.canonical()
        else:
            self._calls = StoreCalls(store, agent_id or (
                None if hasattr(store, "agent_id") else DEFAULT_AGENT
            ))
            self.key = key_for_session_id(session_id, self._calls.agent_id)
            self.session_id = session_id
        self.session_settings = (
            SessionSettings() if session_settings is None
            else coerce_session_settings(session_settings)
        )
        if on_clear not in ("delete", "archive"):
            raise InvalidInputError.for_field("on_clear", "expected 'delete' or 'archive'")
        self._dedupe = dedupe_item_ids
        self._on_clear = on_clear

    def __repr__(self) -> str:
        return f"AisopodSession(session_id={self.session_id!r}, key={self.key})"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; with a limit (or ``session_settings.limit``) the newest
        ``limit`` items, read from the tail, widened so that no tool result comes without its
        call. ``0`` gives nothing and a negative limit everything, as in the SDK's SQLiteSession.
        """
        effective = resolve_session_limit(limit, self.session_settings)
        try:
            if effective is None or effective < 0:
                messages = await self._calls.call("get_history", self.key, None)
                return [m.content for m in messages]
            if effective == 0:
                return []

            async def fetch(window: int) -> list[Any]:
                messages = await self._calls.call("get_history", self.key, tail_query(window))
                return [m.content for m in messages]

            return await read_tail(fetch, effective, PAIRING)
        except SessionNotFoundError:
            return []

    def _message(self, item: dict[str, Any]) -> StoredMessage:
        external_id = None
        item_id = item.get("id")
        if (self._dedupe and isinstance(item_id, str) and item_id
                and item_id != FAKE_RESPONSES_ID):
            candidate = f"{item.get('type') or 'message'}:{item_id}"
            if len(candidate) <= MAX_ID_LENGTH and candidate.isprintable():
                external_id = candidate
        return StoredMessage(role=_role(item), content=item, external_id=external_id)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items, all or nothing, creating the session on first use."""
        messages = [self._message(_as_dict(item, i)) for i, item in enumerate(items)]
        if not messages:
            return
        for _ in range(3):
            try:
                await self._calls.call("append_messages", self.key, messages)
                return
            except SessionNotFoundError:
                await self._calls.call("get_or_create", self.key)
        await self._calls.call("append_messages", self.key, messages)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None when there is none)."""
        try:
            message = await self._calls.call("pop_message", self.key)
        except SessionNotFoundError:
            return None
        return None if message is None else message.content

    async def clear_session(self) -> None:
        """Remove every item: the session is deleted (or archived, with ``on_clear="archive"``)."""
        if self._on_clear == "archive":
            try:
                await self._calls.call("get", self.key)
            except SessionNotFoundError:
                return
            await self._calls.call("reset", self.key)
        else:
            await self._calls.call("delete", self.key)
