"""The console's pages and actions: server-rendered HTML over the same store and tokens as the API.

Every page needs a sign-in (see :mod:`._cookies`); an agent's token sees only that agent's
sessions, and a session of another agent answers 404, as if it did not exist. Every state change
is a POST carrying the sign-in's CSRF token, first answered by a confirmation page.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aisopod_session.compaction import CompactionStrategy, SlidingWindow, Summarize
from aisopod_session.errors import (
    CursorExpiredError,
    InvalidInputError,
    SearchDisabledError,
    SessionError,
    SessionNotFoundError,
)
from aisopod_session.limits import MAX_AUDIT_RECORDS, MAX_CONSOLE_OFFSET, MAX_SQL_INT
from aisopod_session.models import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionStatus,
    StoredMessage,
    normalize_name_or_raise,
)
from aisopod_session.results import Change, SearchFilter
from aisopod_session.service import problems
from aisopod_session.service._paths import DecodedPathRoute
from aisopod_session.service._routes_changes import change_events
from aisopod_session.service._throttle import AuthThrottle, client_of
from aisopod_session.service.auth import Principal, TokenRegistry
from aisopod_session.service.console._chart import usage_charts
from aisopod_session.service.console._cookies import (
    COOKIE_NAME,
    COOKIE_PATH,
    LIFETIME_SECONDS,
    OPEN_TOKEN_ID,
    ConsoleCookies,
    SignIn,
)
from aisopod_session.store import (
    AsyncSessionStore,
    console_sign_in_revoked,
    messages_after,
    revoke_console_sign_in,
)

HERE = Path(__file__).parent
TRANSCRIPT_PAGE = 50
USAGE_DAYS = 14
MAX_FORM_BYTES = 1_100_000  # a compaction summary may be up to 1,000,000 characters
ACTIONS = ("reset", "compact", "delete", "export")

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # message content is untrusted: everything shown is escaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["when"] = lambda value: (
    "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
_templates.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
_templates.filters["number"] = lambda value: f"{value:,}"

SUMMARY_NAMES = 3  # tool names a summary lists before "and N more"
SUMMARY_TEXT = 60  # characters of a name, an id or a result's start in a summary


def _size(value: Any) -> str:
    """How much JSON a value is, as a reader weighs it: 340 B, 1.2 kB, 3.4 MB."""
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size < 1000:
        return f"{size} B"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_TEXT else text[:SUMMARY_TEXT - 1] + "…"


def _text_of(value: Any) -> str | None:
    return _short(value) if isinstance(value, str) and value.strip() else None


def _tool_calls_summary(calls: Any) -> str:
    """One line for a message's tool calls (shown collapsed): how many, which tools with their
    call ids, how big. Knows the OpenAI (``function.name``), Anthropic and LangChain (``name``)
    shapes; anything else is summed up by its size alone."""
    items = calls if isinstance(calls, list) else [calls]
    named = []
    for call in items:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        name = _text_of(function.get("name") if isinstance(function, dict) else None) \
            or _text_of(call.get("name")) or "?"
        call_id = _text_of(call.get("id"))
        named.append(f"{name} ({call_id})" if call_id else name)
    count = f"{len(items)} tool call{'s' if len(items) != 1 else ''}"
    if named:
        shown = ", ".join(named[:SUMMARY_NAMES])
        if len(named) > SUMMARY_NAMES:
            shown += f" and {len(named) - SUMMARY_NAMES} more"
        count += f": {shown}"
    return f"{count} · {_size(calls)}"


def _tool_result_summary(content: Any) -> str:
    """One line for a tool message (shown collapsed): the call it answers, its size and start."""
    data = content.get("data") if isinstance(content, dict) else None  # LangChain's shape
    answered = None
    for holder in (content, data):
        if isinstance(holder, dict):
            answered = answered or _text_of(holder.get("tool_call_id")) \
                or _text_of(holder.get("tool_use_id"))
    line = f"Tool result{f' for {answered}' if answered else ''} · {_size(content)}"
    shown = content
    for holder in (content, data):
        if isinstance(holder, dict):
            shown = next((holder[field] for field in ("output", "content", "result")
                          if holder.get(field) not in (None, "")), shown)
    start = _text_of(shown if isinstance(shown, str) else json.dumps(shown, ensure_ascii=False))
    return f"{line} · {start}" if start else line


_templates.filters.update(tool_calls=_tool_calls_summary, tool_result=_tool_result_summary)


SECURITY_HEADERS = {
    # No inline script or style anywhere: even an escaping mistake could not run a script.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequiredError(Exception):
    def __init__(self, then: str) -> None:
        super().__init__(then)
        self.then = then


class ConsoleRoute(DecodedPathRoute):
    """Errors become HTML pages (the API's are problem+json), a missing sign-in a redirect, and
    every response carries the security headers. Path parameters are the client's own text, as
    in the API (see :mod:`aisopod_session.service._paths`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequiredError as exc:
                response = RedirectResponse(
                    f"{COOKIE_PATH}/login?{urlencode({'next': exc.then})}", 303)
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                    for e in exc.errors())
                response = error_page(request, 400, detail)
            except SessionError as exc:
                response = error_page(request, problems.status_of(exc)[0], str(exc))
            except HTTPException as exc:
                response = error_page(request, exc.status_code, str(exc.detail))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return guarded


router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False, route_class=ConsoleRoute)


