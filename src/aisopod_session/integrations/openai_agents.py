"""A ``Session`` of the OpenAI Agents SDK stored in aisopod-session.

The one-line switch::

    session = SQLiteSession("user-123", "conversations.db")                # before
    session = AisopodSession("user-123", "sqlite:///conversations.db")     # after

The second argument is where the history lives: a SQLite path or ``sqlite:///`` URL, a
``postgresql://`` URL, a running service's ``https://`` URL, or nothing / ``":memory:"`` for a
database private to the object (gone when it is closed), as with ``SQLiteSession``. The session
then opens the store itself and closes it in :meth:`AisopodSession.close` (or at the end of a
``with`` / ``async with`` block). :meth:`AisopodSession.from_url` does the same with the store's
options (durability, pool size, schema, token). A store opened by the application
(:class:`~aisopod_session.SessionStore`, :class:`~aisopod_session.AsyncSessionStore`, or one
agent's handle of either) can be passed instead and is shared: the session never closes it.

Every SDK item is one stored message whose ``content`` is the item exactly as the SDK wrote it.
``get_items(limit=n)`` returns exactly the newest ``n`` items, as the SDK's ``Session`` protocol
says (the SDK's runner itself drops a tool output whose call fell outside the window);
``pair_safe=True`` widens the window instead, so that no tool output comes without its call.

Key mapping (reversible): a string session id ``sid`` of agent ``agent_id`` is the key
``SessionKey(agent_id, "openai-agents", "default", "dm", sid)`` (a ``%``, white space or a character
Unicode normalisation would change is ``%XX``-escaped in the peer id); :func:`session_id_for_key`
gives ``sid`` back. A :class:`~aisopod_session.SessionKey` can be given instead (a gateway's own
key), and ``session_id`` is then its canonical string.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
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

from aisopod_session.errors import InvalidInputError, SessionNotFoundError, StoreClosedError
from aisopod_session.integrations._common import (
    AnyStore,
    Pairing,
    StoreCalls,
    StoreLocation,
    open_owned_store,
    plain_id,
    plain_key,
    read_tail,
    tail_query,
)
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import Role, SessionKey, StoredMessage
from aisopod_session.store import Durability, SessionStore

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

    * ``store``: where the history lives (a URL or path: opened and owned by the session; None
      or ``":memory:"``: a private in-memory database) or a store / agent handle to share.
    * ``session_settings``: the SDK's ``SessionSettings`` (or a dict of its fields); its
      ``limit`` is the default of :meth:`get_items`, as in the SDK's own sessions.
    * ``pair_safe``: :meth:`get_items` with a limit widens the window backwards until no tool
      output (nor an item a reasoning item leads) is without its call; off by default, as the
      protocol asks for exactly the newest ``limit`` items.
    * ``dedupe_item_ids``: store an item that carries a provider item id (``id``, other than the
      SDK's placeholder) with the external id ``<type>:<id>``, so that adding it again (a retried
      write) does not store it twice. Off by default: some providers and test models reuse ids,
      and the SDK itself keeps such repeats.
    * ``on_clear``: ``"delete"`` (default) deletes the session as the SDK's sessions do;
      ``"archive"`` archives it instead (history kept for operators, a fresh session starts).

    Usable from blocking and asyncio code alike: nothing is opened on an event loop, and the
    SDK's methods can be awaited on any loop (``Runner.run_sync`` makes one per call).
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str | SessionKey,
        store: AnyStore | StoreLocation | None = None,
        *,
        agent_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        pair_safe: bool = False,
        dedupe_item_ids: bool = False,
        on_clear: Literal["delete", "archive"] = "delete",
    ) -> None:
        if on_clear not in ("delete", "archive"):
            raise InvalidInputError.for_field("on_clear", "expected 'delete' or 'archive'")
        if type(pair_safe) is not bool:
            raise InvalidInputError.for_field("pair_safe", "expected True or False")
        self.session_settings = (
            SessionSettings() if session_settings is None
            else coerce_session_settings(session_settings)
        )
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
        self._pair_safe = pair_safe
        self._dedupe = dedupe_item_ids
        self._on_clear = on_clear

    @classmethod
    def from_url(
        cls,
        url: StoreLocation,
        session_id: str | SessionKey,
        *,
        agent_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        pair_safe: bool = False,
        dedupe_item_ids: bool = False,
        on_clear: Literal["delete", "archive"] = "delete",
        durability: Durability = "full",
        pool_size: int | None = None,
        schema: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> AisopodSession:
        """A session on a store of its own at ``url``, opened with the store's options (see
        :meth:`aisopod_session.SessionStore.open`), closed by :meth:`close`."""
        options: dict[str, Any] = {"durability": durability, "pool_size": pool_size,
                                   "schema": schema, "token": token, "timeout": timeout}
        store = open_owned_store(url, **{k: v for k, v in options.items() if v is not None})
        try:
            session = cls(session_id, store, agent_id=agent_id,
                          session_settings=session_settings, pair_safe=pair_safe,
                          dedupe_item_ids=dedupe_item_ids, on_clear=on_clear)
        except BaseException:
            store.close()
            raise
        session._owned = store
        return session

    def __repr__(self) -> str:
        return f"AisopodSession(session_id={self.session_id!r}, key={self.key})"

    # --- closing ---

    @property
    def owns_store(self) -> bool:
        """Whether the session opened its store (and closes it)."""
        return self._owned is not None

    def close(self) -> None:
        """Close the session: its own store is closed (an in-memory one is gone); a shared store
        stays open. Closing twice does nothing; any other call afterwards raises
        ``StoreClosedError``."""
        self._closed = True
        if self._owned is not None:
            self._owned.close()

    async def aclose(self) -> None:
        """:meth:`close` for asyncio code (the store's connections are closed off the loop)."""
        self._closed = True
        if self._owned is not None:
            await asyncio.to_thread(self._owned.close)

    def __enter__(self) -> AisopodSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> AisopodSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the session {self.session_id!r} is closed")

    # --- the SDK's Session protocol ---

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first; with a limit (or ``session_settings.limit``) the newest
        ``limit`` items, read from the tail (widened with ``pair_safe``). ``0`` gives nothing and
        a negative limit everything, as in the SDK's SQLiteSession."""
        self._check_open()
        effective = resolve_session_limit(limit, self.session_settings)
        try:
            if effective is None or effective < 0:
                return await self._calls.call("get_contents", self.key, None)  # type: ignore[no-any-return]
            if effective == 0:
                return []
            if not self._pair_safe:
                return await self._calls.read(  # type: ignore[no-any-return]
                    "get_contents", self.key, tail_query(effective))

            async def fetch(window: int) -> list[Any]:
                return await self._calls.read(  # type: ignore[no-any-return]
                    "get_contents", self.key, tail_query(window))

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
        self._check_open()
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
        self._check_open()
        try:
            message = await self._calls.call("pop_message", self.key)
        except SessionNotFoundError:
            return None
        return None if message is None else message.content

    async def clear_session(self) -> None:
        """Remove every item: the session is deleted (or archived, with ``on_clear="archive"``)."""
        self._check_open()
        if self._on_clear == "archive":
            try:
                await self._calls.call("get", self.key)
            except SessionNotFoundError:
                return
            await self._calls.call("reset", self.key)
        else:
            await self._calls.call("delete", self.key)
