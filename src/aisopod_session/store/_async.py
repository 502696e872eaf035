"""The asyncio store: :class:`AsyncSessionStore` and :class:`AsyncAgentSessions`.

The twin of ``_sync.py``: the same methods over the same ``_ops`` work. Reads run on the
engine's reader threads and writes are queued for the group committer, so the event loop never
waits on the database. ``tests/test_api_parity.py`` keeps the two in step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Generator, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, cast

from aisopod_session.compaction import CompactionRecord
from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import Policies, PurgeResult, SweepResult
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    StoredMessage,
    normalize_name_or_raise,
)
from aisopod_session.store import _admin, _lifecycle, _ops
from aisopod_session.store._admin import DailyUsage, ImportResult, StoreStats
from aisopod_session.store._engine import Durability, Engine
from aisopod_session.store._lifecycle import AuditRecord, PeerResult, Resolution
from aisopod_session.store._open import open_engine
from aisopod_session.store._ops import (
    CommitResult,
    MetadataMerge,
    SessionDetailPage,
    SessionPage,
    Work,
)

T = TypeVar("T")

# Named outside the classes, where ``list`` is the builtin and not the method.
Messages = list[StoredMessage]


async def _run(engine: Engine, work: Work[T]) -> T:
    if work.read is not None:
        found = await engine.read_async(work.read)
        if found is not None or work.write is None:
            return found  # type: ignore[return-value]  # a read alone never returns None
    assert work.write is not None
    return await engine.write_async(work.write, work.lock_key)


def _agent_or_none(agent_id: str | None) -> str | None:
    return None if agent_id is None else normalize_name_or_raise("agent_id", agent_id)


async def _aiter(
    lines: Iterable[str | bytes] | AsyncIterable[str | bytes],
) -> AsyncIterator[str | bytes]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line


class AsyncAgentSessions:
    """One agent's sessions. Keys of any other agent raise AccessDeniedError untouched."""

    def __init__(self, engine: Engine, agent_id: str, policies: Policies | None = None) -> None:
        self._engine = engine
        self.agent_id = normalize_name_or_raise("agent_id", agent_id)
        self._policies = policies or Policies()

    def _key(self, key: SessionKey) -> SessionKey:
        return _ops.owned_key(key, self.agent_id)

    async def get_or_create(self, key: SessionKey) -> Session:
        """The live session of ``key``, created if there is none (one per key, race-free)."""
        return await _run(self._engine, _ops.get_or_create(self._key(key)))

    async def get(self, key: SessionKey) -> Session:
        return await _run(self._engine, _ops.get(self._key(key)))

    async def list(self, filter: SessionFilter | None = None) -> SessionPage:
        """This agent's sessions, most recently updated first, one page at a time."""
        return await _run(
            self._engine, _ops.list_sessions(_ops.agent_filter(filter, self.agent_id))
        )

    async def patch(self, key: SessionKey, patch: SessionPatch) -> Session:
        return await _run(self._engine, _ops.patch(self._key(key), patch))

    async def delete(self, key: SessionKey) -> bool:
        """Delete the live session and every archived generation of ``key``, messages included."""
        return await _run(self._engine, _ops.delete(self._key(key)))

    async def append_messages(
        self, key: SessionKey, messages: Messages
    ) -> Messages:
        """Append atomically; a message whose ``external_id`` is already stored is not stored
        again (the stored one is returned in its place)."""
        return await _run(self._engine, _ops.append_messages(self._key(key), messages))

    async def get_history(
        self, key: SessionKey, query: HistoryQuery | None = None
    ) -> Messages:
        return await _run(self._engine, _ops.get_history(self._key(key), query))

    async def reset(self, key: SessionKey) -> Session:
        """Archive the live session (history kept) and start a fresh one under the same key."""
        return await _run(self._engine, _ops.reset(self._key(key)))

    async def compact(self, key: SessionKey, strategy: Any) -> CompactionRecord:
        return await _run(self._engine, _ops.compact(self._key(key), strategy))

    async def resolve(self, key: SessionKey, now: datetime | None = None) -> Resolution:
        """The session a new message to ``key`` belongs to: like get_or_create, but a session
        that the key's reset policy finds stale is archived and a fresh one started."""
        checked = self._key(key)
        policy = self._policies.reset.for_key(checked.agent_id, checked.channel)
        return await _run(self._engine, _lifecycle.resolve(checked, policy, now))

    async def get_compaction_record(self, key: SessionKey) -> CompactionRecord:
        return await _run(self._engine, _ops.get_compaction_record(self._key(key)))


    # Operations added for the framework integrations (aisopod_session.integrations).

    async def pop_message(self, key: SessionKey) -> StoredMessage | None:
        """Remove the newest live message and return it (None if the history is empty): the
        inverse of appending it (counters go down, its ``external_id`` is free again)."""
        return await _run(self._engine, _ops.pop_message(self._key(key)))

    async def list_detailed(self, filter: SessionFilter | None = None) -> SessionDetailPage:
        """Like :meth:`list`, with whole sessions (metadata included), one page at a time."""
        return await _run(
            self._engine, _ops.list_detailed(_ops.agent_filter(filter, self.agent_id))
        )

    async def commit(
        self,
        key: SessionKey,
        messages: Messages | None = None,
        merge: MetadataMerge | None = None,
        *,
        create: bool = False,
        expect_updated_at: datetime | None = None,
        shared: dict[SessionKey, MetadataMerge] | None = None,
    ) -> CommitResult:
        """Append ``messages`` and merge metadata into this session and ``shared`` sessions of
        this agent in one transaction; ``create`` starts the session (it must not exist) and
        ``expect_updated_at`` makes it a compare-and-set. See :func:`_ops.commit`."""
        return await _run(self._engine, _ops.commit(
            self._key(key), messages, merge, create=create,
            expect_updated_at=expect_updated_at, shared=self._shared(shared),
        ))

    def _shared(self, shared: dict[SessionKey, MetadataMerge] | None) -> dict[SessionKey, Any]:
        if shared is None:
            return {}
        if not isinstance(shared, dict):
            raise InvalidInputError.for_field(
                "shared", f"expected a dict of keys to merges, got {type(shared).__name__}"
            )
        return {self._key(other): merge for other, merge in shared.items()}


