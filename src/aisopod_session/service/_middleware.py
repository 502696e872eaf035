"""ASGI plumbing around the routes: a body size limit and request metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

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

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                      ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        registry: Metrics = request.app.state.metrics
        registry.observe(request.method, template, response.status_code,
                         time.perf_counter() - started)
        return response
