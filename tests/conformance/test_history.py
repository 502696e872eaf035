"""Appending messages and reading history back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aisopod_session import (
    HistoryQuery,
    InvalidInputError,
    SessionNotFoundError,
    SessionPatch,
    SessionStatus,
    SlidingWindow,
    StoredMessage,
)

from ._support import EVERYTHING, fields, key, snapshot, texts

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_append_stores_in_order_and_returns_what_was_stored(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    created = bot.get_or_create(alice)
    batch = [
        StoredMessage.system("be nice"),
        StoredMessage.user("héllo ✓ 𝄞", token_count=5, external_id="wa-1"),
        StoredMessage.assistant(
            None,
            tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "x": 1.5}}],
            token_count=7,
        ),
        StoredMessage.tool({"tool_call_id": "c1", "output": ["a", 1, 2.25, True, None, {}]}),
        StoredMessage.assistant({"parts": [{"type": "text", "text": "ok"}]}),
        StoredMessage.user(""),
        StoredMessage.user("nul \x00 and \u2028 and \\ \" '"),
        StoredMessage.user({"k\x00ey": ["\x00", "\U0010ffff"], "": 0.1, "n": 2**64}),
        StoredMessage.user(-(2**62)),
    ]
    stored = bot.append_messages(alice, batch)
    assert [fields(m) for m in stored] == [fields(m) for m in batch]
    assert all(m.id is not None and not m.compacted for m in stored)
    assert len({m.id for m in stored}) == len(batch)
    assert bot.get_history(alice) == stored

    session = bot.get(alice)
    assert session.message_count == len(batch)
    assert session.token_usage == 12
    assert session.updated_at > created.updated_at
    assert session.created_at == created.created_at

    more = bot.append_messages(alice, [StoredMessage.user("again", token_count=1)])
    assert bot.get_history(alice) == stored + more
    after = bot.get(alice)
    assert (after.message_count, after.token_usage) == (len(batch) + 1, 13)
    assert after.updated_at > session.updated_at


def test_append_to_a_missing_session_raises_and_stores_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    with pytest.raises(SessionNotFoundError):
        bot.append_messages(key("nobody"), [StoredMessage.user("lost")])
    with pytest.raises(SessionNotFoundError):
        bot.append_messages(key("nobody"), [StoredMessage.user("lost", external_id="e")])
    with pytest.raises(SessionNotFoundError):
        bot.append_messages(key("nobody"), [])
    with pytest.raises(SessionNotFoundError):
        bot.get_history(key("nobody"))
    assert snapshot(store) == []


def test_empty_append_changes_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    before = snapshot(store)
    assert bot.append_messages(alice, []) == []
    assert snapshot(store) == before


def test_append_brings_idle_and_compacted_sessions_back_to_active(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    assert bot.patch(alice, SessionPatch(status="idle")).status is SessionStatus.IDLE
    bot.append_messages(alice, [StoredMessage.user("a"), StoredMessage.user("b")])
    assert bot.get(alice).status is SessionStatus.ACTIVE
    bot.compact(alice, SlidingWindow(max_messages=1))
    assert bot.get(alice).status is SessionStatus.COMPACTED
    bot.append_messages(alice, [StoredMessage.user("c")])
    assert bot.get(alice).status is SessionStatus.ACTIVE
    assert bot.get(alice).message_count == 2


def test_a_batch_is_all_or_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user("kept")])
    before = snapshot(store)
    too_large = "x" * (1_048_576 + 1)
    bad_batches = [
        [StoredMessage.user("1"), StoredMessage.user("2"), StoredMessage.tool(too_large)],
        [StoredMessage.user("1"), StoredMessage.user("2"), "not a message"],
        [StoredMessage.user("1"), StoredMessage.user("2", id=5)],
        [StoredMessage.user("1", token_count=2**62), StoredMessage.user("2", token_count=2**62)],
    ]
    for batch in bad_batches:
        with pytest.raises(InvalidInputError):
            bot.append_messages(alice, batch)
    assert snapshot(store) == before


def test_history_follows_append_order_not_timestamps(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    # same timestamp for a whole batch, then timestamps going backwards
    bot.append_messages(alice, [StoredMessage.user(f"tie{i}", created_at=_at(0)) for i in range(5)])
    bot.append_messages(alice, [StoredMessage.user("late", created_at=_at(-100))])
    bot.append_messages(
        alice, [StoredMessage.user(f"back{i}", created_at=_at(-i)) for i in range(1, 4)]
    )
    expected = [*(f"tie{i}" for i in range(5)), "late", "back1", "back2", "back3"]
    assert texts(bot.get_history(alice)) == expected
    assert texts(bot.get_history(alice, HistoryQuery(limit=3, tail=True))) == expected[-3:]
    assert texts(bot.get_history(alice, HistoryQuery(limit=2, offset=4))) == expected[4:6]
    # every timestamp reads back exactly, microseconds included
    stamped = [StoredMessage.user("us", created_at=_at(0.000001)), StoredMessage.user("x")]
    stored = bot.append_messages(alice, stamped)
    assert [m.created_at for m in bot.get_history(alice)[-2:]] == [
        m.created_at for m in stored
    ]


def test_history_queries(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user(f"m{i}", created_at=_at(i)) for i in range(10)])
    every = [f"m{i}" for i in range(10)]

    def read(**query: Any) -> list[Any]:
        return texts(bot.get_history(alice, HistoryQuery(**query)))

    assert texts(bot.get_history(alice)) == every
    assert read() == every
    assert read(limit=3) == every[:3]
    assert read(limit=100) == every
    assert read(offset=7) == every[7:]
    assert read(limit=3, offset=2) == every[2:5]
    assert read(offset=10) == []
    assert read(after=_at(6)) == every[7:]
    assert read(before=_at(3)) == every[:3]
    assert read(after=_at(2), before=_at(5)) == every[3:5]
    assert read(after=_at(2), before=_at(3)) == []
    assert read(after=_at(1), limit=2) == every[2:4]
    assert read(tail=True) == every
    assert read(limit=3, tail=True) == every[7:]
    assert read(limit=3, offset=2, tail=True) == every[5:8]
    assert read(limit=3, tail=True, before=_at(5)) == every[2:5]
    assert read(limit=3, tail=True, after=_at(8)) == ["m9"]
    assert read(limit=20, tail=True) == every
    assert read(include_compacted=True) == every


def test_history_with_compacted_messages(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    stored = bot.append_messages(
        alice, [StoredMessage.user(f"m{i}", created_at=_at(i)) for i in range(6)]
    )
    bot.compact(alice, SlidingWindow(max_messages=2))
    assert texts(bot.get_history(alice)) == ["m4", "m5"]
    full = bot.get_history(alice, EVERYTHING)
    assert [m.id for m in full] == [m.id for m in stored]
    assert [m.compacted for m in full] == [True] * 4 + [False] * 2
    assert [fields(m) for m in full] == [fields(m) for m in stored]
    assert texts(bot.get_history(alice, HistoryQuery(include_compacted=True, limit=2,
                                                      tail=True))) == ["m4", "m5"]
    assert texts(bot.get_history(alice, HistoryQuery(include_compacted=True, limit=2,
                                                      offset=1))) == ["m1", "m2"]
    assert texts(bot.get_history(alice, HistoryQuery(limit=1))) == ["m4"]
    assert texts(bot.get_history(alice, HistoryQuery(before=_at(5)))) == ["m4"]
    assert texts(bot.get_history(alice, HistoryQuery(include_compacted=True,
                                                      before=_at(2)))) == ["m0", "m1"]


def test_a_redelivered_message_is_stored_once(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    bot.get_or_create(alice)
    bot.get_or_create(bob)
    [original] = bot.append_messages(alice, [StoredMessage.user("hi", external_id="ext-1",
                                                                  token_count=4)])
    session = bot.get(alice)

    again = bot.append_messages(
        alice, [StoredMessage.user("hi (redelivered, edited)", external_id="ext-1",
                                   token_count=99)]
    )
    assert again == [original]
    after = bot.get(alice)
    assert (after.message_count, after.token_usage) == (1, 4)
    assert after == session  # nothing was stored, so nothing changed
    assert bot.get_history(alice) == [original]

    # duplicates within one batch, mixed with new messages and a known id
    result = bot.append_messages(
        alice,
        [
            StoredMessage.user("a", external_id="ext-2", token_count=1),
            StoredMessage.user("no id"),
            StoredMessage.user("a again", external_id="ext-2", token_count=1),
            StoredMessage.user("old", external_id="ext-1"),
            StoredMessage.user("b", external_id="ext-3"),
        ],
    )
    assert texts(result) == ["a", "no id", "a", "hi", "b"]
    assert result[0] == result[2]
    assert result[3] == original
    assert texts(bot.get_history(alice)) == ["hi", "a", "no id", "b"]
    assert (bot.get(alice).message_count, bot.get(alice).token_usage) == (4, 5)

    # the same external id is a different message in another session
    [other] = bot.append_messages(bob, [StoredMessage.user("bob's", external_id="ext-1")])
    assert other.id != original.id
    assert texts(bot.get_history(bob)) == ["bob's"]


def test_a_redelivered_message_is_not_stored_again_after_compaction(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    [original, *_] = bot.append_messages(
        alice,
        [StoredMessage.user("first", external_id="e1")] + [StoredMessage.user("x")] * 3,
    )
    bot.compact(alice, SlidingWindow(max_messages=1))
    before = snapshot(store)
    [returned] = bot.append_messages(alice, [StoredMessage.user("first", external_id="e1")])
    assert returned.id == original.id
    assert fields(returned) == fields(original)
    assert returned.compacted is True  # the stored one, as it is stored now
    assert snapshot(store) == before
    assert texts(bot.get_history(alice)) == ["x"]
