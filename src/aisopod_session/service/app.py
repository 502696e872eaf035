"""The HTTP API: the library's operations as resources, behind bearer-token auth.

Agent routes live under ``/v1/agents/{agent_id}/sessions`` and address a session by its key's
parts: ``…/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}``. Parts are percent-encoded;
a ``/`` inside a part is sent as ``%2F`` and stays inside that part
(see :class:`KeepEncodedSlashes`).
Admin routes live under ``/v1/admin``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from typing import Annotated, Any
from urllib.parse import unquote, unquote_to_bytes

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
)

from aisopod_session.compaction import CompactionRecord, CompactionStrategy
from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import PurgeResult, SweepResult
from aisopod_session.models import (
    MAX_ID_LENGTH,
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
from aisopod_session.service import console, problems
from aisopod_session.service.auth import OPEN_ACCESS, Principal, TokenRegistry
from aisopod_session.service.config import ServiceConfig
from aisopod_session.service.maintenance import run_maintenance
from aisopod_session.service.metrics import Metrics
from aisopod_session.store import (
    AsyncAgentSessions,
    AsyncSessionStore,
    AuditRecord,
    PeerResult,
    Resolution,
    SessionPage,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NDJSON = "application/x-ndjson"
MAX_IMPORT_LINE_BYTES = 4 * 1024 * 1024
IMPORT_PATH = "/v1/admin/import"

# A "/" that arrived percent-encoded inside one path part travels through routing as this
# private-use character; the parts themselves are then read from the raw path (_path_part), so
# a client's own U+E000 stays what it is.
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


RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    """Timestamps travel as RFC 3339 with an offset; pydantic alone would also read "589" as
    seconds since 1970, which is far more likely a client bug than a date."""
    if isinstance(value, str) and not RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with an offset, like "
                         "2024-05-01T12:00:00Z")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


_STORE_SETS = ("id", "compacted")
"""StoredMessage fields a client never sends: the store assigns ``id``, compaction sets
``compacted``."""

NewMessage = create_model(
    "NewMessage",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A message to append: StoredMessage's fields a client may set, validated the same.",
    **{name: (field.annotation, field) for name, field in StoredMessage.model_fields.items()
       if name not in _STORE_SETS},  # type: ignore[call-overload]
)


class AppendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[NewMessage], Field(max_length=10_000)]

    @field_validator("messages", mode="before")
    @classmethod
    def _timestamps(cls, value: Any) -> Any:
        if isinstance(value, list):
            for index, message in enumerate(value):
                if isinstance(message, dict):
                    try:
                        _rfc3339(message.get("created_at"))
                    except ValueError as exc:
                        raise ValueError(f"messages.{index}.created_at: {exc}") from None
        return value


class DeletedBody(BaseModel):
    deleted: bool


class Health(BaseModel):
    status: str


# --- documented constraints of key parts ------------------------------------------------------

_SPACES = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PART_PATTERN = (rf"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f{_SPACES}]"
                rf"[^\x00-\x1f\x7f-\x9f]*$")
"""What a key part (or a filter on one) must look like: no control character, not blank.
Only documented (the models check it and name the offending character); names are also trimmed,
NFC-normalised and lower-cased, peer ids trimmed and NFC-normalised."""


def _part_param(kind: Callable[..., Any], description: str) -> Any:
    return kind(max_length=MAX_ID_LENGTH, description=description,
                json_schema_extra={"pattern": PART_PATTERN, "minLength": 1})


AgentIdPath = Annotated[str, _part_param(Path, "The agent (case-insensitive)")]
AgentIdQuery = Annotated[str | None, _part_param(Query, "Only this agent's sessions")]


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


_bearer = HTTPBearer(
    scheme_name="bearer", auto_error=False,
    description="An admin token, or an agent token (only that agent's sessions). Not needed when "
    "the server has no tokens configured (it then listens on loopback only).",
)


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    tokens: TokenRegistry = request.app.state.tokens
    if not tokens.enabled:
        return OPEN_ACCESS
    principal = None if credentials is None else tokens.authenticate(
        credentials.credentials.strip())
    if principal is None:
        if request.headers.get("authorization"):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
StoreDep = Annotated[AsyncSessionStore, Depends(_store)]


REPEATABLE_QUERY = frozenset({"status"})


def _known_query(request: Request, _: PrincipalDep) -> None:
    """Refuse query parameters the route does not take, and repeats of single-valued ones: a
    typo (``?agent=bot&confirm=true`` on DELETE /v1/admin/sessions) must not widen a request.
    (The caller is authenticated first: strangers learn nothing about parameters.)"""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route)
    errors = []
    for name in dict.fromkeys(request.query_params.keys()):
        if name not in known:
            errors.append({"field": name[:100], "message": "unknown query parameter"})
        elif name not in REPEATABLE_QUERY and len(request.query_params.getlist(name)) > 1:
            errors.append({"field": name, "message": "given more than once"})
    if errors:
        raise InvalidInputError("; ".join(f"{e['field']}: {e['message']}" for e in errors),
                                errors)


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _QUERY_NAMES.get(id(route))
    if names is None:
        names = _QUERY_NAMES[id(route)] = frozenset(_query_params(route.dependant))
    return names


def _query_params(dependant: Dependant) -> list[str]:
    names = [param.alias for param in dependant.query_params]
    for sub in dependant.dependencies:
        names.extend(_query_params(sub))
    return names


# /v1/agents/{agent_id}/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}/...
_AGENT_SEGMENT = 3
_KEY_SEGMENTS = {"channel": 5, "account_id": 6, "peer_kind": 7, "peer_id": 8}


def _path_part(request: Request, name: str, index: int, routed: str,
               prefix: tuple[bytes, ...] = (b"v1", b"agents")) -> str:
    """The path part ``name`` exactly as the client percent-encoded it.

    Routing saw ``routed``, in which an encoded ``/`` is :data:`ENCODED_SLASH`; the raw path is
    decoded here so that a part may hold any character (the private-use one included), and a
    part that is not UTF-8 once decoded is refused rather than patched with U+FFFD.
    """
    raw = request.scope.get("raw_path")
    segments = raw.split(b"?", 1)[0].split(b"/") if isinstance(raw, bytes) else []
    if len(segments) <= index or tuple(segments[1 : 1 + len(prefix)]) != prefix:
        return routed.replace(ENCODED_SLASH, "/")  # no raw path from this server: best effort
    try:
        return unquote_to_bytes(segments[index]).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError.for_field(
            name, "is not valid UTF-8 once percent-decoded") from None


def _agent(
    request: Request,
    agent_id: AgentIdPath,
    principal: PrincipalDep,
    store: StoreDep,
) -> AsyncAgentSessions:
    agent = normalize_name_or_raise(
        "agent_id", _path_part(request, "agent_id", _AGENT_SEGMENT, agent_id))
    if not principal.may_use_agent(agent):
        raise HTTPException(403, f"this token may not use agent {agent!r}")
    return store.for_agent(agent)


def _admin(principal: PrincipalDep, store: StoreDep) -> AsyncSessionStore:
    if not principal.admin:
        raise HTTPException(403, "admin routes need an admin token")
    return store


def _key(
    *,
    request: Request,
    agent: Annotated[AsyncAgentSessions, Depends(_agent)],
    channel: Annotated[str, _part_param(Path, "The chat channel (case-insensitive)")],
    account_id: Annotated[str, _part_param(Path, "The bot's account on the channel "
                                                 "(case-insensitive)")],
    peer_kind: PeerKind,
    peer_id: Annotated[str, _part_param(Path, "The user, group, or `<group>/<thread>` "
                                              "(`/` sent as %2F); case-sensitive")],
) -> SessionKey:
    def part(name: str, routed: str) -> str:
        return _path_part(request, name, _KEY_SEGMENTS[name], routed)

    return SessionKey(agent.agent_id, part("channel", channel), part("account_id", account_id),
                      peer_kind, part("peer_id", peer_id))


AgentDep = Annotated[AsyncAgentSessions, Depends(_agent)]
KeyDep = Annotated[SessionKey, Depends(_key)]
AdminDep = Annotated[AsyncSessionStore, Depends(_admin)]


def _filter(
    *,
    channel: Annotated[str | None, _part_param(Query, "Only this channel")] = None,
    account_id: Annotated[str | None, _part_param(Query, "Only this bot account")] = None,
    peer_kind: PeerKind | None = None,
    peer_id: Annotated[str | None, _part_param(Query, "Only this peer")] = None,
    status: Annotated[list[SessionStatus] | None, Query()] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    updated_after: Timestamp | None = None,
    updated_before: Timestamp | None = None,
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
    before: Timestamp | None = None,
    after: Timestamp | None = None,
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
                   responses=problems.ERROR_RESPONSES, dependencies=[Depends(_known_query)])
admin = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problems.ERROR_RESPONSES,
                  dependencies=[Depends(_known_query)])


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
    # NewMessage validated every field the way StoredMessage does, and the store checks each
    # message again: no third pass over the content here.
    stored = await agent.append_messages(key, [
        StoredMessage.model_construct(**{name: getattr(message, name)
                                         for name in message.model_fields_set})
        for message in body.messages])
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
                     agent_id: AgentIdQuery = None
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
                       agent_id: AgentIdQuery = None
                       ) -> StreamingResponse:
    agent = None if agent_id is None else normalize_name_or_raise("agent_id", agent_id)
    exported = store.export_jsonl(agent)
    # The header line and the first read happen before the 200 goes out, so that a database
    # that is down (or a closed store) is a 503 problem rather than a stream cut short.
    first = [line async for line in _take(exported, 2)]

    async def lines() -> AsyncIterator[bytes]:
        for line in first:
            yield (line + "\n").encode("utf-8")
        async for line in exported:
            yield (line + "\n").encode("utf-8")

    return StreamingResponse(lines(), media_type=NDJSON)


async def _take(lines: AsyncIterator[str], count: int) -> AsyncIterator[str]:
    for _ in range(count):
        try:
            yield await anext(lines)
        except StopAsyncIteration:
            return


@admin.post("/import", summary="Import an export (JSON Lines body, streamed)",
            openapi_extra={"requestBody": {"required": True, "content": {
                NDJSON: {"schema": {"type": "string"}}}}})
async def admin_import(request: Request, store: AdminDep) -> ImportBody:
    result = await store.import_jsonl(_lines(request.stream()))
    return ImportBody(sessions=result.sessions, messages=result.messages)


@admin.delete("/sessions", summary="Delete every session (of one agent)")
async def admin_clear(store: AdminDep,
                      confirm: Annotated[bool, Query(description="must be true (no undo)",
                                                     json_schema_extra={"enum": [True]})],
                      agent_id: AgentIdQuery = None
                      ) -> ClearedBody:
    if not confirm:
        raise HTTPException(400, "this deletes sessions for good: repeat with confirm=true")
    agent = None if agent_id is None else normalize_name_or_raise("agent_id", agent_id)
    return ClearedBody(deleted=await store.clear_sessions(agent))


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Split a streamed body into lines of text, refusing a line over the import limit and a
    line that is not UTF-8, by number (numbers count every line, blank ones too)."""
    number = 0
    pending: list[bytes] = []  # the start of a line that has not ended yet
    pending_size = 0

    def too_long(line_number: int) -> InvalidInputError:
        return InvalidInputError.for_field(
            f"line {line_number}", f"is longer than {MAX_IMPORT_LINE_BYTES} bytes")

    def finish(tail: bytes) -> str:
        nonlocal number, pending, pending_size
        line = b"".join((*pending, tail))
        pending, pending_size = [], 0
        number += 1
        if len(line) > MAX_IMPORT_LINE_BYTES:
            raise too_long(number)
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError.for_field(f"line {number}", "is not valid UTF-8") from None

    async for chunk in chunks:
        *complete, rest = chunk.split(b"\n")
        for tail in complete:
            yield finish(tail)
        pending.append(rest)
        pending_size += len(rest)
        if pending_size > MAX_IMPORT_LINE_BYTES:
            raise too_long(number + 1)
    if pending_size:
        yield finish(b"")


