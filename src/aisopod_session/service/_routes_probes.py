"""Operations routes: liveness, readiness, Prometheus metrics, and who a token is."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response

from aisopod_session.models import SessionFilter
from aisopod_session.service import problems
from aisopod_session.service._bodies import Health, InfoBody
from aisopod_session.service._dependencies import AdminDep, PrincipalDep, StoreDep, request_shape
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


@probes.get("/v1/info", summary="Who this token is, and the store behind the service",
            dependencies=[Depends(request_shape)], responses=problems.ERROR_RESPONSES)
async def info(principal: PrincipalDep, store: StoreDep) -> InfoBody:
    return InfoBody(admin=principal.admin, agent_id=principal.agent_id, backend=store.backend,
                    durability=store.durability)
