"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from aisopod_session.models import SessionFilter
from aisopod_session.service import problems
from aisopod_session.service._bodies import Health
from aisopod_session.service._dependencies import AdminDep, StoreDep
from aisopod_session.service._paths import DecodedPathRoute
from aisopod_session.service.metrics import Metrics

probes = APIRouter(tags=["operations"], route_class=DecodedPathRoute)


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
