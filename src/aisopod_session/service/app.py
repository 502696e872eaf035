"""The HTTP API: the library's operations as resources, behind bearer-token auth.

Agent routes live under ``/v1/agents/{agent_id}/sessions`` and address a session by its key's
parts: ``…/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}``. Parts are percent-encoded;
a ``/`` inside a part is sent as ``%2F`` and stays inside that part
(see :class:`KeepEncodedSlashes`).
Admin routes live under ``/v1/admin``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from aisopod_session.compaction import CompactionRecord, CompactionStrategy
from aisopod_session.errors import InvalidInputError
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    Session,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    SessionSummary,
    StoredMessage,
    normalize_name_or_raise,
)
from aisopod_session.service import problems
from aisopod_session.service.auth import OPEN_ACCESS, Principal, TokenRegistry
from aisopod_session.service.config import ServiceConfig
from aisopod_session.service.metrics import Metrics
from aisopod_session.store import AsyncAgentSessions, AsyncSessionStore, SessionPage

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NDJSON = "application/x-ndjson"
MAX_IMPORT_LINE_BYTES = 4 * 1024 * 1024
IMPORT_PATH = "/v1/admin/import"

# A "/" that arrived percent-encoded inside one path part travels through routing as this
# private-use character and is turned back into "/" when the key is built.
ENCODED_SLASH = "\ue000"


# --- request and response bodies ---------------------------------------------------------------


class SessionPageBody(BaseModel):
    items: list[SessionSummary]
    next_cursor: str | None = Field(
        description="Pass back as `cursor` for the next page; null on the last page."
    )

    @classmethod
    def of(cls, page: SessionPage) -> SessionPageBody:
        return cls.model_construct(items=list(page), next_cursor=page.next_cursor)


class AppendBody(BaseModel):
    messages: Annotated[list[StoredMessage], Field(max_length=10_000)]


class DeletedBody(BaseModel):
    deleted: bool


class Health(BaseModel):
    status: str


# --- plumbing: ASGI middleware ---------------------------------------------------------------


class KeepEncodedSlashes:
    """Route on the raw path so that ``%2F`` inside a key part does not split it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2f" in raw.lower():
            text = raw.decode("latin-1").split("?", 1)[0]
            scope = dict(scope)
            scope["path"] = "/".join(
                unquote(part).replace("/", ENCODED_SLASH) for part in text.split("/")
            )
        await self.app(scope, receive, send)


