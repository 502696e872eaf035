"""Runs: one active run per session, fenced writes, the inbox and stop requests, on every backend
(and through the service)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from aisopod_session import (
    AccessDeniedError,
    HistoryQuery,
    InvalidInputError,
    Run,
    RunLostError,
    SessionBusyError,
    SessionPatch,
    SlidingWindow,
    StoredMessage,
)

from ._support import key
from .test_lifecycle import lines_of

SHORT = 0.2  # seconds: a lease that expires during the test


def texts(messages: list[StoredMessage]) -> list[Any]:
    return [m.content for m in messages]


def test_a_run_holds_the_session_until_it_finishes(store: Any) -> None:
    bot = store.for_agent("bot")
    run = bot.start_run(key("alice"), "replica-1", ttl=30)
    assert isinstance(run, Run)
    assert (run.key, run.owner, run.stop_requested) == (key("alice"), "replica-1", False)
    assert run.fence >= 1 and run.expires_at > run.started_at and run.ttl == 30
    assert bot.get(key("alice")).key == key("alice")  # the live session was created
    assert bot.current_run(key("alice")) == run
    with pytest.raises(SessionBusyError) as busy:
        bot.start_run(key("alice"), "replica-2")
    assert busy.value.holder == "replica-1"
    assert busy.value.expires_at == run.expires_at
    other = bot.start_run(key("bob"), "replica-2")  # another session is not busy
    assert other.fence > run.fence
    assert bot.finish_run(run) == 0
    assert bot.finish_run(run) == 0  # finishing again changes nothing
    assert bot.current_run(key("alice")) is None
    again = bot.start_run(key("alice"), "replica-2")
    assert again.fence > other.fence  # strictly increasing, from one counter


def test_a_sessions_run_shows_in_get_and_list(store: Any) -> None:
    bot = store.for_agent("bot")
    bot.get_or_create(key("bob"))
    run = bot.start_run(key("alice"), "replica-1")
    got = bot.get(key("alice"))
    assert (got.run_owner, got.run_since) == ("replica-1", run.started_at)
    listed = {s.key.peer_id: s for s in bot.list()}
    assert (listed["alice"].run_owner, listed["alice"].run_since) == ("replica-1", run.started_at)
    assert (listed["bob"].run_owner, listed["bob"].run_since) == (None, None)
    assert store.get_session_by_id(got.id).run_owner == "replica-1"
    bot.finish_run(run)
    assert bot.get(key("alice")).run_owner is None
    held = bot.start_run(key("alice"), "replica-2")
    old = bot.get(key("alice"))
    bot.reset(key("alice"))  # the run belongs to the key: the fresh session shows it
    assert bot.get(key("alice")).run_owner == "replica-2"
    assert store.get_session_by_id(old.id).run_owner is None  # not the archived generation
    assert held.fence > run.fence


def test_fences_increase_across_resets(store: Any) -> None:
    bot = store.for_agent("bot")
    first = bot.start_run(key("alice"), "w")
    bot.finish_run(first)
    bot.reset(key("alice"))
    second = bot.start_run(key("alice"), "w")
    assert second.fence > first.fence


def test_an_expired_lease_is_taken_over_and_its_holder_is_fenced_out(store: Any) -> None:
    bot = store.for_agent("bot")
    paused = bot.start_run(key("alice"), "paused", ttl=SHORT)
    bot.append_messages(key("alice"), [StoredMessage.user("before")], run=paused)
    time.sleep(SHORT + 0.1)
    assert bot.current_run(key("alice")) == paused  # expired, but nobody took it over yet
    successor = bot.start_run(key("alice"), "successor")
    assert successor.fence > paused.fence and successor.took_over and not paused.took_over
    bot.append_messages(key("alice"), [StoredMessage.assistant("successor's")], run=successor)
    for late in (lambda: bot.append_messages(key("alice"), [StoredMessage.user("late")],
                                             run=paused),
                 lambda: bot.patch(key("alice"), SessionPatch(metadata={"x": 1}), run=paused),
                 lambda: bot.compact(key("alice"), SlidingWindow(max_messages=1), run=paused),
                 lambda: bot.renew_run(paused), lambda: bot.take_inbox(paused),
                 lambda: bot.finish_run(paused)):
        with pytest.raises(RunLostError):
            late()
    assert texts(bot.get_history(key("alice"))) == ["before", "successor's"]
    assert bot.get(key("alice")).metadata == {}
    assert bot.current_run(key("alice")) == successor  # finishing the lost run changed nothing


def test_a_finished_run_can_no_longer_write(store: Any) -> None:
    bot = store.for_agent("bot")
    run = bot.start_run(key("alice"), "w")
    bot.finish_run(run)
    with pytest.raises(RunLostError):
        bot.append_messages(key("alice"), [StoredMessage.user("after")], run=run)
    bot.append_messages(key("alice"), [StoredMessage.user("no run: as before")])
    assert texts(bot.get_history(key("alice"))) == ["no run: as before"]


def test_renewal_extends_the_lease_and_carries_stop_requests(store: Any) -> None:
    bot = store.for_agent("bot")
    assert bot.request_stop(key("alice")) is False  # no run
    run = bot.start_run(key("alice"), "w", ttl=SHORT)
    renewed = bot.renew_run(run, ttl=30)
    assert renewed.fence == run.fence and renewed.ttl == 30
    assert renewed.expires_at > run.expires_at
    time.sleep(SHORT + 0.1)
    with pytest.raises(SessionBusyError):  # renewed: not expired
        bot.start_run(key("alice"), "other")
    assert bot.request_stop(key("alice")) is True
    assert bot.renew_run(renewed).stop_requested is True
    assert bot.current_run(key("alice")).stop_requested is True


def test_a_waiting_start_gets_the_lease_when_it_expires(store: Any) -> None:
    bot = store.for_agent("bot")
    holder = bot.start_run(key("alice"), "holder", ttl=SHORT)
    started = time.monotonic()
    waiter = bot.start_run(key("alice"), "waiter", wait=10)
    assert waiter.fence > holder.fence
    assert time.monotonic() - started < 5
    with pytest.raises(SessionBusyError):
        bot.start_run(key("alice"), "impatient", wait=0.05)


def test_the_inbox_keeps_messages_for_the_run_in_order_and_exactly_once(store: Any) -> None:
    bot = store.for_agent("bot")
    run = bot.start_run(key("alice"), "w")
    queued = bot.enqueue(key("alice"), [StoredMessage.user("one", external_id="m1"),
                                        StoredMessage.user("two", external_id="m2"),
                                        StoredMessage.user("three")])
    assert [q.message.content for q in queued] == ["one", "two", "three"]
    again = bot.enqueue(key("alice"), [StoredMessage.user("one", external_id="m1")])
    assert [q.id for q in again] == [queued[0].id]  # a redelivery is not queued twice
    assert [q.message.content for q in bot.inbox(key("alice"))] == ["one", "two", "three"]
    assert texts(bot.take_inbox(run, limit=1)) == ["one"]
    assert texts(bot.get_history(key("alice"))) == ["one"]
    assert bot.finish_run(run) == 2  # two still wait: start another run
    second = bot.start_run(key("alice"), "w")
    taken = bot.take_inbox(second)
    assert texts(taken) == ["two", "three"] and all(m.id is not None for m in taken)
    assert bot.inbox(key("alice")) == []
    assert bot.take_inbox(second) == []
    assert bot.enqueue(key("alice"), [StoredMessage.user("one", external_id="m1")]) == []
    assert texts(bot.get_history(key("alice"), HistoryQuery())) == ["one", "two", "three"]
    assert bot.finish_run(second) == 0


def test_deleting_a_session_ends_its_run(store: Any) -> None:
    bot = store.for_agent("bot")
    run = bot.start_run(key("alice"), "w")
    bot.enqueue(key("alice"), [StoredMessage.user("queued")])
    assert bot.delete(key("alice"))
    assert bot.current_run(key("alice")) is None
    with pytest.raises(RunLostError):
        bot.append_messages(key("alice"), [StoredMessage.user("late")], run=run)
    with pytest.raises(RunLostError):
        bot.finish_run(run)
    fresh = bot.start_run(key("alice"), "w")
    assert fresh.fence > run.fence
    assert bot.inbox(key("alice")) == []


def test_the_inbox_outlives_resets_and_archiving(store: Any) -> None:
    bot = store.for_agent("bot")
    bot.enqueue(key("alice"), [StoredMessage.user("before the reset", external_id="m1")])
    bot.reset(key("alice"))
    assert [q.message.content for q in bot.inbox(key("alice"))] == ["before the reset"]
    run = bot.start_run(key("alice"), "w")
    bot.patch(key("alice"), SessionPatch(status="archived"))  # no live session now
    assert bot.finish_run(run) == 1  # the lease is given back all the same
    again = bot.start_run(key("alice"), "w")  # a fresh live session
    assert texts(bot.take_inbox(again)) == ["before the reset"]
    assert bot.enqueue(key("alice"), [StoredMessage.user("x", external_id="m1")]) == []


def test_waiting_messages_are_exported_erased_and_imported(open_store: Any) -> None:
    store = open_store()
    bot = store.for_agent("bot")
    dm = key("P-1", channel="telegram")
    bot.enqueue(dm, [StoredMessage.user("my address is 1 Main St", external_id="t1")])
    everything = [json.loads(line) for line in lines_of(store, store.export_jsonl())]
    queued = [r for r in everything if r["kind"] == "queued"]
    assert [(r["content"], r["external_id"]) for r in queued] == [
        ("my address is 1 Main St", "t1")]
    theirs = "".join(lines_of(store, store.export_peer("telegram", "P-1", actor="dpo")))
    assert "1 Main St" in theirs
    bot.delete(dm)
    assert bot.inbox(dm) == []
    result = store.import_jsonl([json.dumps(r) for r in everything])
    assert result.queued == 1
    assert [q.message.content for q in bot.inbox(dm)] == ["my address is 1 Main St"]
    erased = store.forget_peer("telegram", "P-1", actor="dpo")
    assert erased.messages == 1  # the waiting message counts as theirs
    assert bot.inbox(dm) == []
    assert [(r.action, r.messages) for r in store.audit_log()][:2] == [
        ("forget_peer", 1), ("export_peer", 1)]


BAD_TTLS: list[Any] = [0, -1, 1e-7, float("nan"), "60", None, True, 10**9]


def test_bad_run_input_is_refused_with_typed_errors(store: Any) -> None:
    bot = store.for_agent("bot")
    for ttl in BAD_TTLS:
        with pytest.raises(InvalidInputError):
            bot.start_run(key("alice"), "w", ttl=ttl)
    for wait in (-1, "1", float("inf")):
        with pytest.raises(InvalidInputError):
            bot.start_run(key("alice"), "w", wait=wait)
    for owner in ("", "   ", None, 5, "a\nb", "x" * 300):
        with pytest.raises(InvalidInputError):
            bot.start_run(key("alice"), owner)
    assert bot.current_run(key("alice")) is None  # nothing was started
    run = bot.start_run(key("alice"), "w")
    for ttl in (0, -5, "x"):
        with pytest.raises(InvalidInputError):
            bot.renew_run(run, ttl=ttl)
    with pytest.raises(InvalidInputError):
        bot.renew_run("not a run")
    with pytest.raises(InvalidInputError):  # a run of another key of the same agent
        bot.append_messages(key("bob"), [StoredMessage.user("x")], run=run)
    with pytest.raises(InvalidInputError):
        bot.take_inbox(run, limit=0)
    other = store.for_agent("other")
    with pytest.raises(AccessDeniedError):  # another agent's run
        other.finish_run(run)
    with pytest.raises(AccessDeniedError):
        other.start_run(key("alice"), "w")
    forged = run.model_copy(update={"fence": run.fence + 1000})
    with pytest.raises(RunLostError):
        bot.append_messages(key("alice"), [StoredMessage.user("forged")], run=forged)
    assert bot.get_history(key("alice")) == []
    assert bot.current_run(key("alice")) == run