@agents.post(SESSION_PATH + "/resolve",
             summary="The session a new message belongs to (resets it if its policy says stale)")
async def resolve_session(agent: AgentDep, key: KeyDep) -> Resolution:
    return await agent.resolve(key)


@admin.post("/sweep", summary="Apply the lifecycle policy (idle, archived)")
async def admin_sweep(store: AdminDep, dry_run: bool = False) -> SweepResult:
    return await store.sweep(dry_run=dry_run)


@admin.post("/purge", summary="Apply the retention policy (delete old compacted and archived)")
async def admin_purge(store: AdminDep, dry_run: bool = False) -> PurgeResult:
    return await store.purge(dry_run=dry_run)


_PEER_PREFIX = (b"v1", b"admin", b"peers")


def _peer(
    *,
    request: Request,
    channel: Annotated[str, _part_param(Path, "The person's channel (`*` for linked names)")],
    peer_id: Annotated[str, _part_param(Path, "The person's id on that channel")],
) -> tuple[str, str]:
    return (_path_part(request, "channel", 4, channel, _PEER_PREFIX),
            _path_part(request, "peer_id", 5, peer_id, _PEER_PREFIX))


PeerDep = Annotated[tuple[str, str], Depends(_peer)]


@admin.delete("/peers/{channel}/{peer_id}",
              summary="Erase a person's direct-conversation sessions across agents (audited)")
