"""A LangChain ``BaseChatMessageHistory`` stored in aisopod-session.

LangChain deprecated ``BaseChatMessageHistory`` in langchain-core 1.6.4 (removal planned for
2.0): its agents now keep conversations in LangGraph checkpointers, which
:mod:`aisopod_session.integrations.langgraph` provides. This adapter stays for code that still
uses ``RunnableWithMessageHistory`` and the like.

The one-line switch (for example in ``RunnableWithMessageHistory``'s ``get_session_history``)::

    lambda session_id: InMemoryChatMessageHistory()                                 # before
    lambda session_id: AisopodChatMessageHistory(session_id, store)                 # after

``store`` is a :class:`~aisopod_session.SessionStore` or :class:`~aisopod_session.AsyncSessionStore`
(or one agent's handle of either), shared by the histories of a process; the sync and async
methods work with both. A URL or path instead (``AisopodChatMessageHistory(sid,
"sqlite:///chat.db")``, or :meth:`AisopodChatMessageHistory.from_url`) opens a store owned by the
history and closed by its :meth:`~AisopodChatMessageHistory.close` or ``with`` block. Each
message is one stored message whose ``content`` is LangChain's own ``message_to_dict`` of it, so
every type, tool call, ``additional_kwargs``, ``response_metadata``, ``usage_metadata``, name and
id reads back equal (``messages_from_dict``). ``max_messages`` bounds what ``messages`` reads to
the newest ones, read from the tail, never a tool message without the AI message that called the
tool.

``messages`` is what LangChain's base class allows it to be, a read of the stored history: the
list it returns is read-only (appending to it raises ``TypeError`` instead of storing nothing);
``add_messages`` / ``clear`` change the history.

Key mapping (reversible): a string session id ``sid`` of agent ``agent_id`` is the key
``SessionKey(agent_id, "langchain", "default", "dm", sid)`` (``%``, white space and characters
Unicode normalisation would change ``%XX``-escaped in the peer id); :func:`session_id_for_key`
gives ``sid`` back. A :class:`~aisopod_session.SessionKey` can be given instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, NoReturn, SupportsIndex

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    from aisopod_session.integrations._common import missing_framework

    raise missing_framework("langchain-core", "langchain") from exc

from aisopod_session.errors import InvalidInputError, SessionNotFoundError, StoreClosedError
from aisopod_session.integrations._common import (
    LANGCHAIN_CHAT_ROLES,
    LANGCHAIN_ROLES,
    AnyStore,
    Pairing,
    StoreCalls,
    StoreLocation,
    open_owned_store,
    plain_id,
    plain_key,
    read_tail,
    read_tail_sync,
    tail_query,
)
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import Role, SessionKey, StoredMessage
from aisopod_session.store import Durability, SessionStore

__all__ = [
    "CHANNEL",
    "DEFAULT_AGENT",
    "AisopodChatMessageHistory",
    "ReadOnlyMessages",
    "key_for_session_id",
    "session_id_for_key",
]

CHANNEL = "langchain"
"""The channel of the keys built from plain LangChain session ids."""
DEFAULT_AGENT = "langchain"
"""The agent id used when none is given."""

_ROLES = LANGCHAIN_ROLES
_CHAT_ROLES = LANGCHAIN_CHAT_ROLES


def key_for_session_id(session_id: str, agent_id: str = DEFAULT_AGENT) -> SessionKey:
    """The key a LangChain session id is stored under (see the module docstring)."""
    return plain_key(agent_id, CHANNEL, session_id)


def session_id_for_key(key: SessionKey) -> str:
    """The inverse of :func:`key_for_session_id`; another key is named by its canonical string."""
    return plain_id(key, CHANNEL)


def _data(item: Any) -> dict[str, Any]:
    if isinstance(item, dict) and isinstance(item.get("data"), dict):
        return item["data"]  # type: ignore[no-any-return]
    return {}


def _call_ids(item: Any) -> tuple[str, ...]:
    data = _data(item)
    ids = []
    for field in ("tool_calls", "invalid_tool_calls"):
        for call in data.get(field) or ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                ids.append(call["id"])
    return tuple(ids)


def _answers(item: Any) -> str | None:
    if not isinstance(item, dict) or item.get("type") not in ("tool", "ToolMessageChunk"):
        return None
    answered = _data(item).get("tool_call_id")
    return answered if isinstance(answered, str) else None


PAIRING = Pairing(calls=_call_ids, answers=_answers)
"""AI messages make tool calls (their ``tool_calls`` ids); tool messages answer them
(``tool_call_id``)."""


def message_role(stored: dict[str, Any]) -> Role:
    """The store's role of a message as ``message_to_dict`` wrote it."""
    kind = stored.get("type")
    if kind in ("chat", "ChatMessageChunk"):
        return _CHAT_ROLES.get(str(_data(stored).get("role", "")).lower(), Role.USER)
    return _ROLES.get(str(kind), Role.ASSISTANT)


