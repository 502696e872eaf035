"""Request dependencies: who is calling, which store, agent and key, which filter or query.

None of them does I/O, so all are coroutines: FastAPI runs a plain ``def`` dependency on the
thread pool, a hop that costs more than the work itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aisopod_session._time import from_us
from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import (
    MAX_CURSOR_LENGTH,
    MAX_ID_LENGTH,
    MAX_PAGE_SIZE,
    MAX_SQL_INT,
)
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    SessionFilter,
    SessionKey,
    SessionStatus,
    normalize_name_or_raise,
)
from aisopod_session.results import Run
from aisopod_session.service._bodies import Timestamp
from aisopod_session.service._paths import check_decoded
from aisopod_session.service._throttle import AuthThrottle, client_of
from aisopod_session.service.auth import OPEN_ACCESS, Principal, TokenRegistry
from aisopod_session.store import AsyncAgentSessions, AsyncSessionStore

# --- documented constraints of key parts ------------------------------------------------------

_SPACES = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PART_PATTERN = (rf"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f{_SPACES}]"
                rf"[^\x00-\x1f\x7f-\x9f]*$")
"""What a key part (or a filter on one) must look like: no control character, not blank.
Only documented (the models check it and name the offending character); names are also trimmed,
NFC-normalised and lower-cased, peer ids trimmed and NFC-normalised."""


_NOT_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
_EDGE = rf"[^\x00-\x1f\x7f-\x9f{_SPACES}]"  # neither a control character nor a space
_GROUP_CHAR = r"(?:[^/%\x00-\x1f\x7f-\x9f]|%25|%2F)"
_GROUP_EDGE = rf"(?:[^/%\x00-\x1f\x7f-\x9f{_SPACES}]|%25|%2F)"
THREAD_PEER_ID_PATTERN = (rf"^[{_SPACES}]*{_GROUP_EDGE}(?:{_GROUP_CHAR}*{_GROUP_EDGE})?/"
                          rf"{_EDGE}(?:{_NOT_CONTROL}*{_EDGE})?[{_SPACES}]*$")
"""What the peer id of a ``thread`` key must look like (``SessionKey.for_thread`` builds it):
``<group id>/<thread id>``, each without spaces at its ends, ``%`` and ``/`` inside the group id
written ``%25`` and ``%2F``. JSON Schema cannot make one path parameter's pattern depend on
another's value, so the document publishes it as ``x-thread-pattern`` of ``peer_id``."""

KEY_PART_SCHEMA: dict[str, Any] = {"pattern": PART_PATTERN, "minLength": 1,
                                   "maxLength": MAX_ID_LENGTH}
"""The documented constraints of a key part (and of any other id checked the same way)."""


def part_param(kind: Callable[..., Any], description: str,
               **schema: Any) -> Any:
    return kind(max_length=MAX_ID_LENGTH, description=description,
                json_schema_extra={"pattern": PART_PATTERN, "minLength": 1, **schema})


AgentIdPath = Annotated[str, part_param(Path, "The agent (case-insensitive)")]
AgentIdQuery = Annotated[str | None, part_param(Query, "Only this agent's sessions")]


# --- who is calling ----------------------------------------------------------------------------


async def _store(request: Request) -> AsyncSessionStore:
    store: AsyncSessionStore = request.app.state.store
    return store


_bearer = HTTPBearer(
    scheme_name="bearer", auto_error=False,
    description="An admin token, or an agent token (only that agent's sessions). Not needed when "
    "the server has no tokens configured (it then listens on loopback only).",
)


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    tokens: TokenRegistry = request.app.state.tokens
    if not tokens.enabled:
        return OPEN_ACCESS
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = client_of(request)
    wait = throttle.refusal(client)
    if wait is not None:
        request.app.state.metrics.auth_throttled("api")
        raise HTTPException(429, "too many failed authentication attempts from this client; "
                            f"try again in {wait} s", headers={"Retry-After": str(wait)})
    principal = None if credentials is None else tokens.authenticate(
        credentials.credentials.strip())
    if principal is None:
        if credentials is not None:
            throttle.failed(client)
        if request.headers.get("authorization"):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
