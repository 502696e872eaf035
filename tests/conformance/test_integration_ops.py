"""The store operations the framework integrations need: pop_message, list_detailed, commit.

Like the rest of the conformance suite they run on every backend x flavour.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import (
    AccessDeniedError,
    ConflictError,
    HistoryQuery,
    InvalidInputError,
    SessionFilter,
    SessionNotFoundError,
    SessionPatch,
    StoredMessage,
    Summarize,
)

from ._support import EVERYTHING, key, snapshot, texts

# --- pop_message --------------------------------------------------------------------------------


def test_pop_message_is_the_inverse_of_append(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [
        StoredMessage.user("one", token_count=2),
        StoredMessage.assistant("two", token_count=3, external_id="x-2"),
    ])
    popped = bot.pop_message(alice)
    assert popped is not None
    assert (popped.content, popped.external_id, popped.token_count) == ("two", "x-2", 3)
    session = bot.get(alice)
    assert (session.message_count, session.token_usage) == (1, 2)
    assert texts(bot.get_history(alice)) == ["one"]
    assert texts(bot.get_history(alice, EVERYTHING)) == ["one"]  # deleted, not flagged

    # The external id is free again, and a new message reads after the remaining one.
    again = bot.append_messages(alice, [StoredMessage.assistant("2bis", external_id="x-2")])
    assert again[0].content == "2bis"
    assert texts(bot.get_history(alice)) == ["one", "2bis"]
    assert texts(bot.get_history(alice, HistoryQuery(limit=1, tail=True))) == ["2bis"]

    assert bot.pop_message(alice).content == "2bis"
    assert bot.pop_message(alice).content == "one"
    assert bot.pop_message(alice) is None
    session = bot.get(alice)
    assert (session.message_count, session.token_usage) == (0, 0)


def test_pop_message_token_usage_never_goes_negative(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user("big", token_count=10)])
    bot.patch(alice, SessionPatch(token_usage=4))
    bot.pop_message(alice)
    assert bot.get(alice).token_usage == 0


def test_pop_message_takes_the_live_history_only(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user(f"m{i}") for i in range(4)])
    bot.compact(alice, Summarize(summary="earlier", keep_recent=1))
    assert texts(bot.get_history(alice)) == ["earlier", "m3"]
    assert bot.pop_message(alice).content == "m3"
    assert bot.pop_message(alice).content == "earlier"
    assert bot.pop_message(alice) is None
    assert bot.get(alice).message_count == 0
    # the compacted originals stay in the transcript
    assert texts(bot.get_history(alice, EVERYTHING)) == ["m0", "m1", "m2"]


def test_pop_message_needs_a_live_session_of_the_agent(store: Any) -> None:
    with pytest.raises(SessionNotFoundError):
        store.for_agent("bot").pop_message(key("nobody"))
    other = store.for_agent("other")
    before = snapshot(store)
    with pytest.raises(AccessDeniedError):
        other.pop_message(key("alice"))
    assert snapshot(store) == before


# --- list_detailed ------------------------------------------------------------------------------


def test_list_detailed_pages_like_list_with_whole_sessions(store: Any) -> None:
    bot = store.for_agent("bot")
    for index in range(7):
        peer = key(f"p{index}", channel="slack" if index % 2 else "discord")
        bot.get_or_create(peer)
        bot.patch(peer, SessionPatch(metadata={"n": index}))
    store.for_agent("other").get_or_create(key("x", agent="other"))

    for filters in ({}, {"channel": "slack"}):
        summaries, detailed, cursor = [], [], None
        while True:
            page = bot.list(SessionFilter(limit=3, cursor=cursor, **filters))
            summaries.extend(page)
            cursor = page.next_cursor
            if cursor is None:
                break
        while True:
            page = bot.list_detailed(SessionFilter(limit=3, cursor=cursor, **filters))
            assert len(page) <= 3
            detailed.extend(page)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [s.summary() for s in detailed] == summaries
        assert detailed == [bot.get(s.key) for s in detailed]
        assert {s.metadata["n"] for s in detailed} == (
            set(range(7)) if not filters else {1, 3, 5}
        )
    assert bot.list_detailed(SessionFilter(channel="nowhere")) == []
    with pytest.raises(AccessDeniedError):
        bot.list_detailed(SessionFilter(agent_id="other"))


# --- commit -------------------------------------------------------------------------------------


def test_commit_appends_and_merges_atomically(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, shared = key("alice"), key("shared-state", kind="group")
    created = bot.commit(alice, [], {"state": {"a": 1}}, create=True)
    assert created.applied and created.messages == []
    assert created.session.metadata == {"state": {"a": 1}}

    result = bot.commit(
        alice,
        [StoredMessage.user("hi", token_count=2, external_id="e1")],
        {"state": {"b": None, "a": 2}, "other": {"x": [1]}},
        expect_updated_at=created.session.updated_at,
        shared={shared: {"state": {"u": True}}},
    )
    assert result.applied
    assert [m.content for m in result.messages] == ["hi"]
    assert result.session.metadata == {"state": {"a": 2, "b": None}, "other": {"x": [1]}}
    assert result.session.updated_at > created.session.updated_at
    assert (result.session.message_count, result.session.token_usage) == (1, 2)
    assert result.session == bot.get(alice)
    assert result.shared[shared] == bot.get(shared)
    assert bot.get(shared).metadata == {"state": {"u": True}}

    # A shared session with nothing to merge is only read (and None when missing).
    absent = key("absent", kind="group")
    read_only = bot.commit(alice, [], None, shared={shared: {}, absent: {}})
    assert read_only.shared == {shared: bot.get(shared), absent: None}
    with pytest.raises(SessionNotFoundError):
        bot.get(absent)


def test_commit_compare_and_set_refuses_a_stale_revision(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, shared = key("alice"), key("shared-state", kind="group")
    first = bot.commit(alice, [], {"state": {"n": 0}}, create=True).session
    second = bot.commit(alice, [StoredMessage.user("a")], {"state": {"n": 1}},
                        expect_updated_at=first.updated_at).session
    before = snapshot(store)
    with pytest.raises(ConflictError):
        bot.commit(alice, [StoredMessage.user("b")], {"state": {"n": 2}},
                   expect_updated_at=first.updated_at, shared={shared: {"s": {"k": 1}}})
    assert snapshot(store) == before  # nothing of the refused commit is stored
    third = bot.commit(alice, [StoredMessage.user("b")], {"state": {"n": 2}},
                       expect_updated_at=second.updated_at)
    assert third.session.metadata == {"state": {"n": 2}}
    assert texts(bot.get_history(alice)) == ["a", "b"]


def test_commit_create_refuses_an_existing_session(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    before = snapshot(store)
    with pytest.raises(ConflictError):
        bot.commit(alice, [StoredMessage.user("x")], {"m": {"k": 1}}, create=True)
    assert snapshot(store) == before
    with pytest.raises(SessionNotFoundError):
        bot.commit(key("bob"), [StoredMessage.user("x")])


def test_commit_redelivery_changes_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, shared = key("alice"), key("shared-state", kind="group")
    start = bot.commit(alice, [], None, create=True).session
    batch = [StoredMessage.user("hi", external_id="e1"), StoredMessage.assistant("yo",
                                                                                 external_id="e2")]
    first = bot.commit(alice, batch, {"state": {"n": 1}}, expect_updated_at=start.updated_at,
                       shared={shared: {"state": {"count": 1}}})
    before = snapshot(store)
    # The same commit again, with the now stale revision: a redelivery, not a conflict.
    again = bot.commit(alice, batch, {"state": {"n": 99}}, expect_updated_at=start.updated_at,
                       shared={shared: {"state": {"count": 99}}})
    assert not again.applied
    assert again.messages == first.messages
    assert again.session == first.session
    assert snapshot(store) == before
    # One new message makes it a new commit again: the precondition applies.
    with pytest.raises(ConflictError):
        bot.commit(alice, [*batch, StoredMessage.user("new", external_id="e3")],
                   expect_updated_at=start.updated_at)


def test_commit_refuses_bad_input_before_storing_anything(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.commit(alice, [], {"state": {"a": 1}, "flat": {"x": 1}}, create=True)
    bot.patch(alice, SessionPatch(metadata={"scalar": 3}))
    before = snapshot(store)
    for merge in ({"state": {"nan": float("nan")}}, {"state": 1}, {"": {"a": 1}}, ["x"],
                  {"scalar": {"a": 1}}, {"state": {"big": "x" * 70_000}}):
        with pytest.raises(InvalidInputError):
            bot.commit(alice, [StoredMessage.user("lost")], merge)
    with pytest.raises(InvalidInputError):
        bot.commit(alice, [], None, shared={alice: {"s": {"a": 1}}})
    with pytest.raises(InvalidInputError):
        bot.commit(alice, [], None, shared=[alice])
    with pytest.raises(AccessDeniedError):
        bot.commit(alice, [], None, shared={key("x", agent="other"): {"s": {"a": 1}}})
    with pytest.raises(AccessDeniedError):
        store.for_agent("other").commit(alice, [])
    assert snapshot(store) == before


def test_commit_revisions_strictly_increase(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    revision = bot.commit(alice, [], None, create=True).session.updated_at
    for index in range(20):
        session = bot.commit(alice, [], {"s": {"i": index}}, expect_updated_at=revision).session
        assert session.updated_at >= revision + timedelta(microseconds=1)
        revision = session.updated_at


def test_concurrent_commits_merge_into_shared_sessions_without_losing_any(store: Any) -> None:
    bot = store.for_agent("bot")
    app, user = key("app-state", kind="group"), key("user-state", kind="group")
    peers = [key(f"p{i}") for i in range(4)]
    for peer in peers:
        bot.commit(peer, [], None, create=True)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for turn in range(5):
                bot.commit(peers[index], [StoredMessage.user(f"{index}-{turn}")],
                           {"state": {"turn": turn}},
                           shared={user: {"state": {f"{index}-{turn}": turn}},
                                   app: {"state": {f"{index}": turn}}})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(peers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(bot.get(user).metadata["state"]) == 20
    assert bot.get(app).metadata["state"] == {str(i): 4 for i in range(4)}
    for peer in peers:
        assert bot.get(peer).message_count == 5
        assert bot.get(peer).metadata == {"state": {"turn": 4}}
