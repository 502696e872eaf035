"""A LangGraph checkpointer (``BaseCheckpointSaver``) stored in aisopod-session.

The one-line switch::

    graph = builder.compile(checkpointer=InMemorySaver())                              # before
    graph = builder.compile(checkpointer=AisopodSaver.from_url("sqlite:///agent.db"))  # after

:meth:`AisopodSaver.from_url` opens a store of its own (a SQLite path or URL, ``postgresql://…``
or ``:memory:``) and closes it in :meth:`~AisopodSaver.close` (or at the end of a ``with`` /
``async with`` block); ``AisopodSaver(store)`` shares a :class:`~aisopod_session.SessionStore` or
:class:`~aisopod_session.AsyncSessionStore` the application opened. Both the blocking methods
(``graph.invoke``) and the asyncio ones (``graph.ainvoke``) work with either flavour. A running
service's ``https://`` store cannot hold checkpoints (they are database tables).

**A thread is a session.** Thread id ``tid`` of agent ``agent_id`` (default ``"langgraph"``) is
the key ``SessionKey(agent_id, "langgraph", "default", "dm", tid)`` (``%``, white space and
characters Unicode normalisation would change ``%XX``-escaped in the peer id);
:func:`thread_id_for_key` gives ``tid`` back. Checkpoints and pending writes are rows of the
session's database (``checkpoints``, ``checkpoint_writes``, migration 0011) that belong to the
session: deleting the session, a retention purge or a person's erasure deletes them too, and
so does archiving it (a reset, a sweep): the thread starts again empty while the archived
generation keeps its transcript. ``delete_thread`` deletes the session (every generation).

**The transcript.** The messages of the root graph's ``messages`` channel (LangChain messages,
as ``add_messages`` keeps them) are also appended to the session's history, in the same
transaction as the checkpoint that first holds them, as LangChain's ``message_to_dict`` of each
(the console, search, export, retention and erasure see the conversation). Each is stored once,
under the external id ``lg:<message id>`` (``lg#<digest>`` for a message without an id). The
history is a transcript: a message later removed from the channel (``RemoveMessage``) or
replaced under the same id stays as it was first written.

Beyond LangGraph's base interface, the saver implements ``delete_for_runs``, ``copy_thread``
(checkpoints and writes; the target's transcript follows from its next checkpoint) and
``prune`` (``"keep_latest"`` per namespace, or ``"delete"``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

try:
    from langchain_core.messages import BaseMessage, message_to_dict
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    from aisopod_session.integrations._common import missing_framework

    raise missing_framework("langgraph", "langgraph") from exc

from aisopod_session import _json
from aisopod_session.errors import InvalidInputError, StoreClosedError
from aisopod_session.integrations._common import (
    StoreCalls,
    StoreLocation,
    _run_coroutine,
    open_owned_store,
    plain_id,
    plain_key,
)
from aisopod_session.integrations.langchain import message_role
from aisopod_session.limits import MAX_ID_LENGTH
from aisopod_session.models import SessionKey, StoredMessage
from aisopod_session.store import (
    AsyncCheckpoints,
    AsyncSessionStore,
    Checkpoints,
    CheckpointWrite,
    Durability,
    ListPosition,
    SessionStore,
    StoredCheckpoint,
)

__all__ = ["CHANNEL", "DEFAULT_AGENT", "AisopodSaver", "key_for_thread", "thread_id_for_key"]

CHANNEL = "langgraph"
"""The channel of threads' session keys."""
DEFAULT_AGENT = "langgraph"
"""The agent id used when none is given."""
_LIST_PAGE = 100
_REMEMBERED_THREADS = 1024


def key_for_thread(thread_id: str, agent_id: str = DEFAULT_AGENT) -> SessionKey:
    """The session key of a thread (see the module docstring)."""
    return plain_key(agent_id, CHANNEL, thread_id)


def thread_id_for_key(key: SessionKey) -> str:
    """The inverse of :func:`key_for_thread`; another key is named by its canonical string."""
    return plain_id(key, CHANNEL)


def _configurable(config: RunnableConfig | None, field: str = "config") -> dict[str, Any]:
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, dict) or configurable.get("thread_id") is None:
        raise InvalidInputError.for_field(field, "expected a config with configurable.thread_id")
    return configurable


