"""ASGI plumbing around the routes: a body size limit and request metrics."""

from __future__ import annotations

import time
from collections.abc import Collection, MutableMapping
from typing import Any

from fastapi import FastAPI

from aisopod_session.service import problems
from aisopod_session.service._paths import ASGIApp, Receive, Scope, Send
from aisopod_session.service.metrics import Metrics


class LimitBody:
    """Refuse bodies over the limit with 413 before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, streamed: Collection[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.streamed = frozenset(streamed)
        """Paths whose body is read as a stream, with a limit of its own (imports, per line)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.streamed:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(413, f"the request body exceeds {self.max_bytes} bytes")
        await response(scope, receive, send)


def add_request_metrics(app: FastAPI) -> None:
    """Count and time every request by method, route template and status."""
    app.add_middleware(RequestMetrics)


class RequestMetrics:
    """Observes each request when its response starts: the time until then, its route template
    (routing has run) and its status. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` (what
    ``@app.middleware`` builds) runs the app in a task group of its own and relays the response
    through a memory stream, on every request, for nothing this needs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def observed(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                template = getattr(scope.get("route"), "path", "unmatched")
                registry: Metrics = scope["app"].state.metrics
                registry.observe(scope["method"], template, message["status"],
                                 time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, observed)
