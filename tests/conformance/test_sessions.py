"""Session lifecycle: get_or_create, get, patch, delete, reset, and reopening the store."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import (
    AccessDeniedError,
    CompactionRecord,
    ConflictError,
    HistoryQuery,
    SessionFilter,
    SessionKey,
    SessionNotFoundError,
    SessionPatch,
    SessionStatus,
    SlidingWindow,
    StoreClosedError,
    StoredMessage,
    _time,
)

from ._support import EVERYTHING, key, snapshot, texts


def test_get_or_create_makes_one_empty_active_session(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    with pytest.raises(SessionNotFoundError):
        bot.get(alice)
    assert list(bot.list()) == []  # get never creates
    created = bot.get_or_create(alice)
    assert created.key == alice
    assert created.status is SessionStatus.ACTIVE
    assert created.message_count == 0
    assert created.token_usage == 0
    assert created.metadata == {}
    assert created.compaction_count == 0
    assert created.last_compacted_at is None
    assert created.last_compaction_summary is None
    assert created.created_at == created.updated_at
    assert created.created_at.utcoffset() is not None
    again = bot.get_or_create(alice)
    assert again == created
    assert bot.get(alice) == created


def test_each_key_part_names_its_own_session(store: Any) -> None:
    bot = store.for_agent("bot")
    keys = [
        key("alice"),
        key("Alice"),  # peer ids keep their case
        key("alice", channel="slack"),
        key("alice", account="other-acct"),
        key("alice", kind="group"),
        SessionKey.for_thread("bot", "discord", "acct", "alice", "t1"),
    ]
    ids = {bot.get_or_create(k).id for k in keys}
    assert len(ids) == len(keys)
    assert {s.key for s in bot.list()} == set(keys)


def test_names_are_normalised_so_spellings_meet(store: Any) -> None:
    upper = store.for_agent("  BOT ")
    created = upper.get_or_create(SessionKey(" Bot", "Discord ", "ACCT", "dm", "alice"))
    assert created.key == key("alice")
    assert store.for_agent("bot").get(key("alice")) == created


def test_concurrent_get_or_create_yields_one_live_session(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    with ThreadPoolExecutor(max_workers=8) as pool:
        sessions = list(pool.map(lambda _: bot.get_or_create(alice), range(16)))
    assert len({s.id for s in sessions}) == 1
    assert len(bot.list()) == 1


def test_patch_refreshes_updated_at_and_sets_tokens(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    created = bot.get_or_create(alice)
    touched = bot.patch(alice, SessionPatch())
    assert touched.updated_at > created.updated_at
    assert touched.created_at == created.created_at
    assert touched.model_dump(exclude={"updated_at"}) == created.model_dump(
        exclude={"updated_at"}
    )
    assert bot.patch(alice, SessionPatch(token_usage=40)).token_usage == 40
    assert bot.patch(alice, SessionPatch(add_tokens=2)).token_usage == 42
    assert bot.patch(alice, SessionPatch(add_tokens=0)).token_usage == 42
    assert bot.patch(alice, SessionPatch(token_usage=0)).token_usage == 0
    final = bot.patch(alice, SessionPatch(status=SessionStatus.IDLE))
    assert final.status is SessionStatus.IDLE
    assert bot.get(alice) == final


def test_every_write_moves_updated_at_forward_even_when_the_clock_does_not(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``updated_at`` is ``commit(expect_updated_at=...)``'s token: a write in the same
    microsecond as the last one (or with the clock stepped back) must still change it, or a
    compare-and-set made on the older read would not see that write."""
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user("one"), StoredMessage.user("two"),
                                StoredMessage.user("three")])
    frozen = bot.get(alice).updated_at - timedelta(hours=1)  # the clock stepped back
    monkeypatch.setattr(_time, "utc_now", lambda: frozen)
    writes: list[tuple[str, Callable[[], object]]] = [
        ("append", lambda: bot.append_messages(alice, [StoredMessage.user("four")])),
        ("pop", lambda: bot.pop_message(alice)),
        ("patch", lambda: bot.patch(alice, SessionPatch(add_tokens=1))),
        ("compact", lambda: bot.compact(alice, SlidingWindow(max_messages=2))),
        ("commit", lambda: bot.commit(alice, [StoredMessage.user("five")])),
    ]
    for name, write in writes:
        before = bot.get(alice).updated_at
        write()
        after = bot.get(alice).updated_at
        assert after > before, name
        with pytest.raises(ConflictError):
            bot.commit(alice, [StoredMessage.user("stale")], expect_updated_at=before)
    assert texts(bot.get_history(alice))[-1] == "five"