class AsyncSessionStore:
    """Sessions in SQLite or PostgreSQL, asyncio API. Share one per process."""

    def __init__(self, engine: Engine, policies: Policies | None = None) -> None:
        self._engine = engine
        self.policies = policies or Policies()

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        durability: Durability = "full",
        pool_size: int | None = None,
        schema: str | None = None,
        policies: Policies | None = None,
    ) -> AsyncSessionStore:
        """Open (creating and migrating) the store at ``url``; see the README for URL forms."""
        if policies is not None and not isinstance(policies, Policies):
            raise InvalidInputError.for_field("policies", "expected a Policies")
        engine = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: open_engine(url, durability=durability, pool_size=pool_size, schema=schema),
        )
        return cls(engine, policies)

    @property
    def durability(self) -> Durability:
        return self._engine.durability

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def for_agent(self, agent_id: str) -> AsyncAgentSessions:
        return AsyncAgentSessions(self._engine, agent_id, self.policies)

    # Admin operations: they bypass agent isolation, for operators and the service's admin API.

    async def list_all_sessions(self, filter: SessionFilter | None = None) -> SessionPage:
        """Sessions of every agent (admin: no isolation)."""
        return await _run(self._engine, _ops.list_sessions(_ops.admin_filter(filter)))

    async def get_session_by_id(self, session_id: int) -> Session:
        """Any session, archived generations included (admin: no isolation)."""
        return await _run(self._engine, _ops.get_session_by_id(session_id))

    async def get_history_by_id(
        self, session_id: int, query: HistoryQuery | None = None
    ) -> Messages:
        """Any session's history by id (admin: no isolation)."""
        return await _run(self._engine, _ops.get_history_by_id(session_id, query))

    async def purge_compacted(self, older_than: datetime | None = None) -> int:
        """Delete compacted-away originals for retention; returns how many (admin)."""
        return await _run(self._engine, _ops.purge_compacted(older_than))

    async def count_sessions_by_status(
        self, agent_id: str | None = None
    ) -> dict[SessionStatus, int]:
        """How many sessions there are in each status, of one agent or all (admin)."""
        return await _run(self._engine, _admin.count_by_status(_agent_or_none(agent_id)))

    async def schema_version(self) -> int:
        """The schema version recorded in the database (admin)."""
        return await _run(self._engine, _admin.schema_version())

    async def usage_by_day(
        self, days: int = 14, *, agent_id: str | None = None, now: datetime | None = None
    ) -> list[DailyUsage]:
        """Messages and tokens per UTC day and agent, over the last ``days`` days (admin)."""
        return await _run(self._engine, _admin.usage_by_day(_agent_or_none(agent_id), days, now))

    async def stats(self) -> StoreStats:
        """Sessions by status, agents, live and compacted messages (admin)."""
        return await _run(self._engine, _admin.stats())

    async def clear_sessions(self, agent_id: str | None = None) -> int:
        """Delete every session of one agent, or of all agents; returns how many (admin)."""
        return await _run(self._engine, _admin.clear(_agent_or_none(agent_id)))

    async def export_jsonl(
        self, agent_id: str | None = None, *, session_id: int | None = None
    ) -> AsyncIterator[str]:
        """Every session (all generations) and message as JSON Lines, streamed (admin); or
        only the session ``session_id``."""
        plan = _admin.export_plan(_admin.agent_sessions(_agent_or_none(agent_id), session_id))
        async for line in self._lines(plan):
            yield line

    async def import_jsonl(
        self, lines: Iterable[str | bytes] | AsyncIterable[str | bytes]
    ) -> ImportResult:
        """Import an export; a session that fails half-way is removed again (admin)."""
        importer = _admin.Importer()
        try:
            number = 0
            async for line in _aiter(lines):
                number += 1
                text = _admin.line_text(line, number)
                if text.strip():
                    await self._drive(importer.line(number, text))
            await self._drive(importer.finish())
        except BaseException:
            await self._drive(importer.abort())
            raise
        return importer.result

    async def _drive(self, plan: Generator[Any, Any, T]) -> T:
        """Run a multi-step plan: each Work it yields, and its result."""
        sent: Any = None
        while True:
            try:
                step = plan.send(sent)
            except StopIteration as done:
                return cast(T, done.value)
            sent = await _run(self._engine, step)

    async def _lines(self, plan: _admin.Plan) -> AsyncIterator[str]:
        """Run a plan that yields Work to run and lines to hand on."""
        sent: Any = None
        while True:
            try:
                step = plan.send(sent)
            except StopIteration:
                return
            if isinstance(step, Work):
                sent = await _run(self._engine, step)
            else:
                sent = None
                yield step

    # Lifecycle, retention and privacy (admin).

    async def sweep(self, now: datetime | None = None, *, dry_run: bool = False) -> SweepResult:
        """Apply the lifecycle policy: silent sessions go idle, long-idle ones are archived."""
        return await self._drive(_lifecycle.sweep_plan(self.policies.lifecycle, now, dry_run))

    async def purge(self, now: datetime | None = None, *, dry_run: bool = False) -> PurgeResult:
        """Apply the retention policy: delete old compacted messages and archived sessions."""
        return await self._drive(_lifecycle.purge_plan(self.policies.retention, now, dry_run))

    async def forget_peer(
        self, channel: str, peer_id: str, *, actor: str = "admin"
    ) -> PeerResult:
        """Erase every direct-conversation session of a person, across all agents and
        accounts, archived generations and compacted messages included; audited."""
        return await _run(self._engine, _lifecycle.forget_peer(channel, peer_id, actor))

    async def export_peer(
        self, channel: str, peer_id: str, *, actor: str = "admin"
    ) -> AsyncIterator[str]:
        """Everything held about a person, as export JSON Lines (streamed); audited."""
        async for line in self._lines(_lifecycle.export_peer_plan(channel, peer_id, actor)):
            yield line

    async def audit_log(self, limit: int = 100) -> list[AuditRecord]:
        """The newest audit records (who, when, how much; never content)."""
        return await _run(self._engine, _lifecycle.audit_log(limit))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._engine.close)

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
