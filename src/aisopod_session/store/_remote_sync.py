# Generated from _remote_async.py by scripts/async_to_sync.py: do not edit.
# Edit _remote_async.py and run the script (tests/test_generated_sync.py checks they agree).
"""The store over HTTP: :class:`RemoteSessionStore`, what ``SessionStore.open(
"https://…", token=…)`` returns.

It *is* an :class:`SessionStore` (a subclass overriding every operation), so a caller cannot
tell it from the local store: the same methods, arguments, results and typed errors. Arguments
are checked here exactly as the local store checks them (by building the same operation, which
validates, before anything is sent), so bad input fails the same way without a request; what only
the database can decide (a missing session, a conflict) comes back as problem+json and is raised
as the exception the server's store raised (see ``_http``). httpx underneath: one pooled client
per store, timeouts, TLS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
from aisopod_session.store._remote_agent_sync import Connection, RemoteAgentSessions
from aisopod_session.store._sync import SessionStore  # sorted as _sync

Messages = list[StoredMessage]


class RemoteSessionStore(SessionStore):
    """Sessions on a running aisopod-session service (see :class:`SessionStore`)."""

    def __init__(self, connection: Connection, info: dict[str, Any]) -> None:
        # Not the local store's __init__: the engine, its policies and durability are the
        # server's.
        self._http = connection
        self.policies = Policies()
        self._backend = f"http+{info['backend']}"
        self._durability = cast(Durability, info["durability"])

    @classmethod
    def connect(cls, url: str, *, token: str | None = None,
                      timeout: float | None = None) -> RemoteSessionStore:
        """A store on the service at ``url`` (``http://`` or ``https://``), with ``token`` (or
        ``$AISOPOD_TOKEN``); asks the service who the token is before returning."""
        options = _http.client_options(url, _http.token_or_env(token), timeout)
        transport = httpx.HTTPTransport(socket_options=_http.NO_DELAY)
        connection = Connection(httpx.Client(transport=transport, **options))
        try:
            info = connection.call("GET", "/v1/info", write=False)
        except BaseException:
            connection.client.close()
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

    def for_agent(self, agent_id: str) -> RemoteAgentSessions:
        agent = _checks.agent_id(agent_id)
        if not self._http.admin and self._http.agent_id != agent:
            raise AccessDeniedError(
                f"this store's token is agent {self._http.agent_id!r}'s; it may not use agent "
                f"{agent!r}")
        return RemoteAgentSessions(self._http, agent)

    def _admin_call(self, method: str, path: str, *, write: bool = False,
                          **options: Any) -> Any:
        self._http.for_admin()
        return self._http.call(method, path, write=write, **options)

    def list_all_sessions(self, filter: SessionFilter | None = None) -> SessionPage:
        self._http.for_admin()
        checked = _checks.admin_filter(filter)
        body = self._admin_call("GET", "/v1/admin/sessions",
                                      params=_http.filter_params(checked, with_agent=True))
        return Page([SessionSummary.model_validate(item) for item in body["items"]],
                    body["next_cursor"])

    def changes(self, since: str | None = None, *, agent_id: str | None = None,
                      limit: int = 100) -> ChangePage:
        self._http.for_admin()
        _changes.changes(since, agent_id, limit)  # checks the arguments
        return self._http.changes("/v1/admin/changes", _http.params(
            since=since, agent_id=agent_id, limit=limit))

    def latest_cursor(self) -> str:
        body = self._admin_call("GET", "/v1/admin/changes/latest")
        return str(body["cursor"])

    def watch(self, since: str | None = None, *, agent_id: str | None = None
                    ) -> Iterator[Change]:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        start = since if since is not None else self.latest_cursor()
        _changes.position_of(start)
        stream = self._http.watch("/v1/admin/changes/stream", start,
                                  _http.params(agent_id=agent))
        yield from stream

    # --- webhooks: delivered by the service (its config's [[webhooks]]); the log is read here ---

    def deliver_webhooks(
        self, webhooks: Iterable[Webhook], *, owner: str | None = None,
        lease_seconds: float = _webhook_dispatch.LEASE_SECONDS,
        on_outcome: Callable[[WebhookDelivery], None] | None = None,
    ) -> None:
        raise InvalidInputError.for_field(
            "store", "webhooks are delivered by the service itself: configure them as "
                     "[[webhooks]] in its config file (this store is a client of the service; "
                     "webhook_deliveries() reads the delivery log)")

    def webhook_deliveries(
        self, webhook: str | None = None, *, status: WebhookDeliveryStatus | str | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        self._http.for_admin()
        _webhooks.deliveries(webhook, status, limit)  # the local checks, nothing run
        body = self._admin_call("GET", "/v1/admin/webhooks/deliveries", params=_http.params(
            webhook=webhook, status=status, limit=limit))
        return [WebhookDelivery.model_validate(item) for item in body]

    def webhook_states(self) -> list[WebhookState]:
        body = self._admin_call("GET", "/v1/admin/webhooks/states")
        return [WebhookState.model_validate(item) for item in body]

    # --- end of webhooks -----------------------------------------------------------------------

    def get_session_by_id(self, session_id: int) -> Session:
        self._http.for_admin()
        checked = _checks.session_id(session_id)
        body = self._admin_call("GET", f"/v1/admin/sessions/{checked}")
        return Session.model_validate(body)

    def get_history_by_id(
        self, session_id: int, query: HistoryQuery | None = None
    ) -> Messages:
        self._http.for_admin()
        checked = _checks.session_id(session_id)
        body = self._admin_call("GET", f"/v1/admin/sessions/{checked}/messages",
                                      params=_http.history_params(_checks.query(query)))
        return [StoredMessage.model_validate(message) for message in body]

    def purge_compacted(self, older_than: datetime | None = None) -> int:
        self._http.for_admin()
        _lifecycle.purge_compacted(older_than)  # the local checks, nothing run
        body = self._admin_call("DELETE", "/v1/admin/messages/compacted", write=True,
                                      params=_http.params(older_than=older_than))
        return int(body["deleted"])

    def count_sessions_by_status(
        self, agent_id: str | None = None
    ) -> dict[SessionStatus, int]:
        self._http.for_admin()
        body = self._admin_call("GET", "/v1/admin/counts",
                                      params=_http.params(agent_id=_checks.agent_or_none(agent_id)))
        return {SessionStatus(status): int(count) for status, count in body.items()}

    def schema_version(self) -> int:
        return int((self._admin_call("GET", "/v1/admin/schema"))["version"])

    def usage_by_day(
        self, days: int = 14, *, agent_id: str | None = None, now: datetime | None = None
    ) -> list[DailyUsage]:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        _admin.usage_by_day(agent, days, now)  # the local checks, nothing run
        body = self._admin_call("GET", "/v1/admin/usage",
                                      params=_http.params(days=days, agent_id=agent, now=now))
        return [DailyUsage.model_validate(day) for day in body]

    def stats(self) -> StoreStats:
        return StoreStats.model_validate(self._admin_call("GET", "/v1/admin/stats"))

    def clear_sessions(self, agent_id: str | None = None) -> int:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        body = self._admin_call("DELETE", "/v1/admin/sessions", write=True,
                                      params=_http.params(confirm=True, agent_id=agent))
        return int(body["deleted"])

    def export_jsonl(
        self, agent_id: str | None = None, *, session_id: int | None = None
    ) -> Iterator[str]:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        checked = None if session_id is None else _checks.session_id(session_id)
        params = _http.params(agent_id=agent, session_id=checked)
        yield from self._http.lines("/v1/admin/export", params)

    def import_jsonl(
        self, lines: Iterable[str | bytes],
        *, on_conflict: ImportConflictPolicy = "fail",
    ) -> ImportResult:
        self._http.for_admin()
        policy = _import.conflict_policy(on_conflict)
        body = self._http.call("POST", "/v1/admin/import", write=True,
                                     params=_http.params(on_conflict=policy),
                                     content=_upload(lines),
                                     headers={"Content-Type": _http.NDJSON})
        return ImportResult.model_validate(body)

    def sweep(self, now: datetime | None = None, *, dry_run: bool = False) -> SweepResult:
        self._http.for_admin()
        params = _http.params(dry_run=_checks.flag(dry_run, "dry_run"),
                              now=None if now is None else _checks.now(now))
        return SweepResult.model_validate(
            self._admin_call("POST", "/v1/admin/sweep", write=True, params=params))

    def purge(self, now: datetime | None = None, *, dry_run: bool = False) -> PurgeResult:
        self._http.for_admin()
        params = _http.params(dry_run=_checks.flag(dry_run, "dry_run"),
                              now=None if now is None else _checks.now(now))
        return PurgeResult.model_validate(
            self._admin_call("POST", "/v1/admin/purge", write=True, params=params))

    def forget_peer(self, channel: str, peer_id: str, *, actor: str = "admin") -> PeerResult:
        self._http.for_admin()
        person = _checks.peer(channel, peer_id)
        params = _http.params(confirm=True, actor=_checks.actor(actor))
        return PeerResult.model_validate(self._admin_call(
            "DELETE", _http.peer_path(*person), write=True, params=params))

    def export_peer(
        self, channel: str, peer_id: str, *, actor: str = "admin"
    ) -> Iterator[str]:
        self._http.for_admin()
        person = _checks.peer(channel, peer_id)
        path = _http.peer_path(*person) + "/export"
        params = _http.params(actor=_checks.actor(actor))
        yield from self._http.lines(path, params)

    # --- search (see _search): the same checks first, then the service's search routes ---------

    def search_all(self, query: str, *, agent_id: str | None = None,
                         filter: SearchFilter | None = None, limit: int = 10,
                         cursor: str | None = None, order: SearchOrder = "best") -> SearchPage:
        self._http.for_admin()
        agent = _checks.agent_or_none(agent_id)
        _search.search(query, agent, filter, limit, cursor, order)  # the local checks, nothing run
        params = _http.search_params(query, _search.search_filter(filter), limit, cursor, order,
                                     agent_id=agent)
        return SearchPage.model_validate(
            self._admin_call("GET", "/v1/admin/search", params=params))

    def search_index_status(self) -> SearchIndexStatus:
        return SearchIndexStatus.model_validate(
            self._admin_call("GET", "/v1/admin/search/index"))

    def build_search_index(
        self, *, batch_size: int = _search_index.BUILD_BATCH,
        on_progress: Callable[[SearchIndexStatus], None] | None = None,
        max_batches: int | None = None,
    ) -> SearchIndexStatus:
        # One request per batch (the service runs a bounded build per request): on_progress
        # is called after each batch, as on the local store.
        self._http.for_admin()
        _search_index.build_batch(batch_size)  # the local checks, nothing run
        left = _search.max_batches(max_batches)
        status = self.search_index_status()
        while status.pending and left != 0:
            status = SearchIndexStatus.model_validate(self._admin_call(
                "POST", "/v1/admin/search/index/build", write=True,
                json={"batch_size": batch_size, "max_batches": 1}))
            left = None if left is None else left - 1
            if on_progress is not None:
                on_progress(status)
        return status

    def audit_log(self, limit: int = 100) -> list[AuditRecord]:
        self._http.for_admin()
        _privacy.audit_log(limit)  # the local checks, nothing run
        body = self._admin_call("GET", "/v1/admin/audit", params=_http.params(limit=limit))
        return [AuditRecord.model_validate(record) for record in body]

    def close(self) -> None:
        self._http.close()



def _upload(lines: Iterable[str | bytes]) -> Iterator[bytes]:
    """Import lines as request-body chunks of a few hundred KiB (streamed: memory stays flat)."""
    batch: list[bytes] = []
    size = 0
    for line in lines:
        data = _http.line_bytes(line)
        batch.append(data)
        size += len(data)
        if size >= _http.UPLOAD_CHUNK_BYTES:
            yield b"".join(batch)
            batch, size = [], 0
    if batch:
        yield b"".join(batch)


