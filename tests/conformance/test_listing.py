"""Listing: agent scope, order, paging, the archived rule, filters and exclusive bounds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import (
    AccessDeniedError,
    Page,
    SessionFilter,
    SessionPatch,
    SessionStatus,
    SessionSummary,
    StoredMessage,
)

from ._support import all_sessions, key, walk


def _make(handle: Any, peers: list[str]) -> list[Any]:
    return [handle.get_or_create(key(peer, agent=handle.agent_id)) for peer in peers]


def test_list_is_a_page_of_this_agents_sessions_newest_update_first(store: Any) -> None:
    bot = store.for_agent("bot")
    empty = bot.list()
    assert empty == []
    assert empty.next_cursor is None
    first, second, third = _make(bot, ["p1", "p2", "p3"])
    _make(store.for_agent("other"), ["p1", "p4"])

    page = bot.list()
    assert isinstance(page, Page)  # SessionPage is Page[SessionSummary]
    assert isinstance(page, list)
    assert page.next_cursor is None
    assert [s.id for s in page] == [third.id, second.id, first.id]
    assert all(isinstance(s, SessionSummary) for s in page)
    assert page[0] == third.summary()

    bot.append_messages(first.key, [StoredMessage.user("bump")])
    assert [s.id for s in bot.list()] == [first.id, third.id, second.id]
    bot.patch(second.key, SessionPatch())
    assert [s.id for s in bot.list()] == [second.id, first.id, third.id]
    assert bot.list()[1] == bot.get(first.key).summary()
    # reads do not count as updates
    bot.get(third.key)
    bot.get_history(third.key)
    assert [s.id for s in bot.list()] == [second.id, first.id, third.id]


def test_pages_follow_each_other_without_gaps_or_repeats(store: Any) -> None:
    bot = store.for_agent("bot")
    made = _make(bot, [f"p{i}" for i in range(7)])
    expected = [s.id for s in reversed(made)]

    pages = []
    cursor = None
    while True:
        page = bot.list(SessionFilter(limit=3, cursor=cursor))
        pages.append([s.id for s in page])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == [expected[0:3], expected[3:6], expected[6:7]]

    exact = bot.list(SessionFilter(limit=7))
    assert [s.id for s in exact] == expected
    assert exact.next_cursor is None
    assert [s.id for s in walk(bot, limit=1)] == expected


def test_sessions_created_during_a_walk_do_not_disturb_it(store: Any) -> None:
    bot = store.for_agent("bot")
    existing = {s.id for s in _make(bot, [f"old{i}" for i in range(10)])}
    seen: list[int] = []
    cursor = None
    created = 0
    while True:
        page = bot.list(SessionFilter(limit=3, cursor=cursor))
        seen.extend(s.id for s in page)
        for _ in range(4):  # new sessions land in front of the walk, never inside it
            bot.get_or_create(key(f"new{created}"))
            created += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    old_seen = [session_id for session_id in seen if session_id in existing]
    assert sorted(old_seen) == sorted(existing)
    assert len(old_seen) == len(set(old_seen))
    assert len(seen) == len(set(seen))


def test_archived_sessions_are_listed_only_when_asked_for(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    old = bot.get_or_create(alice)
    fresh = bot.reset(alice)
    other = bot.get_or_create(bob)
    bot.patch(bob, SessionPatch(status=SessionStatus.IDLE))
    bot.append_messages(bob, [StoredMessage.user("x")])
    bot.compact(bob, {"kind": "summarize", "summary": "s", "keep_recent": 0})
    assert bot.get(bob).status is SessionStatus.COMPACTED

    def ids(**filters: Any) -> set[int]:
        return {s.id for s in walk(bot, **filters)}

    assert ids() == {fresh.id, other.id}
    assert ids(status=SessionStatus.ARCHIVED) == {old.id}
    assert ids(status=[SessionStatus.ARCHIVED, SessionStatus.ACTIVE]) == {old.id, fresh.id}
    assert ids(status=["compacted"]) == {other.id}
    assert ids(status=("idle",)) == set()
    assert ids(status=list(SessionStatus)) == {old.id, fresh.id, other.id}
    assert {s.status for s in walk(bot, status=list(SessionStatus))} == {
        SessionStatus.ARCHIVED,
        SessionStatus.ACTIVE,
        SessionStatus.COMPACTED,
    }
    bot.patch(bob, SessionPatch(status=SessionStatus.IDLE))
    assert ids(status="idle") == {other.id}
    assert ids() == {fresh.id, other.id}


def test_filters_on_key_parts(store: Any) -> None:
    bot = store.for_agent("bot")
    sessions = {
        "dm": bot.get_or_create(key("alice")),
        "dm-slack": bot.get_or_create(key("alice", channel="slack")),
        "group": bot.get_or_create(key("room", kind="group")),
        "other-acct": bot.get_or_create(key("alice", account="acct2")),
        "bob": bot.get_or_create(key("bob")),
    }

    def names(**filters: Any) -> set[str]:
        found = {s.id for s in walk(bot, **filters)}
        return {name for name, session in sessions.items() if session.id in found}

    assert names(channel="slack") == {"dm-slack"}
    assert names(channel="DISCORD") == {"dm", "group", "other-acct", "bob"}
    assert names(account_id="acct2") == {"other-acct"}
    assert names(peer_kind="group") == {"group"}
    assert names(peer_kind="dm", peer_id="alice") == {"dm", "dm-slack", "other-acct"}
    assert names(peer_id="Alice") == set()  # peer ids are case-sensitive
    assert names(channel="discord", account_id="acct", peer_kind="dm") == {"dm", "bob"}
    assert names(channel="telegram") == set()


def test_time_bounds_are_exclusive(store: Any) -> None:
    bot = store.for_agent("bot")
    first, second, third = _make(bot, ["p1", "p2", "p3"])
    tick = timedelta(microseconds=1)

    def ids(**filters: Any) -> list[int]:
        return [s.id for s in walk(bot, **filters)]

    assert ids(created_after=second.created_at) == [third.id]
    assert ids(created_before=second.created_at) == [first.id]
    assert ids(created_after=second.created_at - tick) == [third.id, second.id]
    assert ids(created_before=second.created_at + tick) == [second.id, first.id]
    assert ids(created_after=first.created_at, created_before=third.created_at) == [second.id]
    assert ids(updated_after=second.updated_at) == [third.id]
    assert ids(updated_before=second.updated_at) == [first.id]
    assert ids(updated_after=first.updated_at, updated_before=third.updated_at) == [second.id]
    assert ids(created_after=third.created_at) == []

    bumped = bot.patch(first.key, SessionPatch())
    assert ids(updated_after=third.updated_at) == [first.id]
    assert ids(updated_before=bumped.updated_at) == [third.id, second.id]
    # created_at never moves
    assert ids(created_before=second.created_at) == [first.id]


def test_a_filter_naming_another_agent_is_refused(store: Any) -> None:
    bot = store.for_agent("bot")
    _make(bot, ["alice"])
    _make(store.for_agent("other"), ["alice"])
    with pytest.raises(AccessDeniedError):
        bot.list(SessionFilter(agent_id="other"))
    with pytest.raises(AccessDeniedError):
        bot.list(SessionFilter(agent_id="other", status="archived"))
    assert [s.key.agent_id for s in bot.list(SessionFilter(agent_id="BOT"))] == ["bot"]


def test_admin_lists_every_agent_with_the_same_rules(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    b1 = bot.get_or_create(key("p1"))
    o1 = other.get_or_create(key("p1", agent="other"))
    b2 = bot.get_or_create(key("p2"))
    b2_fresh = bot.reset(key("p2"))
    o2 = other.get_or_create(key("p2", agent="other"))

    everyone = store.list_all_sessions()
    assert [s.id for s in everyone] == [o2.id, b2_fresh.id, o1.id, b1.id]
    assert everyone.next_cursor is None
    assert [s.id for s in store.list_all_sessions(SessionFilter(status="archived"))] == [b2.id]
    assert [s.id for s in store.list_all_sessions(SessionFilter(agent_id="other"))] == [
        o2.id,
        o1.id,
    ]
    first = store.list_all_sessions(SessionFilter(limit=2))
    assert [s.id for s in first] == [o2.id, b2_fresh.id]
    rest = store.list_all_sessions(SessionFilter(limit=2, cursor=first.next_cursor))
    assert [s.id for s in rest] == [o1.id, b1.id]
    assert rest.next_cursor is None
    assert {s.id for s in all_sessions(store, limit=1)} == {
        b1.id, b2.id, b2_fresh.id, o1.id, o2.id,
    }
