"""The agent-scoped routes: ``/v1/agents/{agent_id}/sessions``, a session addressed by its key's
parts (``…/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}``, each percent-encoded; a
``/`` inside a part is sent as ``%2F`` and stays inside that part, see :mod:`._paths`)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from aisopod_session.compaction import CompactionRecord, CompactionStrategy
from aisopod_session.errors import InvalidInputError
from aisopod_session.models import Session, SessionKey, SessionPatch, StoredMessage
from aisopod_session.results import Resolution
from aisopod_session.service import problems
from aisopod_session.service._bodies import (
    AppendBody,
    CommitBody,
    CommitResultBody,
    DeletedBody,
    MergeBody,
    SessionDetailPageBody,
    SessionPageBody,
    Timestamp,
    as_new_messages,
)
from aisopod_session.service._dependencies import (
    AgentDep,
    FenceDep,
    FilterDep,
    HistoryDep,
    SessionDep,
    fenced,
)
from aisopod_session.service._paths import DecodedPathRoute
from aisopod_session.service.metrics import Metrics

SESSION_PATH = "/{channel}/{account_id}/{peer_kind}/{peer_id}"

# No router-wide request_shape: every route takes SessionDep or AgentDep, which authenticate the
# caller and check the request's shape in one dependency (see _checked_caller; a test checks
# that every route under /v1 does).
agents = APIRouter(prefix="/v1/agents/{agent_id}/sessions", tags=["sessions"],
                   responses=problems.ERROR_RESPONSES,
                   route_class=DecodedPathRoute)


@agents.get("", summary="List this agent's sessions, most recently updated first")
async def list_sessions(agent: AgentDep, filter: FilterDep) -> SessionPageBody:
    return SessionPageBody.of(await agent.list(filter))


@agents.put(SESSION_PATH, summary="Get or create the live session of a key")
async def get_or_create(session: SessionDep) -> Session:
    return await session.agent.get_or_create(session.key)


@agents.get(SESSION_PATH, summary="Get the live session of a key")
async def get_session(session: SessionDep) -> Session:
    return await session.agent.get(session.key)


@agents.patch(SESSION_PATH, summary="Update status, token usage or metadata")
async def patch_session(session: SessionDep, patch: SessionPatch, fence: FenceDep) -> Session:
    agent, key = session
    return await agent.patch(key, patch, run=fenced(fence, key))


@agents.delete(SESSION_PATH, summary="Delete the session and all archived generations")
async def delete_session(session: SessionDep) -> DeletedBody:
    return DeletedBody(deleted=await session.agent.delete(session.key))


@agents.post(SESSION_PATH + "/reset", summary="Archive the live session and start a fresh one")
async def reset_session(session: SessionDep) -> Session:
    return await session.agent.reset(session.key)


@agents.post(SESSION_PATH + "/messages", summary="Append messages (all or none)")
async def append_messages(request: Request, session: SessionDep, body: AppendBody,
                          fence: FenceDep) -> list[StoredMessage]:
    agent, key = session
    stored = await agent.append_messages(key, as_new_messages(body.messages),
                                         run=fenced(fence, key))
    metrics: Metrics = request.app.state.metrics
    metrics.appended(len(body.messages))
    return stored


@agents.get(SESSION_PATH + "/messages", summary="Read the history, in append order")
async def get_history(session: SessionDep, query: HistoryDep) -> list[StoredMessage]:
    return await session.agent.get_history(session.key, query)


@agents.post(SESSION_PATH + "/compact", summary="Compact the live history")
async def compact(session: SessionDep, strategy: CompactionStrategy, fence: FenceDep
                  ) -> CompactionRecord:
    agent, key = session
    return await agent.compact(key, strategy, run=fenced(fence, key))


@agents.get(SESSION_PATH + "/compaction", summary="The session's compaction record")
async def get_compaction(session: SessionDep) -> CompactionRecord:
    return await session.agent.get_compaction_record(session.key)


@agents.post(SESSION_PATH + "/resolve",
             summary="The session a new message belongs to (resets it if its policy says stale)")
async def resolve_session(session: SessionDep, now: Timestamp | None = None) -> Resolution:
    return await session.agent.resolve(session.key, now)


@agents.delete(SESSION_PATH + "/messages/newest",
               summary="Remove the newest live message and return it (null if none)")
async def pop_message(session: SessionDep) -> StoredMessage | None:
    return await session.agent.pop_message(session.key)


@agents.post(SESSION_PATH + "/commit",
             summary="Append and merge metadata, here and into other sessions, in one transaction")
async def commit(session: SessionDep, body: CommitBody) -> CommitResultBody:
    agent, key = session
    shared: dict[SessionKey, MergeBody] = {}
    for entry in body.shared:
        other = _shared_key(entry.key)
        if other in shared:
            raise InvalidInputError.for_field("shared", f"{other} is given twice")
        shared[other] = entry.merge or {}
    result = await agent.commit(key, as_new_messages(body.messages), body.merge,
                                create=body.create, expect_updated_at=body.expect_updated_at,
                                shared=shared)
    return CommitResultBody.of(result)


def _shared_key(canonical: str) -> SessionKey:
    try:
        return SessionKey.parse(canonical)
    except InvalidInputError as exc:
        raise InvalidInputError.for_field("shared.key", str(exc)) from None


details = APIRouter(prefix="/v1/agents/{agent_id}/session-details", tags=["sessions"],
                    responses=problems.ERROR_RESPONSES,
                    route_class=DecodedPathRoute)


@details.get("", summary="List this agent's sessions with their metadata, newest update first")
async def list_detailed(agent: AgentDep, filter: FilterDep) -> SessionDetailPageBody:
    return SessionDetailPageBody.of(await agent.list_detailed(filter))
