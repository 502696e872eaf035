"""Helpers for the conformance suite: keys, messages and whole-database snapshots.

Everything here uses the public API only, so a snapshot taken on any backend and flavour means
the same thing: every session of every agent (archived generations included, through the admin
list) with its full transcript (compacted originals included).
"""

from __future__ import annotations

import uuid
from typing import Any

from aisopod_session import (
    HistoryQuery,
    Session,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    StoredMessage,
)

ALL_STATUSES = tuple(SessionStatus)
EVERYTHING = HistoryQuery(include_compacted=True)


def key(
    peer: str = "alice",
    *,
    agent: str = "bot",
    channel: str = "discord",
    account: str = "acct",
    kind: str = "dm",
) -> SessionKey:
    return SessionKey(agent, channel, account, kind, peer)


def fresh_key(agent: str = "bot") -> SessionKey:
    """A key no other test or example has used (hypothesis reuses the fixture's store)."""
    return key(f"peer-{uuid.uuid4().hex[:12]}", agent=agent)


def texts(messages: list[StoredMessage]) -> list[Any]:
    return [message.content for message in messages]


def fields(message: StoredMessage) -> tuple[Any, ...]:
    """What a caller gave: everything but the store-assigned id and the compacted flag."""
    return (
        message.role,
        message.content,
        message.tool_calls,
        message.created_at,
        message.token_count,
        message.external_id,
    )


def all_sessions(store: Any, limit: int = 7, **filters: Any) -> list[Any]:
    """Every session of every agent and status, walking the admin list page by page."""
    found: list[Any] = []
    cursor = None
    while True:
        page = store.list_all_sessions(
            SessionFilter(status=ALL_STATUSES, limit=limit, cursor=cursor, **filters)
        )
        found.extend(page)
        cursor = page.next_cursor
        if cursor is None:
            return found


def walk(handle: Any, limit: int = 3, **filters: Any) -> list[Any]:
    """Every page of ``handle.list`` concatenated."""
    found: list[Any] = []
    cursor = None
    while True:
        page = handle.list(SessionFilter(limit=limit, cursor=cursor, **filters))
        found.extend(page)
        cursor = page.next_cursor
        if cursor is None:
            return found


def snapshot(store: Any) -> list[tuple[Session, list[StoredMessage]]]:
    """The whole database as seen through the admin API, in id order."""
    ids = sorted(summary.id for summary in all_sessions(store))
    return [
        (store.get_session_by_id(session_id), store.get_history_by_id(session_id, EVERYTHING))
        for session_id in ids
    ]


def populate(store: Any) -> dict[str, Any]:
    """A small database with two agents, an archived generation and a compacted history."""
    alice, bob, carol = key("alice"), key("bob", kind="group"), key("carol", agent="other")
    bot, other = store.for_agent("bot"), store.for_agent("other")
    bot.get_or_create(alice)
    bot.append_messages(
        alice,
        [
            StoredMessage.user("hello", external_id="m1", token_count=3),
            StoredMessage.assistant("hi!", token_count=2),
            StoredMessage.assistant(
                None, tool_calls=[{"id": "c1", "name": "lookup", "arguments": {"q": "x"}}]
            ),
            StoredMessage.tool({"tool_call_id": "c1", "output": "y" * 300}),
            StoredMessage.assistant("done"),
        ],
    )
    bot.compact(alice, {"kind": "truncate_tool_results", "max_chars": 100})
    bot.get_or_create(bob)
    bot.append_messages(bob, [StoredMessage.user("first generation")])
    bot.reset(bob)
    bot.append_messages(bob, [StoredMessage.user("second generation")])
    bot.patch(bob, SessionPatch(metadata={"topic": "tests"}))
    other.get_or_create(carol)
    other.append_messages(carol, [StoredMessage.user("other agent's secret")])
    return {"bot": bot, "other": other, "alice": alice, "bob": bob, "carol": carol}

