"""No request dependency of the API runs on the thread pool: none does I/O, so each is a
coroutine (FastAPI hands a plain ``def`` dependency to a worker thread, per request)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from aisopod_session.service import app as service


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _is_coroutine(call: Any) -> bool:
    # A callable object (the bearer scheme) is a coroutine by its __call__.
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_every_dependency_is_a_coroutine() -> None:
    routes = [route for router in (service.agents, service.admin, service.probes)
              for route in router.routes if isinstance(route, APIRoute)]
    calls = {call for route in routes for call in _calls(route.dependant)}
    assert len(calls) >= 10
    blocking = sorted(getattr(call, "__qualname__", repr(call)) for call in calls
                      if not _is_coroutine(call))
    assert blocking == []


def _flat(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _flat(route.original_router.routes)


def _api_routes() -> list[APIRoute]:
    return [route for route in _flat(service.create_app().routes)
            if route.path.startswith("/v1/")]


def test_every_api_route_authenticates_and_checks_the_request_shape() -> None:
    """The session and run routers have no router-wide request_shape: their dependencies
    authenticate the caller and check the shape in one node. Every route under /v1 must reach
    one or the other."""
    from aisopod_session.service import _dependencies

    checks = {_dependencies.request_shape, _dependencies._checked_caller}
    routes = _api_routes()
    assert len(routes) >= 30
    unchecked = [f"{sorted(route.methods or ())} {route.path}" for route in routes
                 if not checks & set(_calls(route.dependant))]
    assert unchecked == []


def test_a_session_route_solves_each_dependency_once() -> None:
    """FastAPI solves a dependency's tree again at every place it is named (its cache only
    spares the call): the append and history routes name each dependency once, the bearer
    scheme included (an append used to solve it four times, among 18 dependencies). Five: the
    session's node, the agent's under it (solved first: 403 before a key's 422), the checked
    caller, the bearer scheme, the fence."""
    by_name = {route.name: route for route in _api_routes()
               if route.path.endswith("/messages") and "/sessions/" in route.path}
    for name in ("append_messages", "get_history"):
        calls = list(_calls(by_name[name].dependant))
        assert len(calls) == len(set(calls)) <= 5, name


def test_request_metrics_run_without_a_task_per_request() -> None:
    """Starlette's BaseHTTPMiddleware (what @app.middleware builds) runs each request in a task
    group of its own and relays the response through a stream; the metrics need neither."""
    from starlette.middleware.base import BaseHTTPMiddleware

    assert [m for m in service.create_app().user_middleware
            if m.cls is BaseHTTPMiddleware] == []  # type: ignore[comparison-overlap]