def _thread(value: Any) -> str:
    thread_id = str(value)
    if not thread_id:
        raise InvalidInputError.for_field("thread_id", "expected a non-empty thread id")
    return thread_id


class AisopodSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpoints in aisopod-session (see the module docstring).

    * ``agent_id``: the agent whose sessions the threads are.
    * ``serde``: LangGraph's serializer for checkpoints, metadata and writes (its default when
      None, as every saver).
    * ``messages_channel``: the state key whose messages go to the transcript (None: none do).
    * ``thread_key``: the session key of a thread id, when threads are the agent's own
      conversations (a person's DM on their channel: erasing that person then erases the
      thread); the keys must be ``agent_id``'s. By default, :func:`key_for_thread`.
    """

    def __init__(
        self,
        store: SessionStore | AsyncSessionStore,
        *,
        agent_id: str = DEFAULT_AGENT,
        serde: SerializerProtocol | None = None,
        messages_channel: str | None = "messages",
        thread_key: Callable[[str], SessionKey] | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if isinstance(store, AsyncSessionStore):
            self._tables: Checkpoints | AsyncCheckpoints = AsyncCheckpoints(store, agent_id)
        elif isinstance(store, SessionStore):
            self._tables = Checkpoints(store, agent_id)
        else:
            raise InvalidInputError.for_field(
                "store", "expected a SessionStore or AsyncSessionStore (from_url opens one), got "
                f"{type(store).__name__}")
        if messages_channel is not None and not isinstance(messages_channel, str):
            raise InvalidInputError.for_field("messages_channel", "expected a string or None")
        self._sessions = StoreCalls(store, agent_id)
        self.agent_id = self._sessions.agent_id
        self.messages_channel = messages_channel
        self._thread_key = thread_key
        self._owned: SessionStore | None = None
        self._closed = False
        # Per thread, the ids of the messages already in its transcript (as far as this saver
        # knows): a checkpoint then sends only the new ones. A thread it does not remember
        # sends its whole channel once; the store keeps each external id once anyway.
        self._transcribed: OrderedDict[SessionKey, set[str]] = OrderedDict()
        self._transcribed_lock = threading.Lock()  # LangGraph writes from worker threads

    @classmethod
    def from_url(
        cls,
        url: StoreLocation,
        *,
        agent_id: str = DEFAULT_AGENT,
        serde: SerializerProtocol | None = None,
        messages_channel: str | None = "messages",
        thread_key: Callable[[str], SessionKey] | None = None,
        durability: Durability = "full",
        pool_size: int | None = None,
        schema: str | None = None,
    ) -> AisopodSaver:
        """A saver on a store of its own at ``url`` (options as in
        :meth:`aisopod_session.SessionStore.open`), closed by :meth:`close`."""
        options: dict[str, Any] = {"durability": durability, "pool_size": pool_size,
                                   "schema": schema}
        store = open_owned_store(url, **{k: v for k, v in options.items() if v is not None})
        try:
            saver = cls(store, agent_id=agent_id, serde=serde, messages_channel=messages_channel,
                        thread_key=thread_key)
        except BaseException:
            store.close()
            raise
        saver._owned = store
        return saver

    # --- closing ---

    @property
    def owns_store(self) -> bool:
        """Whether the saver opened its store (and closes it)."""
        return self._owned is not None

    def close(self) -> None:
        """Close the saver: its own store is closed, a shared one stays open. Closing twice does
        nothing; any other call afterwards raises ``StoreClosedError``."""
        self._closed = True
        if self._owned is not None:
            self._owned.close()

    async def aclose(self) -> None:
        """:meth:`close` for asyncio code."""
        self._closed = True
        if self._owned is not None:
            await asyncio.to_thread(self._owned.close)

    def __enter__(self) -> AisopodSaver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> AisopodSaver:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    # --- calling the tables from either kind of code ---

    def _call_sync(self, name: str, *args: Any) -> Any:
        if self._closed:
            raise StoreClosedError("the checkpointer is closed")
        method = getattr(self._tables, name)
        if isinstance(self._tables, AsyncCheckpoints):
            return _run_coroutine(method(*args))
        return method(*args)

    async def _call(self, name: str, *args: Any) -> Any:
        if self._closed:
            raise StoreClosedError("the checkpointer is closed")
        method = getattr(self._tables, name)
        if isinstance(self._tables, AsyncCheckpoints):
            return await method(*args)
        return await asyncio.to_thread(method, *args)

    def _key(self, thread_id: Any) -> SessionKey:
        thread = _thread(thread_id)
        if self._thread_key is None:
            return key_for_thread(thread, self.agent_id)
        key = self._thread_key(thread)
        if not isinstance(key, SessionKey):
            raise InvalidInputError.for_field(
                "thread_key", f"expected it to return a SessionKey, got {type(key).__name__}")
        return key

    # --- turning rows into LangGraph's values and back ---

    def _tuple(self, row: StoredCheckpoint) -> CheckpointTuple:
        config: RunnableConfig = {"configurable": {
            "thread_id": row.thread_id, "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": row.checkpoint_id}}
        parent: RunnableConfig | None = None
        if row.parent_id:
            parent = {"configurable": {"thread_id": row.thread_id,
                                       "checkpoint_ns": row.checkpoint_ns,
                                       "checkpoint_id": row.parent_id}}
        writes = sorted(row.writes, key=lambda w: (w.task_path, w.task_id, w.idx))
        return CheckpointTuple(
            config=config,
            checkpoint=self.serde.loads_typed((row.type, row.checkpoint)),
            metadata=self.serde.loads_typed((row.metadata_type, row.metadata)),
            parent_config=parent,
            pending_writes=[(w.task_id, w.channel, self.serde.loads_typed((w.type, w.value)))
                            for w in writes],
        )

    def _put_args(self, config: RunnableConfig, checkpoint: Checkpoint,
                  metadata: CheckpointMetadata) -> tuple[tuple[Any, ...], RunnableConfig]:
        configurable = _configurable(config)
        thread_id = _thread(configurable["thread_id"])
        ns = str(configurable.get("checkpoint_ns") or "")
        key = self._key(thread_id)
        full_metadata = get_checkpoint_metadata(config, metadata)
        run_id = full_metadata.get("run_id")
        transcript = self._transcript(key, checkpoint) if ns == "" else []
        args = (key, thread_id, ns, checkpoint["id"], configurable.get("checkpoint_id"),
                None if run_id is None else str(run_id), self.serde.dumps_typed(checkpoint),
                self.serde.dumps_typed(full_metadata), transcript)
        saved: RunnableConfig = {"configurable": {
            "thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}
        return args, saved

    def _transcript(self, key: SessionKey, checkpoint: Checkpoint) -> list[StoredMessage]:
        if self.messages_channel is None:
            return []
        messages = checkpoint.get("channel_values", {}).get(self.messages_channel)
        if not isinstance(messages, list):
            return []
        with self._transcribed_lock:
            known = set(self._transcribed.get(key, ()))
        new = []
        for message in messages:
            if not isinstance(message, BaseMessage):
                continue
            content = message_to_dict(message)
            if isinstance(message.id, str) and message.id and len(message.id) < MAX_ID_LENGTH - 3:
                external_id = f"lg:{message.id}"
            else:
                digest = hashlib.sha256(_json.dumps(content).encode("utf-8")).hexdigest()
                external_id = f"lg#{digest[:40]}"
            if external_id in known:
                continue
            new.append(StoredMessage(role=message_role(content), content=content,
                                     external_id=external_id))
        return new

    def _remember(self, key: SessionKey, transcript: Sequence[StoredMessage]) -> None:
        with self._transcribed_lock:
            known = self._transcribed.pop(key, set())
            known.update(str(m.external_id) for m in transcript)
            self._transcribed[key] = known
            while len(self._transcribed) > _REMEMBERED_THREADS:
                self._transcribed.popitem(last=False)

    def _forget(self, key: SessionKey) -> None:
        """The thread has no checkpoint (new, deleted, reset elsewhere): what its transcript
        held is no longer known."""
        with self._transcribed_lock:
            self._transcribed.pop(key, None)

    def _write_rows(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                    task_id: str, task_path: str) -> tuple[SessionKey, str, str,
                                                          list[CheckpointWrite]]:
        configurable = _configurable(config)
        checkpoint_id = configurable.get("checkpoint_id")
        if not isinstance(checkpoint_id, str) or not checkpoint_id:
            raise InvalidInputError.for_field("config", "expected configurable.checkpoint_id")
        rows = []
        for index, (channel, value) in enumerate(writes):
            kind, blob = self.serde.dumps_typed(value)
            rows.append(CheckpointWrite(task_id, WRITES_IDX_MAP.get(channel, index), channel,
                                        kind, blob, task_path))
        return (self._key(configurable["thread_id"]),
                str(configurable.get("checkpoint_ns") or ""), checkpoint_id, rows)

    def _list_args(self, config: RunnableConfig | None, before: RunnableConfig | None
                   ) -> tuple[SessionKey | None, str | None, str | None, str | None]:
        if config is None:
            return None, None, None, None if before is None else get_checkpoint_id(before)
        configurable = _configurable(config)
        ns = configurable.get("checkpoint_ns")
        return (self._key(configurable["thread_id"]), None if ns is None else str(ns),
                get_checkpoint_id(config), None if before is None else get_checkpoint_id(before))

    @staticmethod
    def _matches(metadata: CheckpointMetadata, filter: dict[str, Any] | None) -> bool:
        return not filter or all(metadata.get(k) == v for k, v in filter.items())

    @staticmethod
    def _prune_mode(strategy: str) -> bool:
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInputError.for_field("strategy", "expected 'keep_latest' or 'delete'")
        return strategy == "keep_latest"

    # --- BaseCheckpointSaver, blocking ---

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = _configurable(config)
        key = self._key(configurable["thread_id"])
        row = self._call_sync("get", key, str(configurable.get("checkpoint_ns") or ""),
                              get_checkpoint_id(config))
        if row is None:
            self._forget(key)
            return None
        return self._tuple(row)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        if limit is not None and limit <= 0:
            return
        args = self._list_args(config, before)
        page = limit if limit is not None and not filter else _LIST_PAGE
        position: ListPosition | None = None
        left = limit
        while True:
            rows, position = self._call_sync("list", *args, page, position)
            for row in rows:
                found = self._tuple(row)
                if not self._matches(found.metadata, filter):
                    continue
                yield found
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if position is None:
                return

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        args, saved = self._put_args(config, checkpoint, metadata)
        self._call_sync("put", *args)
        self._remember(args[0], args[-1])
        return saved

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                   task_id: str, task_path: str = "") -> None:
        self._call_sync("put_writes", *self._write_rows(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        key = self._key(thread_id)
        if self._closed:
            raise StoreClosedError("the checkpointer is closed")
        self._sessions.call_sync("delete", key)
        self._forget(key)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._call_sync("delete_for_runs", [str(run_id) for run_id in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        target = _thread(target_thread_id)
        self._call_sync("copy_thread", self._key(source_thread_id), self._key(target), target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        keep_latest = self._prune_mode(strategy)
        self._call_sync("prune", [self._key(t) for t in thread_ids], keep_latest)

    # --- BaseCheckpointSaver, asyncio ---

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = _configurable(config)
        key = self._key(configurable["thread_id"])
        row = await self._call("get", key, str(configurable.get("checkpoint_ns") or ""),
                               get_checkpoint_id(config))
        if row is None:
            self._forget(key)
            return None
        return self._tuple(row)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        if limit is not None and limit <= 0:
            return
        args = self._list_args(config, before)
        page = limit if limit is not None and not filter else _LIST_PAGE
        position: ListPosition | None = None
        left = limit
        while True:
            rows, position = await self._call("list", *args, page, position)
            for row in rows:
                found = self._tuple(row)
                if not self._matches(found.metadata, filter):
                    continue
                yield found
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if position is None:
                return

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions
                   ) -> RunnableConfig:
        args, saved = self._put_args(config, checkpoint, metadata)
        await self._call("put", *args)
        self._remember(args[0], args[-1])
        return saved

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        await self._call("put_writes", *self._write_rows(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        key = self._key(thread_id)
        if self._closed:
            raise StoreClosedError("the checkpointer is closed")
        await self._sessions.call("delete", key)
        self._forget(key)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._call("delete_for_runs", [str(run_id) for run_id in run_ids])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        target = _thread(target_thread_id)
        await self._call("copy_thread", self._key(source_thread_id), self._key(target), target)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        keep_latest = self._prune_mode(strategy)
        await self._call("prune", [self._key(t) for t in thread_ids], keep_latest)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """As LangGraph's own savers: a zero-padded counter (so versions sort as text) and a
        random fraction."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"