StoreDep = Annotated[AsyncSessionStore, Depends(_store)]


REPEATABLE_QUERY = frozenset({"status", "role"})


async def request_shape(request: Request, _: PrincipalDep) -> None:
    """Refuse query parameters the route does not take, and repeats of single-valued ones: a
    typo (``?agent=bot&confirm=true`` on DELETE /v1/admin/sessions) must not widen a request.
    Refuse a body sent as anything but JSON to a route that takes JSON (415). (The caller is
    authenticated first: strangers learn nothing about parameters.)"""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    if route.body_field is not None:
        await _check_json_body(request)
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


async def _check_json_body(request: Request) -> None:
    """A body (FastAPI has read it already) must say it is JSON: without this check, text sent
    as ``text/plain`` or with no Content-Type is validated as a string and refused with a
    puzzling "Input should be a valid dictionary"."""
    content_type = request.headers.get("content-type")
    if not await request.body() or _is_json(content_type):
        return
    got = "no Content-Type" if content_type is None else f"Content-Type {content_type[:100]!r}"
    raise HTTPException(
        415, f"send the body as JSON with Content-Type: {JSON} (got {got})",
        headers={f"Accept-{request.method.title()}": JSON}
        if request.method in ("POST", "PATCH") else None)


JSON = "application/json"


def _is_json(content_type: str | None) -> bool:
    """``application/json``, or a ``+json`` type, parameters allowed (what FastAPI parses)."""
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == JSON or (media_type.startswith("application/")
                                  and media_type.endswith("+json"))


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


async def _checked_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, authenticated, and the request's shape checked (:func:`request_shape`): the
    two in one dependency. FastAPI solves a dependency's tree again wherever it is named, so
    the agent and session dependencies take this one instead of a router-wide
    ``request_shape`` beside their own ``PrincipalDep``."""
    principal = await _principal(request, credentials)
    await request_shape(request, principal)
    return principal


CheckedCallerDep = Annotated[Principal, Depends(_checked_caller)]


# --- which agent, key or person -----------------------------------------------------------------
# Path parameters arrive decoded exactly as the client sent them (see _paths); the ones that
# are not UTF-8 are refused here, after the caller is authenticated.


async def _agent(
    request: Request,
    agent_id: AgentIdPath,
    principal: CheckedCallerDep,
) -> AsyncAgentSessions:
    return _agent_handle(request, agent_id, principal)


def _agent_handle(request: Request, agent_id: str, principal: Principal) -> AsyncAgentSessions:
    """The handle of the agent in the path, if the caller may use it."""
    check_decoded(request, "agent_id")
    agent = normalize_name_or_raise("agent_id", agent_id)
    if not principal.may_use_agent(agent):
        raise HTTPException(403, f"this token may not use agent {agent!r}")
    store: AsyncSessionStore = request.app.state.store  # not StoreDep: a node costs a solve
    return store.for_agent(agent)


async def _admin(principal: PrincipalDep, store: StoreDep) -> AsyncSessionStore:
    if not principal.admin:
        raise HTTPException(403, "admin routes need an admin token")
    return store


class SessionTarget(NamedTuple):
    """The agent's handle and the key of one of its sessions: a session route's one dependency.

    FastAPI solves a dependency's whole tree again at every place it is named (its cache only
    spares the call), so a route taking the agent, the key (which needed the agent) and a run
    fence (which needed the key) solved the caller's authentication four times and the agent
    three: this node takes the key's path parts, and the agent (the one sub-dependency, which
    checks the caller's right to it first)."""

    agent: AsyncAgentSessions
    key: SessionKey


