"""Webhooks: the service delivers the change feed to the ``[[webhooks]]`` of its config (see
:func:`delivering`, started by the app's lifespan), and the admin routes under
``/v1/admin/webhooks`` show them (never their secrets), where each stands, and the delivery log.

Every replica runs the delivery; the webhooks' leases in the database make one worker per webhook
deliver at a time (see ``AsyncSessionStore.deliver_webhooks``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from aisopod_session.errors import InvalidInputError
from aisopod_session.limits import MAX_PAGE_SIZE
from aisopod_session.results import (
    ChangeKind,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookState,
)
from aisopod_session.service import problems
from aisopod_session.service._dependencies import AdminDep, request_shape
from aisopod_session.service._paths import DecodedPathRoute
from aisopod_session.service.metrics import Metrics
from aisopod_session.store import AsyncSessionStore

log = logging.getLogger("aisopod_session.service")

webhooks = APIRouter(prefix="/v1/admin/webhooks", tags=["admin", "webhooks"],
                     responses=problems.ERROR_RESPONSES, dependencies=[Depends(request_shape)],
                     route_class=DecodedPathRoute)


@asynccontextmanager
async def delivering(app: FastAPI, store: AsyncSessionStore) -> AsyncIterator[None]:
    """Deliver the configured webhooks while the block runs (nothing when none are configured);
    at the end the worker stops and gives its leases up, so another replica takes over at
    once."""
    hooks: list[Webhook] = app.state.webhooks
    if not hooks:
        yield
        return
    metrics: Metrics = app.state.metrics
    task = asyncio.create_task(store.deliver_webhooks(hooks, on_outcome=metrics.webhook_outcome),
                               name="webhook delivery")
    task.add_done_callback(_report_end)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("webhook delivery stopped", exc_info=task.exception())


class WebhookBody(BaseModel):
    """A configured webhook, without its secret, and where its delivery stands."""

    name: str
    url: str
    agents: list[str] = Field(description="Only these agents' changes (empty: every change)")
    kinds: list[ChangeKind] = Field(description="Only these kinds (empty: every kind)")
    max_attempts: int
    timeout_seconds: float
    backoff_seconds: float
    max_backoff_seconds: float
    state: WebhookState | None = Field(
        description="Position, lease holder and counts (null: never claimed yet)")


@webhooks.get("", summary="The configured webhooks (never their secrets) and where each stands")
async def list_webhooks(request: Request, store: AdminDep) -> list[WebhookBody]:
    hooks: list[Webhook] = request.app.state.webhooks
    states = {state.name: state for state in await store.webhook_states()}
    return [WebhookBody(name=hook.name, url=hook.url, agents=list(hook.agents),
                        kinds=list(hook.kinds), max_attempts=hook.max_attempts,
                        timeout_seconds=hook.timeout_seconds,
                        backoff_seconds=hook.backoff_seconds,
                        max_backoff_seconds=hook.max_backoff_seconds,
                        state=states.get(hook.name))
            for hook in hooks]


@webhooks.get("/states", summary="Where the delivery of every webhook this database has "
                                 "delivered for stands")
async def webhook_states(store: AdminDep) -> list[WebhookState]:
    return await store.webhook_states()


@webhooks.get("/deliveries", summary="The webhook delivery log, newest first")
async def webhook_deliveries(
    request: Request, store: AdminDep,
    webhook: Annotated[str | None, Query(max_length=64, description="Only this webhook's")
                       ] = None,
    status: Annotated[WebhookDeliveryStatus | None, Query(description="Only this status")
                      ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> list[WebhookDelivery]:
    if len(request.query_params.getlist("status")) > 1:
        raise InvalidInputError.for_field("status", "given more than once")
    return await store.webhook_deliveries(webhook, status=status, limit=limit)