async def admin_forget_peer(store: AdminDep, principal: PrincipalDep, peer: PeerDep,
                            confirm: Annotated[bool, Query(description="must be true")] = False
                            ) -> PeerResult:
    if not confirm:
        raise HTTPException(400, "this erases a person's data for good: repeat with confirm=true")
    return await store.forget_peer(*peer, actor=principal.name)


@admin.get("/peers/{channel}/{peer_id}/export",
           summary="Everything held about a person, as JSON Lines (audited)",
           response_class=StreamingResponse,
           responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}}})
async def admin_export_peer(store: AdminDep, principal: PrincipalDep, peer: PeerDep
                            ) -> StreamingResponse:
    lines = store.export_peer(*peer, actor=principal.name)
    first = await anext(lines)  # validates, audits and reaches the database before the 200

    async def body() -> AsyncIterator[bytes]:
        yield (first + "\n").encode("utf-8")
        async for line in lines:
            yield (line + "\n").encode("utf-8")

    return StreamingResponse(body(), media_type=NDJSON)


@admin.get("/audit", summary="The newest audit records (who, when, how much; never content)")
async def admin_audit(store: AdminDep,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[AuditRecord]:
    return await store.audit_log(limit)


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
            responses={status: problems.ERROR_RESPONSES[status] for status in (401, 403, 503)})
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
                                              pool_size=db.pool_size, schema=db.db_schema,
                                              policies=config.policies)
        app.state.store = opened
        interval = config.maintenance.interval_seconds
        maintenance = asyncio.create_task(run_maintenance(opened, interval)) if interval else None
        try:
            yield
        finally:
            if maintenance is not None:
                maintenance.cancel()
                with suppress(asyncio.CancelledError):
                    await maintenance
            await opened.close()

    app = ServiceApp(
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
    console.install(app)
    _add_request_metrics(app)
    app.add_middleware(LimitBody, max_bytes=config.server.max_body_bytes)
    app.add_middleware(KeepEncodedSlashes)
    return app


class ServiceApp(FastAPI):
    """FastAPI with an OpenAPI document that says what the models really require."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    for response in operation.get("responses", {}).values():
                        # Errors are only ever problem+json; FastAPI also lists the route's
                        # own media type.
                        content = response.get("content", {})
                        if problems.PROBLEM_JSON in content:
                            response["content"] = {
                                problems.PROBLEM_JSON: content[problems.PROBLEM_JSON]}
            for schema in document.get("components", {}).get("schemas", {}).values():
                # A discriminated union's tag (`kind` of a compaction strategy) has a default in
                # its model, but the union needs it to pick the model: it is required.
                for name, prop in schema.get("properties", {}).items():
                    if "const" in prop and "default" in prop:
                        required = schema.setdefault("required", [])
                        if name not in required:
                            required.append(name)
        return self.openapi_schema or super().openapi()


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
