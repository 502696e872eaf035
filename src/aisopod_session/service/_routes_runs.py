"""The run routes of a session (``…/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}/runs``
and ``…/inbox``): start, renew, finish, current run, stop requests; enqueue, peek and take.

A busy session answers 409 with the problem type ``session-busy``, the holder, ``expires_at`` and
``Retry-After``; a run that is no longer current answers 409 with the type ``run-lost``. A write
a run makes (append, patch, compact on the session routes) is fenced by ``?fence=`` (and
``owner=``, for the error message)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from aisopod_session.errors import InvalidInputError, SessionBusyError
from aisopod_session.limits import (
    MAX_INBOX_BATCH,
    MAX_RUN_TTL_SECONDS,
)
from aisopod_session.models import SessionKey, StoredMessage
from aisopod_session.results import QueuedMessage, Run
from aisopod_session.service import problems
from aisopod_session.service._bodies import AppendBody, as_new_messages
from aisopod_session.service._dependencies import (
    SessionDep,
    part_param,
)
from aisopod_session.service._paths import DecodedPathRoute
from aisopod_session.service._routes_sessions import SESSION_PATH
from aisopod_session.service.metrics import Metrics

# No router-wide request_shape: every route takes SessionDep (see _routes_sessions).
runs = APIRouter(prefix="/v1/agents/{agent_id}/sessions" + SESSION_PATH, tags=["runs"],
                 responses=problems.ERROR_RESPONSES,
                 route_class=DecodedPathRoute)

TtlQuery = Annotated[float, Query(gt=0, le=MAX_RUN_TTL_SECONDS,
                                  description="Lease length in seconds")]


class RenewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Run
    ttl: Annotated[float, Field(gt=0, le=MAX_RUN_TTL_SECONDS)] | None = None


class TakeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Run
    limit: Annotated[int, Field(ge=1, le=MAX_INBOX_BATCH)] | None = None


class WaitingBody(BaseModel):
    waiting: int = Field(description="Inbox messages waiting for the next run")


class StoppedBody(BaseModel):
    stopped: bool = Field(description="False when no run was active")


def _of(key: SessionKey, run: Run) -> Run:
    if run.key != key:
        raise InvalidInputError.for_field("run.key", f"is {run.key}, not this session's key")
    return run


@runs.post("/runs", summary="Start a run: take the session's run lease (409 while busy)")
async def start_run(request: Request, session: SessionDep,
                    owner: Annotated[str, part_param(Query, "Who takes the run (shown to "
                                                     "whoever finds the session busy)")],
                    ttl: TtlQuery = 60.0) -> Run:
    # Never waits here: a request held open for a busy session would take the lease for a
    # client that gave up (a proxy's timeout) and hold it for nobody. A client that waits asks
    # again (the remote store does, until the lease expires or is given back).
    agent, key = session
    metrics: Metrics = request.app.state.metrics
    try:
        run = await agent.start_run(key, owner, ttl=ttl)
    except SessionBusyError:
        metrics.run_busy(key.canonical(), owner)
        raise
    metrics.run_started(key.canonical(), owner, took_over=run.took_over)
    return run


@runs.get("/runs/current", summary="The run holding the session now (null if none)")
async def current_run(session: SessionDep) -> Run | None:
    return await session.agent.current_run(session.key)


@runs.post("/runs/renew", summary="Extend the run's lease (409 run-lost once it is not current)")
async def renew_run(session: SessionDep, body: RenewBody) -> Run:
    return await session.agent.renew_run(_of(session.key, body.run), ttl=body.ttl)


@runs.post("/runs/finish", summary="End the run; how many inbox messages wait")
async def finish_run(session: SessionDep, run: Run) -> WaitingBody:
    return WaitingBody(waiting=await session.agent.finish_run(_of(session.key, run)))


@runs.post("/runs/stop", summary="Ask the current run to stop (seen on its next renewal)")
async def request_stop(session: SessionDep) -> StoppedBody:
    return StoppedBody(stopped=await session.agent.request_stop(session.key))


@runs.post("/inbox", summary="Keep incoming messages for a run to take")
async def enqueue(session: SessionDep, body: AppendBody) -> list[QueuedMessage]:
    return await session.agent.enqueue(session.key, as_new_messages(body.messages))


@runs.get("/inbox", summary="The messages waiting, oldest first")
async def peek_inbox(session: SessionDep,
                     limit: Annotated[int | None, Query(ge=1, le=MAX_INBOX_BATCH)] = None
                     ) -> list[QueuedMessage]:
    return await session.agent.inbox(session.key, limit=limit)


@runs.post("/inbox/take", summary="Move waiting messages into the history under the run's fence")
async def take_inbox(session: SessionDep, body: TakeBody) -> list[StoredMessage]:
    return await session.agent.take_inbox(_of(session.key, body.run), limit=body.limit)
