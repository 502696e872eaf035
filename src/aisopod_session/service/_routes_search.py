"""Full-text search over HTTP (see the README's Search section): ``GET …/search`` agent-scoped
under ``/v1/agents/{agent_id}`` (an agent token sees its own agent's messages only: the agent is
a condition of the store's statement) and for every agent under ``/v1/admin``, plus the admin
routes of the index: its status and a bounded build.

The query is ``q``; the filter is one query parameter per ``SearchFilter`` field (``role`` and
``status`` repeated for several); ``limit``, ``cursor`` and ``order`` page as the library does. A
malformed query is a 422 naming ``q``; a store opened with ``search=False`` answers 409 with the
problem type ``…/search-disabled`` (``SearchDisabledError``: a state of the database that waiting
does not change, so not a 503).

``POST /v1/admin/search/index/build`` runs at most ``max_batches`` batches of ``batch_size``
messages (at most 10 of 10,000: ``limits.MAX_SEARCH_BUILD_*``) and answers the index status;
the rest is for the next request (the remote store sends one per batch). Each batch is its own
short write transaction, so appends and reads go on meanwhile; 100,000 messages take a few
seconds (the README's figures), so one request never holds a connection for minutes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import (
    MAX_CURSOR_LENGTH,
    MAX_SEARCH_BUILD_BATCH,
    MAX_SEARCH_BUILD_BATCHES_PER_REQUEST,
    MAX_SEARCH_LIMIT,
    MAX_SEARCH_QUERY_CHARS,
)
from aisopod_session.models import PeerKind, Role, SessionStatus
from aisopod_session.results import SearchFilter, SearchIndexStatus, SearchOrder, SearchPage
from aisopod_session.service import problems
from aisopod_session.service._bodies import Timestamp
from aisopod_session.service._dependencies import (
    AdminDep,
    AgentDep,
    AgentIdQuery,
    part_param,
    request_shape,
)
from aisopod_session.service._paths import DecodedPathRoute

agent_search = APIRouter(prefix="/v1/agents/{agent_id}/search", tags=["search"],
                         responses=problems.ERROR_RESPONSES,
                         dependencies=[Depends(request_shape)], route_class=DecodedPathRoute)
admin_search = APIRouter(prefix="/v1/admin/search", tags=["admin", "search"],
                         responses=problems.ERROR_RESPONSES,
                         dependencies=[Depends(request_shape)], route_class=DecodedPathRoute)


QueryText = Annotated[str, Query(
    max_length=MAX_SEARCH_QUERY_CHARS,
    description="Words (all must match), `\"exact phrases\"`, `prefix*`, `-excluded` words or "
                "phrases (see the README's Search section); a malformed query is a 422 naming "
                "`q`")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_SEARCH_LIMIT)]
CursorQuery = Annotated[str | None, Query(
    max_length=MAX_CURSOR_LENGTH,
    description="`next_cursor` of the previous page, unchanged, with the same `q`, filter and "
                "`order` (otherwise 422 naming `cursor`)")]
OrderQuery = Annotated[SearchOrder, Query(
    description="`best`: highest score first; `newest`: newest `created_at` first")]


async def _search_filter(
    *,
    channel: Annotated[str | None, part_param(Query, "Only this channel")] = None,
    account_id: Annotated[str | None, part_param(Query, "Only this bot account")] = None,
    peer_kind: PeerKind | None = None,
    peer_id: Annotated[str | None, part_param(Query, "Only this peer")] = None,
    role: Annotated[list[Role] | None, Query(
        description="Only messages of these roles (repeat for several)")] = None,
    status: Annotated[list[SessionStatus] | None, Query(
        description="Only sessions in these statuses (repeat for several; default: every "
                    "live one)")] = None,
    after: Annotated[Timestamp | None, Query(
        description="Only messages created after this time (exclusive)")] = None,
    before: Annotated[Timestamp | None, Query(
        description="Only messages created before this time (exclusive)")] = None,
    include_compacted: Annotated[bool, Query(
        description="Also the originals compaction took out of the live history")] = False,
    include_archived: Annotated[bool, Query(
        description="Also archived generations (earlier sessions of a reset key)")] = False,
) -> SearchFilter:
    return SearchFilter(
        channel=channel, account_id=account_id, peer_kind=peer_kind, peer_id=peer_id,
        role=tuple(role) if role else None, status=tuple(status) if status else None,
        after=after, before=before, include_compacted=include_compacted,
        include_archived=include_archived)


SearchFilterDep = Annotated[SearchFilter, Depends(_search_filter)]


async def _page(search: Awaitable[SearchPage]) -> SearchPage:
    """The page, or the store's InvalidInputError with its ``query`` named ``q`` (what the
    client sent)."""
    try:
        return await search
    except InvalidInputError as exc:
        errors = [{**error, "field": "q"} if error.get("field") == "query" else error
                  for error in exc.errors]
        if errors == exc.errors:
            raise
        raise InvalidInputError("; ".join(f"{e['field']}: {e['message']}" for e in errors),
                                errors) from None


@agent_search.get("", summary="This agent's messages matching a query, one page at a time")
async def agent_search_page(agent: AgentDep, q: QueryText, filter: SearchFilterDep,
                            limit: LimitQuery = 10, cursor: CursorQuery = None,
                            order: OrderQuery = "best") -> SearchPage:
    return await _page(agent.search(q, filter=filter, limit=limit, cursor=cursor, order=order))


@admin_search.get("", summary="Messages of every agent (or one) matching a query")
async def admin_search_page(store: AdminDep, q: QueryText, filter: SearchFilterDep,
                            agent_id: AgentIdQuery = None, limit: LimitQuery = 10,
                            cursor: CursorQuery = None, order: OrderQuery = "best"
                            ) -> SearchPage:
    return await _page(store.search_all(q, agent_id=agent_id, filter=filter, limit=limit,
                                        cursor=cursor, order=order))


@admin_search.get("/index", summary="Whether search is on, and how many messages wait to be "
                                    "indexed")
async def index_status(store: AdminDep) -> SearchIndexStatus:
    return await store.search_index_status()


class BuildBody(BaseModel):
    """A bounded piece of the index build: at most ``max_batches`` batches."""

    model_config = ConfigDict(extra="forbid")

    batch_size: StrictInt = Field(default=1000, ge=1, le=MAX_SEARCH_BUILD_BATCH,
                            description="Messages per batch (one short write transaction each)")
    max_batches: StrictInt = Field(default=MAX_SEARCH_BUILD_BATCHES_PER_REQUEST, ge=1,
                             le=MAX_SEARCH_BUILD_BATCHES_PER_REQUEST,
                             description="Batches this request runs at most; repeat the "
                                         "request while `pending` is above 0")


@admin_search.post("/index/build",
                   summary="Index messages stored before search was on (a bounded part: "
                           "repeat while pending)")
async def build_index(store: AdminDep, body: BuildBody | None = None) -> SearchIndexStatus:
    wanted = body or BuildBody()
    return await store.build_search_index(batch_size=wanted.batch_size,
                                          max_batches=wanted.max_batches)
