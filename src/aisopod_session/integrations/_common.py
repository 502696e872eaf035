"""What the integrations share: one way to call either store flavour, framework ids as key
parts, and tail reads that never split a tool call from its result."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aisopod_session.errors import AccessDeniedError, InvalidInputError
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    Role,
    SessionKey,
    StoredMessage,
    normalize_name,
    normalize_peer_id,
)
from aisopod_session.store import (
    AgentSessions,
    AsyncAgentSessions,
    AsyncSessionStore,
    SessionStore,
)

T = TypeVar("T")
Item = TypeVar("Item")

AnyStore = SessionStore | AsyncSessionStore | AgentSessions | AsyncAgentSessions
"""What an integration is built from: a store of either flavour, or one agent's handle."""
StoreLocation = str | os.PathLike[str]
"""Where an integration opens a store of its own: a SQLite path, ``sqlite:///…``,
``postgresql://…``, ``https://…`` (a running service) or ``:memory:``."""


def open_owned_store(location: StoreLocation, **options: Any) -> SessionStore:
    """The blocking store an adapter opens for itself (and closes with itself).

    Blocking, so that the adapter can be built anywhere, in asyncio code or not; each
    ``:memory:`` store is a database of its own.
    """
    if not isinstance(location, str | os.PathLike):
        raise InvalidInputError.for_field(
            "store", f"expected a store, a URL or a path, got {type(location).__name__}"
        )
    return SessionStore.open(os.fspath(location), **options)


