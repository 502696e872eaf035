"""Usage per day (the console's chart) and the export of one session, on every backend x
flavour."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from aisopod_session import DailyUsage, InvalidInputError, StoredMessage

from ._support import key
from .test_lifecycle import lines_of

NOW = datetime.now(UTC)
TODAY = NOW.date()


def message(text: str, *, days_ago: int, tokens: int | None) -> StoredMessage:
    return StoredMessage.user(text, created_at=NOW - timedelta(days=days_ago), token_count=tokens)


def append(store: Any, session_key: Any, messages: list[StoredMessage]) -> None:
    agent = store.for_agent(session_key.agent_id)
    agent.get_or_create(session_key)
    agent.append_messages(session_key, messages)


def test_usage_counts_messages_and_tokens_per_day_and_agent(store: Any) -> None:
    append(store, key("a"), [message("1", days_ago=0, tokens=5),
                                   message("2", days_ago=0, tokens=None),
                                   message("3", days_ago=2, tokens=7)])
    append(store, key("b"), [message("4", days_ago=2, tokens=1)])
    append(store, key("a", agent="other"), [message("5", days_ago=0, tokens=100)])
    # Outside a 3-day window: 3 days ago is day 4 counting today.
    append(store, key("c"), [message("old", days_ago=3, tokens=1000)])

    usage = store.usage_by_day(3, now=NOW)

    assert usage == [
        DailyUsage(day=TODAY - timedelta(days=2), agent_id="bot", messages=2, tokens=8),
        DailyUsage(day=TODAY, agent_id="bot", messages=2, tokens=5),
        DailyUsage(day=TODAY, agent_id="other", messages=1, tokens=100),
    ]
    assert store.usage_by_day(3, agent_id="OTHER", now=NOW) == [
        DailyUsage(day=TODAY, agent_id="other", messages=1, tokens=100)]
    assert store.usage_by_day(4, agent_id="bot", now=NOW)[0] == DailyUsage(
        day=TODAY - timedelta(days=3), agent_id="bot", messages=1, tokens=1000)


def test_usage_includes_compacted_and_archived_but_not_deleted(store: Any) -> None:
    from aisopod_session import SlidingWindow

    append(store, key("a"), [message(str(n), days_ago=0, tokens=1) for n in range(4)])
    store.for_agent("bot").compact(key("a"), SlidingWindow(max_messages=1))
    store.for_agent("bot").reset(key("a"))
    append(store, key("gone"), [message("x", days_ago=0, tokens=50)])
    store.for_agent("bot").delete(key("gone"))

    assert store.usage_by_day(1, now=NOW) == [
        DailyUsage(day=TODAY, agent_id="bot", messages=4, tokens=4)]


def test_usage_of_an_empty_store_and_an_unknown_agent(store: Any) -> None:
    assert store.usage_by_day(now=NOW) == []
    append(store, key("a"), [message("1", days_ago=0, tokens=1)])
    assert store.usage_by_day(agent_id="nobody", now=NOW) == []


@pytest.mark.parametrize("days", [0, -1, 367, 1.5, True, "7"])
def test_usage_refuses_a_bad_window(store: Any, days: Any) -> None:
    with pytest.raises(InvalidInputError, match="days"):
        store.usage_by_day(days)


def test_export_of_one_session_is_just_that_session(store: Any) -> None:
    append(store, key("a"), [StoredMessage.user("hello <b>")])
    append(store, key("b"), [StoredMessage.user("not me")])
    session_id = store.for_agent("bot").get(key("a")).id

    lines = [json.loads(line) for line in lines_of(store, store.export_jsonl(
        session_id=session_id))]

    assert [line["kind"] for line in lines] == ["aisopod-session-export", "session", "message"]
    assert lines[1]["id"] == session_id
    assert lines[2]["content"] == "hello <b>"
    # Of another agent: nothing but the header.
    assert len(lines_of(store, store.export_jsonl("other", session_id=session_id))) == 1


@pytest.mark.parametrize("session_id", [0, -3, True, "1", 2**63])
def test_export_refuses_a_bad_session_id(store: Any, session_id: Any) -> None:
    with pytest.raises(InvalidInputError, match="session_id"):
        lines_of(store, store.export_jsonl(session_id=session_id))


def test_usage_day_boundaries_are_utc(store: Any) -> None:
    midnight = datetime.combine(TODAY, datetime.min.time(), UTC)
    append(store, key("a"), [
        StoredMessage.user("last of yesterday", created_at=midnight - timedelta(microseconds=1)),
        StoredMessage.user("first of today", created_at=midnight),
    ])
    usage = store.usage_by_day(2, now=midnight + timedelta(hours=1))
    assert [(u.day, u.messages) for u in usage] == [(TODAY - timedelta(days=1), 1), (TODAY, 1)]
    assert isinstance(usage[0].day, date)