class LimitBody:
    """Refuse bodies over the limit with 413 before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == IMPORT_PATH:
            # Imports stream line by line with their own per-line limit.
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(413, f"the request body exceeds {self.max_bytes} bytes")
        await response(scope, receive, send)


# --- dependencies ------------------------------------------------------------------------------


def _store(request: Request) -> AsyncSessionStore:
    store: AsyncSessionStore = request.app.state.store
    return store


def _principal(
    request: Request,
    authorization: Annotated[str | None, Header(description="`Bearer <token>`")] = None,
) -> Principal:
    tokens: TokenRegistry = request.app.state.tokens
    if not tokens.enabled:
        return OPEN_ACCESS
    scheme, _, token = (authorization or "").partition(" ")
    principal = tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if principal is None:
        raise HTTPException(
            401,
            "a valid bearer token is required" if authorization else "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
StoreDep = Annotated[AsyncSessionStore, Depends(_store)]


def _agent(
    agent_id: Annotated[str, Path(max_length=256)], principal: PrincipalDep, store: StoreDep
) -> AsyncAgentSessions:
    agent = normalize_name_or_raise("agent_id", agent_id)
    if not principal.may_use_agent(agent):
        raise HTTPException(403, f"this token may not use agent {agent!r}")
    return store.for_agent(agent)


def _admin(principal: PrincipalDep, store: StoreDep) -> AsyncSessionStore:
    if not principal.admin:
        raise HTTPException(403, "admin routes need an admin token")
    return store


def _part(value: str) -> str:
    return value.replace(ENCODED_SLASH, "/")


def _key(
    agent: Annotated[AsyncAgentSessions, Depends(_agent)],
    channel: Annotated[str, Path(max_length=256)],
    account_id: Annotated[str, Path(max_length=256)],
    peer_kind: PeerKind,
    peer_id: Annotated[str, Path(max_length=1024)],
) -> SessionKey:
    return SessionKey(agent.agent_id, _part(channel), _part(account_id), peer_kind, _part(peer_id))


AgentDep = Annotated[AsyncAgentSessions, Depends(_agent)]
KeyDep = Annotated[SessionKey, Depends(_key)]
AdminDep = Annotated[AsyncSessionStore, Depends(_admin)]


def _filter(
    *,
    channel: str | None = None,
    account_id: str | None = None,
    peer_kind: PeerKind | None = None,
    peer_id: str | None = None,
    status: Annotated[list[SessionStatus] | None, Query()] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> SessionFilter:
    return SessionFilter(
        channel=channel, account_id=account_id, peer_kind=peer_kind, peer_id=peer_id,
        status=tuple(status) if status else None, created_after=created_after,
        created_before=created_before, updated_after=updated_after,
        updated_before=updated_before, limit=limit, cursor=cursor,
    )


def _history_query(
    *,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    before: datetime | None = None,
    after: datetime | None = None,
    tail: bool = False,
    include_compacted: bool = False,
) -> HistoryQuery:
    return HistoryQuery(limit=limit, offset=offset, before=before, after=after, tail=tail,
                        include_compacted=include_compacted)


FilterDep = Annotated[SessionFilter, Depends(_filter)]
HistoryDep = Annotated[HistoryQuery, Depends(_history_query)]

SESSION_PATH = "/{channel}/{account_id}/{peer_kind}/{peer_id}"


# --- routes ------------------------------------------------------------------------------------

agents = APIRouter(prefix="/v1/agents/{agent_id}/sessions", tags=["sessions"],
                   responses=problems.ERROR_RESPONSES)
admin = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problems.ERROR_RESPONSES)


@agents.get("", summary="List this agent's sessions, most recently updated first")
async def list_sessions(agent: AgentDep, filter: FilterDep) -> SessionPageBody:
    return SessionPageBody.of(await agent.list(filter))


@agents.put(SESSION_PATH, summary="Get or create the live session of a key")
async def get_or_create(agent: AgentDep, key: KeyDep) -> Session:
    return await agent.get_or_create(key)


@agents.get(SESSION_PATH, summary="Get the live session of a key")
async def get_session(agent: AgentDep, key: KeyDep) -> Session:
    return await agent.get(key)


@agents.patch(SESSION_PATH, summary="Update status, token usage or metadata")
async def patch_session(agent: AgentDep, key: KeyDep, patch: SessionPatch) -> Session:
    return await agent.patch(key, patch)


@agents.delete(SESSION_PATH, summary="Delete the session and all archived generations")
async def delete_session(agent: AgentDep, key: KeyDep) -> DeletedBody:
    return DeletedBody(deleted=await agent.delete(key))


@agents.post(SESSION_PATH + "/reset", summary="Archive the live session and start a fresh one")
async def reset_session(agent: AgentDep, key: KeyDep) -> Session:
    return await agent.reset(key)


@agents.post(SESSION_PATH + "/messages", summary="Append messages (all or none)")
async def append_messages(request: Request, agent: AgentDep, key: KeyDep,
                          body: AppendBody) -> list[StoredMessage]:
    stored = await agent.append_messages(key, body.messages)
    metrics: Metrics = request.app.state.metrics
    metrics.appended(len(body.messages))
    return stored


@agents.get(SESSION_PATH + "/messages", summary="Read the history, in append order")
async def get_history(agent: AgentDep, key: KeyDep, query: HistoryDep) -> list[StoredMessage]:
    return await agent.get_history(key, query)


@agents.post(SESSION_PATH + "/compact", summary="Compact the live history")
async def compact(agent: AgentDep, key: KeyDep, strategy: CompactionStrategy) -> CompactionRecord:
    return await agent.compact(key, strategy)


@agents.get(SESSION_PATH + "/compaction", summary="The session's compaction record")
async def get_compaction(agent: AgentDep, key: KeyDep) -> CompactionRecord:
    return await agent.get_compaction_record(key)


@admin.get("/sessions", summary="List sessions of every agent")
async def admin_list(store: AdminDep, filter: FilterDep,
                     agent_id: Annotated[str | None, Query(max_length=256)] = None
                     ) -> SessionPageBody:
    if agent_id is not None:
        filter = filter.model_copy(update={"agent_id": normalize_name_or_raise("agent_id",
                                                                               agent_id)})
    return SessionPageBody.of(await store.list_all_sessions(filter))


@admin.get("/sessions/{session_id}", summary="Any session by id, archived ones included")
async def admin_get(store: AdminDep, session_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
                    ) -> Session:
    return await store.get_session_by_id(session_id)


@admin.get("/sessions/{session_id}/messages", summary="Any session's history by id")
async def admin_history(store: AdminDep, session_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
                        query: HistoryDep) -> list[StoredMessage]:
    return await store.get_history_by_id(session_id, query)


class StatsBody(BaseModel):
    sessions_by_status: dict[SessionStatus, int]
    agents: int
    messages_live: int
    messages_compacted: int


class ImportBody(BaseModel):
    sessions: int
    messages: int


class ClearedBody(BaseModel):
    deleted: int


@admin.get("/stats", summary="Counts of sessions, agents and messages")
async def admin_stats(store: AdminDep) -> StatsBody:
    stats = await store.stats()
    return StatsBody(sessions_by_status=stats.sessions_by_status, agents=stats.agents,
                     messages_live=stats.messages_live,
                     messages_compacted=stats.messages_compacted)


@admin.get("/export", summary="Every session and message as JSON Lines (streamed)",
           response_class=StreamingResponse,
           responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}}})
async def admin_export(store: AdminDep,
                       agent_id: Annotated[str | None, Query(max_length=256)] = None
                       ) -> StreamingResponse:
    agent = None if agent_id is None else normalize_name_or_raise("agent_id", agent_id)

    async def lines() -> AsyncIterator[bytes]:
        async for line in store.export_jsonl(agent):
            yield (line + "\n").encode("utf-8")

    return StreamingResponse(lines(), media_type=NDJSON)


@admin.post("/import", summary="Import an export (JSON Lines body, streamed)",
            openapi_extra={"requestBody": {"required": True, "content": {
                NDJSON: {"schema": {"type": "string"}}}}})
async def admin_import(request: Request, store: AdminDep) -> ImportBody:
    result = await store.import_jsonl(_lines(request.stream()))
    return ImportBody(sessions=result.sessions, messages=result.messages)


@admin.delete("/sessions", summary="Delete every session (of one agent)")
async def admin_clear(store: AdminDep,
                      confirm: Annotated[bool, Query(description="must be true")] = False,
                      agent_id: Annotated[str | None, Query(max_length=256)] = None
                      ) -> ClearedBody:
    if not confirm:
        raise HTTPException(400, "this deletes sessions for good: repeat with confirm=true")
    agent = None if agent_id is None else normalize_name_or_raise("agent_id", agent_id)
    return ClearedBody(deleted=await store.clear_sessions(agent))


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a streamed body into lines, refusing a single line over the import limit."""
    buffered = b""
    async for chunk in chunks:
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        for line in complete:
            yield line
        if len(buffered) > MAX_IMPORT_LINE_BYTES:
            raise InvalidInputError.for_field(
                "body", f"a line is longer than {MAX_IMPORT_LINE_BYTES} bytes")
    if buffered.strip():
        yield buffered


