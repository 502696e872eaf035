"""The session tools over HTTP: the agent route the remote store's ``record_audit`` calls
(``POST /v1/agents/{agent_id}/audit``), and the MCP server at ``/mcp`` (streamable HTTP).

At ``/mcp`` the bearer token decides the agent: the calling session is named by the
``X-Aisopod-Session`` header (a canonical key), which an agent token may only name among its own
agent's sessions (an admin token: any). Every request is authenticated again, so a session
opened with one token cannot be continued with another's. The tools' policy is
``app.state.tool_policy``: the ``[tools]`` section of the service's config (``create_app`` sets
it; the default ``ToolPolicy`` when not set).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import MAX_ID_LENGTH, MAX_SQL_INT
from aisopod_session.models import SessionKey
from aisopod_session.service import problems
from aisopod_session.service._dependencies import AgentDep, request_shape
from aisopod_session.service._throttle import AuthThrottle, client_of
from aisopod_session.service.auth import OPEN_ACCESS, TokenRegistry
from aisopod_session.tools import AsyncSessionTools, ToolPolicy

MCP_PATH = "/mcp"
SESSION_HEADER = "x-aisopod-session"

tools_routes = APIRouter(prefix="/v1/agents/{agent_id}", tags=["tools"],
                         responses=problems.ERROR_RESPONSES,
                         dependencies=[Depends(request_shape)])


class AuditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(description="tool.<name>: what a session tool did", max_length=64)
    subject: Annotated[str, Field(max_length=MAX_ID_LENGTH)] | None = None
    sessions: Annotated[int, Field(ge=0, le=MAX_SQL_INT)] = 0
    messages: Annotated[int, Field(ge=0, le=MAX_SQL_INT)] = 0


class RecordedBody(BaseModel):
    recorded: bool = Field(description="Always true: the record was written")


@tools_routes.post("/audit", summary="Add an audit record as this agent (what a session tool "
                   "did: actor agent:<id>, action tool.<name>; never content)")
async def record_audit(agent: AgentDep, body: AuditBody) -> RecordedBody:
    await agent.record_audit(body.action, body.subject, sessions=body.sessions,
                             messages=body.messages)
    return RecordedBody(recorded=True)


class _Refused(Exception):  # noqa: N818 - an HTTP answer, not a bug
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _tools_of(request: Request) -> AsyncSessionTools:
    """The calling session's tools, for this request's token and session header."""
    app = request.app
    tokens: TokenRegistry = app.state.tokens
    throttle: AuthThrottle = app.state.auth_throttle
    client = client_of(request)
    wait = throttle.refusal(client)
    if wait is not None:
        raise _Refused(429, f"too many failed authentication attempts; try again in {wait} s",
                       {"Retry-After": str(wait)})
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    principal = OPEN_ACCESS if not tokens.enabled else None
    if tokens.enabled and scheme.lower() == "bearer" and presented.strip():
        principal = tokens.authenticate(presented.strip())
        if principal is None:
            throttle.failed(client)
    if principal is None:
        raise _Refused(401, "a valid bearer token is required",
                       {"WWW-Authenticate": "Bearer"})
    named = request.headers.get(SESSION_HEADER)
    if not named:
        raise _Refused(400, f"name the calling session in the {SESSION_HEADER} header (a "
                            "canonical key)")
    try:
        key = SessionKey.parse(named)
    except InvalidInputError as exc:
        raise _Refused(400, f"{SESSION_HEADER}: {exc}") from None
    if not principal.may_use_agent(key.agent_id):
        raise _Refused(403, f"this token may not act as agent {key.agent_id!r}")
    policy = getattr(app.state, "tool_policy", None) or ToolPolicy()
    return AsyncSessionTools(app.state.store, key, policy)


async def _tools_for(request: Any) -> AsyncSessionTools:
    if request is None:  # pragma: no cover - the HTTP transport always gives the request
        raise PermissionError("no HTTP request")
    return _tools_of(request)


class _McpEndpoint:
    """Checks the caller before the MCP transport sees the request: a refused token or
    session is a plain HTTP error, never an MCP session."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            _tools_of(request)
        except _Refused as refused:
            response = JSONResponse({"error": refused.message}, refused.status,
                                    headers=refused.headers)
            await response(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)


def install(app: FastAPI) -> None:
    """Add the audit route and mount the MCP server (its session manager runs with the
    app's lifespan)."""
    app.include_router(tools_routes)
    try:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        from aisopod_session.tools.mcp import mcp_server
    except ImportError:  # the mcp extra is not installed: no /mcp
        return
    def new_manager() -> Any:
        return StreamableHTTPSessionManager(app=mcp_server(_tools_for), stateless=True,
                                            json_response=True)

    endpoint = _McpEndpoint(new_manager())
    app.router.routes.append(Route(MCP_PATH, endpoint,
                                   methods=["GET", "POST", "DELETE"], include_in_schema=False))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        # A session manager runs once: each start of the app (a second test client, a
        # restarted server in one process) gets a fresh one.
        endpoint.manager = new_manager()
        async with inner(app_) as state, endpoint.manager.run():
            yield state

    app.router.lifespan_context = lifespan
