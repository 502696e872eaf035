"""The agent handle of the store over HTTP (:class:`AsyncRemoteAgentSessions`), and the one
pooled connection a remote store and its handles share; see ``_remote_async``."""

from __future__ import annotations

# async-only
# The source of _remote_agent_sync.py (scripts/async_to_sync.py; the markers: see _async.py).
import asyncio

# end async-only
import time
from collections.abc import AsyncIterator  # sync: from collections.abc import Iterator
from contextlib import suppress
from datetime import datetime
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse  # sync: from httpx_sse import SSEError, connect_sse

from aisopod_session.compaction import CompactionRecord, CompactionStrategy
from aisopod_session.errors import AccessDeniedError, SessionBusyError, StoreClosedError
from aisopod_session.lifecycle import Policies
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionSummary,
    StoredMessage,
)
from aisopod_session.results import (
    Change,
    ChangePage,
    CommitResult,
    MetadataMerge,
    Page,
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
    _http,
    _privacy,
    _runs,
    _search,
    _sessions,
)
from aisopod_session.store._agent_async import AsyncAgentSessions

Messages = list[StoredMessage]
Contents = list[Any]
REMOTE_POLL_SECONDS = 0.05
"""How often a remote start_run waiting for a busy session asks again (it is not woken)."""
Queued = list[QueuedMessage]
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""How long a remote watch waits before reconnecting a dropped stream, after each failure."""
STREAM_READ_SECONDS = 60.0
"""A stream that sends nothing (not even its 15 s keep-alive) this long is reconnected."""


class Connection:
    """One pooled HTTP client of one service, and who its token is."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.admin = False
        self.agent_id: str | None = None
        self.closed = False
        self.streams: set[httpx.Response] = set()
        """Open change streams: closing the store closes them (a blocking read would wait for
        the server's next event otherwise)."""

    def check_open(self) -> None:
        if self.closed:
            raise StoreClosedError("the session store is closed")

    async def call(self, method: str, path: str, *, write: bool, **options: Any) -> Any:
        self.check_open()
        try:
            response = await self.client.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise _http.transport_error(exc, write=write) from None
        return _http.answer(response, write=write)

    async def lines(self, path: str, params: _http.Params) -> AsyncIterator[str]:
        """A JSON Lines answer, line by line (without line ends), as it arrives."""
        self.check_open()
        try:
            async with self.client.stream("GET", path, params=params) as response:
                if not response.is_success:
                    await response.aread()
                    raise _http.error_of(response, write=False)
                pending = b""
                async for chunk in response.aiter_bytes():
                    lines, pending = _http.split_lines(pending, chunk)
                    for line in lines:  # sync: yield from lines
                        yield line  # async-only
                if pending:
                    yield pending.decode("utf-8")
        except httpx.HTTPError as exc:
            raise _http.transport_error(exc, write=False) from None

    async def changes(self, path: str, params: _http.Params) -> ChangePage:
        body = await self.call("GET", path, write=False, params=params)
        return ChangePage([Change.model_validate(item) for item in body["changes"]],
                          next_cursor=body["next_cursor"])

    async def watch(self, path: str, since: str, params: _http.Params
                    ) -> AsyncIterator[Change]:
        """A change stream (Server-Sent Events) from ``since``, reconnected after the last
        change seen when it drops or the server restarts, until the store closes. Typed
        errors (a bad or expired cursor, a token refused) end it."""
        cursor, failures = since, 0
        timeout = httpx.Timeout(self.client.timeout.connect, read=STREAM_READ_SECONDS)
        while not self.closed:
            try:
                async with aconnect_sse(self.client, "GET", path,  # sync: with connect_sse(self.client, "GET", path,
                                        params=[*params, ("since", cursor)],
                                        timeout=timeout) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                        raise _http.error_of(source.response, write=False)
                    failures = 0
                    self.streams.add(source.response)
                    try:
                        async for event in source.aiter_sse():  # sync: for event in source.iter_sse():
                            change = Change.model_validate_json(event.data)
                            cursor = change.cursor
                            yield change
                    finally:
                        self.streams.discard(source.response)
            except (httpx.HTTPError, httpx.StreamError, SSEError, OSError):
                if self.closed:
                    return
                await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])  # sync: time.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
                failures += 1

    async def close(self) -> None:
        """Refuse further calls, end the open change streams, close the client."""
        self.closed = True
        for response in list(self.streams):
            # sync-only: _http.interrupt(response)  # a blocked read in another thread
            with suppress(Exception):  # it may be ending by itself meanwhile
                await response.aclose()
        await self.client.aclose()

    def for_admin(self) -> None:
        """Admin operations need an admin token: refused here, before any request."""
        if not self.admin:
            raise AccessDeniedError(
                f"this store's token is agent {self.agent_id!r}'s; admin operations need an "
                "admin token")