# --- plumbing ----------------------------------------------------------------------------------


def _store(request: Request) -> AsyncSessionStore:
    store: AsyncSessionStore = request.app.state.store
    return store


def _cookies(request: Request) -> ConsoleCookies:
    cookies: ConsoleCookies = request.app.state.console_cookies
    return cookies


async def _sign_in(request: Request) -> SignIn:
    cookies = _cookies(request)
    sign_in = cookies.read(request.cookies.get(COOKIE_NAME))
    if sign_in is not None and await console_sign_in_revoked(_store(request),
                                                             cookies.revocation_id(sign_in)):
        sign_in = None  # signed out, on this replica or another
    if sign_in is None:
        then = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequiredError(then if request.method == "GET" else f"{COOKIE_PATH}/")
    return sign_in


SignInDep = Annotated[SignIn, Depends(_sign_in)]
StoreDep = Annotated[AsyncSessionStore, Depends(_store)]


def render(request: Request, template: str, http_status: int = 200, **context: Any
           ) -> HTMLResponse:
    sign_in: SignIn | None = context.pop("sign_in", None)
    if sign_in is None:
        sign_in = _cookies(request).read(request.cookies.get(COOKIE_NAME))
    tokens: TokenRegistry = request.app.state.tokens
    html = _templates.get_template(template).render(
        principal=None if sign_in is None else sign_in.principal,
        csrf=None if sign_in is None else _cookies(request).csrf_token(sign_in),
        open_access=not tokens.enabled,
        **context,
    )
    return HTMLResponse(html, status_code=http_status)


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    return render(request, "error.html", status, status=status,
                  title=problems.title_of(status), detail=detail[:2000])


def _same_origin(request: Request) -> None:
    """Browsers send Origin with every cross-site POST: refuse those before anything else."""
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        parts = urlsplit(origin)
        if parts.netloc != request.headers.get("host", ""):
            raise HTTPException(403, "this form was sent from another site")
    elif origin == "null":
        raise HTTPException(403, "this form was sent from an opaque origin")


class Form:
    """A URL-encoded form body (the only kind the console's forms send)."""

    def __init__(self, fields: Mapping[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str) -> str | None:
        values = self._fields.get(name)
        return values[0] if values else None

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for name, values in self._fields.items() for value in values]


