"""Agent isolation: a handle for one agent can never read or change another agent's sessions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aisopod_session import (
    AccessDeniedError,
    HistoryQuery,
    InvalidInputError,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    SlidingWindow,
    StoredMessage,
    Summarize,
)

from ._support import key, populate, snapshot, texts

# Every agent-facing method, called by agent "other" on agent "bot"'s key.
ATTEMPTS: dict[str, Callable[[Any, SessionKey], Any]] = {
    "get": lambda h, k: h.get(k),
    "get_or_create": lambda h, k: h.get_or_create(k),
    "get_history": lambda h, k: h.get_history(k),
    "get_history_everything": lambda h, k: h.get_history(k, HistoryQuery(include_compacted=True)),
    "patch": lambda h, k: h.patch(k, SessionPatch(metadata={"owned": True})),
    "patch_status": lambda h, k: h.patch(k, SessionPatch(status=SessionStatus.ARCHIVED)),
    "append": lambda h, k: h.append_messages(k, [StoredMessage.user("injected")]),
    "append_duplicate": lambda h, k: h.append_messages(
        k, [StoredMessage.user("probe", external_id="m1")]
    ),
    "append_empty": lambda h, k: h.append_messages(k, []),
    "compact": lambda h, k: h.compact(k, SlidingWindow(max_messages=1)),
    "summarize": lambda h, k: h.compact(k, Summarize(summary="gone")),
    "compaction_record": lambda h, k: h.get_compaction_record(k),
    "reset": lambda h, k: h.reset(k),
    "delete": lambda h, k: h.delete(k),
}


def test_another_agent_cannot_touch_a_session_through_any_method(store: Any) -> None:
    world = populate(store)
    before = snapshot(store)
    intruder = store.for_agent("other")
    victims = [world["alice"], world["bob"], key("never-created")]
    for attempt in ATTEMPTS.values():
        for victim in victims:
            with pytest.raises(AccessDeniedError):
                attempt(intruder, victim)
    assert snapshot(store) == before


# The same methods with an invalid second argument: the key is refused before anything else.
BAD_ATTEMPTS: dict[str, Callable[[Any, SessionKey], Any]] = {
    "get_history": lambda h, k: h.get_history(k, "everything"),
    "patch": lambda h, k: h.patch(k, {"metadata": {"owned": True}}),
    "append": lambda h, k: h.append_messages(k, ["not a message"]),
    "compact": lambda h, k: h.compact(k, "everything"),
}


def test_refusal_comes_before_validation(store: Any) -> None:
    world = populate(store)
    before = snapshot(store)
    intruder = store.for_agent("other")
    for attempt in BAD_ATTEMPTS.values():
        with pytest.raises(AccessDeniedError):
            attempt(intruder, world["alice"])
    assert snapshot(store) == before


def test_another_agent_cannot_list_a_session(store: Any) -> None:
    world = populate(store)
    before = snapshot(store)
    intruder = store.for_agent("other")
    for status in (None, SessionStatus.ARCHIVED, list(SessionStatus)):
        listed = intruder.list(SessionFilter(status=status))
        assert {s.key.agent_id for s in listed} <= {"other"}
        with pytest.raises(AccessDeniedError):
            intruder.list(SessionFilter(agent_id="bot", status=status))
    # a cursor taken from the owner's walk does not widen the intruder's list either: it is
    # bound to the owner's listing, and refused
    page = world["bot"].list(SessionFilter(limit=1, status=list(SessionStatus)))
    assert page.next_cursor is not None
    with pytest.raises(InvalidInputError, match="cursor"):
        intruder.list(SessionFilter(cursor=page.next_cursor, status=list(SessionStatus)))
    assert [s.key for s in intruder.list()] == [world["carol"]]
    assert snapshot(store) == before


def test_the_owner_still_sees_everything_unchanged(store: Any) -> None:
    world = populate(store)
    bot = world["bot"]
    alice_history = bot.get_history(world["alice"], HistoryQuery(include_compacted=True))
    alice = bot.get(world["alice"])
    for attempt in ATTEMPTS.values():
        with pytest.raises(AccessDeniedError):
            attempt(store.for_agent("other"), world["alice"])
    assert bot.get(world["alice"]) == alice
    assert bot.get_history(world["alice"], HistoryQuery(include_compacted=True)) == alice_history


def test_the_same_conversation_under_two_agents_is_two_sessions(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    mine, theirs = key("alice", agent="bot"), key("alice", agent="other")
    bot.get_or_create(mine)
    other.get_or_create(theirs)
    bot.append_messages(mine, [StoredMessage.user("to bot", external_id="x")])
    other.append_messages(theirs, [StoredMessage.user("to other", external_id="x")])
    other.reset(theirs)
    other.append_messages(theirs, [StoredMessage.user("fresh")])
    bot.compact(mine, SlidingWindow(max_messages=1))
    assert texts(bot.get_history(mine)) == ["to bot"]
    assert texts(other.get_history(theirs)) == ["fresh"]
    assert other.delete(theirs) is True
    assert texts(bot.get_history(mine)) == ["to bot"]
    assert [s.key for s in bot.list()] == [mine]
    assert list(other.list(SessionFilter(status=list(SessionStatus)))) == []