class AsyncRemoteAgentSessions(AsyncAgentSessions):
    """One agent's sessions on a running service (see :class:`AsyncAgentSessions`)."""

    def __init__(self, connection: Connection, agent_id: str) -> None:
        # Not the local handle's __init__: there is no engine here, only the service.
        self.agent_id = _checks.agent_id(agent_id)
        self._policies = Policies()
        self._http = connection

    async def _call(self, method: str, path: str, *, write: bool = True, **options: Any) -> Any:
        return await self._http.call(method, path, write=write, **options)

    async def changes(self, since: str | None = None, *, limit: int = 100) -> ChangePage:
        _changes.changes(since, self.agent_id, limit)  # checks the arguments
        return await self._http.changes(_http.changes_path(self.agent_id),
                                        _http.params(since=since, limit=limit))

    async def latest_cursor(self) -> str:
        body = await self._call("GET", _http.changes_path(self.agent_id) + "/latest",
                                write=False)
        return str(body["cursor"])

    async def watch(self, since: str | None = None) -> AsyncIterator[Change]:
        start = since if since is not None else await self.latest_cursor()
        _changes.position_of(start)
        stream = self._http.watch(_http.changes_path(self.agent_id) + "/stream", start, [])
        async for change in stream:  # sync: yield from stream
            yield change  # async-only

    async def get_or_create(self, key: SessionKey) -> Session:
        checked = self._key(key)
        return Session.model_validate(await self._call("PUT", _http.key_path(checked)))

    async def get(self, key: SessionKey) -> Session:
        checked = self._key(key)
        return Session.model_validate(
            await self._call("GET", _http.key_path(checked), write=False))

    async def list(self, filter: SessionFilter | None = None) -> SessionPage:
        checked = _checks.agent_filter(filter, self.agent_id)
        body = await self._call("GET", _http.agent_path(self.agent_id), write=False,
                                params=_http.filter_params(checked, with_agent=False))
        return Page([SessionSummary.model_validate(item) for item in body["items"]],
                    body["next_cursor"])

    async def patch(self, key: SessionKey, patch: SessionPatch, *, run: Run | None = None
                    ) -> Session:
        checked = self._key(key)
        change = _checks.model(patch, SessionPatch, "patch")
        _sessions.patch(checked, change)  # the local checks (metadata size), nothing run
        return Session.model_validate(await self._call(
            "PATCH", _http.key_path(checked), params=_fence(self._run_of(key, run)),
            json=change.model_dump(mode="json", exclude_unset=True)))

    async def delete(self, key: SessionKey) -> bool:
        checked = self._key(key)
        return bool((await self._call("DELETE", _http.key_path(checked)))["deleted"])

    async def append_messages(self, key: SessionKey, messages: Messages, *,
                              run: Run | None = None) -> Messages:
        checked = self._key(key)
        new = _checks.new_messages(messages)
        body = await self._call("POST", _http.key_path(checked) + "/messages",
                                params=_fence(self._run_of(key, run)),
                                json={"messages": [_message_body(n.message) for n in new]})
        return [StoredMessage.model_validate(message) for message in body]

    async def get_history(self, key: SessionKey, query: HistoryQuery | None = None) -> Messages:
        checked = self._key(key)
        body = await self._call("GET", _http.key_path(checked) + "/messages", write=False,
                                params=_http.history_params(_checks.query(query)))
        return [StoredMessage.model_validate(message) for message in body]

    async def get_contents(self, key: SessionKey, query: HistoryQuery | None = None
                           ) -> Contents:
        return [message.content for message in await self.get_history(key, query)]

    async def reset(self, key: SessionKey) -> Session:
        checked = self._key(key)
        return Session.model_validate(
            await self._call("POST", _http.key_path(checked) + "/reset"))

    async def compact(self, key: SessionKey, strategy: CompactionStrategy, *,
                      run: Run | None = None) -> CompactionRecord:
        checked = self._key(key)
        plan = _checks.strategy(strategy)
        return CompactionRecord.model_validate(await self._call(
            "POST", _http.key_path(checked) + "/compact", params=_fence(self._run_of(key, run)),
            json=plan.model_dump(mode="json")))

    # Runs (see _runs): the same checks first, then the service's run routes.

    async def start_run(self, key: SessionKey, owner: str, *, ttl: float = 60.0,
                        wait: float = 0.0) -> Run:
        checked = self._key(key)
        _runs.start_run(checked, owner, ttl)  # the local checks, nothing run
        deadline = time.monotonic() + _runs.wait(wait)
        params = _http.params(owner=_runs.owner(owner), ttl=float(ttl))
        while True:  # the service never waits: ask again (see service/_routes_runs.py)
            try:
                return Run.model_validate(
                    await self._call("POST", _http.key_path(checked) + "/runs", params=params))
            except SessionBusyError as busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(left, _runs.until_expiry(busy), REMOTE_POLL_SECONDS))  # sync: time.sleep(min(left, _runs.until_expiry(busy), REMOTE_POLL_SECONDS))

    async def renew_run(self, run: Run, *, ttl: float | None = None) -> Run:
        checked = _runs.checked_run(run, self.agent_id)
        _runs.renew_run(checked, ttl)  # the local checks, nothing run
        return Run.model_validate(await self._call(
            "POST", _http.key_path(checked.key) + "/runs/renew",
            json={"run": checked.model_dump(mode="json"), "ttl": ttl}))

    async def finish_run(self, run: Run) -> int:
        checked = _runs.checked_run(run, self.agent_id)
        body = await self._call("POST", _http.key_path(checked.key) + "/runs/finish",
                                json=checked.model_dump(mode="json"))
        return int(body["waiting"])

    async def current_run(self, key: SessionKey) -> Run | None:
        checked = self._key(key)
        body = await self._call("GET", _http.key_path(checked) + "/runs/current", write=False)
        return None if body is None else Run.model_validate(body)

    async def request_stop(self, key: SessionKey) -> bool:
        checked = self._key(key)
        return bool((await self._call("POST", _http.key_path(checked) + "/runs/stop"))["stopped"])

    async def enqueue(self, key: SessionKey, messages: Messages) -> Queued:
        checked = self._key(key)
        new = _checks.new_messages(messages)
        body = await self._call("POST", _http.key_path(checked) + "/inbox",
                                json={"messages": [_message_body(n.message) for n in new]})
        return [QueuedMessage.model_validate(queued) for queued in body]

    async def inbox(self, key: SessionKey, *, limit: int | None = None) -> Queued:
        checked = self._key(key)
        _runs.inbox(checked, limit)  # the local checks, nothing run
        body = await self._call("GET", _http.key_path(checked) + "/inbox", write=False,
                                params=_http.params(limit=limit))
        return [QueuedMessage.model_validate(queued) for queued in body]

    async def take_inbox(self, run: Run, *, limit: int | None = None) -> Messages:
        checked = _runs.checked_run(run, self.agent_id)
        _runs.take_inbox(checked, limit)  # the local checks, nothing run
        body = await self._call("POST", _http.key_path(checked.key) + "/inbox/take",
                                json={"run": checked.model_dump(mode="json"), "limit": limit})
        return [StoredMessage.model_validate(message) for message in body]

    async def resolve(self, key: SessionKey, now: datetime | None = None) -> Resolution:
        checked = self._key(key)
        at = None if now is None else _checks.now(now)
        return Resolution.model_validate(await self._call(
            "POST", _http.key_path(checked) + "/resolve", params=_http.params(now=at)))

    async def get_compaction_record(self, key: SessionKey) -> CompactionRecord:
        checked = self._key(key)
        return CompactionRecord.model_validate(
            await self._call("GET", _http.key_path(checked) + "/compaction", write=False))

    async def search(self, query: str, *, filter: SearchFilter | None = None, limit: int = 10,
                     cursor: str | None = None, order: SearchOrder = "best") -> SearchPage:
        _search.search(query, self.agent_id, filter, limit, cursor, order)  # the local checks
        params = _http.search_params(query, _search.search_filter(filter), limit, cursor, order)
        return SearchPage.model_validate(await self._call(
            "GET", _http.search_path(self.agent_id), write=False, params=params))

    async def pop_message(self, key: SessionKey) -> StoredMessage | None:
        checked = self._key(key)
        body = await self._call("DELETE", _http.key_path(checked) + "/messages/newest")
        return None if body is None else StoredMessage.model_validate(body)

    async def list_detailed(self, filter: SessionFilter | None = None) -> SessionDetailPage:
        checked = _checks.agent_filter(filter, self.agent_id)
        body = await self._call("GET", _http.details_path(self.agent_id), write=False,
                                params=_http.filter_params(checked, with_agent=False))
        return Page([Session.model_validate(item) for item in body["items"]],
                    body["next_cursor"])

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
        checked = self._key(key)
        others = self._shared(shared)
        # the local checks (messages, merges, flags), nothing run
        _commit.commit(checked, messages, merge, create=create,
                       expect_updated_at=expect_updated_at, shared=others)
        body = await self._call("POST", _http.key_path(checked) + "/commit", json={
            "messages": [_message_body(message) for message in messages or []],
            "merge": merge,
            "create": create,
            "expect_updated_at": _http.value(expect_updated_at) if expect_updated_at else None,
            "shared": [{"key": other.canonical(), "merge": entries}
                       for other, entries in others.items()],
        })
        return CommitResult(
            session=Session.model_validate(body["session"]),
            messages=[StoredMessage.model_validate(message) for message in body["messages"]],
            applied=body["applied"],
            shared={SessionKey.parse(entry["key"]): None if entry["session"] is None
                    else Session.model_validate(entry["session"]) for entry in body["shared"]},
        )


    async def record_audit(self, action: str, subject: str | None = None, *, sessions: int = 0,
                           messages: int = 0) -> None:
        _privacy.record_agent_audit(self.agent_id, action, subject, sessions, messages)  # checks
        await self._call("POST", f"/v1/agents/{_http.part(self.agent_id)}/audit", json={
            "action": action, "subject": subject, "sessions": sessions, "messages": messages})

def _fence(run: Run | None) -> _http.Params:
    """The query of a write a run makes (the service fences it with the run's fence)."""
    return [] if run is None else _http.params(fence=run.fence, owner=run.owner)


def _message_body(message: StoredMessage) -> dict[str, Any]:
    """A new message as the service takes it (the store assigns ``id``; ``compacted`` is the
    store's to set)."""
    return message.model_dump(mode="json", exclude={"id", "compacted"})
