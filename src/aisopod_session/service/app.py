"""The HTTP API: the library's operations as resources, behind bearer-token auth.

This module assembles the application; the parts live beside it:

- :mod:`._routes_sessions`: agent routes under ``/v1/agents/{agent_id}/sessions``, a session
  addressed by its key's parts (``…/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}``);
- :mod:`._routes_admin`: admin routes under ``/v1/admin``;
- :mod:`._routes_changes`: the change feed, pages and a Server-Sent Events stream;
- :mod:`._routes_search`: full-text search (agent-scoped and admin) and the index's admin routes;
- :mod:`._routes_webhooks`: webhook delivery (started with the app) and its admin routes;
- :mod:`._routes_probes`: ``/healthz``, ``/readyz`` and ``/metrics``;
- :mod:`._dependencies` (who is calling, which agent and key), :mod:`._bodies` (request and
  response bodies), :mod:`._paths` (key parts holding a ``/``, sent as ``%2F``) and
  :mod:`._middleware` (body size limit, request metrics).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI

from aisopod_session.service import _docs, _routes_tools, console, problems
from aisopod_session.service._dependencies import KEY_PART_SCHEMA
from aisopod_session.service._middleware import LimitBody, add_request_metrics
from aisopod_session.service._paths import RouteOnEncodedSlashes
from aisopod_session.service._routes_admin import IMPORT_PATH, admin
from aisopod_session.service._routes_changes import admin_changes, agent_changes
from aisopod_session.service._routes_probes import probes
from aisopod_session.service._routes_runs import runs
from aisopod_session.service._routes_search import admin_search, agent_search
from aisopod_session.service._routes_sessions import agents, details
from aisopod_session.service._routes_webhooks import delivering, webhooks
from aisopod_session.service._throttle import AuthThrottle
from aisopod_session.service.auth import TokenRegistry
from aisopod_session.service.config import ServiceConfig
from aisopod_session.service.maintenance import run_maintenance
from aisopod_session.service.metrics import Metrics
from aisopod_session.store import AsyncSessionStore

__all__ = ["ServiceApp", "admin", "admin_changes", "admin_search", "agent_changes",
           "agent_search", "agents", "create_app", "details", "probes", "runs", "webhooks"]


def create_app(config: ServiceConfig | None = None, store: AsyncSessionStore | None = None
               ) -> FastAPI:
    """The ASGI app. Without ``store`` it opens ``config.database`` at start-up and closes it
    at shutdown; a given store is left open (its owner closes it)."""
    config = config or ServiceConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if store is not None:
            app.state.store = store
            async with delivering(app, store):
                yield
            return
        db = config.database
        opened = await AsyncSessionStore.open(db.url, durability=db.durability,
                                              pool_size=db.pool_size, schema=db.db_schema,
                                              policies=config.policies)
        app.state.store = opened
        interval = config.maintenance.interval_seconds
        maintenance = (asyncio.create_task(run_maintenance(opened, interval, app.state.metrics))
                       if interval else None)
        try:
            async with delivering(app, opened):
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
        docs_url=None,  # served from the packaged Swagger UI (see _docs)
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.tokens = TokenRegistry(config.tokens)
    app.state.auth_throttle = AuthThrottle(config.auth)
    app.state.metrics = Metrics()
    app.state.stopping = asyncio.Event()  # set when the server shuts down: streams end
    app.state.webhooks = config.webhooks
    app.state.tool_policy = config.tools  # the session tools at /mcp
    if store is not None:
        app.state.store = store
    problems.install(app)
    app.include_router(agents)
    app.include_router(details)
    app.include_router(runs)
    app.include_router(agent_changes)
    app.include_router(admin_changes)
    app.include_router(agent_search)
    app.include_router(admin_search)
    app.include_router(admin)
    app.include_router(webhooks)
    app.include_router(probes)
    _routes_tools.install(app)  # the audit route of the session tools, and MCP at /mcp
    console.install(app)
    _docs.install(app)
    add_request_metrics(app)
    app.add_middleware(LimitBody, max_bytes=config.server.max_body_bytes,
                       streamed=(IMPORT_PATH,))
    app.add_middleware(RouteOnEncodedSlashes)  # outermost: every layer sees the routed path
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
            schemas = document.get("components", {}).get("schemas", {})
            for model, names in _CHECKED_AS_KEY_PARTS.items():
                for name in names:
                    _add_key_part_rules(schemas[model]["properties"][name])
            for schema in schemas.values():
                # A discriminated union's tag (`kind` of a compaction strategy) has a default in
                # its model, but the union needs it to pick the model: it is required.
                for name, prop in schema.get("properties", {}).items():
                    if "const" in prop and "default" in prop:
                        required = schema.setdefault("required", [])
                        if name not in required:
                            required.append(name)
        return self.openapi_schema or super().openapi()


_CHECKED_AS_KEY_PARTS = {"SessionKey": ("agent_id", "channel", "account_id", "peer_id"),
                         "NewMessage": ("external_id",)}
"""Body fields the models check as key parts are (no control character, not blank, at most
256 characters), which pydantic's schema leaves out."""


def _add_key_part_rules(prop: dict[str, Any]) -> None:
    for branch in prop.get("anyOf", [prop]):  # an optional field: its string branch
        if branch.get("type") == "string":
            branch.update(KEY_PART_SCHEMA)


def _version() -> str:
    from aisopod_session import __version__

    return __version__
