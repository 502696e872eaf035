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
