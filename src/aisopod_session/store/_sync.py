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

from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import Policies, PurgeResult, SweepResult
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionStatus,
    StoredMessage,
)
from aisopod_session.results import (
    AuditRecord,
    Change,
    ChangePage,
    DailyUsage,
    ImportConflictPolicy,
    ImportResult,
    PeerResult,
    QueuedMessage,
    SearchFilter,
    SearchIndexStatus,
    SearchOrder,
    SearchPage,
    SessionPage,
    StoreStats,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookState,
)
from aisopod_session.store import (
    _admin,
    _changes,
    _checks,
    _import,
    _lifecycle,
    _messages,
    _privacy,
    _search,
    _search_index,
    _sessions,
    _transfer,
    _webhook_dispatch,
    _webhooks,
)
from aisopod_session.store._agent_sync import AgentSessions, run_work, watch_changes
from aisopod_session.store._engine import Durability, Engine
from aisopod_session.store._open import open_engine, remote_url
from aisopod_session.store._tx import Work

T = TypeVar("T")

# Named outside the classes, where ``list`` is the builtin and not the method.
Messages = list[StoredMessage]
Queued = list[QueuedMessage]


def _in_thread(call: Callable[[], T]) -> T:
    return call()


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
        search: bool | None = None,
    ) -> SessionStore:
        """Open (creating and migrating) the store at ``url``; see the README for URL forms.

        An ``http://`` or ``https://`` URL opens the store of a running service instead, with
        ``token`` (or ``$AISOPOD_TOKEN``) and ``timeout`` seconds per request; the database
        options are then the server's own and cannot be given here.

        ``search=False`` turns full-text search off for the database: writes stop indexing and
        the index is emptied; ``search=True`` turns it back on; the default keeps the database's
        setting (on for a new one; see the README's Search section).
        """
        if policies is not None and not isinstance(policies, Policies):
            raise InvalidInputError.for_field("policies", "expected a Policies")
        if search is not None and type(search) is not bool:
            raise InvalidInputError.for_field("search", "expected True, False or None")
        remote = remote_url(url, durability=durability, pool_size=pool_size, schema=schema,
                            policies=policies, token=token, timeout=timeout, search=search)
        if remote is not None:
            # imported here: httpx is needed only for a remote store (the `client` extra)
            from aisopod_session.store._remote_sync import RemoteSessionStore

            return RemoteSessionStore.connect(remote, token=token, timeout=timeout)
        engine = _in_thread(partial(
            open_engine, url, durability=durability, pool_size=pool_size, schema=schema))
        try:
            if not run_work(engine, _search_index.configure(search)):
                # its writes leave the index alone
                engine.dialect = _search_index.without_search(engine.dialect)
        except BaseException:
            _in_thread(engine.close)
            raise
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
        return run_work(self._engine, _sessions.list_sessions(
            _checks.admin_filter(filter), self._engine.cursor_key, None))

    def get_session_by_id(self, session_id: int) -> Session:
        """Any session, archived generations included (admin: no isolation)."""
        return run_work(self._engine, _admin.get_session_by_id(session_id))

    def get_history_by_id(
        self, session_id: int, query: HistoryQuery | None = None
    ) -> Messages:
        """Any session's history by id (admin: no isolation)."""
        return run_work(self._engine, _messages.get_history_by_id(session_id, query))

    def purge_compacted(self, older_than: datetime | None = None) -> int:
        """Delete compacted-away originals for retention; returns how many (admin)."""
        return run_work(self._engine, _lifecycle.purge_compacted(older_than))

    def count_sessions_by_status(
        self, agent_id: str | None = None
    ) -> dict[SessionStatus, int]:
        """How many sessions there are in each status, of one agent or all (admin)."""
        checked = _checks.agent_or_none(agent_id)
        return run_work(self._engine, _admin.count_by_status(checked))

    def schema_version(self) -> int:
        """The schema version recorded in the database (admin)."""
        return run_work(self._engine, _admin.schema_version())

    def usage_by_day(
        self, days: int = 14, *, agent_id: str | None = None, now: datetime | None = None
    ) -> list[DailyUsage]:
        """Messages and tokens per UTC day and agent, over the last ``days`` days (admin)."""
        checked = _checks.agent_or_none(agent_id)
        return run_work(self._engine, _admin.usage_by_day(checked, days, now))

    def stats(self) -> StoreStats:
        """Sessions by status, agents, live and compacted messages (admin)."""
        return run_work(self._engine, _admin.stats())

    def clear_sessions(self, agent_id: str | None = None) -> int:
        """Delete every session of one agent, or of all agents; returns how many (admin)."""
        return run_work(self._engine, _admin.clear(_checks.agent_or_none(agent_id)))

    def export_jsonl(
        self, agent_id: str | None = None, *, session_id: int | None = None
    ) -> Iterator[str]:
        """Every session (all generations), message and waiting inbox message as JSON Lines,
        streamed (admin); or only the session ``session_id`` (without the key's inbox)."""
        agent = _checks.agent_or_none(agent_id)
        plan = _transfer.export_plan(_transfer.agent_sessions(agent, session_id),
                                     _transfer.agent_inbox(agent, session_id))
        yield from self._lines(plan)

    def import_jsonl(
        self, lines: Iterable[str | bytes],
        *, on_conflict: ImportConflictPolicy = "fail",
    ) -> ImportResult:
        """Import an export (admin): every line checked as the API checks its data, then the
        whole file stored in one transaction, or nothing of it (InvalidInputError naming the
        line and field). ``on_conflict`` says what happens to a session that already exists:
        ``"fail"`` (ConflictError), ``"skip"`` or ``"archive-existing"`` (see the README)."""
        policy = _import.conflict_policy(on_conflict)
        with _import.Spool() as spool:
            checker = _import.Checker(spool)
            for line in lines:
                checker.line(line)
            checker.finish()
            return run_work(self._engine, _import.publish(spool, policy))

    def _drive(self, plan: Generator[Any, Any, T]) -> T:
        """Run a multi-step plan: each Work it yields, and its result."""
        sent: Any = None
        while True:
            try:
                step = plan.send(sent)
            except StopIteration as done:
                return cast(T, done.value)
            sent = run_work(self._engine, step)

    def _lines(self, plan: _transfer.Plan) -> Iterator[str]:
        """Run a plan that yields Work to run and lines to hand on."""
        sent: Any = None
        while True:
            try:
                step = plan.send(sent)
            except StopIteration:
                return
            if isinstance(step, Work):
                sent = run_work(self._engine, step)
            else:
                sent = None
                yield step

    # Full-text search (admin: every agent's messages, or one agent's).

    def search_all(self, query: str, *, agent_id: str | None = None,
                         filter: SearchFilter | None = None, limit: int = 10,
                         cursor: str | None = None, order: SearchOrder = "best") -> SearchPage:
        """Messages of every agent (or of ``agent_id``) matching ``query``; see
        ``AgentSessions.search`` and the README's Search section (admin: no isolation)."""
        checked = _checks.agent_or_none(agent_id)
        return run_work(self._engine, _search.search(query, checked, filter, limit,
                                                           cursor, order))

    def search_index_status(self) -> SearchIndexStatus:
        """Whether search is on, and how many older messages wait to be indexed (admin)."""
        return run_work(self._engine, _search_index.status())

    def build_search_index(
        self, *, batch_size: int = _search_index.BUILD_BATCH,
        on_progress: Callable[[SearchIndexStatus], None] | None = None,
        max_batches: int | None = None,
    ) -> SearchIndexStatus:
        """Index the messages stored before search existed (or before it was turned back on),
        newest first, ``batch_size`` at a time, each batch its own short write (the store keeps
        working meanwhile; an interrupted build resumes where it stopped). ``on_progress`` is
        called after each batch with what is left; ``max_batches`` stops after that many
        batches (the status returned says what is still pending) (admin)."""
        batch = _search_index.build_batch(batch_size)
        batches = _search.max_batches(max_batches)
        left = (self.search_index_status()).pending
        while left and batches != 0:
            done, finished = run_work(self._engine, batch)
            left = 0 if finished else max(0, left - done)
            batches = None if batches is None else batches - 1
            if on_progress is not None:
                on_progress(SearchIndexStatus(enabled=True, pending=left))
        return self.search_index_status()

    # The change feed (admin: every agent's entries, or one agent's).

    def changes(self, since: str | None = None, *, agent_id: str | None = None,
                      limit: int = 100) -> ChangePage:
        """Committed changes after the cursor ``since`` (None: the oldest kept), in commit
        order; resume from the page's ``next_cursor``. CursorExpiredError once pruned."""
        return run_work(self._engine, _changes.changes(since, agent_id, limit))

    def latest_cursor(self) -> str:
        """The cursor of the newest change: ``since=`` it reads only what commits later."""
        return run_work(self._engine, _changes.latest_cursor())

    def watch(self, since: str | None = None, *, agent_id: str | None = None
              ) -> Iterator[Change]:
        """Changes as they commit, after ``since`` (None: from now on), woken promptly (see the
        README); ends when the store closes."""
        return watch_changes(self._engine, since, _checks.agent_or_none(agent_id))

    # --- webhooks (admin): the change feed POSTed to receivers, and the delivery log ---------

    def deliver_webhooks(
        self, webhooks: Iterable[Webhook], *, owner: str | None = None,
        lease_seconds: float = _webhook_dispatch.LEASE_SECONDS,
        on_outcome: Callable[[WebhookDelivery], None] | None = None,
    ) -> None:
        """Deliver the change feed to ``webhooks`` (signed, in commit order, at least once,
        retried with backoff; see the README) until the store closes (or the task is
        cancelled). Run it in every replica: one worker per webhook holds its lease
        (``lease_seconds``, by the database's clock) and delivers, the others take over when
        it stops. ``owner`` names this worker (default: host, process and a random part): give
        each running dispatcher its own (one restarted under the same name resumes its leases
        at once). ``on_outcome`` is called with each logged outcome (metrics)."""
        dispatcher = _webhook_dispatch.Dispatcher(self._engine, webhooks, owner, lease_seconds,
                                                  on_outcome)
        dispatcher.run_blocking()

    def webhook_deliveries(
        self, webhook: str | None = None, *, status: WebhookDeliveryStatus | str | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        """The delivery log, newest first: of one webhook or all, of one status or all."""
        return run_work(self._engine, _webhooks.deliveries(webhook, status, limit))

    def webhook_states(self) -> list[WebhookState]:
        """Where each webhook's delivery stands: position, lease holder, counts."""
        return run_work(self._engine, _webhooks.states())

    # --- end of webhooks -----------------------------------------------------------------------

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
        return run_work(self._engine, _privacy.forget_peer(channel, peer_id, actor))

    def export_peer(
        self, channel: str, peer_id: str, *, actor: str = "admin"
    ) -> Iterator[str]:
        """Everything held about a person, as export JSON Lines (streamed); audited."""
        yield from self._lines(_privacy.export_peer_plan(channel, peer_id, actor))

    def audit_log(self, limit: int = 100) -> list[AuditRecord]:
        """The newest audit records (who, when, how much; never content)."""
        return run_work(self._engine, _privacy.audit_log(limit))

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