async def _read_form(request: Request) -> Form:
    _same_origin(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=50, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not valid URL-encoded text") from None
    return Form(fields)


async def _checked_form(request: Request, sign_in: SignIn) -> Form:
    form = await _read_form(request)
    if not _cookies(request).csrf_ok(sign_in, form.get("csrf")):
        raise HTTPException(403, "this form has expired or did not come from this console: "
                                 "reload the page and try again")
    return form


def _safe_next(then: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if then and then.startswith(f"{COOKIE_PATH}/") and not then.startswith("//") \
            and "\\" not in then and all(ord(c) > 31 for c in then):
        return then
    return f"{COOKIE_PATH}/"


def _agent_scope(principal: Principal, requested: str | None) -> str | None:
    """The agent whose sessions a page shows: an agent token's own, always."""
    agent = normalize_name_or_raise("agent", requested) if requested else None
    if principal.admin:
        return agent
    if agent is not None and agent != principal.agent_id:
        raise HTTPException(403, f"this token may not see agent {agent!r}")
    return principal.agent_id


def _admin_only(sign_in: SignIn) -> None:
    if not sign_in.principal.admin:
        raise HTTPException(403, "only an admin token may see people across agents")


async def _visible_session(store: AsyncSessionStore, sign_in: SignIn, session_id: int
                           ) -> Session:
    session = await store.get_session_by_id(session_id)
    if not sign_in.principal.may_use_agent(session.key.agent_id):
        # The same answer as for an id that does not exist: ids reveal nothing.
        raise SessionNotFoundError(f"no session with id {session_id}")
    return session


def _when(field: str, text: str | None) -> datetime | None:
    """A date-time from a form: RFC 3339, or the browser's ``datetime-local`` read as UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError.for_field(
            field, "expected a date and time like 2026-11-25T09:30 (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _jsonl(lines: AsyncIterator[str], first: list[str], filename: str) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for line in first:
            yield (line + "\n").encode("utf-8")
        async for line in lines:
            yield (line + "\n").encode("utf-8")

    return StreamingResponse(body(), media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


# --- sign-in -----------------------------------------------------------------------------------


def _signed_in(request: Request, token_id: str, then: str) -> RedirectResponse:
    response = RedirectResponse(_safe_next(then), 303)
    response.set_cookie(COOKIE_NAME, _cookies(request).issue(token_id), max_age=LIFETIME_SECONDS,
                        path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    tokens: TokenRegistry = request.app.state.tokens
    if not tokens.enabled:  # loopback only, everything allowed: nothing to ask for
        return _signed_in(request, OPEN_TOKEN_ID, next or "")
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _read_form(request)
    tokens: TokenRegistry = request.app.state.tokens
    if not tokens.enabled:
        return _signed_in(request, OPEN_TOKEN_ID, form.get("next") or "")
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = client_of(request)
    wait = throttle.refusal(client)
    if wait is not None:
        request.app.state.metrics.auth_throttled("console")
        response = render(request, "login.html", 429, next=_safe_next(form.get("next")),
                          error=f"Too many failed sign-ins. Try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    token = (form.get("token") or "").strip()
    found = tokens.identify(token) if token else None
    if found is None:
        throttle.failed(client)
        return render(request, "login.html", 401, next=_safe_next(form.get("next")),
                      error="That token is not valid.")
    return _signed_in(request, found[0], form.get("next") or "")


@router.post("/logout")
async def logout(request: Request, sign_in: SignInDep) -> Response:
    await _checked_form(request, sign_in)
    # the cookie stays valid until it expires unless every replica is told: record it
    await revoke_console_sign_in(_store(request), _cookies(request).revocation_id(sign_in),
                                 sign_in.expires)
    response = RedirectResponse(f"{COOKIE_PATH}/login", 303)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


# --- pages -------------------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request, sign_in: SignInDep, store: StoreDep) -> Response:
    agent = _agent_scope(sign_in.principal, None)
    seen = await store.latest_cursor()  # before the counts: the page follows from here
    counts = await store.count_sessions_by_status(agent)
    now = datetime.now(UTC)
    usage = await store.usage_by_day(USAGE_DAYS, agent_id=agent, now=now)
    return render(request, "overview.html", sign_in=sign_in, agent=agent,
                  counts=_all_counts(counts), charts=usage_charts(usage, USAGE_DAYS, now.date()),
                  counts_url=_url("counts", agent=agent),
                  changes_url=_url("changes/stream", agent=agent, since=seen))


def _all_counts(counts: Mapping[SessionStatus, int]) -> dict[str, int]:
    return {status.value: counts.get(status, 0) for status in SessionStatus}


def _url(path: str, **query: str | list[str] | int | None) -> str:
    pairs = [(name, str(v)) for name, value in query.items() if value not in (None, "", [])
             for v in (value if isinstance(value, list) else [value])]
    return f"{COOKIE_PATH}/{path}" + (f"?{urlencode(pairs)}" if pairs else "")


@router.get("/counts")
async def live_counts(sign_in: SignInDep, store: StoreDep, agent: str | None = None
                      ) -> JSONResponse:
    scope = _agent_scope(sign_in.principal, agent)
    return JSONResponse(_all_counts(await store.count_sessions_by_status(scope)))


@router.get("/changes/stream", response_class=EventSourceResponse)
async def live_changes(request: Request, sign_in: SignInDep, store: StoreDep,
                       agent: str | None = None, session: int | None = None,
                       since: str | None = None,
                       last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None
                       ) -> AsyncIterator[ServerSentEvent]:
    """The change feed as the page may see it (the token's agent, or the one asked for), after
    the last change a reconnecting page saw, or after ``since`` (taken when the page was made,
    so nothing between the page and its stream is missed), or from now on; ``session``: only
    that session's changes."""
    scope = _agent_scope(sign_in.principal, agent)
    start = await store.latest_cursor()
    given = last_event_id if last_event_id is not None else since
    if given is not None:
        with suppress(InvalidInputError, CursorExpiredError):  # then from now on
            await store.changes(given, agent_id=scope, limit=1)
            start = given
    changes = store.watch(start, agent_id=scope)
    if session is not None:
        changes = _of_session(changes, session)
    async for event in change_events(request, changes):
        yield event


async def _of_session(changes: AsyncIterator[Change], session_id: int) -> AsyncIterator[Change]:
    try:
        async for change in changes:
            if change.session_id == session_id:
                yield change
    finally:
        await changes.aclose()  # type: ignore[attr-defined]


@router.get("/sessions/{session_id}/messages")
async def new_messages(request: Request, sign_in: SignInDep, store: StoreDep, session_id: int,
                       after_id: int = 0) -> Response:
    """The transcript's messages after ``after_id`` among the newest page, as list items for
    the page to append (see console.js)."""
    if not 1 <= session_id <= MAX_SQL_INT:
        raise SessionNotFoundError(f"no session with id {session_id}")
    await _visible_session(store, sign_in, session_id)
    history = await store.get_history_by_id(session_id, HistoryQuery(
        include_compacted=True, tail=True, limit=TRANSCRIPT_PAGE))
    fresh = [message for message in history if (message.id or 0) > after_id]
    return HTMLResponse("".join(_templates.get_template("_message.html").render(
        message=message, found_id=None) for message in fresh), headers=SECURITY_HEADERS)


@router.get("/sessions")
async def sessions(request: Request, sign_in: SignInDep, store: StoreDep) -> Response:
    query = request.query_params
    filters = {name: query.get(name) or "" for name in
               ("agent", "channel", "updated_after", "updated_before", "cursor", "done")}
    statuses = [s for s in query.getlist("status") if s]
    agent = _agent_scope(sign_in.principal, filters["agent"] or None)
    context: dict[str, Any] = {"sign_in": sign_in, "filters": filters, "statuses": statuses,
                               "all_statuses": [s.value for s in SessionStatus],
                               "items": [], "next_url": None, "error": None}
    try:
        known = context["all_statuses"]
        if unknown := [s for s in statuses if s not in known]:
            raise InvalidInputError.for_field(
                "status", f"{unknown[0]!r} is not one of {', '.join(known)}")
        page = await store.list_all_sessions(SessionFilter(
            agent_id=agent, channel=filters["channel"] or None,
            status=tuple(statuses) or None,
            updated_after=_when("updated_after", filters["updated_after"]),
            updated_before=_when("updated_before", filters["updated_before"]),
            cursor=filters["cursor"] or None,
        ))
    except InvalidInputError as exc:
        context["error"] = str(exc)
        status = 422
    else:
        status = 200
        context["items"] = page
        if page.next_cursor:
            context["next_url"] = _url("sessions", **{**filters, "done": None,
                                                     "cursor": page.next_cursor},
                                       status=statuses)
    seen = await store.latest_cursor()  # before the counts: the page follows from here
    counts = await store.count_sessions_by_status(agent)
    context.update(agent=agent, counts=_all_counts(counts),
                   counts_url=_url("counts", agent=agent),
                   changes_url=_url("changes/stream", agent=agent, since=seen),
                   first_url=_url("sessions", **{**filters, "cursor": None, "done": None},
                                  status=statuses) if filters["cursor"] else None)
    return render(request, "sessions.html", status, **context)


@router.get("/sessions/{session_id}")
async def session_page(request: Request, sign_in: SignInDep, store: StoreDep, session_id: int,
                       older: int = 0, done: str | None = None, around: int | None = None
                       ) -> Response:
    """A session and a page of its transcript: the newest, ``older`` messages back from it, or
    (``around``: a message's id, as a search hit links it) the page with that message in its
    middle, the message marked."""
    if not 1 <= session_id <= MAX_SQL_INT or not 0 <= older <= MAX_CONSOLE_OFFSET:
        raise SessionNotFoundError(f"no session with id {session_id}")
    seen = await store.latest_cursor()  # before the history: the page follows from here
    session = await _visible_session(store, sign_in, session_id)
    found_id, missing = None, False
    if around is not None and 1 <= around <= MAX_SQL_INT:
        after = await messages_after(store, session_id, around)
        if after is None:
            missing = True  # deleted or purged since it was found: the newest page instead
        else:
            found_id = around
            older = min(max(0, after - TRANSCRIPT_PAGE // 2), MAX_CONSOLE_OFFSET)
    key = session.key
    generations = await store.list_all_sessions(SessionFilter(
        agent_id=key.agent_id, channel=key.channel, account_id=key.account_id,
        peer_kind=key.peer_kind, peer_id=key.peer_id, status=tuple(SessionStatus), limit=100))
    # The newest page first (what an operator looks for), read oldest to newest like a chat;
    # "older" pages back from the end.
    history = await store.get_history_by_id(session_id, HistoryQuery(
        include_compacted=True, tail=True, offset=older, limit=TRANSCRIPT_PAGE + 1))
    has_older = len(history) > TRANSCRIPT_PAGE
    messages: list[StoredMessage] = list(history)[1:] if has_older else list(history)
    here = f"sessions/{session_id}"
    live = session.status is not SessionStatus.ARCHIVED
    agent = store.for_agent(key.agent_id)
    run = await agent.current_run(key) if live else None
    waiting = len(await agent.inbox(key)) if live else 0
    return render(
        request, "session.html", sign_in=sign_in, session=session, generations=generations,
        messages=messages, done=done if done in DONE_NOTES else None, done_notes=DONE_NOTES,
        older_url=_url(here, older=older + TRANSCRIPT_PAGE) if has_older else None,
        newer_url=_url(here, older=max(0, older - TRANSCRIPT_PAGE) or None) if older else None,
        newest_url=_url(here) if older > TRANSCRIPT_PAGE else None,
        first_shown=older, live=live, run=run, waiting=waiting, found_id=found_id,
        found_missing=missing,
        # the newest page of a live session follows its new messages (see console.js)
        live_url=_url("changes/stream", agent=key.agent_id, session=session_id, since=seen)
        if live and not older else None,
        tail_url=_url(f"{here}/messages"),
        person_url=_url("people", channel=key.channel, peer_id=key.peer_id)
        if sign_in.principal.admin and key.peer_kind.value == "dm" else None,
    )


DONE_NOTES = {"reset": "The session was reset: this is its fresh generation.",
              "compacted": "The history was compacted.",
              "deleted": "The session and its archived generations were deleted."}


@router.post("/sessions/{session_id}/{action}")
async def session_action(request: Request, sign_in: SignInDep, store: StoreDep,
                         session_id: int, action: str) -> Response:
    form = await _checked_form(request, sign_in)
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    session = await _visible_session(store, sign_in, session_id)
    agent = store.for_agent(session.key.agent_id)
    strategy = _strategy(form) if action == "compact" else None
    if action in ("reset", "compact") and session.status is SessionStatus.ARCHIVED:
        raise HTTPException(409, "an archived generation cannot be reset or compacted; "
                                 "open the live session instead")
    if form.get("confirmed") != "yes":
        return render(request, "confirm.html", sign_in=sign_in, session=session, action=action,
                      fields=[(n, v) for n, v in form.items() if n not in ("csrf", "confirmed")],
                      strategy=strategy, target=f"{COOKIE_PATH}/sessions/{session_id}/{action}")
    if action == "export":
        lines = store.export_jsonl(session.key.agent_id, session_id=session_id)
        first = [await anext(lines), await anext(lines)]
        return _jsonl(lines, first, f"session-{session_id}.jsonl")
    if action == "delete":
        await agent.delete(session.key)
        return RedirectResponse(_url("sessions", done="deleted"), 303)
    live = await agent.get(session.key)
    if live.id != session_id:
        raise HTTPException(409, "this session changed generation meanwhile; reload it")
    if action == "reset":
        fresh = await agent.reset(session.key)
        return RedirectResponse(_url(f"sessions/{fresh.id}", done="reset"), 303)
    assert strategy is not None
    await agent.compact(session.key, strategy)
    return RedirectResponse(_url(f"sessions/{session_id}", done="compacted"), 303)


def _strategy(form: Form) -> CompactionStrategy:
    kind = form.get("strategy") or "sliding_window"
    if kind == "sliding_window":
        return SlidingWindow(max_messages=_whole("max_messages", form.get("max_messages")))
    if kind == "summarize":
        return Summarize(summary=form.get("summary") or "",
                         keep_recent=_whole("keep_recent", form.get("keep_recent") or "0"))
    raise InvalidInputError.for_field("strategy", "expected sliding_window or summarize")


def _whole(field: str, text: str | None) -> int:
    if text is None or not text.strip().isdigit() or len(text.strip()) > 9:
        raise InvalidInputError.for_field(field, "expected a whole number")
    return int(text.strip())


@router.get("/people")
async def person(request: Request, sign_in: SignInDep, store: StoreDep,
                 channel: str = "", peer_id: str = "", cursor: str | None = None) -> Response:
    _admin_only(sign_in)
    context: dict[str, Any] = {"sign_in": sign_in, "channel": channel, "peer_id": peer_id,
                               "items": None, "next_url": None, "error": None}
    if channel or peer_id:
        try:
            page = await store.list_all_sessions(SessionFilter(
                channel=channel, peer_id=peer_id, peer_kind="dm", status=tuple(SessionStatus),
                cursor=cursor or None, limit=100))
        except InvalidInputError as exc:
            context["error"] = str(exc)
            return render(request, "person.html", 422, **context)
        context["items"] = page
        if page.next_cursor:
            context["next_url"] = _url("people", channel=channel, peer_id=peer_id,
                                       cursor=page.next_cursor)
    return render(request, "person.html", **context)


@router.post("/people/{action}")
async def person_action(request: Request, sign_in: SignInDep, store: StoreDep,
                        action: str) -> Response:
    form = await _checked_form(request, sign_in)
    _admin_only(sign_in)
    if action not in ("export", "forget"):
        raise HTTPException(404, f"no action {action!r}")
    channel, peer_id = form.get("channel") or "", form.get("peer_id") or ""
    actor = f"console:{sign_in.principal.name}"
    if form.get("confirmed") != "yes":
        return render(request, "confirm_person.html", sign_in=sign_in, action=action,
                      channel=channel, peer_id=peer_id,
                      target=f"{COOKIE_PATH}/people/{action}")
    if action == "export":
        lines = store.export_peer(channel, peer_id, actor=actor)
        first = [await anext(lines)]  # validates and audits before the download starts
        return _jsonl(lines, first, "person.jsonl")
    result = await store.forget_peer(channel, peer_id, actor=actor)
    return render(request, "forgotten.html", sign_in=sign_in, channel=channel, peer_id=peer_id,
                  result=result)


class ConsoleHeaders:
    """The console's security headers on every answer under /console: its static files and
    404s too, which no console view renders."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                         for name, value in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != COOKIE_PATH and not path.startswith(COOKIE_PATH + "/"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in self._headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


@router.get("/webhooks")
async def webhooks_page(request: Request, sign_in: SignInDep, store: StoreDep) -> Response:
    """The configured webhooks (never their secrets), where each stands, and the delivery log:
    deliveries out of tries first, then the newest (admin)."""
    if not sign_in.principal.admin:
        raise HTTPException(403, "only an admin token may see the webhooks")
    states = {state.name: state for state in await store.webhook_states()}
    return render(request, "webhooks.html", sign_in=sign_in, hooks=request.app.state.webhooks,
                  states=states, failed=await store.webhook_deliveries(status="failed", limit=50),
                  recent=await store.webhook_deliveries(limit=50))


SEARCH_PAGE = 20
SEARCH_FIELDS = ("q", "agent", "channel", "peer_id", "role", "order", "cursor")


@router.get("/search")
async def search_page(request: Request, sign_in: SignInDep, store: StoreDep) -> Response:
    """Messages matching a query (the library's language), best or newest first, each hit's
    snippet with its matched terms marked and a link to the message in its transcript. An
    agent's token searches its own agent's messages only (the store's statement is scoped to
    it); an admin's every agent's, or one."""
    query = request.query_params
    fields = {name: (query.get(name) or "").strip() if name == "q" else query.get(name) or ""
              for name in SEARCH_FIELDS}
    statuses = [s for s in query.getlist("status") if s]
    wider = {name: query.get(name) == "1" for name in ("include_compacted", "include_archived")}
    agent = _agent_scope(sign_in.principal, fields["agent"] or None)
    context: dict[str, Any] = {
        "sign_in": sign_in, "fields": fields, "statuses": statuses, "wider": wider,
        "all_statuses": [s.value for s in SessionStatus], "page": None, "next_url": None,
        "first_url": None, "error": None, "q": fields["q"]}
    if not fields["q"]:
        return render(request, "search.html", **context)
    order = fields["order"] or "best"
    try:
        filter = SearchFilter(channel=fields["channel"] or None,
                              peer_id=fields["peer_id"] or None,
                              role=fields["role"] or None, status=tuple(statuses) or None,
                              **wider)
        page = await store.search_all(fields["q"], agent_id=agent, filter=filter,
                                      limit=SEARCH_PAGE, cursor=fields["cursor"] or None,
                                      order=order)  # type: ignore[arg-type]
    except (InvalidInputError, SearchDisabledError) as exc:
        context["error"] = ("Search is turned off for this database."
                            if isinstance(exc, SearchDisabledError) else str(exc))
        return render(request, "search.html", problems.status_of(exc)[0], **context)

    def at(cursor: str | None) -> str:
        return _url("search", **{**fields, "cursor": cursor}, status=statuses,
                    **{name: "1" for name, on in wider.items() if on})

    context.update(page=page, next_url=at(page.next_cursor) if page.next_cursor else None,
                   first_url=at(None) if fields["cursor"] else None)
    return render(request, "search.html", **context)


AUDIT_PAGE = 100


@router.get("/audit")
async def audit_page(request: Request, sign_in: SignInDep, store: StoreDep,
                     limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_RECORDS)] = AUDIT_PAGE
                     ) -> Response:
    """The newest audit records (admin): who did what to how much, when; never content, and
    the person only as the keyed hash the log keeps. The store reads the newest ``limit``, so
    "show more" asks for more rather than for a next page."""
    if not sign_in.principal.admin:
        raise HTTPException(403, "only an admin token may see the audit log")
    records = await store.audit_log(limit)
    more = min(limit * 2, MAX_AUDIT_RECORDS) if len(records) == limit < MAX_AUDIT_RECORDS \
        else None
    return render(request, "audit.html", sign_in=sign_in, records=records, limit=limit,
                  more_url=_url("audit", limit=more) if more else None)


def install(app: FastAPI) -> None:
    """Serve the console at /console/ on ``app`` (which holds the store and the tokens)."""
    tokens: TokenRegistry = app.state.tokens
    app.state.console_cookies = ConsoleCookies(tokens)
    app.include_router(router)
    app.mount(f"{COOKIE_PATH}/static", StaticFiles(directory=HERE / "static"),
              name="console-static")
    app.add_middleware(ConsoleHeaders)

    @app.get(COOKIE_PATH, include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse(f"{COOKIE_PATH}/", 308)
