"""Errors as ``application/problem+json`` (RFC 9457), never a stack trace.

Each library error maps to one status and one problem ``type`` (a tag URI naming the exception,
see :data:`PROBLEM_TYPES`), so that a client (``SessionStore.open("http://…")``) raises the very
exception the store raised; anything unexpected becomes a bare 500 whose detail says nothing about
the internals (the traceback goes to the server log only).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles

from aisopod_session.errors import (
    PROBLEM_TYPE_PREFIX,
    PROBLEM_TYPES,
    AccessDeniedError,
    ConflictError,
    CursorExpiredError,
    InvalidInputError,
    RunLostError,
    SchemaVersionError,
    SearchDisabledError,
    SessionBusyError,
    SessionError,
    SessionNotFoundError,
    StoreClosedError,
    StoreUnavailableError,
)

log = logging.getLogger("aisopod_session.service")

RETRY_AFTER_UNAVAILABLE_SECONDS = 1
"""What a 503 asks a client to wait before trying again."""

PROBLEM_JSON = "application/problem+json"


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An error response (RFC 9457 problem details)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] = Field(default_factory=list)
    maybe_committed: bool | None = Field(
        default=None, description="On a database failure: whether the write may have been "
        "committed all the same (the connection broke during COMMIT).")
    holder: str | None = Field(default=None, description="A busy session: who holds its run")
    expires_at: datetime | None = Field(
        default=None, description="A busy session: when its run's lease expires")


_STATUS_BY_KIND: dict[type[SessionError], int] = {
    SessionBusyError: 409, RunLostError: 409, CursorExpiredError: 410, InvalidInputError: 422,
    SessionNotFoundError: 404,
    AccessDeniedError: 403, SearchDisabledError: 409, ConflictError: 409,
    StoreUnavailableError: 503,
    SchemaVersionError: 503, StoreClosedError: 503,
}

_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Request body too large",
           415: "Unsupported media type",
           410: "Gone", 422: "Invalid input", 500: "Internal server error",
           503: "Service unavailable"}


def problem(status: int, detail: str | None = None, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None, *, kind: str = "about:blank",
            **extensions: Any) -> JSONResponse:
    body = Problem(type=kind, title=title_of(status), status=status, detail=detail,
                   errors=[FieldProblem(**e) for e in errors or []], **extensions)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status,
                        media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        return problem(400, "the request body is not valid JSON")
    errors = [{"field": _field(tuple(e.get("loc", ()))),
               "message": str(e.get("msg", "invalid")).removeprefix("Value error, ")}
              for e in raw]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, summary[:2000], errors, kind=PROBLEM_TYPE_PREFIX + "invalid-input")


def status_of(exc: SessionError) -> tuple[int, str]:
    """The HTTP status and problem type a library error answers with (the most specific type
    that matches: ``PROBLEM_TYPES`` lists subclasses first)."""
    for problem_type, kind in PROBLEM_TYPES.items():
        if isinstance(exc, kind):
            return _STATUS_BY_KIND[kind], problem_type
    return 400, "about:blank"


def title_of(status: int) -> str:
    return _TITLES.get(status, "Error")


async def _on_session_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SessionError)
    errors = exc.errors if isinstance(exc, InvalidInputError) else None
    status, kind = status_of(exc)
    extensions: dict[str, Any] = {}
    headers = None
    detail = str(exc)
    if isinstance(exc, StoreUnavailableError):
        # The cause names the database (its address, a file path): the log has it, a caller
        # (an agent token, too) gets no more than what to do.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        extensions["maybe_committed"] = exc.maybe_committed
        headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_SECONDS)}
        if exc.maybe_committed:
            kind = PROBLEM_TYPE_PREFIX + "maybe-committed"
            detail = ("the database failed while committing this write: it may or may not have "
                      "been stored. Retrying it is safe for messages with an external_id (a "
                      "stored one is not stored again); read before retrying anything else")
        else:
            detail = ("the database could not be reached or failed; nothing was stored (the "
                      "server's log has the details)")
    if isinstance(exc, SessionBusyError):
        extensions.update(holder=exc.holder, expires_at=exc.expires_at)
        if exc.expires_at is not None:  # whole seconds until the lease may be taken over
            left = (exc.expires_at - datetime.now(UTC)).total_seconds()
            headers = {"Retry-After": str(max(1, math.ceil(left)))}
    return problem(status, detail[:2000], errors, headers, kind=kind, **extensions)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    return problem(exc.status_code, detail, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers, over all the routes that match it.

    FastAPI makes one route per path and method, and the router's own 405 names only the methods
    of the first route whose path matched (``Allow: GET`` for a path that also takes DELETE)."""
    methods: set[str] = set()
    for route in _every_route(request.app.router.routes):
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= {"GET", "HEAD"}
    return sorted(methods)


def _every_route(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        # FastAPI (0.165) keeps an included router whole, behind a route of its own
        included = getattr(route, "original_router", None)
        if isinstance(included, APIRouter):
            yield from _every_route(included.routes)
        else:
            yield route


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "the server failed to handle this request; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(SessionError, _on_session_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


def _documented(status: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": Problem, "description": _TITLES[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 401:
        entry["headers"] = {"WWW-Authenticate": {
            "description": "`Bearer`, with `error=\"invalid_token\"` for a wrong token",
            "schema": {"type": "string"}}}
    return entry


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: _documented(status) for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
"""Every error an API route can answer with, for the OpenAPI document."""