probes = APIRouter(tags=["operations"])


@probes.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@probes.get("/readyz", summary="Readiness: the database answers",
            responses={503: problems.ERROR_RESPONSES[503]})
async def readyz(store: StoreDep) -> Health:
    await store.list_all_sessions(SessionFilter(limit=1))
    return Health(status="ready")


@probes.get("/metrics", summary="Prometheus metrics (an admin token when tokens are configured)",
            response_class=PlainTextResponse,
            responses={401: problems.ERROR_RESPONSES[401], 403: problems.ERROR_RESPONSES[403]})
async def metrics(request: Request, store: AdminDep) -> Response:
    registry: Metrics = request.app.state.metrics
    await registry.refresh_sessions(store)
    body, content_type = registry.render()
    return Response(body, media_type=content_type)


# --- the application -------------------------------------------------------------------------


def create_app(config: ServiceConfig | None = None, store: AsyncSessionStore | None = None
               ) -> FastAPI:
    """The ASGI app. Without ``store`` it opens ``config.database`` at start-up and closes it
    at shutdown; a given store is left open (its owner closes it)."""
    config = config or ServiceConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is not None:
            app.state.store = store
            yield
            return
        db = config.database
        opened = await AsyncSessionStore.open(db.url, durability=db.durability,
                                              pool_size=db.pool_size, schema=db.db_schema)
        app.state.store = opened
        try:
            yield
        finally:
            await opened.close()

    app = FastAPI(
        title="aisopod-session",
        version=_version(),
        summary="Durable, isolated conversation sessions for AI agents on chat channels.",
        lifespan=lifespan,
    )
    app.state.tokens = TokenRegistry(config.tokens)
    app.state.metrics = Metrics()
    if store is not None:
        app.state.store = store
    problems.install(app)
    app.include_router(agents)
    app.include_router(admin)
    app.include_router(probes)
    _add_request_metrics(app)
    app.add_middleware(LimitBody, max_bytes=config.server.max_body_bytes)
    app.add_middleware(KeepEncodedSlashes)
    return app


def _add_request_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                      ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        registry: Metrics = request.app.state.metrics
        registry.observe(request.method, template, response.status_code,
                         time.perf_counter() - started)
        return response


def _version() -> str:
    from aisopod_session import __version__

    return __version__


__all__ = ["ENCODED_SLASH", "create_app"]