async def _session(
    *,
    request: Request,
    # A sub-dependency: solved (the caller's right to the agent checked, 403) before this
    # node's own path parameters are validated, so another agent's token learns nothing of
    # which keys are well formed.
    agent: AgentDep,
    channel: Annotated[str, part_param(Path, "The chat channel (case-insensitive)")],
    account_id: Annotated[str, part_param(Path, "The bot's account on the channel "
                                                "(case-insensitive)")],
    peer_kind: PeerKind,
    peer_id: Annotated[str, part_param(
        Path, "The user or group id; for `peer_kind` `thread`: `<group id>/<thread id>`, a "
        "`%` or `/` inside the group id written `%25` or `%2F` (`SessionKey.for_thread` "
        "builds it; `x-thread-pattern` is its pattern). Case-sensitive. Percent-encoded in "
        "the URL like every part: its `/` is sent as `%2F`",
        **{"x-thread-pattern": THREAD_PEER_ID_PATTERN})],
) -> SessionTarget:
    check_decoded(request, "channel", "account_id", "peer_id")
    return SessionTarget(agent, SessionKey(agent.agent_id, channel, account_id, peer_kind,
                                           peer_id))


async def _peer(
    *,
    request: Request,
    channel: Annotated[str, part_param(Path, "The person's channel (`*` for linked names)")],
    peer_id: Annotated[str, part_param(Path, "The person's id on that channel")],
) -> tuple[str, str]:
    check_decoded(request, "channel", "peer_id")
    return channel, peer_id


@dataclass(frozen=True, slots=True)
class Fence:
    """The run a write names (``?fence=…&owner=…``), to check against the session's current
    run."""

    fence: int
    owner: str

    def run_of(self, key: SessionKey) -> Run:
        epoch = from_us(0)
        return Run.model_construct(key=key, owner=self.owner, fence=self.fence,
                                   started_at=epoch, expires_at=epoch, ttl=0.0,
                                   stop_requested=False)


async def _fence(
    fence: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT, description=(
        "A write a run makes: refused (409 run-lost) unless this run is the session's "
        "current run"))] = None,
    owner: Annotated[str | None, Query(max_length=MAX_ID_LENGTH,
                                       description="The run's owner (for the error)")] = None,
) -> Fence | None:
    # Not built on the session's key here: depending on SessionDep would solve its tree again.
    return None if fence is None else Fence(fence, owner or "")


def fenced(fence: Fence | None, key: SessionKey) -> Run | None:
    """The fencing run of a write to ``key`` (None: not fenced)."""
    return None if fence is None else fence.run_of(key)


AgentDep = Annotated[AsyncAgentSessions, Depends(_agent)]
FenceDep = Annotated[Fence | None, Depends(_fence)]
SessionDep = Annotated[SessionTarget, Depends(_session)]
AdminDep = Annotated[AsyncSessionStore, Depends(_admin)]
PeerDep = Annotated[tuple[str, str], Depends(_peer)]


# --- filters and queries -----------------------------------------------------------------------


async def _filter(
    *,
    channel: Annotated[str | None, part_param(Query, "Only this channel")] = None,
    account_id: Annotated[str | None, part_param(Query, "Only this bot account")] = None,
    peer_kind: PeerKind | None = None,
    peer_id: Annotated[str | None, part_param(Query, "Only this peer")] = None,
    status: Annotated[list[SessionStatus] | None, Query()] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    updated_after: Timestamp | None = None,
    updated_before: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(
        max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page, "
        "unchanged, with the same filters (only `limit` may change): a cursor is signed and "
        "bound to its listing, any other is refused (422, field `cursor`)")] = None,
) -> SessionFilter:
    return SessionFilter(
        channel=channel, account_id=account_id, peer_kind=peer_kind, peer_id=peer_id,
        status=tuple(status) if status else None, created_after=created_after,
        created_before=created_before, updated_after=updated_after,
        updated_before=updated_before, limit=limit, cursor=cursor,
    )


async def _history_query(
    *,
    limit: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    before: Timestamp | None = None,
    after: Timestamp | None = None,
    tail: bool = False,
    include_compacted: bool = False,
) -> HistoryQuery:
    return HistoryQuery(limit=limit, offset=offset, before=before, after=after, tail=tail,
                        include_compacted=include_compacted)


FilterDep = Annotated[SessionFilter, Depends(_filter)]
HistoryDep = Annotated[HistoryQuery, Depends(_history_query)]
