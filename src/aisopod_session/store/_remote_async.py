"""The store over HTTP: :class:`AsyncRemoteSessionStore`, what ``await AsyncSessionStore.open(
"https://…", token=…)`` returns.

It *is* an :class:`AsyncSessionStore` (a subclass overriding every operation), so a caller cannot
tell it from the local store: the same methods, arguments, results and typed errors. Arguments
are checked here exactly as the local store checks them (by building the same operation, which
validates, before anything is sent), so bad input fails the same way without a request; what only
the database can decide (a missing session, a conflict) comes back as problem+json and is raised
as the exception the server's store raised (see ``_http``). httpx underneath: one pooled client
per store, timeouts, TLS.
"""

from __future__ import annotations

# async-only
# The source of the blocking remote store: scripts/async_to_sync.py writes _remote_sync.py from
# it (see the note in _async.py for the markers).
import asyncio

# end async-only
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable  # sync: from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, cast

import httpx

from aisopod_session.errors import AccessDeniedError, InvalidInputError
from aisopod_session.lifecycle import Policies, PurgeResult, SweepResult
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionStatus,
    SessionSummary,
    StoredMessage,
)
from aisopod_session.results import (
    AuditRecord,
    Change,
    ChangePage,
    DailyUsage,
    ImportConflictPolicy,
    ImportResult,
    Page,
    PeerResult,
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
    _http,
    _import,
    _lifecycle,
    _privacy,
    _search,
    _search_index,
    _webhook_dispatch,
    _webhooks,
)
from aisopod_session.store._engine import Durability
from aisopod_session.store._remote_agent_async import AsyncRemoteAgentSessions, Connection  # sync: from aisopod_session.store._remote_agent_sync import Connection, RemoteAgentSessions
from aisopod_session.store._async import AsyncSessionStore  # sorted as _sync

Messages = list[StoredMessage]


