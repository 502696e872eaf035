"""The admin routes, ``/v1/admin/…``: every agent's sessions, export and import, lifecycle,
people's data (erasure and export, audited) and the audit log. An admin token only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from aisopod_session.errors import InvalidInputError
from aisopod_session.lifecycle import PurgeResult, SweepResult
from aisopod_session.limits import (
    MAX_AUDIT_RECORDS,
    MAX_IMPORT_LINE_BYTES,
    MAX_SQL_INT,
    MAX_USAGE_DAYS,
)
from aisopod_session.models import Session, SessionStatus, StoredMessage, normalize_name_or_raise
from aisopod_session.results import (
    AuditRecord,
    DailyUsage,
    ImportConflictPolicy,
    ImportResult,
    PeerResult,
    StoreStats,
)
from aisopod_session.service import problems
from aisopod_session.service._bodies import (
    ClearedBody,
    PurgedBody,
    SchemaBody,
    SessionPageBody,
    Timestamp,
)
from aisopod_session.service._dependencies import (
    AdminDep,
    AgentIdQuery,
    FilterDep,
    HistoryDep,
    PeerDep,
    PrincipalDep,
    part_param,
    request_shape,
)
from aisopod_session.service._paths import DecodedPathRoute

NDJSON = "application/x-ndjson"
ADMIN_PREFIX = "/v1/admin"
IMPORT = "/import"
IMPORT_PATH = ADMIN_PREFIX + IMPORT
"""The one route whose body is not limited as a whole: it streams, with a limit per line."""

SessionId = Annotated[int, Path(ge=1, le=MAX_SQL_INT)]
ActorQuery = Annotated[str | None, part_param(
    Query, "Who the audit log records as acting (an operator, a ticket); the token's name when "
    "not given")]

admin = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"], responses=problems.ERROR_RESPONSES,
                  dependencies=[Depends(request_shape)], route_class=DecodedPathRoute)


@admin.get("/sessions", summary="List sessions of every agent")
async def admin_list(store: AdminDep, filter: FilterDep,
                     agent_id: AgentIdQuery = None
                     ) -> SessionPageBody:
    if agent_id is not None:
        filter = filter.model_copy(update={"agent_id": normalize_name_or_raise("agent_id",
                                                                               agent_id)})
    return SessionPageBody.of(await store.list_all_sessions(filter))


@admin.get("/sessions/{session_id}", summary="Any session by id, archived ones included")
async def admin_get(store: AdminDep, session_id: SessionId) -> Session:
    return await store.get_session_by_id(session_id)


@admin.get("/sessions/{session_id}/messages", summary="Any session's history by id")
async def admin_history(store: AdminDep, session_id: SessionId,
                        query: HistoryDep) -> list[StoredMessage]:
    return await store.get_history_by_id(session_id, query)


@admin.get("/stats", summary="Counts of sessions, agents and messages")
async def admin_stats(store: AdminDep) -> StoreStats:
    return await store.stats()


@admin.get("/counts", summary="How many sessions there are in each status (of one agent)")
async def admin_counts(store: AdminDep, agent_id: AgentIdQuery = None
                       ) -> dict[SessionStatus, int]:
    return await store.count_sessions_by_status(agent_id)


@admin.get("/schema", summary="The schema version recorded in the database")
async def admin_schema(store: AdminDep) -> SchemaBody:
    return SchemaBody(version=await store.schema_version())


@admin.get("/usage", summary="Messages and tokens per UTC day and agent")
async def admin_usage(store: AdminDep,
                      days: Annotated[int, Query(ge=1, le=MAX_USAGE_DAYS)] = 14,
                      agent_id: AgentIdQuery = None, now: Timestamp | None = None
                      ) -> list[DailyUsage]:
    return await store.usage_by_day(days, agent_id=agent_id, now=now)


@admin.delete("/messages/compacted",
              summary="Delete messages compacted out of the live history (before a time)")
async def admin_purge_compacted(store: AdminDep, older_than: Timestamp | None = None
                                ) -> PurgedBody:
    return PurgedBody(deleted=await store.purge_compacted(older_than))


@admin.get("/export", summary="Every session and message as JSON Lines (streamed)",
           response_class=StreamingResponse,
           responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}}})
async def admin_export(store: AdminDep,
                       agent_id: AgentIdQuery = None,
                       session_id: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None
                       ) -> StreamingResponse:
    agent = None if agent_id is None else normalize_name_or_raise("agent_id", agent_id)
    exported = store.export_jsonl(agent, session_id=session_id)
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


@admin.post(IMPORT, summary="Import an export (JSON Lines body, streamed)",
            openapi_extra={"requestBody": {"required": True, "content": {
                NDJSON: {"schema": {"type": "string"}}}}})
async def admin_import(request: Request, store: AdminDep,
                       on_conflict: Annotated[ImportConflictPolicy, Query(
                           description="A session of the file that already exists: fail "
                           "(409, nothing imported), skip it, or archive the stored one "
                           "(archive-existing)")] = "fail") -> ImportResult:
    """Every line is checked as the API checks its data, then the whole file is stored in one
    transaction: a bad line is a 422 naming the line and field, and nothing of the file is
    kept."""
    return await store.import_jsonl(_lines(request.stream()), on_conflict=on_conflict)


def _confirm(what: str) -> Any:
    """The ``confirm`` query parameter of a destructive route: required, and documented (and
    accepted) only as true; false is refused with 400, saying what the call would do."""
    return Query(description=f"Must be true: {what}, with no undo", json_schema_extra={
        "enum": [True]})


def _require(confirm: bool, what: str) -> None:
    if not confirm:
        raise HTTPException(400, f"this {what} for good: repeat with confirm=true")


@admin.delete("/sessions", summary="Delete every session (of one agent)")
async def admin_clear(store: AdminDep,
                      confirm: Annotated[bool, _confirm("this deletes sessions")],
                      agent_id: AgentIdQuery = None
                      ) -> ClearedBody:
    _require(confirm, "deletes sessions")
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


@admin.post("/sweep", summary="Apply the lifecycle policy (idle, archived)")
async def admin_sweep(store: AdminDep, dry_run: bool = False, now: Timestamp | None = None
                      ) -> SweepResult:
    return await store.sweep(now, dry_run=dry_run)


@admin.post("/purge", summary="Apply the retention policy (delete old compacted and archived)")
async def admin_purge(store: AdminDep, dry_run: bool = False, now: Timestamp | None = None
                      ) -> PurgeResult:
    return await store.purge(now, dry_run=dry_run)


@admin.delete("/peers/{channel}/{peer_id}",
              summary="Erase a person's direct-conversation sessions across agents (audited)")
async def admin_forget_peer(store: AdminDep, principal: PrincipalDep, peer: PeerDep,
                            confirm: Annotated[bool, _confirm("this erases a person's data")],
                            actor: ActorQuery = None) -> PeerResult:
    _require(confirm, "erases a person's data")
    return await store.forget_peer(*peer, actor=principal.name if actor is None else actor)


@admin.get("/peers/{channel}/{peer_id}/export",
           summary="Everything held about a person, as JSON Lines (audited)",
           response_class=StreamingResponse,
           responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}}})
async def admin_export_peer(store: AdminDep, principal: PrincipalDep, peer: PeerDep,
                            actor: ActorQuery = None) -> StreamingResponse:
    lines = store.export_peer(*peer, actor=principal.name if actor is None else actor)
    first = await anext(lines)  # validates, audits and reaches the database before the 200

    async def body() -> AsyncIterator[bytes]:
        yield (first + "\n").encode("utf-8")
        async for line in lines:
            yield (line + "\n").encode("utf-8")

    return StreamingResponse(body(), media_type=NDJSON)


@admin.get("/audit", summary="The newest audit records (who, when, how much; never content)")
async def admin_audit(store: AdminDep,
                      limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_RECORDS)] = 100
                      ) -> list[AuditRecord]:
    return await store.audit_log(limit)
