# Generated from _async.py by scripts/async_to_sync.py: do not edit.
# Edit _async.py and run the script (tests/test_generated_sync.py checks they agree).
"""The blocking store: :class:`SessionStore` and its agent-scoped :class:`AgentSessions`.

Each method only checks the handle's scope and runs the :class:`~aisopod_session.store._tx.Work`
that a concept module builds. Reads run on the engine's reader threads and writes are queued for
the group committer, so the calling thread never waits on the database.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, TypeVar, cast

from aisopod_session.compaction import CompactionRecord, CompactionStrategy
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
)
from aisopod_session.results import (
    AuditRecord,
    CommitResult,
    DailyUsage,
    ImportResult,
    MetadataMerge,
    PeerResult,
    Resolution,
    SessionDetailPage,
    SessionPage,
    StoreStats,
)
from aisopod_session.store import (
    _admin,
    _checks,
    _commit,
    _compaction,
    _lifecycle,
    _messages,
    _privacy,
    _sessions,
    _transfer,
)
from aisopod_session.store._engine import Durability, Engine
from aisopod_session.store._open import open_engine, remote_url
from aisopod_session.store._tx import Work

T = TypeVar("T")

# Named outside the classes, where ``list`` is the builtin and not the method.
Messages = list[StoredMessage]


def _run(engine: Engine, work: Work[T]) -> T:
    if work.read is not None:
        found = engine.read(work.read)
        if found is not None or work.write is None:
            return found  # type: ignore[return-value]  # a read alone never returns None
    assert work.write is not None
    return engine.write(work.write, work.lock_key)


def _in_thread(call: Callable[[], T]) -> T:
    return call()


class AgentSessions:
    """One agent's sessions. Keys of any other agent raise AccessDeniedError untouched."""

    def __init__(self, engine: Engine, agent_id: str, policies: Policies | None = None) -> None:
        self._engine = engine
        self.agent_id = _checks.agent_id(agent_id)
        self._policies = policies or Policies()

    def _key(self, key: SessionKey) -> SessionKey:
        return _checks.owned_key(key, self.agent_id)

    def get_or_create(self, key: SessionKey) -> Session:
        """The live session of ``key``, created if there is none (one per key, race-free)."""
        return _run(self._engine, _sessions.get_or_create(self._key(key)))

    def get(self, key: SessionKey) -> Session:
        """The live session of ``key``; SessionNotFoundError if there is none."""
        return _run(self._engine, _sessions.get(self._key(key)))

    def list(self, filter: SessionFilter | None = None) -> SessionPage:
        """This agent's sessions, most recently updated first, one page at a time."""
        checked = _checks.agent_filter(filter, self.agent_id)
        return _run(self._engine, _sessions.list_sessions(checked))

    def patch(self, key: SessionKey, patch: SessionPatch) -> Session:
        """Change status, tokens (set or atomic add) and metadata (merge; None removes)."""
        return _run(self._engine, _sessions.patch(self._key(key), patch))

    def delete(self, key: SessionKey) -> bool:
        """Delete the live session and every archived generation of ``key``, messages included."""
        return _run(self._engine, _sessions.delete(self._key(key)))

    def append_messages(self, key: SessionKey, messages: Messages) -> Messages:
        """Append atomically; a message whose ``external_id`` is already stored is not stored
        again (the stored one is returned in its place)."""
        return _run(self._engine, _messages.append_messages(self._key(key), messages))

    def get_history(self, key: SessionKey, query: HistoryQuery | None = None) -> Messages:
        """The live history in append order (``HistoryQuery`` pages, tails and filters it)."""
        return _run(self._engine, _messages.get_history(self._key(key), query))

    def reset(self, key: SessionKey) -> Session:
        """Archive the live session (history kept) and start a fresh one under the same key."""
        return _run(self._engine, _sessions.reset(self._key(key)))

    def compact(self, key: SessionKey, strategy: CompactionStrategy) -> CompactionRecord:
        """Compact the live history (nothing is deleted: see the README)."""
        return _run(self._engine, _compaction.compact(self._key(key), strategy))

    def resolve(self, key: SessionKey, now: datetime | None = None) -> Resolution:
        """The session a new message to ``key`` belongs to: like get_or_create, but a session
        that the key's reset policy finds stale is archived and a fresh one started."""
        checked = self._key(key)
        policy = self._policies.reset.for_key(checked.agent_id, checked.channel)
        return _run(self._engine, _lifecycle.resolve(checked, policy, now))

    def get_compaction_record(self, key: SessionKey) -> CompactionRecord:
        """The live session's compaction state."""
        return _run(self._engine, _compaction.get_compaction_record(self._key(key)))

    # Operations added for the framework integrations (aisopod_session.integrations).

    def pop_message(self, key: SessionKey) -> StoredMessage | None:
        """Remove the newest live message and return it (None if the history is empty): the
        inverse of appending it (counters go down, its ``external_id`` is free again)."""
        return _run(self._engine, _messages.pop_message(self._key(key)))

    def list_detailed(self, filter: SessionFilter | None = None) -> SessionDetailPage:
        """Like :meth:`list`, with whole sessions (metadata included), one page at a time."""
        checked = _checks.agent_filter(filter, self.agent_id)
        return _run(self._engine, _sessions.list_detailed(checked))

    def commit(
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
        ``expect_updated_at`` makes it a compare-and-set. See ``_commit.commit``."""
        return _run(self._engine, _commit.commit(
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


class SessionStore:
    """Sessions in SQLite or PostgreSQL, blocking API. Share one per process."""

    def __init__(self, engine: Engine, policies: Policies | None = None) -> None:
        self._engine = engine
        self.policies = policies or Policies()

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        durability: Durability = "full",
        pool_size: int | None = None,
        schema: str | None = None,
        policies: Policies | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> SessionStore:
        """Open (creating and migrating) the store at ``url``; see the README for URL forms.

        An ``http://`` or ``https://`` URL opens the store of a running service instead, with
        ``token`` (or ``$AISOPOD_TOKEN``) and ``timeout`` seconds per request; the database
        options are then the server's own and cannot be given here.
        """
        if policies is not None and not isinstance(policies, Policies):
            raise InvalidInputError.for_field("policies", "expected a Policies")
        remote = remote_url(url, durability=durability, pool_size=pool_size, schema=schema,
                            policies=policies, token=token, timeout=timeout)
        if remote is not None:
            # imported here: httpx is needed only for a remote store (the `client` extra)
            from aisopod_session.store._remote_sync import RemoteSessionStore

            return RemoteSessionStore.connect(remote, token=token, timeout=timeout)
        engine = _in_thread(partial(
            open_engine, url, durability=durability, pool_size=pool_size, schema=schema))
        return cls(engine, policies)

    @property
    def durability(self) -> Durability:
        return self._engine.durability

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def for_agent(self, agent_id: str) -> AgentSessions:
        """The handle for one agent's sessions (the only way to reach them)."""
        return AgentSessions(self._engine, agent_id, self.policies)

    # Admin operations: they bypass agent isolation, for operators and the service's admin API.

    def list_all_sessions(self, filter: SessionFilter | None = None) -> SessionPage:
        """Sessions of every agent (admin: no isolation)."""
        return _run(self._engine, _sessions.list_sessions(_checks.admin_filter(filter)))

    def get_session_by_id(self, session_id: int) -> Session:
        """Any session, archived generations included (admin: no isolation)."""
        return _run(self._engine, _admin.get_session_by_id(session_id))

    def get_history_by_id(
        self, session_id: int, query: HistoryQuery | None = None
    ) -> Messages:
        """Any session's history by id (admin: no isolation)."""
        return _run(self._engine, _messages.get_history_by_id(session_id, query))

    def purge_compacted(self, older_than: datetime | None = None) -> int:
        """Delete compacted-away originals for retention; returns how many (admin)."""
        return _run(self._engine, _lifecycle.purge_compacted(older_than))

    def count_sessions_by_status(
        self, agent_id: str | None = None
    ) -> dict[SessionStatus, int]:
        """How many sessions there are in each status, of one agent or all (admin)."""
        checked = _checks.agent_or_none(agent_id)
        return _run(self._engine, _admin.count_by_status(checked))

    def schema_version(self) -> int:
        """The schema version recorded in the database (admin)."""
        return _run(self._engine, _admin.schema_version())

    def usage_by_day(
        self, days: int = 14, *, agent_id: str | None = None, now: datetime | None = None
    ) -> list[DailyUsage]:
        """Messages and tokens per UTC day and agent, over the last ``days`` days (admin)."""
        checked = _checks.agent_or_none(agent_id)
        return _run(self._engine, _admin.usage_by_day(checked, days, now))

    def stats(self) -> StoreStats:
        """Sessions by status, agents, live and compacted messages (admin)."""
        return _run(self._engine, _admin.stats())

    def clear_sessions(self, agent_id: str | None = None) -> int:
        """Delete every session of one agent, or of all agents; returns how many (admin)."""
        return _run(self._engine, _admin.clear(_checks.agent_or_none(agent_id)))

    def export_jsonl(
        self, agent_id: str | None = None, *, session_id: int | None = None
    ) -> Iterator[str]:
        """Every session (all generations) and message as JSON Lines, streamed (admin); or
        only the session ``session_id``."""
        pages = _transfer.agent_sessions(_checks.agent_or_none(agent_id), session_id)
        yield from self._lines(_transfer.export_plan(pages))

    def import_jsonl(
        self, lines: Iterable[str | bytes]
    ) -> ImportResult:
        """Import an export; a session that fails half-way is removed again (admin)."""
        importer = _transfer.Importer()
        try:
            for line in lines:
                self._drive(importer.line(line))
            self._drive(importer.finish())
        except BaseException:
            self._drive(importer.abort())
            raise
        return importer.result

    def _drive(self, plan: Generator[Any, Any, T]) -> T:
        """Run a multi-step plan: each Work it yields, and its result."""
        sent: Any = None
        while True:
            try:
                step = plan.send(sent)
            except StopIteration as done:
                return cast(T, done.value)
            sent = _run(self._engine, step)

    def _lines(self, plan: _transfer.Plan) -> Iterator[str]:
        """Run a plan that yields Work to run and lines to hand on."""
        sent: Any = None
        while True:
            try:
                step = plan.send(sent)
            except StopIteration:
                return
            if isinstance(step, Work):
                sent = _run(self._engine, step)
            else:
                sent = None
                yield step

    # Lifecycle, retention and privacy (admin).

    def sweep(self, now: datetime | None = None, *, dry_run: bool = False) -> SweepResult:
        """Apply the lifecycle policy: silent sessions go idle, long-idle ones are archived."""
        return self._drive(_lifecycle.sweep_plan(self.policies.lifecycle, now, dry_run))

    def purge(self, now: datetime | None = None, *, dry_run: bool = False) -> PurgeResult:
        """Apply the retention policy: delete old compacted messages and archived sessions."""
        return self._drive(_lifecycle.purge_plan(self.policies.retention, now, dry_run))

    def forget_peer(self, channel: str, peer_id: str, *, actor: str = "admin") -> PeerResult:
        """Erase every direct-conversation session of a person, across all agents and
        accounts, archived generations and compacted messages included; audited."""
        return _run(self._engine, _privacy.forget_peer(channel, peer_id, actor))

    def export_peer(
        self, channel: str, peer_id: str, *, actor: str = "admin"
    ) -> Iterator[str]:
        """Everything held about a person, as export JSON Lines (streamed); audited."""
        yield from self._lines(_privacy.export_peer_plan(channel, peer_id, actor))

    def audit_log(self, limit: int = 100) -> list[AuditRecord]:
        """The newest audit records (who, when, how much; never content)."""
        return _run(self._engine, _privacy.audit_log(limit))

    def close(self) -> None:
        _in_thread(self._engine.close)

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
