"""What the remote store (``_remote_async.py`` and its generated twin) shares, with no I/O: paths
of the HTTP API, query parameters, and answers turned back into models and typed errors.

The service answers every library error as problem+json whose ``type`` names the exception
(``service.problems.PROBLEM_TYPES``); here that type becomes the same exception again, with the
field list of an InvalidInputError and ``maybe_committed`` of a StoreUnavailableError.
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from aisopod_session.errors import (
    PROBLEM_TYPES,
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    SessionBusyError,
    SessionError,
    StoreUnavailableError,
)
from aisopod_session.models import HistoryQuery, SessionFilter, SessionKey
from aisopod_session.results import SearchFilter

TOKEN_ENV = "AISOPOD_TOKEN"
DEFAULT_TIMEOUT_SECONDS = 60.0
"""Longer than the store's own retry window (15 s) and its lock waits: a slow answer is not a
failed write."""
CONNECT_TIMEOUT_SECONDS = 10.0
NDJSON = "application/x-ndjson"
UPLOAD_CHUNK_BYTES = 256 * 1024
"""Import lines are sent in chunks of about this size (memory stays flat on both ends)."""

_BY_STATUS: dict[int, type[SessionError]] = {
    400: InvalidInputError, 401: AccessDeniedError, 403: AccessDeniedError, 409: ConflictError,
    413: InvalidInputError, 422: InvalidInputError,
}


def token_or_env(token: str | None) -> str | None:
    if token is not None and not isinstance(token, str):
        raise InvalidInputError.for_field("token", f"expected a string, got "
                                                   f"{type(token).__name__}")
    found = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if found is not None and (not found.isascii() or not found.isprintable()):
        raise InvalidInputError.for_field("token", "must be printable ASCII (a bearer token)")
    return found


NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
"""Without it, a request whose headers and body go out in two writes waits for the server's
delayed ACK (40 ms on Linux) before the body leaves: Nagle's algorithm."""


def client_options(url: str, token: str | None, timeout: float | None) -> dict[str, Any]:
    """What an httpx client of the service is built with (both flavours)."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or timeout <= 0):
        raise InvalidInputError.for_field("timeout", "must be a positive number of seconds")
    seconds = DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidInputError.for_field("url", f"not a usable URL: {exc}") from None
    if not parsed.host:
        raise InvalidInputError.for_field("url", "names no host (e.g. http://127.0.0.1:8080)")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {
        "base_url": url.rstrip("/"),
        "headers": headers,
        "timeout": httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_SECONDS)),
        "follow_redirects": False,
    }


# --- paths and parameters ----------------------------------------------------------------------


def part(text: str) -> str:
    """One percent-encoded path part. A part of only dots is encoded too (``%2E``): HTTP clients
    remove ``.`` and ``..`` segments, which would send the request elsewhere."""
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if set(text) == {"."} else encoded


def agent_path(agent_id: str) -> str:
    return f"/v1/agents/{part(agent_id)}/sessions"


def changes_path(agent_id: str) -> str:
    return f"/v1/agents/{part(agent_id)}/changes"


def details_path(agent_id: str) -> str:
    return f"/v1/agents/{part(agent_id)}/session-details"


def search_path(agent_id: str) -> str:
    return f"/v1/agents/{part(agent_id)}/search"


def key_path(key: SessionKey) -> str:
    parts = (key.channel, key.account_id, key.peer_kind.value, key.peer_id)
    return agent_path(key.agent_id) + "".join("/" + part(p) for p in parts)


def peer_path(channel: str, peer_id: str) -> str:
    return f"/v1/admin/peers/{part(channel)}/{part(peer_id)}"


def value(given: Any) -> str:
    """A query parameter's text."""
    if isinstance(given, bool):
        return "true" if given else "false"
    if isinstance(given, datetime):
        return given.isoformat()
    return str(getattr(given, "value", given))


Params = list[tuple[str, str | int | float | bool | None]]
"""Query parameters, as httpx takes them (repeatable names: ``status``)."""


def params(**given: Any) -> Params:
    """Query parameters, those that are None left out."""
    return [(name, value(v)) for name, v in given.items() if v is not None]


def filter_params(filter: SessionFilter, *, with_agent: bool) -> Params:
    found = params(
        agent_id=filter.agent_id if with_agent else None, channel=filter.channel,
        account_id=filter.account_id, peer_kind=filter.peer_kind, peer_id=filter.peer_id,
        created_after=filter.created_after, created_before=filter.created_before,
        updated_after=filter.updated_after, updated_before=filter.updated_before,
        limit=filter.limit, cursor=filter.cursor)
    if filter.status is not None:
        found.extend(("status", value(status)) for status in filter.statuses)
    return found


