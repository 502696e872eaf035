"""The change feed over HTTP: pages (``GET …/changes``) and a Server-Sent Events stream
(``GET …/changes/stream``), agent-scoped under ``/v1/agents/{agent_id}`` and for every agent under
``/v1/admin``.

A stream sends each change as an event whose ``id`` is its cursor, ``event`` its kind and
``data`` the change as JSON; a client that reconnects with ``Last-Event-ID`` (or ``since=``)
resumes right after it, so nothing is lost or repeated. Idle streams carry a comment every 15
seconds (FastAPI's keep-alive), which keeps proxies from closing them. When the service shuts
down, every stream ends at once (see ``server``): a client reconnects to another replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from aisopod_session.limits import MAX_CURSOR_LENGTH, MAX_PAGE_SIZE
from aisopod_session.results import Change
from aisopod_session.service import problems
from aisopod_session.service._dependencies import AdminDep, AgentDep, AgentIdQuery, request_shape
from aisopod_session.service._paths import DecodedPathRoute

SinceQuery = Annotated[str | None, Query(
    max_length=MAX_CURSOR_LENGTH,
    description="Changes after this cursor (a next_cursor or a change's cursor); the oldest "
                "kept when not given (for a stream: from now on)")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
LastEventId = Annotated[str | None, Header(
    alias="Last-Event-ID", max_length=MAX_CURSOR_LENGTH,
    description="Sent by a reconnecting EventSource: resume after it (wins over since)")]

agent_changes = APIRouter(prefix="/v1/agents/{agent_id}/changes", tags=["changes"],
                          responses=problems.ERROR_RESPONSES,
                          dependencies=[Depends(request_shape)], route_class=DecodedPathRoute)
admin_changes = APIRouter(prefix="/v1/admin/changes", tags=["admin", "changes"],
                          responses=problems.ERROR_RESPONSES,
                          dependencies=[Depends(request_shape)], route_class=DecodedPathRoute)


class ChangePageBody(BaseModel):
    changes: list[Change]
    next_cursor: str = Field(description="Pass as since= for the next page (never null)")


class CursorBody(BaseModel):
    cursor: str = Field(description="The newest change's cursor: since= it reads what is new")


@agent_changes.get("", summary="This agent's changes after a cursor, oldest first")
async def agent_page(agent: AgentDep, since: SinceQuery = None, limit: LimitQuery = 100
                     ) -> ChangePageBody:
    page = await agent.changes(since, limit=limit)
    return ChangePageBody(changes=list(page), next_cursor=page.next_cursor)


@agent_changes.get("/latest", summary="The newest change's cursor")
async def agent_latest(agent: AgentDep) -> CursorBody:
    return CursorBody(cursor=await agent.latest_cursor())


async def _agent_start(agent: AgentDep, since: SinceQuery = None,
                       last_event_id: LastEventId = None) -> str:
    """Where an agent's stream starts, checked before it does: a bad or expired cursor answers
    422 / 410, not a stream that ends at once."""
    given = _given(last_event_id, since)
    start = given if given is not None else await agent.latest_cursor()
    await agent.changes(start, limit=1)
    return start


def _given(last_event_id: str | None, since: str | None) -> str | None:
    """The cursor a stream was asked to start after (an empty one is refused, as pages do)."""
    return last_event_id if last_event_id is not None else since


async def _admin_start(store: AdminDep, since: SinceQuery = None,
                       agent_id: AgentIdQuery = None, last_event_id: LastEventId = None) -> str:
    given = _given(last_event_id, since)
    start = given if given is not None else await store.latest_cursor()
    await store.changes(start, agent_id=agent_id, limit=1)
    return start


@agent_changes.get("/stream", response_class=EventSourceResponse,
                   summary="This agent's changes as they commit (Server-Sent Events)")
async def agent_stream(request: Request, agent: AgentDep,
                       start: Annotated[str, Depends(_agent_start)]
                       ) -> AsyncIterator[ServerSentEvent]:
    async for event in change_events(request, agent.watch(start)):
        yield event


@admin_changes.get("", summary="Every agent's changes after a cursor, oldest first")
async def admin_page(store: AdminDep, since: SinceQuery = None, agent_id: AgentIdQuery = None,
                     limit: LimitQuery = 100) -> ChangePageBody:
    page = await store.changes(since, agent_id=agent_id, limit=limit)
    return ChangePageBody(changes=list(page), next_cursor=page.next_cursor)


@admin_changes.get("/latest", summary="The newest change's cursor")
async def admin_latest(store: AdminDep) -> CursorBody:
    return CursorBody(cursor=await store.latest_cursor())


@admin_changes.get("/stream", response_class=EventSourceResponse,
                   summary="Changes as they commit (Server-Sent Events)")
async def admin_stream(request: Request, store: AdminDep,
                       start: Annotated[str, Depends(_admin_start)],
                       agent_id: AgentIdQuery = None) -> AsyncIterator[ServerSentEvent]:
    async for event in change_events(request, store.watch(start, agent_id=agent_id)):
        yield event


def stopping_event(request: Request) -> asyncio.Event:
    """Set when the service shuts down (see ``server``): every stream ends then."""
    event: asyncio.Event = request.app.state.stopping
    return event


async def change_events(request: Request, changes: AsyncIterator[Change]
                  ) -> AsyncIterator[ServerSentEvent]:
    stop = asyncio.ensure_future(stopping_event(request).wait())
    step: asyncio.Future[Change] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(changes))
            await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():  # shutting down: end the stream (the client reconnects)
                step.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                return
            try:
                change = step.result()
            except StopAsyncIteration:  # the store closed
                return
            yield ServerSentEvent(id=change.cursor, event=change.kind.value,
                                  raw_data=change.model_dump_json())
    finally:
        # The client left (or the server stops): end the watch, which is inside anext() while
        # it waits for the next change, before closing it.
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration):
                await step
        with suppress(Exception):
            await changes.aclose()  # type: ignore[attr-defined]