def missing_framework(module: str, extra: str) -> ImportError:
    return ImportError(
        f"this integration needs {module!r}: pip install 'aisopod-session[{extra}]'"
    )


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from blocking code, even inside a running event loop.

    The store's asyncio methods are not tied to one loop, so a private loop on a helper thread
    serves a blocking caller that is itself running on a loop (as LangChain's sync methods may).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="aisopod-session-call")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class StoreCalls:
    """One agent's sessions, callable from asyncio and from blocking code, whatever the store.

    A blocking store is called on a worker thread from asyncio (the event loop never waits on the
    database); an asyncio store is run to completion from blocking code.
    """

    def __init__(self, store: AnyStore, agent_id: str | None) -> None:
        handle: AgentSessions | AsyncAgentSessions
        if isinstance(store, SessionStore | AsyncSessionStore):
            if agent_id is None:
                raise InvalidInputError.for_field("agent_id", "give the agent the sessions are of")
            handle = store.for_agent(agent_id)
        elif isinstance(store, AgentSessions | AsyncAgentSessions):
            handle = store
            if agent_id is not None and normalize_name(agent_id) != store.agent_id:
                raise AccessDeniedError(
                    f"this handle is for agent {store.agent_id!r}, not {agent_id!r}"
                )
        else:
            raise InvalidInputError.for_field(
                "store",
                "expected a SessionStore, AsyncSessionStore or an agent handle of either, got "
                f"{type(store).__name__}",
            )
        self.handle = handle
        self.blocking = isinstance(handle, AgentSessions)
        self.agent_id: str = handle.agent_id
        # A short read from a local SQLite database (tens of microseconds, never waiting on a
        # writer in WAL mode) costs less on the calling thread than a hop to a worker thread
        # and back; anything that may wait on a network (PostgreSQL, a service) never is.
        self.inline_reads = isinstance(store, SessionStore) and store.backend == "sqlite"

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.handle, name)
        if self.blocking:
            return await asyncio.to_thread(method, *args, **kwargs)
        return await method(*args, **kwargs)

    async def read(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` for a short read: on the calling thread where that is cheaper (see
        ``inline_reads``)."""
        if self.inline_reads:
            return getattr(self.handle, name)(*args, **kwargs)
        return await self.call(name, *args, **kwargs)

    def call_sync(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.handle, name)
        if self.blocking:
            return method(*args, **kwargs)
        return _run_coroutine(method(*args, **kwargs))


# --- framework ids as key parts --------------------------------------------------------------

_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def encode_name(value: str, field: str) -> str:
    """``value`` as a key part that is lower-cased (agent id, channel, account id), reversibly.

    Lower-case ASCII letters, digits, ``_``, ``-`` and ``.`` stay as they are; every other
    character is ``%`` and the lower-case hex of its UTF-8 bytes. ``MyApp`` becomes
    ``%4dy%41pp``, so ``MyApp`` and ``myapp`` stay two different things.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInputError.for_field(field, f"expected a non-empty string, got {value!r}")
    if all(char in _NAME_SAFE for char in value):
        encoded = value
    else:
        encoded = "".join(
            char if char in _NAME_SAFE else "".join(f"%{b:02x}" for b in char.encode("utf-8"))
            for char in value
        )
    if len(encoded) > MAX_ID_LENGTH:
        raise InvalidInputError.for_field(
            field, f"{value[:40]!r}... is {len(encoded)} characters as a key part; at most "
            f"{MAX_ID_LENGTH}"
        )
    return encoded


def decode_name(value: str) -> str:
    """The inverse of :func:`encode_name`."""
    if "%" not in value:
        return value
    raw = bytearray()
    index = 0
    while index < len(value):
        if value[index] == "%":
            raw.append(int(value[index + 1 : index + 3], 16))
            index += 3
        else:
            raw.extend(value[index].encode("utf-8"))
            index += 1
    return raw.decode("utf-8")


def encode_peer(value: str, field: str) -> str:
    """``value`` as a peer id (case kept), reversibly: ``%``, white space and characters that
    Unicode normalisation would change are ``%``-escaped; anything else is kept as it is."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError.for_field(field, f"expected a non-empty string, got {value!r}")
    out = []
    for char in value:
        if char == "%" or char.isspace() or not char.isprintable():
            out.append("".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass")))
        else:
            out.append(char)
    encoded = "".join(out)
    try:
        stable = normalize_peer_id(encoded) == encoded
    except ValueError:
        stable = False
    if not stable:  # a sequence NFC would compose: escape every non-ASCII character too
        encoded = "".join(
            c if c.isascii() else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
            for c in encoded
        )
    if len(encoded) > MAX_ID_LENGTH:
        raise InvalidInputError.for_field(
            field, f"{value[:40]!r}... is {len(encoded)} characters as a peer id; at most "
            f"{MAX_ID_LENGTH}"
        )
    return encoded


def decode_peer(value: str) -> str:
    """The inverse of :func:`encode_peer`."""
    return decode_name(value)


def plain_key(agent_id: str, channel: str, session_id: str) -> SessionKey:
    """The key of a framework conversation known by one string id: a DM session on ``channel``
    (the framework's name), account ``default``, peer id = the id (escaped where needed)."""
    return SessionKey(agent_id, channel, "default", PeerKind.DM,
                      encode_peer(session_id, "session_id"))


def plain_id(key: SessionKey, channel: str) -> str:
    """The inverse of :func:`plain_key`; any other key is named by its canonical string."""
    if (key.channel, key.account_id, key.peer_kind) == (channel, "default", PeerKind.DM):
        return decode_peer(key.peer_id)
    return key.canonical()


# --- tail reads -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pairing:
    """How a framework pairs tool calls and their results, for :func:`tail_start`."""

    calls: Callable[[Any], Sequence[str]]
    """The call ids an item makes."""
    answers: Callable[[Any], str | None]
    """The call id an item is the result of."""
    leads: Callable[[Any], bool] = lambda item: False
    """Whether an item must not be separated from the item after it (a reasoning item)."""


def tail_start(items: Sequence[Any], limit: int, pairing: Pairing, *, complete: bool) -> int | None:
    """Where the newest ``limit`` of ``items`` start once widened so that no result is without
    its call (and no leading item without what it leads); None when ``items``, the newest part
    of a longer history (``complete`` false), is too short to tell."""
    start = max(0, len(items) - limit)
    orphans: set[str] = set()  # answered calls the whole history does not hold
    while True:
        made: set[str] = set()
        needed: set[str] = set()
        for item in items[start:]:
            made.update(pairing.calls(item))
            answered = pairing.answers(item)
            if answered is not None:
                needed.add(answered)
        missing = needed - made - orphans
        if missing:
            index = start - 1
            while index >= 0 and missing:
                found = missing.intersection(pairing.calls(items[index]))
                if found:
                    missing -= found
                    start = index
                index -= 1
            if missing:
                if not complete:
                    return None
                orphans |= missing
            continue
        while start > 0 and pairing.leads(items[start - 1]):
            start -= 1
        if start == 0 and not complete:
            return None  # the item before the read may lead the first one: read further
        return start


async def read_tail(
    fetch: Callable[[int], Awaitable[list[Item]]], limit: int, pairing: Pairing
) -> list[Item]:
    """The newest ``limit`` items (widened, see :func:`tail_start`), reading only the tail.

    ``fetch(n)`` reads the newest ``n`` items, oldest first. Each attempt works on one read, so
    the answer is always a consistent suffix of the history even while others append.
    """
    window = limit + 8
    while True:
        items = await fetch(window)
        start = tail_start(items, limit, pairing, complete=len(items) < window)
        if start is not None:
            return items[start:]
        window *= 4


def read_tail_sync(
    fetch: Callable[[int], list[Item]], limit: int, pairing: Pairing
) -> list[Item]:
    """:func:`read_tail` for blocking code."""
    window = limit + 8
    while True:
        items = fetch(window)
        start = tail_start(items, limit, pairing, complete=len(items) < window)
        if start is not None:
            return items[start:]
        window *= 4


def tail_query(window: int) -> HistoryQuery:
    return HistoryQuery(limit=window, tail=True)


LANGCHAIN_ROLES = {"human": Role.USER, "ai": Role.ASSISTANT, "AIMessageChunk": Role.ASSISTANT,
                   "system": Role.SYSTEM, "tool": Role.TOOL, "function": Role.TOOL,
                   "HumanMessageChunk": Role.USER, "SystemMessageChunk": Role.SYSTEM,
                   "ToolMessageChunk": Role.TOOL, "FunctionMessageChunk": Role.TOOL}
"""The role of a LangChain message by its ``type`` (what a stored LangChain message says);
here, without LangChain, so that the importer shares it."""
LANGCHAIN_CHAT_ROLES = {"user": Role.USER, "human": Role.USER, "assistant": Role.ASSISTANT,
                        "ai": Role.ASSISTANT, "system": Role.SYSTEM, "tool": Role.TOOL}
"""The role of a LangChain ``ChatMessage`` by its ``role`` text."""


def contents(messages: list[StoredMessage]) -> list[Any]:
    return [message.content for message in messages]