class AsyncRemoteSessionStore(AsyncSessionStore):
    """Sessions on a running aisopod-session service (see :class:`AsyncSessionStore`)."""

    def __init__(self, connection: Connection, info: dict[str, Any]) -> None:
        # Not the local store's __init__: the engine, its policies and durability are the
        # server's.
        self._http = connection
        self.policies = Policies()
        self._backend = f"http+{info['backend']}"
        self._durability = cast(Durability, info["durability"])

    @classmethod
    async def connect(cls, url: str, *, token: str | None = None,
                      timeout: float | None = None) -> AsyncRemoteSessionStore:
        """A store on the service at ``url`` (``http://`` or ``https://``), with ``token`` (or
        ``$AISOPOD_TOKEN``); asks the service who the token is before returning."""
        options = _http.client_options(url, _http.token_or_env(token), timeout)
        transport = httpx.AsyncHTTPTransport(socket_options=_http.NO_DELAY)
        connection = Connection(httpx.AsyncClient(transport=transport, **options))
        try:
            info = await connection.call("GET", "/v1/info", write=False)
        except BaseException:
            await connection.client.aclose()
            raise
        connection.admin = bool(info["admin"])
        connection.agent_id = info.get("agent_id")
        return cls(connection, info)

    @property
    def durability(self) -> Durability:
        return self._durability

    @property
    def backend(self) -> str:
        """``http+sqlite`` or ``http+postgres``: the service, and what it stores into."""
        return self._backend

    def for_agent(self, agent_id: str) -> AsyncRemoteAgentSessions:
        agent = _checks.agent_id(agent_id)
        if not self._http.admin and self._http.agent_id != agent:
            raise AccessDeniedError(
                f"this store's token is agent {self._http.agent_id!r}'s; it may not use agent "
                f"{agent!r}")
        return AsyncRemoteAgentSessions(self._http, agent)

    async def _admin_call(self, method: str, path: str, *, write: bool = False,
                          **options: Any) -> Any:
        self._http.for_admin()
        return await self._http.call(method, path, write=write, **options)

    async def list_all_sessions(self, filter: SessionFilter | None = None) -> SessionPage:
        self._http.for_admin()
        checked = _checks.admin_filter(filter)
        body = await self._admin_call("GET", "/v1/admin/sessions",
                                      params=_http.filter_params(checked, with_agent=True))
        return Page([SessionSummary.model_validate(item) for item in body["items"]],
                    body["next_cursor"])

    async def changes(self, since: str | None = None, *, agent_id: str | None = None,
                      limit: int = 100) -> ChangePage:
        self._http.for_admin()
        _changes.changes(since, agent_id, limit)  # checks the arguments
        return await self._http.changes("/v1/admin/changes", _http.params(
            since=since, agent_id=agent_id, limit=limit))

    async def latest_cursor(self) -> str:
        body = await self._admin_call("GET", "/v1/admin/changes/latest")
        return str(body["cursor"])

    async def watch(self, since: str | None = None, *, agent_id: str | None = None
                    ) -> AsyncIterator[Change]:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        start = since if since is not None else await self.latest_cursor()
        _changes.position_of(start)
        stream = self._http.watch("/v1/admin/changes/stream", start,
                                  _http.params(agent_id=agent))
        async for change in stream:  # sync: yield from stream
            yield change  # async-only

    # --- webhooks: delivered by the service (its config's [[webhooks]]); the log is read here ---

    async def deliver_webhooks(
        self, webhooks: Iterable[Webhook], *, owner: str | None = None,
        lease_seconds: float = _webhook_dispatch.LEASE_SECONDS,
        on_outcome: Callable[[WebhookDelivery], None] | None = None,
    ) -> None:
        raise InvalidInputError.for_field(
            "store", "webhooks are delivered by the service itself: configure them as "
                     "[[webhooks]] in its config file (this store is a client of the service; "
                     "webhook_deliveries() reads the delivery log)")

    async def webhook_deliveries(
        self, webhook: str | None = None, *, status: WebhookDeliveryStatus | str | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        self._http.for_admin()
        _webhooks.deliveries(webhook, status, limit)  # the local checks, nothing run
        body = await self._admin_call("GET", "/v1/admin/webhooks/deliveries", params=_http.params(
            webhook=webhook, status=status, limit=limit))
        return [WebhookDelivery.model_validate(item) for item in body]

    async def webhook_states(self) -> list[WebhookState]:
        body = await self._admin_call("GET", "/v1/admin/webhooks/states")
        return [WebhookState.model_validate(item) for item in body]

    # --- end of webhooks -----------------------------------------------------------------------

    async def get_session_by_id(self, session_id: int) -> Session:
        self._http.for_admin()
        checked = _checks.session_id(session_id)
        body = await self._admin_call("GET", f"/v1/admin/sessions/{checked}")
        return Session.model_validate(body)

    async def get_history_by_id(
        self, session_id: int, query: HistoryQuery | None = None
    ) -> Messages:
        self._http.for_admin()
        checked = _checks.session_id(session_id)
        body = await self._admin_call("GET", f"/v1/admin/sessions/{checked}/messages",
                                      params=_http.history_params(_checks.query(query)))
        return [StoredMessage.model_validate(message) for message in body]

    async def purge_compacted(self, older_than: datetime | None = None) -> int:
        self._http.for_admin()
        _lifecycle.purge_compacted(older_than)  # the local checks, nothing run
        body = await self._admin_call("DELETE", "/v1/admin/messages/compacted", write=True,
                                      params=_http.params(older_than=older_than))
        return int(body["deleted"])

    async def count_sessions_by_status(
        self, agent_id: str | None = None
    ) -> dict[SessionStatus, int]:
        self._http.for_admin()
        body = await self._admin_call("GET", "/v1/admin/counts",
                                      params=_http.params(agent_id=_checks.agent_or_none(agent_id)))
        return {SessionStatus(status): int(count) for status, count in body.items()}

    async def schema_version(self) -> int:
        return int((await self._admin_call("GET", "/v1/admin/schema"))["version"])

    async def usage_by_day(
        self, days: int = 14, *, agent_id: str | None = None, now: datetime | None = None
    ) -> list[DailyUsage]:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        _admin.usage_by_day(agent, days, now)  # the local checks, nothing run
        body = await self._admin_call("GET", "/v1/admin/usage",
                                      params=_http.params(days=days, agent_id=agent, now=now))
        return [DailyUsage.model_validate(day) for day in body]

    async def stats(self) -> StoreStats:
        return StoreStats.model_validate(await self._admin_call("GET", "/v1/admin/stats"))

    async def clear_sessions(self, agent_id: str | None = None) -> int:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        body = await self._admin_call("DELETE", "/v1/admin/sessions", write=True,
                                      params=_http.params(confirm=True, agent_id=agent))
        return int(body["deleted"])

    async def export_jsonl(
        self, agent_id: str | None = None, *, session_id: int | None = None
    ) -> AsyncIterator[str]:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        checked = None if session_id is None else _checks.session_id(session_id)
        params = _http.params(agent_id=agent, session_id=checked)
        async for line in self._http.lines("/v1/admin/export", params):  # sync: yield from self._http.lines("/v1/admin/export", params)
            yield line  # async-only

    async def import_jsonl(
        self, lines: Iterable[str | bytes] | AsyncIterable[str | bytes],  # sync: self, lines: Iterable[str | bytes],
        *, on_conflict: ImportConflictPolicy = "fail",
    ) -> ImportResult:
        self._http.for_admin()
        policy = _import.conflict_policy(on_conflict)
        body = await self._http.call("POST", "/v1/admin/import", write=True,
                                     params=_http.params(on_conflict=policy),
                                     content=_upload(lines),
                                     headers={"Content-Type": _http.NDJSON})
        return ImportResult.model_validate(body)

    async def sweep(self, now: datetime | None = None, *, dry_run: bool = False) -> SweepResult:
        self._http.for_admin()
        params = _http.params(dry_run=_checks.flag(dry_run, "dry_run"),
                              now=None if now is None else _checks.now(now))
        return SweepResult.model_validate(
            await self._admin_call("POST", "/v1/admin/sweep", write=True, params=params))

    async def purge(self, now: datetime | None = None, *, dry_run: bool = False) -> PurgeResult:
        self._http.for_admin()
        params = _http.params(dry_run=_checks.flag(dry_run, "dry_run"),
                              now=None if now is None else _checks.now(now))
        return PurgeResult.model_validate(
            await self._admin_call("POST", "/v1/admin/purge", write=True, params=params))

    async def forget_peer(self, channel: str, peer_id: str, *, actor: str = "admin") -> PeerResult:
        self._http.for_admin()
        person = _checks.peer(channel, peer_id)
        params = _http.params(confirm=True, actor=_checks.actor(actor))
        return PeerResult.model_validate(await self._admin_call(
            "DELETE", _http.peer_path(*person), write=True, params=params))

    async def export_peer(
        self, channel: str, peer_id: str, *, actor: str = "admin"
    ) -> AsyncIterator[str]:
        self._http.for_admin()
        person = _checks.peer(channel, peer_id)
        path = _http.peer_path(*person) + "/export"
        params = _http.params(actor=_checks.actor(actor))
        async for line in self._http.lines(path, params):  # sync: yield from self._http.lines(path, params)
            yield line  # async-only

    # --- search (see _search): the same checks first, then the service's search routes ---------

    async def search_all(self, query: str, *, agent_id: str | None = None,
                         filter: SearchFilter | None = None, limit: int = 10,
                         cursor: str | None = None, order: SearchOrder = "best") -> SearchPage:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        _search.search(query, agent, filter, limit, cursor, order)  # the local checks, nothing run
        params = _http.search_params(query, _search.search_filter(filter), limit, cursor, order,
                                     agent_id=agent)
        return SearchPage.model_validate(
            await self._admin_call("GET", "/v1/admin/search", params=params))

    async def search_index_status(self) -> SearchIndexStatus:
        return SearchIndexStatus.model_validate(
            await self._admin_call("GET", "/v1/admin/search/index"))

    async def build_search_index(
        self, *, batch_size: int = _search_index.BUILD_BATCH,
        on_progress: Callable[[SearchIndexStatus], None] | None = None,
        max_batches: int | None = None,
    ) -> SearchIndexStatus:
        # One request per batch (the service runs a bounded build per request): on_progress
        # is called after each batch, as on the local store.
        self._http.for_admin()
        _search_index.build_batch(batch_size)  # the local checks, nothing run
        left = _search.max_batches(max_batches)
        status = await self.search_index_status()
        while status.pending and left != 0:
            status = SearchIndexStatus.model_validate(await self._admin_call(
                "POST", "/v1/admin/search/index/build", write=True,
                json={"batch_size": batch_size, "max_batches": 1}))
            left = None if left is None else left - 1
            if on_progress is not None:
                on_progress(status)
        return status

    async def audit_log(self, limit: int = 100) -> list[AuditRecord]:
        self._http.for_admin()
        _privacy.audit_log(limit)  # the local checks, nothing run
        body = await self._admin_call("GET", "/v1/admin/audit", params=_http.params(limit=limit))
        return [AuditRecord.model_validate(record) for record in body]

    async def close(self) -> None:
        await self._http.close()



async def _upload(lines: Iterable[str | bytes] | AsyncIterable[str | bytes]) -> AsyncIterator[bytes]:  # sync: def _upload(lines: Iterable[str | bytes]) -> Iterator[bytes]:
    """Import lines as request-body chunks of a few hundred KiB (streamed: memory stays flat)."""
    batch: list[bytes] = []
    size = 0
    async for line in _aiter(lines):  # sync: for line in lines:
        data = _http.line_bytes(line)
        batch.append(data)
        size += len(data)
        if size >= _http.UPLOAD_CHUNK_BYTES:
            yield b"".join(batch)
            batch, size = [], 0
    if batch:
        yield b"".join(batch)


# async-only
async def _aiter(
    lines: Iterable[str | bytes] | AsyncIterable[str | bytes],
) -> AsyncIterator[str | bytes]:
    if isinstance(lines, AsyncIterable):
        async for line in lines:
            yield line
    else:
        for line in lines:
            yield line
        await asyncio.sleep(0)  # let the loop breathe between chunks of a long list
# end async-only