def test_patch_merges_and_replaces_metadata(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    first = bot.patch(alice, SessionPatch(metadata={"a": 1, "b": {"nested": [1, "x"]}}))
    assert first.metadata == {"a": 1, "b": {"nested": [1, "x"]}}
    merged = bot.patch(alice, SessionPatch(metadata={"a": None, "c": "new", "missing": None}))
    assert merged.metadata == {"b": {"nested": [1, "x"]}, "c": "new"}
    untouched = bot.patch(alice, SessionPatch(add_tokens=1))
    assert untouched.metadata == merged.metadata
    replaced = bot.patch(alice, SessionPatch(metadata={"only": True}, replace_metadata=True))
    assert replaced.metadata == {"only": True}
    emptied = bot.patch(alice, SessionPatch(metadata={}, replace_metadata=True))
    assert emptied.metadata == {}
    assert bot.get(alice).metadata == {}


def test_patch_of_an_absent_session_raises_and_creates_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    with pytest.raises(SessionNotFoundError):
        bot.patch(key("nobody"), SessionPatch(add_tokens=1))
    assert snapshot(store) == []


def test_delete_removes_every_generation_and_its_messages(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    first = bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user("gen 1")])
    bot.reset(alice)
    bot.append_messages(alice, [StoredMessage.user("gen 2")])
    second = bot.get(alice)
    bot.get_or_create(bob)
    bot.append_messages(bob, [StoredMessage.user("keep me")])
    bob_before = snapshot(store)[-1]

    assert bot.delete(alice) is True
    for session_id in (first.id, second.id):
        with pytest.raises(SessionNotFoundError):
            store.get_session_by_id(session_id)
        with pytest.raises(SessionNotFoundError):
            store.get_history_by_id(session_id)
    with pytest.raises(SessionNotFoundError):
        bot.get(alice)
    assert snapshot(store) == [bob_before]
    assert bot.delete(alice) is False
    # the key can be used again afterwards, from scratch
    fresh = bot.get_or_create(alice)
    assert fresh.message_count == 0
    assert bot.get_history(alice) == []


def test_reset_archives_and_starts_a_fresh_generation(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    old = bot.get_or_create(alice)
    appended = bot.append_messages(
        alice, [StoredMessage.user("hi", token_count=1), StoredMessage.assistant("yo")]
    )
    bot.patch(alice, SessionPatch(metadata={"m": 1}))
    fresh = bot.reset(alice)

    assert fresh.id != old.id
    assert fresh.key == alice
    assert fresh.status is SessionStatus.ACTIVE
    assert (fresh.message_count, fresh.token_usage, fresh.metadata) == (0, 0, {})
    assert bot.get(alice) == fresh
    assert bot.get_history(alice) == []
    assert bot.get_compaction_record(alice) == CompactionRecord()

    archived = store.get_session_by_id(old.id)
    assert archived.status is SessionStatus.ARCHIVED
    assert archived.message_count == 2
    assert archived.token_usage == 1
    assert archived.metadata == {"m": 1}
    assert store.get_history_by_id(old.id) == appended
    assert store.get_history_by_id(old.id, EVERYTHING) == appended

    assert [s.id for s in bot.list()] == [fresh.id]
    listed = bot.list(SessionFilter(status=SessionStatus.ARCHIVED))
    assert [s.id for s in listed] == [old.id]
    assert listed[0] == archived.summary()

    # the next reset archives the second generation as well
    bot.append_messages(alice, [StoredMessage.user("gen 2")])
    third = bot.reset(alice)
    archived_ids = {s.id for s in bot.list(SessionFilter(status="archived"))}
    assert archived_ids == {old.id, fresh.id}
    assert texts(store.get_history_by_id(fresh.id)) == ["gen 2"]
    assert bot.get(alice).id == third.id


def test_reset_without_a_session_creates_one(store: Any) -> None:
    bot = store.for_agent("bot")
    created = bot.reset(key("alice"))
    assert created.status is SessionStatus.ACTIVE
    assert bot.get(key("alice")) == created
    assert bot.list(SessionFilter(status="archived")) == []
    with pytest.raises(AccessDeniedError):
        bot.reset(key("alice", agent="someone-else"))
    assert [s.id for s in store.list_all_sessions()] == [created.id]


def test_reopening_the_store_shows_the_same_data(open_store: Any) -> None:
    first = open_store()
    bot = first.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user(f"m{i}") for i in range(6)])
    bot.compact(alice, {"kind": "sliding_window", "max_messages": 3})
    bot.patch(alice, SessionPatch(metadata={"x": [1, 2.5, None]}))
    bot.reset(key("bob"))
    before = snapshot(first)
    live = bot.get(alice)
    first.close()

    second = open_store()
    assert snapshot(second) == before
    again = second.for_agent("bot")
    assert again.get(alice) == live
    assert texts(again.get_history(alice)) == ["m3", "m4", "m5"]
    # and it keeps working where it left off
    again.append_messages(alice, [StoredMessage.user("after reopen")])
    assert texts(again.get_history(alice, HistoryQuery(limit=1, tail=True))) == ["after reopen"]


def test_a_closed_store_refuses_every_call(open_store: Any) -> None:
    store = open_store()
    agent = store.for_agent("bot")
    agent.get_or_create(key("alice"))
    store.close()
    store.close()  # twice is fine
    for call in (lambda: agent.append_messages(key("alice"), [StoredMessage.user("late")]),
                 lambda: agent.get_or_create(key("alice")), lambda: agent.get(key("alice")),
                 store.list_all_sessions, store.stats):
        with pytest.raises(StoreClosedError):
            call()