def search_params(query: str, filter: SearchFilter, limit: int, cursor: str | None,
                  order: str, *, agent_id: str | None = None) -> Params:
    """A search's query string: ``q``, the filter's fields (``role`` and ``status`` repeated, in
    the filter's order: the cursor is bound to the filter as given), paging and order."""
    found = params(
        q=query, agent_id=agent_id, channel=filter.channel, account_id=filter.account_id,
        peer_kind=filter.peer_kind, peer_id=filter.peer_id, after=filter.after,
        before=filter.before, include_compacted=filter.include_compacted or None,
        include_archived=filter.include_archived or None, limit=limit, cursor=cursor,
        order=order)
    found.extend(("role", value(role)) for role in filter.role or ())
    found.extend(("status", value(status)) for status in filter.status or ())
    return found


def history_params(query: HistoryQuery) -> Params:
    return params(limit=query.limit, offset=query.offset or None, before=query.before,
                  after=query.after, tail=query.tail or None,
                  include_compacted=query.include_compacted or None)


# --- answers -------------------------------------------------------------------------------------


def answer(response: httpx.Response, *, write: bool) -> Any:
    """The JSON of a successful answer; the typed error of any other."""
    if not response.is_success:
        raise error_of(response, write=write)
    try:
        return response.json()
    except ValueError:
        raise StoreUnavailableError(
            f"{response.request.url} did not answer JSON: is it an aisopod-session server?",
            maybe_committed=write,
        ) from None


def error_of(response: httpx.Response, *, write: bool) -> SessionError:
    """The exception a non-2xx answer stands for (the one the server's store raised)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    problem = body if isinstance(body, dict) else {}
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    message = str(detail or f"the server answered {response.status_code}")
    kind = problem.get("type")
    error = PROBLEM_TYPES.get(kind) if isinstance(kind, str) else None
    if error is None:
        error = _BY_STATUS.get(response.status_code)
    if error is SessionBusyError:
        expires = problem.get("expires_at")
        holder = problem.get("holder")
        return SessionBusyError(message, holder=holder if isinstance(holder, str) else None,
                                expires_at=_aware(expires))
    if error is InvalidInputError:
        errors = problem.get("errors")
        return InvalidInputError(message, errors if isinstance(errors, list) else None)
    if error is StoreUnavailableError or error is None:
        # A 5xx without a type (a proxy, a crash) after a write was sent may have committed.
        maybe = problem.get("maybe_committed")
        committed = bool(maybe) if isinstance(maybe, bool) else (
            write and response.status_code >= 500 and response.status_code != 503)
        if error is None:
            message = (f"{response.request.method} {response.request.url.path} answered "
                       f"{response.status_code}: {message}")
        return StoreUnavailableError(message, maybe_committed=committed)
    return error(message)


def _aware(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return None
    return found if found.utcoffset() is not None else None


def transport_error(exc: httpx.HTTPError, *, write: bool) -> StoreUnavailableError:
    """A request that got no answer: a write that may have reached the server may have been
    committed there; one that never connected was not."""
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                            | httpx.UnsupportedProtocol | httpx.InvalidURL)
    return StoreUnavailableError(
        f"the aisopod-session server could not be reached or did not answer "
        f"({type(exc).__name__}: {exc})", maybe_committed=write and not never_sent)


def interrupt(response: httpx.Response) -> None:
    """Wake a thread blocked reading ``response``: closing a socket does not, shutting it down
    does (a blocking store's watch, when the store closes)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def split_lines(pending: bytes, chunk: bytes) -> tuple[list[str], bytes]:
    """Complete lines of JSON Lines so far, and what is left of an unfinished one. Split on
    ``\\n`` only: httpx's line iterators also split on U+2028 and others, which JSON leaves
    unescaped inside strings."""
    *lines, rest = (pending + chunk).split(b"\n")
    return [line.decode("utf-8") for line in lines], rest


def line_bytes(line: str | bytes) -> bytes:
    """One import line as sent: UTF-8 (bytes are sent as given), ending in a newline."""
    data = line.encode("utf-8") if isinstance(line, str) else bytes(line)
    return data if data.endswith(b"\n") else data + b"\n"