class ReadOnlyMessages(list[BaseMessage]):
    """The list ``messages`` returns: a read of the stored history, so changing it would change
    nothing stored; every change raises ``TypeError`` instead of being lost silently."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "this list is a read of the stored history and cannot change it: use "
            "add_messages(...) to append and clear() to empty the history")

    append = extend = insert = remove = clear = sort = reverse = _refuse

    def pop(self, index: SupportsIndex = -1) -> NoReturn:
        self._refuse()

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        self._refuse()

    def __delitem__(self, index: Any) -> NoReturn:
        self._refuse()

    def __iadd__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()

    def __imul__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()


class AisopodChatMessageHistory(BaseChatMessageHistory):
    """LangChain chat history in aisopod-session (see the module docstring).

    * ``max_messages``: ``messages`` / ``aget_messages`` return at most about this many of the
      newest messages (more only to keep a tool message with its AI message), reading only the
      tail of the stored history. ``get_messages(limit)`` does the same for one call.
    * ``dedupe_message_ids``: a message with an ``id`` is stored with the external id
      ``lc:<id>``, so adding it again (a retried write) stores it once. Off by default, as
      LangChain's own histories keep repeats.
    * ``on_clear``: ``"delete"`` (default) deletes the session; ``"archive"`` archives it
      (history kept for operators) and starts a fresh one.
    """

    def __init__(
        self,
        session_id: str | SessionKey,
        store: AnyStore | StoreLocation | None = None,
        *,
        agent_id: str | None = None,
        max_messages: int | None = None,
        dedupe_message_ids: bool = False,
        on_clear: Literal["delete", "archive"] = "delete",
    ) -> None:
        if max_messages is not None and (type(max_messages) is not int or max_messages < 1):
            raise InvalidInputError.for_field("max_messages", "expected a positive int or None")
        if on_clear not in ("delete", "archive"):
            raise InvalidInputError.for_field("on_clear", "expected 'delete' or 'archive'")
        owned: SessionStore | None = None
        if store is None or not isinstance(store, AnyStore):
            owned = open_owned_store(":memory:" if store is None else store)
            store = owned
        try:
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
        except BaseException:
            if owned is not None:
                owned.close()
            raise
        self._owned = owned
        self._closed = False
        self.max_messages = max_messages
        self._dedupe = dedupe_message_ids
        self._on_clear = on_clear

    @classmethod
    def from_url(
        cls,
        url: StoreLocation,
        session_id: str | SessionKey,
        *,
        agent_id: str | None = None,
        max_messages: int | None = None,
        dedupe_message_ids: bool = False,
        on_clear: Literal["delete", "archive"] = "delete",
        durability: Durability = "full",
        pool_size: int | None = None,
        schema: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> AisopodChatMessageHistory:
        """A history on a store of its own at ``url`` (options as in
        :meth:`aisopod_session.SessionStore.open`), closed by :meth:`close`."""
        options: dict[str, Any] = {"durability": durability, "pool_size": pool_size,
                                   "schema": schema, "token": token, "timeout": timeout}
        store = open_owned_store(url, **{k: v for k, v in options.items() if v is not None})
        try:
            history = cls(session_id, store, agent_id=agent_id, max_messages=max_messages,
                          dedupe_message_ids=dedupe_message_ids, on_clear=on_clear)
        except BaseException:
            store.close()
            raise
        history._owned = store
        return history

    @property
    def owns_store(self) -> bool:
        """Whether the history opened its store (and closes it)."""
        return self._owned is not None

    def close(self) -> None:
        """Close the history: its own store is closed, a shared one stays open."""
        self._closed = True
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> AisopodChatMessageHistory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the history {self.session_id!r} is closed")

    def __repr__(self) -> str:
        return f"AisopodChatMessageHistory(session_id={self.session_id!r}, key={self.key})"

    # --- reading ---

    def get_messages(self, limit: int | None = None) -> list[BaseMessage]:
        """The history, oldest first; with ``limit``, the newest ``limit`` (widened so that no
        tool message comes without the AI message that called it), read from the tail."""
        self._check_open()
        try:
            if limit is None:
                stored = self._calls.call_sync("get_history", self.key, None)
                return messages_from_dict([m.content for m in stored])
            self._check_limit(limit)
            items = read_tail_sync(
                lambda window: [m.content for m in
                                self._calls.call_sync("get_history", self.key,
                                                      tail_query(window))],
                limit, PAIRING,
            )
            return messages_from_dict(items)
        except SessionNotFoundError:
            return []

    async def aget_recent(self, limit: int | None = None) -> list[BaseMessage]:
        """:meth:`get_messages` for asyncio code."""
        self._check_open()
        try:
            if limit is None:
                stored = await self._calls.call("get_history", self.key, None)
                return messages_from_dict([m.content for m in stored])
            self._check_limit(limit)

            async def fetch(window: int) -> list[Any]:
                stored = await self._calls.call("get_history", self.key, tail_query(window))
                return [m.content for m in stored]

            return messages_from_dict(await read_tail(fetch, limit, PAIRING))
        except SessionNotFoundError:
            return []

    @staticmethod
    def _check_limit(limit: int) -> None:
        if type(limit) is not int or limit < 1:
            raise InvalidInputError.for_field("limit", f"expected a positive int, got {limit!r}")

    @property
    def messages(self) -> list[BaseMessage]:
        """The history (the newest ``max_messages`` of it when set), oldest first, read from the
        store each time; the list is read-only (see :class:`ReadOnlyMessages`)."""
        return ReadOnlyMessages(self.get_messages(self.max_messages))

    @messages.setter
    def messages(self, value: list[BaseMessage]) -> None:
        raise AttributeError("use add_messages / clear to change a stored history")

    async def aget_messages(self) -> list[BaseMessage]:
        return await self.aget_recent(self.max_messages)

    # --- writing ---

    def _stored(self, messages: Sequence[BaseMessage]) -> list[StoredMessage]:
        self._check_open()
        stored = []
        for index, message in enumerate(messages):
            if not isinstance(message, BaseMessage):
                raise InvalidInputError.for_field(
                    f"messages[{index}]", f"expected a BaseMessage, got {type(message).__name__}"
                )
            content = message_to_dict(message)
            external_id = None
            if self._dedupe and isinstance(message.id, str) and message.id:
                candidate = f"lc:{message.id}"
                if len(candidate) <= MAX_ID_LENGTH and candidate.isprintable():
                    external_id = candidate
            stored.append(StoredMessage(role=message_role(content), content=content,
                                        external_id=external_id))
        return stored

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages, all or nothing, creating the session on first use."""
        stored = self._stored(messages)
        if not stored:
            return
        for _ in range(3):
            try:
                self._calls.call_sync("append_messages", self.key, stored)
                return
            except SessionNotFoundError:
                self._calls.call_sync("get_or_create", self.key)
        self._calls.call_sync("append_messages", self.key, stored)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        stored = self._stored(messages)
        if not stored:
            return
        for _ in range(3):
            try:
                await self._calls.call("append_messages", self.key, stored)
                return
            except SessionNotFoundError:
                await self._calls.call("get_or_create", self.key)
        await self._calls.call("append_messages", self.key, stored)

    def clear(self) -> None:
        """Remove every message: the session is deleted (or archived, ``on_clear="archive"``)."""
        self._check_open()
        if self._on_clear == "delete":
            self._calls.call_sync("delete", self.key)
            return
        try:
            self._calls.call_sync("get", self.key)
        except SessionNotFoundError:
            return
        self._calls.call_sync("reset", self.key)

    async def aclear(self) -> None:
        self._check_open()
        if self._on_clear == "delete":
            await self._calls.call("delete", self.key)
            return
        try:
            await self._calls.call("get", self.key)
        except SessionNotFoundError:
            return
        await self._calls.call("reset", self.key)
