"""The session tools on an asyncio store: :class:`AsyncSessionTools`.

The source of ``_tools_sync.py`` (``scripts/async_to_sync.py``; the markers: see
``store/_async.py``). The decisions are in ``_policy``, the shaping of answers in ``_bounds``,
the arguments in ``_spec``: this module only reads and writes the store.
"""

from __future__ import annotations

# async-only
import asyncio
from collections.abc import AsyncGenerator

# end async-only
# sync-only: import time
from datetime import timedelta
from typing import Any, cast

from aisopod_session.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    SearchDisabledError,
    SessionError,
    SessionNotFoundError,
)
from aisopod_session.models import (
    HistoryQuery,
    PeerKind,
    Role,
    Session,
    SessionFilter,
    SessionKey,
    StoredMessage,
    utc_now,
)
from aisopod_session.results import Change, ChangeKind
from aisopod_session.store import AsyncAgentSessions, AsyncSessionStore
from aisopod_session.tools import _bounds
from aisopod_session.tools._policy import (
    PROVENANCE,
    TOOL_NAMES,
    Denied,
    ToolPolicy,
    check_agent,
    check_enabled,
    check_send,
    check_visible,
    started_by,
    visible,
)
from aisopod_session.tools._spec import (
    BadArguments,
    HistoryArguments,
    ListArguments,
    SearchArguments,
    SendArguments,
    StatusArguments,
    definitions,
    parse_arguments,
)

MAX_SCAN = 2_000
"""Sessions a list reads at most to find the visible ones (``scan_limited`` says it stopped)."""
MAX_INBOX_COUNT = 500
"""Inbox messages counted at most by ``session_status`` (``inbox_size_capped`` beyond)."""
PREVIEW_CHARS = 200
SNIPPET_CHARS = 300
SEARCH_PAGES = 5
"""Search pages read at most to fill a page of visible hits."""
HISTORY_CHUNK = 25
"""Messages a history page reads at a time: a page stops reading once its budget is full, so
huge messages are not read only to be dropped."""
SEND_POLL_SECONDS = 0.1
"""The blocking flavour's pause between reads of the change feed while waiting for a reply."""


def search_of(agent: AsyncAgentSessions) -> Any:
    """The handle's ``search`` if its own class implements it (the remote handle inherits the
    local one's, which cannot run over HTTP, until it has its own), else None."""
    for kind in type(agent).__mro__:
        if "search" in vars(kind):
            return agent.search if kind is type(agent) else None
    return None


