"""The agent handle of the local store: :class:`AsyncAgentSessions` (one agent's sessions), and
:func:`run_work`, how the facades run an operation's Work on the engine.

The source of ``_agent_sync.py``, like ``_async.py`` is of ``_sync.py`` (see the markers there).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar

from aisopod_session.compaction import CompactionRecord, CompactionStrategy
from aisopod_session.errors import InvalidInputError, SessionBusyError
from aisopod_session.lifecycle import Policies
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionKey,
    SessionPatch,
    StoredMessage,
)
from aisopod_session.results import (
    Change,
    ChangePage,
    CommitResult,
    MetadataMerge,
    QueuedMessage,
    Resolution,
    Run,
    SearchFilter,
    SearchOrder,
    SearchPage,
    SessionDetailPage,
    SessionPage,
)
from aisopod_session.store import (
    _changes,
    _checks,
    _commit,
    _compaction,
    _lifecycle,
    _messages,
    _privacy,
    _runs,
    _search,
    _sessions,
)
from aisopod_session.store._engine import Engine
from aisopod_session.store._schema import lock_order
from aisopod_session.store._tx import Work
from aisopod_session.store._wakeups import key_name

T = TypeVar("T")

# Named outside the classes, where ``list`` is the builtin and not the method.
Messages = list[StoredMessage]
Contents = list[Any]
Queued = list[QueuedMessage]


async def run_work(engine: Engine, work: Work[T]) -> T:
    if work.read is not None:
        found = await engine.read_async(work.read)
        if found is not None or work.write is None:
            return found  # type: ignore[return-value]  # a read alone never returns None
    assert work.write is not None
    return await engine.write_async(work.pipelined or work.write, work.lock_key)


WATCH_PAGE = 500
"""Entries a watcher reads at a time."""
WATCH_POLL_SECONDS = 1.0
"""How often a watcher reads again without being woken (a safety net: see ``_wakeups``)."""


async def watch_changes(engine: Engine, since: str | None, agent_id: str | None
                        ) -> AsyncIterator[Change]:
    """The feed's entries after ``since`` (None: from now on) as they commit, until the store
    closes."""
    with engine.feed.watching() as woken:  # before the first read: no commit falls between
        cursor = since if since is not None else await run_work(engine, _changes.latest_cursor())
        while not engine.closed:
            page = await run_work(engine, _changes.changes(cursor, agent_id, WATCH_PAGE))
            for change in page:  # sync: yield from page
                yield change  # async-only
            cursor = page.next_cursor
            if len(page) < WATCH_PAGE and not engine.closed:
                await woken.wait_async(WATCH_POLL_SECONDS)


class AsyncAgentSessions:
    """One agent's sessions. Keys of any other agent raise AccessDeniedError untouched."""

    def __init__(self, engine: Engine, agent_id: str, policies: Policies | None = None) -> None:
        self._engine = engine
        self.agent_id = _checks.agent_id(agent_id)
        self._policies = policies or Policies()

    def _key(self, key: SessionKey) -> SessionKey:
        return _checks.owned_key(key, self.agent_id)

    async def get_or_create(self, key: SessionKey) -> Session:
        """The live session of ``key``, created if there is none (one per key, race-free)."""
        return await run_work(self._engine, _sessions.get_or_create(self._key(key)))

    async def get(self, key: SessionKey) -> Session:
        """The live session of ``key``; SessionNotFoundError if there is none."""
        return await run_work(self._engine, _sessions.get(self._key(key)))

    async def list(self, filter: SessionFilter | None = None) -> SessionPage:
        """This agent's sessions, most recently updated first, one page at a time."""
        checked = _checks.agent_filter(filter, self.agent_id)
        return await run_work(self._engine, _sessions.list_sessions(
            checked, self._engine.cursor_key, self.agent_id))

    async def patch(self, key: SessionKey, patch: SessionPatch, *, run: Run | None = None
                    ) -> Session:
        """Change status, tokens (set or atomic add) and metadata (merge; None removes); with
        ``run``, only while it is the session's current run (RunLostError otherwise)."""
        return await run_work(self._engine,
                          _sessions.patch(self._key(key), patch, self._run_of(key, run)))

    async def delete(self, key: SessionKey) -> bool:
        """Delete the live session and every archived generation of ``key``, messages included."""
        return await run_work(self._engine, _sessions.delete(self._key(key)))

    async def append_messages(self, key: SessionKey, messages: Messages, *,
                              run: Run | None = None) -> Messages:
        """Append atomically; a message whose ``external_id`` is already stored is not stored
        again (the stored one is returned in its place). With ``run``, only while it is the
        session's current run: RunLostError (nothing stored) once it was taken over."""
        checked = self._key(key)
        return await run_work(self._engine, _messages.append_messages(
            checked, messages, self._run_of(key, run)))

    async def get_history(self, key: SessionKey, query: HistoryQuery | None = None) -> Messages:
        """The live history in append order (``HistoryQuery`` pages, tails and filters it)."""
        return await run_work(self._engine, _messages.get_history(self._key(key), query))

    async def get_contents(self, key: SessionKey, query: HistoryQuery | None = None
                           ) -> Contents:
        """The ``content`` of each message :meth:`get_history` would return, without the rest
        of the message (a lean read for turning a history into a prompt)."""
        return await run_work(self._engine, _messages.get_contents(self._key(key), query))

    async def reset(self, key: SessionKey) -> Session:
        """Archive the live session (history kept) and start a fresh one under the same key."""
        return await run_work(self._engine, _sessions.reset(self._key(key)))

    async def compact(self, key: SessionKey, strategy: CompactionStrategy, *,
                      run: Run | None = None) -> CompactionRecord:
        """Compact the live history (nothing is deleted: see the README); with ``run``, fenced
        by it like an append."""
        return await run_work(self._engine, _compaction.compact(
            self._key(key), strategy, self._run_of(key, run)))

    async def resolve(self, key: SessionKey, now: datetime | None = None) -> Resolution:
        """The session a new message to ``key`` belongs to: like get_or_create, but a session
        that the key's reset policy finds stale is archived and a fresh one started."""
        checked = self._key(key)
        policy = self._policies.reset.for_key(checked.agent_id, checked.channel)
        return await run_work(self._engine, _lifecycle.resolve(checked, policy, now))

    async def get_compaction_record(self, key: SessionKey) -> CompactionRecord:
        """The live session's compaction state."""
        return await run_work(self._engine, _compaction.get_compaction_record(self._key(key)))

    # Runs: one active run per session, fenced writes, the inbox (see _runs).

    async def start_run(self, key: SessionKey, owner: str, *, ttl: float = 60.0,
                        wait: float = 0.0) -> Run:
        """Take the session's run lease for ``ttl`` seconds (the live session is created if
        missing). While another run holds it, try again for up to ``wait`` seconds, then raise
        SessionBusyError (holder, expires_at); an expired lease is taken over."""
        checked = self._key(key)
        work = _runs.start_run(checked, owner, ttl)
        deadline = time.monotonic() + _runs.wait(wait)
        if deadline <= time.monotonic():  # no waiting: one try, nothing to watch
            return await run_work(self._engine, work)
        with self._engine.run_ends.watching(lock_order(checked)) as run_end:
            while True:
                try:
                    return await run_work(self._engine, work)
                except SessionBusyError as busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    # until the run's end (here, or elsewhere on PostgreSQL), its lease's
                    # expiry, or the next poll
                    await run_end.wait_async(min(left, _runs.until_expiry(busy),
                                                 self._engine.dialect.run_poll_seconds))

    async def renew_run(self, run: Run, *, ttl: float | None = None) -> Run:
        """Extend the lease by ``ttl`` seconds (the run's own by default), from now; the result
        says whether a stop was requested. RunLostError once the run is not current."""
        checked = _runs.checked_run(run, self.agent_id)
        return await run_work(self._engine, _runs.renew_run(checked, ttl))

    async def finish_run(self, run: Run) -> int:
        """End the run (again: nothing changes); how many inbox messages wait, for the next
        run. RunLostError if the run was taken over (its later writes were refused)."""
        checked = _runs.checked_run(run, self.agent_id)
        waiting = await run_work(self._engine, _runs.finish_run(checked))
        self._engine.run_ends.ended(key_name(lock_order(checked.key)))  # this process's waiters
        return waiting

    async def current_run(self, key: SessionKey) -> Run | None:
        """The run holding the session now (its lease may have expired), or None."""
        return await run_work(self._engine, _runs.current_run(self._key(key)))

    async def request_stop(self, key: SessionKey) -> bool:
        """Ask the current run to stop (it sees ``stop_requested`` on its next renewal);
        False when no run is active."""
        return await run_work(self._engine, _runs.request_stop(self._key(key)))

    async def enqueue(self, key: SessionKey, messages: Messages) -> Queued:
        """Keep incoming messages for a run to take (the live session is created if missing);
        de-duplicated by ``external_id`` like appends."""
        return await run_work(self._engine, _runs.enqueue(self._key(key), messages))

    async def inbox(self, key: SessionKey, *, limit: int | None = None) -> Queued:
        """The messages waiting, oldest first (nothing is taken)."""
        return await run_work(self._engine, _runs.inbox(self._key(key), limit))

    async def take_inbox(self, run: Run, *, limit: int | None = None) -> Messages:
        """Move the oldest waiting messages (``limit``, or all) into the history under the
        run's fence, atomically; returns them as stored."""
        checked = _runs.checked_run(run, self.agent_id)
        return await run_work(self._engine, _runs.take_inbox(checked, limit))

    def _run_of(self, key: SessionKey, run: Run | None) -> Run | None:
        """A fencing run: this agent's, and of the key written to."""
        if run is None:
            return None
        checked = _runs.checked_run(run, self.agent_id)
        if checked.key != self._key(key):
            raise InvalidInputError.for_field("run", f"is a run of {checked.key}, not of {key}")
        return checked

    # The change feed (see _changes): this agent's entries only.

    async def changes(self, since: str | None = None, *, limit: int = 100) -> ChangePage:
        """This agent's changes after the cursor ``since`` (None: the oldest kept), oldest
        first; resume from the page's ``next_cursor``. CursorExpiredError once pruned."""
        return await run_work(self._engine, _changes.changes(since, self.agent_id, limit))

    async def latest_cursor(self) -> str:
        """The cursor of the newest change (any agent's): ``since=`` it reads only what
        commits later."""
        return await run_work(self._engine, _changes.latest_cursor())

    def watch(self, since: str | None = None) -> AsyncIterator[Change]:
        """This agent's changes as they commit, after ``since`` (None: from now on); ends when
        the store closes."""
        return watch_changes(self._engine, since, self.agent_id)

    async def search(self, query: str, *, filter: SearchFilter | None = None, limit: int = 10,
                     cursor: str | None = None, order: SearchOrder = "best") -> SearchPage:
        """This agent's messages matching ``query`` (words, "phrases", prefix*, -excluded; see
        the README's Search section), best or newest first, one page at a time; pass the
        page's ``next_cursor`` back as ``cursor``. SearchDisabledError if search is off."""
        return await run_work(self._engine, _search.search(query, self.agent_id, filter, limit,
                                                           cursor, order))

    # Operations added for the framework integrations (aisopod_session.integrations).

    async def pop_message(self, key: SessionKey) -> StoredMessage | None:
        """Remove the newest live message and return it (None if the history is empty): the
        inverse of appending it (counters go down, its ``external_id`` is free again)."""
        return await run_work(self._engine, _messages.pop_message(self._key(key)))

    async def list_detailed(self, filter: SessionFilter | None = None) -> SessionDetailPage:
        """Like :meth:`list`, with whole sessions (metadata included), one page at a time."""
        checked = _checks.agent_filter(filter, self.agent_id)
        return await run_work(self._engine, _sessions.list_detailed(
            checked, self._engine.cursor_key, self.agent_id))

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
        ``expect_updated_at`` makes it a compare-and-set. See ``_commit.commit``."""
        return await run_work(self._engine, _commit.commit(
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

    # The audit log: what the session tools (aisopod_session.tools) did as this agent.

    async def record_audit(self, action: str, subject: str | None = None, *, sessions: int = 0,
                           messages: int = 0) -> None:
        """Add an audit record with this agent as its actor (``agent:<id>``): ``action`` is
        ``tool.<name>``, ``subject`` what it looked at or sent into (never content)."""
        await run_work(self._engine, _privacy.record_agent_audit(
            self.agent_id, action, subject, sessions, messages))