class AsyncSessionTools:
    """The session tools of one calling session (``session``, its key) on ``store`` (local or
    remote), under ``policy``. :meth:`definitions` for the model, :meth:`call` to run one: a
    JSON-ready dict, an ``{"error": {"type", "message", "rule"}}`` one when refused or wrong,
    never an exception."""

    def __init__(self, store: AsyncSessionStore, session: SessionKey | str,
                 policy: ToolPolicy | None = None) -> None:
        self.caller = session if isinstance(session, SessionKey) else SessionKey.parse(session)
        self.policy = policy or ToolPolicy()
        self.store = store
        self._own = store.for_agent(self.caller.agent_id)

    def definitions(self) -> list[dict[str, Any]]:
        """The enabled tools' JSON Schema specifications (see ``_spec.definitions``)."""
        return definitions(self.policy)

    async def call(self, name: str, arguments: Any = None) -> dict[str, Any]:
        """Run tool ``name`` with ``arguments`` (a dict or its JSON text)."""
        if name not in TOOL_NAMES:
            return _bounds.error("unknown_tool", f"no tool {name!r}; the tools are "
                                 + ", ".join(TOOL_NAMES))
        try:
            check_enabled(self.policy, name)
            parsed = parse_arguments(name, arguments, self.policy)
            if isinstance(parsed, ListArguments):
                return await self._list(parsed)
            if isinstance(parsed, HistoryArguments):
                return await self._history(parsed)
            if isinstance(parsed, SearchArguments):
                return await self._search(parsed)
            if isinstance(parsed, StatusArguments):
                return await self._status(parsed)
            return await self._send(cast(SendArguments, parsed))
        except Denied as denied:
            await self._audit(f"tool.{name}_denied", denied.rule)
            return _bounds.error("forbidden", denied.message, denied.rule)
        except BadArguments as bad:
            return _bounds.error("invalid_arguments", bad.message)
        except InvalidInputError as exc:
            return _bounds.error("invalid_arguments", str(exc))
        except SessionNotFoundError as exc:
            return _bounds.error("not_found", str(exc))
        except SearchDisabledError as exc:
            return _bounds.error("unavailable", str(exc))
        except AccessDeniedError as exc:
            return _bounds.error("forbidden", str(exc), "store")
        except SessionError as exc:
            return _bounds.error(type(exc).__name__, str(exc))

    # --- helpers ----------------------------------------------------------------------------

    def _agent(self, agent_id: str) -> AsyncAgentSessions:
        return self._own if agent_id == self.caller.agent_id else self.store.for_agent(agent_id)

    async def _session(self, key: SessionKey) -> Session | None:
        try:
            return await self._agent(key.agent_id).get(key)
        except SessionNotFoundError:
            return None

    def _target(self, text: str | None) -> SessionKey:
        if text is None:
            return self.caller
        try:
            return SessionKey.parse(text)
        except InvalidInputError as exc:
            raise BadArguments(f"session_key: {exc}") from None

    async def _visible_session(self, text: str | None) -> Session:
        """The live session named (the caller's by default), once the policy lets the caller
        see it; SessionNotFoundError for a visible key without a session."""
        key = self._target(text)
        check_agent(self.policy, self.caller, key.agent_id)  # before reading anything of it
        session = await self._session(key)
        check_visible(self.policy, self.caller, key, session)
        if session is None:
            raise SessionNotFoundError(f"no session {key}")
        return session

    async def _audit(self, action: str, subject: str | None, *, sessions: int = 0,
                     messages: int = 0) -> None:
        """Who (this agent, from which session) did what to which session: session ids, never
        keys or content (an erased person's ids must not stay in the audit log)."""
        caller = await self._session(self.caller)
        origin = f"from session {caller.id}" if caller is not None else "from a new session"
        text = origin if subject is None else f"{subject} {origin}"
        await self._own.record_audit(action, text, sessions=sessions, messages=messages)

    # --- the tools --------------------------------------------------------------------------

    async def _list(self, args: ListArguments) -> dict[str, Any]:
        limit = args.limit or min(20, self.policy.max_list)
        agent_id = args.agent_id.lower() if args.agent_id is not None else None
        if agent_id is not None:
            check_agent(self.policy, self.caller, agent_id)
        kinds = {PeerKind(kind) for kind in args.kinds} if args.kinds else None
        after = (utc_now() - timedelta(minutes=args.active_minutes)
                 if args.active_minutes is not None else None)
        rows: list[Session] = []
        scanned, cursor, limited = 0, None, False
        everyone = agent_id is None and self.policy.visibility == "all" \
            and self.policy.agent_to_agent.enabled
        while len(rows) < limit:
            page_size = min(200, MAX_SCAN - scanned)
            if page_size <= 0:
                limited = True
                break
            found = await self._list_page(agent_id, everyone, args, after, page_size, cursor)
            if found is None:  # an agent token cannot list other agents: its own then
                everyone = False
                continue
            page, cursor = found
            scanned += len(page)
            rows += [session for session in page
                     if (kinds is None or session.key.peer_kind in kinds)
                     and visible(self.policy, self.caller, session.key, session)]
            if cursor is None:
                break
        more = len(rows) > limit or cursor is not None
        answer_rows = []
        for session in rows[:limit]:
            row = _bounds.session_row(session)
            if args.include_preview:
                row["preview"] = await self._preview(session.key)
            answer_rows.append(row)
        await self._audit("tool.sessions_list", None, sessions=len(answer_rows))
        return {"sessions": answer_rows, "count": len(answer_rows), "more": more,
                "scan_limited": limited}

    async def _list_page(self, agent_id: str | None, everyone: bool, args: ListArguments,
                         after: Any, size: int, cursor: str | None
                         ) -> tuple[list[Session], str | None] | None:
        filter = SessionFilter(channel=args.channel, updated_after=after, limit=size,
                               cursor=cursor,
                               peer_kind=args.kinds[0] if args.kinds and len(args.kinds) == 1
                               else None)
        if everyone:
            try:
                summaries = await self.store.list_all_sessions(filter)
            except AccessDeniedError:
                return None
            sessions = []
            for summary in summaries:
                if visible(self.policy, self.caller, summary.key, None):
                    found = await self._session(summary.key)
                    if found is not None:
                        sessions.append(found)
            return sessions, summaries.next_cursor
        agent = self._agent(agent_id or self.caller.agent_id)
        detailed = await agent.list_detailed(filter)
        return list(detailed), detailed.next_cursor

    async def _preview(self, key: SessionKey) -> str | None:
        newest = await self._agent(key.agent_id).get_history(key, HistoryQuery(limit=1,
                                                                                tail=True))
        if not newest:
            return None
        return _bounds.bounded(_bounds.message_text(newest[0].content), PREVIEW_CHARS).text

    async def _history(self, args: HistoryArguments) -> dict[str, Any]:
        session = await self._visible_session(args.session_key)
        limit = args.limit or min(20, self.policy.max_history_messages)
        offset = args.offset or 0
        agent = self._agent(session.key.agent_id)
        messages: list[StoredMessage] = []
        while True:  # newest first, a chunk at a time, until the page or the budget is full
            chunk = await agent.get_history(session.key, HistoryQuery(
                limit=min(HISTORY_CHUNK, limit - len(messages)),
                offset=offset + len(messages), tail=True))
            messages[:0] = chunk
            answer = _bounds.history_answer(
                session, messages, offset=offset, most_chars=self.policy.max_message_chars,
                most_bytes=self.policy.max_answer_bytes,
                include_tools=bool(args.include_tools))
            if len(chunk) < HISTORY_CHUNK or len(messages) >= limit \
                    or answer["dropped_messages"]:
                break
        await self._audit("tool.sessions_history", f"session {session.id}",
                          sessions=1, messages=len(answer["messages"]))
        return answer

    async def _search(self, args: SearchArguments) -> dict[str, Any]:
        only: Session | None = None
        if args.session_key is not None:
            only = await self._visible_session(args.session_key)
        agent = self._agent(only.key.agent_id if only is not None else self.caller.agent_id)
        search = search_of(agent)
        if search is None:
            return _bounds.error("unavailable", "search is not available on this store")
        search_filter = None
        if only is not None:
            from aisopod_session.results import SearchFilter  # issue 20's type

            key = only.key
            search_filter = SearchFilter(channel=key.channel, account_id=key.account_id,
                                         peer_kind=key.peer_kind, peer_id=key.peer_id)
        limit = args.limit or min(10, self.policy.max_search_hits)
        hits: list[dict[str, Any]] = []
        cursor = None
        seen: dict[SessionKey, bool] = {}
        for _ in range(SEARCH_PAGES):
            page = await search(args.query, filter=search_filter, limit=limit, cursor=cursor)
            for hit in page.hits:
                if hit.key not in seen:
                    seen[hit.key] = visible(self.policy, self.caller, hit.key,
                                            await self._session(hit.key))
                if seen[hit.key] and len(hits) < limit:
                    snippet = "".join(segment.text for segment in hit.snippet)
                    hits.append({"session_key": hit.key.canonical(), "message_id":
                                 hit.message_id, "role": hit.role.value,
                                 "created_at": hit.created_at.isoformat(),
                                 "score": hit.score,
                                 "snippet": _bounds.bounded(snippet, SNIPPET_CHARS).text})
            cursor = page.next_cursor
            if cursor is None or len(hits) >= limit:
                break
        await self._audit("tool.sessions_search", None, sessions=len(seen), messages=len(hits))
        return {"hits": hits, "count": len(hits), "more": cursor is not None}

    async def _status(self, args: StatusArguments) -> dict[str, Any]:
        key = self._target(args.session_key)
        check_agent(self.policy, self.caller, key.agent_id)
        session = await self._session(key)
        check_visible(self.policy, self.caller, key, session)
        if session is None:
            if key != self.caller:
                raise SessionNotFoundError(f"no session {key}")
            return {"session_key": key.canonical(), "exists": False}
        agent = self._agent(key.agent_id)
        run = await agent.current_run(key)
        waiting = await agent.inbox(key, limit=MAX_INBOX_COUNT)
        answer = {**_bounds.session_row(session), "exists": True,
                  "created_at": session.created_at.isoformat(),
                  "compaction_count": session.compaction_count,
                  "started_by": started_by(session),
                  "inbox_size": len(waiting), "inbox_size_capped": len(waiting) >= MAX_INBOX_COUNT,
                  "run": None if run is None else {
                      "owner": run.owner, "started_at": run.started_at.isoformat(),
                      "expires_at": run.expires_at.isoformat(),
                      "stop_requested": run.stop_requested}}
        await self._audit("tool.session_status", f"session {session.id}", sessions=1)
        return answer

    async def _send(self, args: SendArguments) -> dict[str, Any]:
        key = self._target(args.session_key)
        check_agent(self.policy, self.caller, key.agent_id)
        agent = self._agent(key.agent_id)
        session = await self._session(key)
        check_send(self.policy, self.caller, key, session)
        started = False
        if session is None:
            try:
                result = await agent.commit(key, None, {PROVENANCE: {
                    "started_by": self.caller.canonical(),
                    "started_by_agent": self.caller.agent_id}}, create=True)
                session, started = result.session, True
            except ConflictError:  # started meanwhile by someone else: a send like any other
                session = await agent.get(key)
                check_send(self.policy, self.caller, key, session)
        wait = args.timeout_seconds or 0
        since = await agent.latest_cursor() if wait else None
        newest = await agent.get_history(key, HistoryQuery(limit=1, tail=True)) if wait else []
        after_id = newest[0].id or 0 if newest else 0
        await self._audit("tool.sessions_send", f"session {session.id}", sessions=1,
                          messages=1)
        queued = await agent.enqueue(key, [_bounds.sent_message(args.message, self.caller)])
        answer: dict[str, Any] = {"status": "accepted", "session_key": key.canonical(),
                                  "queued_id": queued[0].id, "started": started,
                                  "reply": None}
        if since is not None:
            reply = await self._next_reply(agent, key, since, after_id, wait)
            if reply is None:
                answer["status"] = "timeout"
            else:
                answer["status"] = "ok"
                shown = _bounds.bounded(_bounds.message_text(reply.content),
                                        self.policy.max_message_chars)
                answer["reply"] = {"id": reply.id, "text": shown.text,
                                   "created_at": reply.created_at.isoformat(),
                                   "truncated": shown.truncated,
                                   "redacted": shown.redactions > 0}
        return answer

    async def _reply_after(self, agent: AsyncAgentSessions, key: SessionKey,
                           after_id: int) -> StoredMessage | None:
        newest = await agent.get_history(key, HistoryQuery(limit=50, tail=True))
        return next((message for message in newest if message.role is Role.ASSISTANT
                     and (message.id or 0) > after_id), None)

    async def _next_reply(self, agent: AsyncAgentSessions, key: SessionKey, since: str,
                          after_id: int, wait: int) -> StoredMessage | None:
        """The session's first assistant message after ``after_id``, waiting up to ``wait``
        seconds for the change feed to announce it; None if none came."""
        # sync-only: deadline = time.monotonic() + wait
        # async-only
        stream = cast(AsyncGenerator[Change, None], agent.watch(since))
        try:
            async with asyncio.timeout(wait):
                async for change in stream:
                    if _appended_to(change, key):
                        found = await self._reply_after(agent, key, after_id)
                        if found is not None:
                            return found
        except TimeoutError:
            return None
        finally:
            await stream.aclose()
        return None
        # end async-only
        # sync-only: while True:
        # sync-only:     page = agent.changes(since, limit=500)
        # sync-only:     since = page.next_cursor
        # sync-only:     if any(_appended_to(change, key) for change in page):
        # sync-only:         found = self._reply_after(agent, key, after_id)
        # sync-only:         if found is not None:
        # sync-only:             return found
        # sync-only:     left = deadline - time.monotonic()
        # sync-only:     if left <= 0:
        # sync-only:         return None
        # sync-only:     time.sleep(min(SEND_POLL_SECONDS, left))


def _appended_to(change: Change, key: SessionKey) -> bool:
    return change.kind is ChangeKind.MESSAGES_APPENDED and change.key == key
