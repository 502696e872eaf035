"""The change feed on every backend x flavour: what each operation records, paging, cursors,
agent isolation, retention, failed writes, group commit, and ``watch``.

An entry is checked field by field (kind, agent, session, key, data); every entry read is also
checked to carry no message content. ``watch`` is consumed on its own thread (blocking stores)
or on the store's event loop (asyncio stores, whose ``watch`` is an async iterator), into a
queue the test reads with a timeout, so a watch that hangs fails instead of blocking the suite.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import (
    Change,
    ChangeKind,
    ConflictError,
    CursorExpiredError,
    InvalidInputError,
    LifecyclePolicy,
    Policies,
    RetentionPolicy,
    RunLostError,
    SessionBusyError,
    SessionNotFoundError,
    SessionPatch,
    SessionStatus,
    SessionStore,
    SlidingWindow,
    StoredMessage,
    Summarize,
)
from aisopod_session._time import utc_now
from tests._threads import key_for, run_threads
from tests.conftest import PG_URL
from tests.test_group_commit import _append_then, hold_first_batch

from ._support import key
from .test_lifecycle import lines_of

K = ChangeKind
US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ZERO = "0" * 16
SECRET = "s3cret-content-never-in-the-feed"
WAIT = 10.0  # seconds: a guard against a hang, never a speed assertion


def user(content: Any = SECRET, **fields: Any) -> StoredMessage:
    return StoredMessage.user(content, **fields)


def position(cursor: str) -> int:
    return int(cursor, 16)


def checked(changes: list[Change]) -> list[Change]:
    """The entries, after checking what every entry must be: a 16-digit lowercase hex cursor,
    strictly increasing, and no message content."""
    cursors = [c.cursor for c in changes]
    for change in changes:
        assert len(change.cursor) == 16 and change.cursor == change.cursor.lower(), change
        assert SECRET not in change.model_dump_json(), change
    assert [position(c) for c in cursors] == sorted({position(c) for c in cursors})
    return changes


def after(handle: Any, since: str | None, **options: Any) -> list[Change]:
    """Every entry after ``since`` (one page that is not full)."""
    page = handle.changes(since, limit=1000, **options)
    assert len(page) < 1000
    return checked(list(page))


def rows(changes: list[Change]) -> list[tuple[Any, ...]]:
    return [(c.kind, c.agent_id, c.session_id, c.data) for c in changes]


def walk(handle: Any, limit: int, since: str | None = None, **options: Any) -> list[Change]:
    """Every entry, page by page, from ``since``; each page's next_cursor is its last entry's
    (a full page) or the feed's newest (a short one)."""
    found: list[Change] = []
    cursor = since
    for _ in range(10_000):
        page = handle.changes(cursor, limit=limit, **options)
        assert len(page) <= limit
        if len(page) == limit:
            assert page.next_cursor == page[-1].cursor
        found.extend(page)
        if not page:
            return checked(found)
        cursor = page.next_cursor
    raise AssertionError("the walk never ended")


# --- what each operation records ---------------------------------------------------------------


def test_session_writes_record_their_kinds(store: Any) -> None:
    bot = store.for_agent("bot")
    alice = key("alice")
    start = store.latest_cursor()
    assert start == ZERO  # a fresh store

    session = bot.get_or_create(alice)
    bot.get_or_create(alice)  # exists: records nothing
    stored = bot.append_messages(alice, [user(external_id="e1"), StoredMessage.assistant("b"),
                                         user()])
    bot.append_messages(alice, [user(external_id="e1")])  # a redelivery: nothing stored
    bot.patch(alice, SessionPatch(status=SessionStatus.IDLE, add_tokens=5))
    bot.patch(alice, SessionPatch(metadata={"topic": "x"}))
    popped = bot.pop_message(alice)
    assert popped is not None
    bot.compact(alice, SlidingWindow(max_messages=1))
    bot.get_history(alice)  # reads record nothing

    got = after(store, start)
    sid = session.id
    assert rows(got) == [
        (K.SESSION_CREATED, "bot", sid, {}),
        (K.MESSAGES_APPENDED, "bot", sid, {"count": 3, "message_ids": [m.id for m in stored],
                                           "first_seq": 1, "last_seq": 3}),
        (K.SESSION_UPDATED, "bot", sid, {"fields": ["add_tokens", "status"], "status": "idle"}),
        (K.SESSION_UPDATED, "bot", sid, {"fields": ["metadata"], "status": "idle"}),
        (K.MESSAGES_REMOVED, "bot", sid, {"count": 1, "message_ids": [popped.id],
                                          "reason": "pop"}),
        (K.SESSION_COMPACTED, "bot", sid, {"compacted": 1, "inserted": 0}),
    ]
    assert all(c.key == alice for c in got)
    assert [c.at for c in got] == sorted(c.at for c in got)
    assert store.latest_cursor() == got[-1].cursor
    assert after(bot, start) == got  # the agent's own view is the same

    mark = store.latest_cursor()
    bot.pop_message(alice)  # the last live message
    assert bot.pop_message(alice) is None  # an empty history: nothing removed, nothing recorded
    assert [c.kind for c in after(store, mark)] == [K.MESSAGES_REMOVED]
    mark = store.latest_cursor()
    bot.compact(alice, Summarize(summary=SECRET))  # nothing to compact (content not recorded)
    for change in after(store, mark):
        assert change.kind is K.SESSION_COMPACTED


def test_reset_and_delete_record_every_generation(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    first = bot.get_or_create(alice)
    bot.append_messages(alice, [user()])
    start = store.latest_cursor()

    fresh = bot.reset(alice)
    assert rows(after(store, start)) == [
        (K.SESSION_RESET, "bot", first.id, {}),
        (K.SESSION_CREATED, "bot", fresh.id, {}),
    ]
    assert [c.key for c in after(store, start)] == [alice, alice]  # both still exist
    mark = store.latest_cursor()
    started = bot.reset(bob)  # no session to archive: only the new one
    assert rows(after(store, mark)) == [(K.SESSION_CREATED, "bot", started.id, {})]
    assert bot.delete(bob) is True

    mark = store.latest_cursor()
    assert bot.delete(alice) is True
    deleted = after(store, mark)
    assert sorted(rows(deleted), key=lambda r: r[2]) == [
        (K.SESSION_DELETED, "bot", first.id, {"reason": "delete"}),
        (K.SESSION_DELETED, "bot", fresh.id, {"reason": "delete"}),
    ]
    assert bot.delete(alice) is False
    assert after(store, store.latest_cursor()) == []
    # The key is read from the session: every entry of a deleted session loses it, and an id
    # is never handed out again (a new session never lends its key to an old entry).
    later = bot.get_or_create(bob)
    assert later.id > started.id > fresh.id
    everything = after(store, None)
    assert {c.key for c in everything if c.session_id in (first.id, fresh.id)} == {None}
    assert [c.key for c in everything if c.session_id == later.id] == [bob]


def test_runs_and_the_inbox_record_their_kinds(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    start = store.latest_cursor()

    run = bot.start_run(alice, "replica-1", ttl=30)  # creates the session
    sid = bot.get(alice).id
    assert bot.request_stop(alice) is True
    assert bot.request_stop(bob) is False  # no run: nothing recorded
    queued = bot.enqueue(alice, [user(external_id="q1"), user()])
    bot.enqueue(alice, [user(external_id="q1")])  # already waiting: nothing recorded
    taken = bot.take_inbox(run)
    assert bot.take_inbox(run) == []
    assert bot.finish_run(run) == 0
    assert bot.finish_run(run) == 0  # finished already: nothing recorded

    assert rows(after(store, start)) == [
        (K.SESSION_CREATED, "bot", sid, {}),
        (K.RUN_STARTED, "bot", sid, {"fence": run.fence, "owner": "replica-1",
                                     "took_over": False}),
        (K.RUN_STOP_REQUESTED, "bot", sid, {"fence": run.fence}),
        (K.INBOX_ENQUEUED, "bot", sid, {"count": 2, "queued_ids": [q.id for q in queued]}),
        (K.MESSAGES_APPENDED, "bot", sid, {"count": 2, "message_ids": [m.id for m in taken],
                                           "first_seq": 1, "last_seq": 2}),
        (K.RUN_FINISHED, "bot", sid, {"fence": run.fence, "owner": "replica-1"}),
    ]

    mark = store.latest_cursor()
    lapsed = bot.start_run(alice, "replica-2", ttl=0.2)
    time.sleep(0.3)
    over = bot.start_run(alice, "replica-3")
    assert rows(after(store, mark)) == [
        (K.RUN_STARTED, "bot", sid, {"fence": lapsed.fence, "owner": "replica-2",
                                     "took_over": False}),
        (K.RUN_STARTED, "bot", sid, {"fence": over.fence, "owner": "replica-3",
                                     "took_over": True}),
    ]


def test_commit_records_appended_and_updated(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob, carol = key("alice"), key("bob"), key("carol")
    sid = bot.get_or_create(alice).id
    start = store.latest_cursor()

    result = bot.commit(alice, [user(external_id="x1")], {"state": {"step": SECRET}},
                        shared={bob: {"shared": {"n": 1}}})
    bob_id = bot.get(bob).id
    assert rows(after(store, start)) == [
        (K.SESSION_CREATED, "bot", bob_id, {}),  # a shared session is created when missing
        (K.MESSAGES_APPENDED, "bot", sid, {"count": 1,
                                           "message_ids": [result.messages[0].id],
                                           "first_seq": 1, "last_seq": 1}),
        (K.SESSION_UPDATED, "bot", sid, {"fields": ["metadata"]}),
        (K.SESSION_UPDATED, "bot", bob_id, {"fields": ["metadata"]}),
    ]

    mark = store.latest_cursor()
    again = bot.commit(alice, [user(external_id="x1")], {"state": {"step": 2}})
    assert again.applied is False
    assert after(store, mark) == []  # a redelivery changes nothing

    created = bot.commit(carol, [user()], create=True)
    carol_id = created.session.id
    assert rows(after(store, mark)) == [
        (K.SESSION_CREATED, "bot", carol_id, {}),
        (K.MESSAGES_APPENDED, "bot", carol_id, {"count": 1,
                                                "message_ids": [created.messages[0].id],
                                                "first_seq": 1, "last_seq": 1}),
        (K.SESSION_UPDATED, "bot", carol_id, {"fields": ["metadata"]}),
    ]


def test_forget_peer_records_each_erased_session_and_leaves_no_personal_data(
        store: Any) -> None:
    person = "erin-7f3a"
    bot, other = store.for_agent("bot"), store.for_agent("other")
    dm, elsewhere = key(person), key(person, agent="other", account="acct2")
    room = key("team-room", kind="group")
    first = bot.get_or_create(dm)
    bot.append_messages(dm, [user()])
    second = bot.reset(dm)
    bot.enqueue(dm, [user()])
    third = other.get_or_create(elsewhere)
    kept = bot.get_or_create(room)
    bot.append_messages(room, [user()])
    before = after(store, None)
    assert any(c.key == dm for c in before)
    mark = store.latest_cursor()

    result = store.forget_peer("discord", person)
    assert result.sessions == 3
    erased = after(store, mark)
    assert sorted(rows(erased), key=lambda r: r[2]) == [
        (K.PERSON_ERASED, "bot", first.id, {}),
        (K.PERSON_ERASED, "bot", second.id, {}),
        (K.PERSON_ERASED, "other", third.id, {}),
    ]
    everything = after(store, None)
    gone = {first.id, second.id, third.id}
    assert {c.key for c in everything if c.session_id in gone} == {None}
    assert all(person not in c.model_dump_json() for c in everything)
    assert {c.key for c in everything if c.session_id == kept.id} == {room}  # not the person's


def test_sweep_records_its_status_changes(open_store: Any) -> None:
    store = open_store(policies=Policies(
        lifecycle=LifecyclePolicy(idle_after=HOUR, archive_after=3 * HOUR)))
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    session = bot.get_or_create(alice)
    u = session.updated_at
    start = store.latest_cursor()

    assert store.sweep(now=u + HOUR, dry_run=True).idled == 1
    assert after(store, start) == []  # a dry run records nothing
    assert store.sweep(now=u + HOUR).idled == 1
    bob_session = bot.get_or_create(bob)
    swept = store.sweep(now=u + 3 * HOUR)  # idles bob, archives alice
    assert (swept.idled, swept.archived) == (1, 1)
    assert store.sweep(now=u + 3 * HOUR).idled == 0  # nothing to do: nothing recorded
    assert rows(after(store, start)) == [
        (K.SESSION_UPDATED, "bot", session.id, {"fields": ["status"], "status": "idle",
                                                "reason": "sweep"}),
        (K.SESSION_CREATED, "bot", bob_session.id, {}),
        (K.SESSION_UPDATED, "bot", bob_session.id, {"fields": ["status"], "status": "idle",
                                                    "reason": "sweep"}),
        (K.SESSION_UPDATED, "bot", session.id, {"fields": ["status"], "status": "archived",
                                                "reason": "sweep"}),
    ]


def test_purge_records_what_retention_deletes(open_store: Any) -> None:
    store = open_store(policies=Policies(retention=RetentionPolicy(
        compacted_messages=HOUR, archived_sessions=HOUR, changes=None)))
    bot, other = store.for_agent("bot"), store.for_agent("other")
    alice, bob = key("alice"), key("bob", agent="other")
    live = bot.get_or_create(alice)
    bot.append_messages(alice, [user(), user(), user()])
    bot.compact(alice, SlidingWindow(max_messages=1))  # two compacted originals
    old = other.get_or_create(bob)
    other.append_messages(bob, [user()])
    other.reset(bob)  # archives the first generation
    start = store.latest_cursor()
    later = utc_now() + 2 * HOUR

    dry = store.purge(now=later, dry_run=True)
    assert (dry.sessions, dry.messages, dry.changes) == (1, 3, 0)
    assert after(store, start) == []
    result = store.purge(now=later)
    assert (result.sessions, result.messages, result.changes) == (1, 3, 0)
    assert rows(after(store, start)) == [
        (K.SESSION_DELETED, "other", old.id, {"reason": "retention"}),
        (K.MESSAGES_REMOVED, "bot", live.id, {"count": 2, "reason": "retention"}),
    ]
    mark = store.latest_cursor()
    assert store.purge(now=later).sessions == 0  # nothing left: nothing recorded
    assert after(store, mark) == []
    assert store.latest_cursor() == mark


def test_clear_sessions_records_each_deleted_session(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    a = bot.get_or_create(key("alice"))
    b = bot.get_or_create(key("bob"))
    c = other.get_or_create(key("carol", agent="other"))
    start = store.latest_cursor()

    assert store.clear_sessions("bot") == 2
    assert sorted(rows(after(store, start)), key=lambda r: r[2]) == [
        (K.SESSION_DELETED, "bot", a.id, {"reason": "clear"}),
        (K.SESSION_DELETED, "bot", b.id, {"reason": "clear"}),
    ]
    mark = store.latest_cursor()
    assert store.clear_sessions() == 1
    assert rows(after(store, mark)) == [(K.SESSION_DELETED, "other", c.id, {"reason": "clear"})]
    assert store.clear_sessions() == 0
    assert store.latest_cursor() == after(store, mark)[-1].cursor


def test_import_records_imported_appended_and_done(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    bot.get_or_create(alice)
    bot.append_messages(alice, [user(), user(), user()])
    bot.enqueue(bob, [user(external_id="waiting")])
    lines = lines_of(store, store.export_jsonl())
    store.clear_sessions()
    start = store.latest_cursor()

    result = store.import_jsonl(lines)
    assert (result.sessions, result.messages, result.queued) == (2, 3, 1)
    got = after(store, start)
    new_alice, new_bob = bot.get(alice).id, bot.get(bob).id
    by_session = {c.session_id: c for c in got if c.kind is K.SESSION_IMPORTED}
    assert set(by_session) == {new_alice, new_bob}
    assert all(c.data == {"status": "active"} for c in by_session.values())
    appended = [c for c in got if c.kind is K.MESSAGES_APPENDED]
    assert rows(appended) == [(K.MESSAGES_APPENDED, "bot", new_alice, {
        "count": 3, "first_seq": 1, "last_seq": 3, "reason": "import"})]
    queued = [c for c in got if c.kind is K.INBOX_ENQUEUED]
    assert len(queued) == 1 and queued[0].session_id == new_bob
    assert queued[0].data["count"] == 1 and queued[0].data["reason"] == "import"
    assert got[-1].kind is K.IMPORT_DONE
    assert (got[-1].agent_id, got[-1].session_id, got[-1].key) == (None, None, None)
    assert got[-1].data == result.model_dump()  # the import's result: counts only
    assert {k: got[-1].data[k] for k in ("sessions", "messages", "queued")} == {
        "sessions": 2, "messages": 3, "queued": 1}
    assert len(got) == 5
    # import.done belongs to no agent: only the admin feed has it.
    assert [c.cursor for c in after(bot, start)] == [c.cursor for c in got[:-1]]
    assert after(store, start, agent_id="bot") == after(bot, start)


# --- reading: pages, cursors, isolation ---------------------------------------------------


def some_history(store: Any) -> None:
    """A little of everything, by two agents, message content all SECRET."""
    bot, other = store.for_agent("bot"), store.for_agent("other")
    alice, carol = key("alice"), key("carol", agent="other")
    bot.get_or_create(alice)
    other.get_or_create(carol)
    bot.append_messages(alice, [user(tool_calls=[{"id": "c1", "name": "x",
                                                  "arguments": {"q": SECRET}}])])
    other.append_messages(carol, [user(), user()])
    bot.patch(alice, SessionPatch(add_tokens=3))
    run = bot.start_run(alice, "w")
    bot.enqueue(alice, [user()])
    bot.take_inbox(run)
    bot.finish_run(run)
    other.reset(carol)
    bot.compact(alice, Summarize(summary=SECRET, keep_recent=1))
    bot.pop_message(alice)


def test_paging_covers_everything_exactly_once(store: Any) -> None:
    some_history(store)
    everything = after(store, None)
    bots = [c for c in everything if c.agent_id == "bot"]
    assert len(everything) > len(bots) > 5
    bot = store.for_agent("bot")
    for limit in range(1, len(everything) + 2):
        assert walk(store, limit) == everything, limit
        assert walk(bot, limit) == bots, limit
    assert walk(store, 1000, agent_id="other") == [c for c in everything
                                                   if c.agent_id == "other"]
    # Any cursor of the feed resumes right after it.
    for index, change in enumerate(everything):
        assert walk(store, 3, change.cursor) == everything[index + 1:]


def test_empty_pages_resume_where_the_next_change_appears(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    assert store.latest_cursor() == bot.latest_cursor() == ZERO
    for handle in (store, bot):
        page = handle.changes()
        assert list(page) == [] and page.next_cursor == ZERO
        assert handle.changes(ZERO).next_cursor == ZERO

    bot.get_or_create(key("alice"))
    latest = store.latest_cursor()
    assert bot.latest_cursor() == latest == after(store, None)[-1].cursor
    page = store.changes(latest)
    assert list(page) == [] and page.next_cursor == latest  # empty until the next write
    assert store.changes(latest).next_cursor == latest  # and asking again changes nothing

    other.get_or_create(key("carol", agent="other"))  # any agent's write moves latest_cursor
    assert bot.latest_cursor() == store.latest_cursor() != latest
    new = store.changes(page.next_cursor)
    assert rows(new) == [(K.SESSION_CREATED, "other", new[0].session_id, {})]
    assert list(store.changes(new.next_cursor)) == []


def test_agent_scoped_changes_never_show_another_agents(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    alice, carol = key("alice"), key("carol", agent="other")
    bot.get_or_create(alice)
    other.get_or_create(carol)
    for _ in range(3):
        other.append_messages(carol, [user()])
    everything = after(store, None)
    mine = after(bot, None)
    assert mine == [c for c in everything if c.agent_id == "bot"] and len(mine) == 1
    assert after(other, None) == [c for c in everything if c.agent_id == "other"]
    assert after(store, None, agent_id="bot") == mine

    # A short page goes on from the newest entry, past the other agent's: the next poll does
    # not scan them again.
    page = bot.changes(ZERO)
    assert page.next_cursor == store.latest_cursor() == everything[-1].cursor
    assert store.changes(ZERO, agent_id="bot").next_cursor == everything[-1].cursor
    other.append_messages(carol, [user()])
    page = bot.changes(page.next_cursor)
    assert list(page) == [] and page.next_cursor == store.latest_cursor()
    # A full page goes on from its last entry.
    page = bot.changes(ZERO, limit=1)
    assert list(page) == mine and page.next_cursor == mine[0].cursor


BAD_CURSORS = ["garbage", "", "0" * 15, "0" * 17, "000000000000000A", "ABCDEF0123456789",
               " 0000000000000000", "0000000000000000\n", "-000000000000001", "\uff10" * 16,
               "0x00000000000000", 5, 5.0, b"0000000000000000", ["0000000000000000"]]


def test_bad_cursors_and_limits_are_refused(store: Any) -> None:
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    latest = store.latest_cursor()
    for handle in (store, bot):
        for bad in BAD_CURSORS:
            with pytest.raises(InvalidInputError):
                handle.changes(bad)
        for ahead in (f"{position(latest) + 1:016x}", "f" * 16):
            with pytest.raises(InvalidInputError):  # a cursor of another database
                handle.changes(ahead)
        for bad_limit in (0, -1, 1001, True, "5", 2.0, None):
            with pytest.raises(InvalidInputError):
                handle.changes(None, limit=bad_limit)
        assert list(handle.changes(latest, limit=1000)) == []  # the limits themselves pass
        assert len(handle.changes(ZERO, limit=1)) == 1
    for bad_agent in ("", 5, "x" * 10_000):
        with pytest.raises(InvalidInputError):
            store.changes(None, agent_id=bad_agent)


# --- retention ------------------------------------------------------------------------------


def three_entries(store: Any) -> list[Change]:
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [user()])
    bot.append_messages(alice, [user()])
    entries = after(store, None)
    assert len(entries) == 3
    return entries


def test_pruned_cursors_expire_and_the_boundary_still_works(open_store: Any) -> None:
    store = open_store(policies=Policies(retention=RetentionPolicy(changes=DAY)))
    bot = store.for_agent("bot")
    e1, e2, e3 = three_entries(store)
    assert e1.at < e2.at < e3.at

    between = e1.at + (e2.at - e1.at) // 2 + DAY  # e1's day has passed, e2's has not
    dry = store.purge(now=between, dry_run=True)
    assert (dry.changes, dry.dry_run) == (1, True)
    assert after(store, ZERO) == [e1, e2, e3]  # a dry run prunes nothing
    assert store.purge(now=between).changes == 1

    for handle in (store, bot):
        for old in (ZERO, f"{position(e1.cursor) - 1:016x}"):
            with pytest.raises(CursorExpiredError):
                handle.changes(old)
        assert after(handle, e1.cursor) == [e2, e3]  # the pruned boundary still works
        assert after(handle, None) == [e2, e3]  # None: the oldest kept
    with pytest.raises(CursorExpiredError):
        store.changes(ZERO, agent_id="bot")

    assert store.purge(now=e3.at + 2 * DAY).changes == 2  # everything
    assert store.purge(now=e3.at + 2 * DAY).changes == 0
    for old in (ZERO, e1.cursor, e2.cursor):
        with pytest.raises(CursorExpiredError):
            store.changes(old)
    for handle in (store, bot):
        page = handle.changes(None)
        assert list(page) == [] and page.next_cursor == e3.cursor
        assert list(handle.changes(e3.cursor)) == []
    assert store.latest_cursor() == e3.cursor
    bot.append_messages(key("alice"), [user()])
    e4 = after(store, e3.cursor)
    assert [c.kind for c in e4] == [K.MESSAGES_APPENDED]
    assert after(store, None) == e4 == after(bot, None)


def test_an_entry_is_pruned_exactly_when_its_retention_has_passed(open_store: Any) -> None:
    """At ``at + changes``, not a microsecond before (like every other retention period)."""
    store = open_store(policies=Policies(retention=RetentionPolicy(changes=DAY)))
    e1, _, _ = three_entries(store)
    assert store.purge(now=e1.at + DAY - US, dry_run=True).changes == 0
    assert store.purge(now=e1.at + DAY - US).changes == 0
    assert store.purge(now=e1.at + DAY, dry_run=True).changes == 1
    assert store.purge(now=e1.at + DAY).changes == 1
    assert after(store, e1.cursor) == after(store, None)


# --- failed writes --------------------------------------------------------------------------


def test_a_failed_write_records_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    alice, nobody = key("alice"), key("nobody")
    session = bot.get_or_create(alice)
    lost = bot.start_run(alice, "lost", ttl=0.2)
    time.sleep(0.3)
    current = bot.start_run(alice, "current")  # took over: ``lost`` may no longer write
    bot.enqueue(alice, [user()])
    bot.patch(alice, SessionPatch(token_usage=2**62 - 1))  # the most a session may count
    mark = store.latest_cursor()

    failures: list[tuple[type[Exception], Callable[[], Any]]] = [
        (SessionNotFoundError, lambda: bot.append_messages(nobody, [user()])),
        (SessionNotFoundError, lambda: bot.patch(nobody, SessionPatch(add_tokens=1))),
        (SessionNotFoundError, lambda: bot.compact(nobody, SlidingWindow(max_messages=1))),
        (RunLostError, lambda: bot.append_messages(alice, [user()], run=lost)),
        (RunLostError, lambda: bot.patch(alice, SessionPatch(add_tokens=1), run=lost)),
        (RunLostError, lambda: bot.compact(alice, SlidingWindow(max_messages=1), run=lost)),
        (RunLostError, lambda: bot.take_inbox(lost)),
        (RunLostError, lambda: bot.finish_run(lost)),
        (SessionBusyError, lambda: bot.start_run(alice, "third")),
        (ConflictError, lambda: bot.commit(alice, [user()], create=True)),
        (ConflictError, lambda: bot.commit(alice, [user()],
                                           expect_updated_at=session.updated_at - US)),
        (InvalidInputError, lambda: bot.patch(alice, SessionPatch(add_tokens=1))),  # in its tx
        (InvalidInputError, lambda: bot.append_messages(alice, [{"role": "nope"}])),
    ]
    for error, call in failures:
        with pytest.raises(error):
            call()
    assert store.latest_cursor() == mark
    assert after(store, mark) == []
    assert bot.finish_run(current) == 1  # and the store writes on


def test_a_job_failing_inside_a_batch_leaves_no_entries(
        backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs that record entries and then fail are rolled back alone inside group-commit
    batches, their entries with them; the others' entries stay, with no gap."""
    url, options = backend_url
    threads = 12
    outcomes: dict[int, str] = {}
    with SessionStore.open(url, **options) as store:
        engine = store._engine
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        start = store.latest_cursor()
        batches = hold_first_batch(engine, monkeypatch, callers=threads)

        def body(thread: int) -> None:
            contents = [user(f"t{thread}-{i}") for i in range(3)]
            try:
                if thread % 4 == 1:  # appends (recording its entry), then raises
                    engine.write(_append_then(key_for(0), f"t{thread}", "exception"))
                elif thread % 4 == 3:  # fails before it records anything
                    agent.append_messages(key_for(99), contents)
                else:
                    agent.append_messages(key_for(0), contents)
                outcomes[thread] = "stored"
            except RuntimeError:
                outcomes[thread] = "raised"
            except SessionNotFoundError:
                outcomes[thread] = "not found"

        assert run_threads(threads, body) == []
        assert outcomes == {t: {1: "raised", 3: "not found"}.get(t % 4, "stored")
                            for t in range(threads)}
        assert max(batches.sizes) > 1, batches.sizes
        got = after(store, start)
        assert [position(c.cursor) for c in got] == list(
            range(position(start) + 1, position(start) + 1 + len(got)))  # no gap
        assert {c.kind for c in got} == {K.MESSAGES_APPENDED}
        assert len(got) == sum(1 for o in outcomes.values() if o == "stored")
        history = agent.get_history(key_for(0))
        assert [i for c in got for i in c.data["message_ids"]] == [m.id for m in history]
        assert [(c.data["first_seq"], c.data["last_seq"]) for c in got] == [
            (1 + 3 * n, 3 + 3 * n) for n in range(len(got))]


def test_closing_a_postgres_store_that_wrote_is_prompt(pg_schema: str) -> None:
    store = SessionStore.open(PG_URL, schema=pg_schema, pool_size=2)
    try:
        store.for_agent("bot").get_or_create(key("alice"))  # a change: announced to others
    finally:
        began = time.monotonic()
        store.close()
        took = time.monotonic() - began
    assert took < 0.5, f"close took {took:.3f} s"


# --- watch ----------------------------------------------------------------------------------

END = object()


class Watcher:
    """A watch consumed on a thread (a blocking store's iterator) or on the store's event loop
    (an asyncio store's async iterator), into a queue read with timeouts."""

    def __init__(self, handle: Any, produced: Any) -> None:
        self.items: queue.Queue[Any] = queue.Queue()
        self._future: Any = None
        if hasattr(produced, "__aiter__"):
            self._future = asyncio.run_coroutine_threadsafe(self._pump_async(produced),
                                                            handle._portal.loop)
        else:
            threading.Thread(target=self._pump, args=(produced,), daemon=True).start()

    def _pump(self, produced: Any) -> None:
        try:
            for change in produced:
                self.items.put(change)
        except Exception as exc:
            self.items.put(exc)
        finally:
            self.items.put(END)

    async def _pump_async(self, produced: Any) -> None:
        try:
            async for change in produced:
                self.items.put(change)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.items.put(exc)
        finally:
            self.items.put(END)

    def next(self, timeout: float = WAIT) -> Any:
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the watch yielded nothing in {timeout} s")
        if isinstance(item, BaseException):
            raise item
        return item

    def take(self, count: int, skip: Callable[[Change], bool] = lambda c: False
             ) -> list[Change]:
        got: list[Change] = []
        while len(got) < count:
            item = self.next()
            assert item is not END, f"the watch ended after {got}"
            if not skip(item):
                got.append(item)
        return checked(got)

    def quiet(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)
        assert self.items.empty(), self.items.get()

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()


def started(watcher: Watcher, poke: Callable[[], Any], sentinel: int) -> None:
    """Write (``poke``: an entry of session ``sentinel``) until the watch yields one: it runs
    from then on. The first thing it yields must be a poke: nothing committed before it."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        poke()
        try:
            item = watcher.items.get(timeout=0.05)
        except queue.Empty:
            continue
        assert isinstance(item, Change) and item.session_id == sentinel, item
        return
    pytest.fail("the watch never started")


def in_thread(call: Callable[[], Any]) -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors


def test_watch_from_now_yields_what_commits_later_in_order(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    alice, carol, poke_key = key("alice"), key("carol", agent="other"), key("sentinel")
    sentinel = bot.get_or_create(poke_key).id
    bot.get_or_create(alice)  # committed before the watches start: never yielded

    def poke() -> None:
        bot.append_messages(poke_key, [user()])

    everyone, mine = Watcher(store, store.watch()), Watcher(store, bot.watch())
    try:
        started(everyone, poke, sentinel)
        started(mine, poke, sentinel)
        mark = store.latest_cursor()

        def writes() -> None:
            bot.append_messages(alice, [user(), user()])
            other.get_or_create(carol)
            bot.patch(alice, SessionPatch(add_tokens=1))
            other.append_messages(carol, [user()])
            bot.reset(alice)

        in_thread(writes)
        expected = after(store, mark)
        assert len(expected) == 6
        not_poke: Callable[[Change], bool] = lambda c: c.session_id == sentinel  # noqa: E731
        assert everyone.take(6, not_poke) == expected
        bots = [c for c in expected if c.agent_id == "bot"]
        assert mine.take(len(bots), not_poke) == bots
        everyone.quiet()
        mine.quiet(0)
    finally:
        everyone.stop()
        mine.stop()


def test_watch_from_a_cursor_replays_then_follows(store: Any) -> None:
    bot, other = store.for_agent("bot"), store.for_agent("other")
    alice, carol = key("alice"), key("carol", agent="other")
    bot.get_or_create(alice)
    mark = store.latest_cursor()
    bot.append_messages(alice, [user()])
    other.get_or_create(carol)
    bot.patch(alice, SessionPatch(add_tokens=1))
    committed = after(store, mark)

    everyone, mine = Watcher(store, store.watch(mark)), Watcher(store, bot.watch(mark))
    theirs = Watcher(store, store.watch(mark, agent_id="other"))
    try:
        assert everyone.take(3) == committed
        assert mine.take(2) == [c for c in committed if c.agent_id == "bot"]
        assert theirs.take(1) == [c for c in committed if c.agent_id == "other"]
        middle = store.latest_cursor()
        in_thread(lambda: (other.append_messages(carol, [user()]),
                           bot.append_messages(alice, [user()]),
                           other.reset(carol)))
        later = after(store, middle)
        assert len(later) == 4
        assert everyone.take(4) == later
        assert mine.take(1) == [c for c in later if c.agent_id == "bot"]
        assert theirs.take(3) == [c for c in later if c.agent_id == "other"]
        everyone.quiet()
        mine.quiet(0)
        theirs.quiet(0)
    finally:
        for watcher in (everyone, mine, theirs):
            watcher.stop()


def test_watch_refuses_bad_and_expired_cursors(store: Any) -> None:
    bot = store.for_agent("bot")
    e1, _, e3 = three_entries(store)
    for produced in (store.watch("garbage"), bot.watch("ABCDEF0123456789"),
                     store.watch(f"{position(e3.cursor) + 1:016x}")):
        watcher = Watcher(store, produced)
        with pytest.raises(InvalidInputError):
            watcher.next()
    store.purge(now=e3.at + 8 * DAY)  # the default retention: 7 days
    for produced in (store.watch(e1.cursor), bot.watch(ZERO)):
        watcher = Watcher(store, produced)
        with pytest.raises(CursorExpiredError):
            watcher.next()
    watcher = Watcher(store, store.watch(e3.cursor))  # the boundary: fine
    try:
        bot.append_messages(key("alice"), [user()])
        assert [c.kind for c in watcher.take(1)] == [K.MESSAGES_APPENDED]
    finally:
        watcher.stop()


def test_watch_ends_when_the_store_closes(open_store: Any, request: pytest.FixtureRequest
                                          ) -> None:
    store = open_store()
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    everyone = Watcher(store, store.watch(ZERO))
    mine = Watcher(store, bot.watch(ZERO))
    assert [c.kind for c in everyone.take(1)] == [K.SESSION_CREATED]
    assert [c.kind for c in mine.take(1)] == [K.SESSION_CREATED]
    time.sleep(0.1)  # both wait for the next change now
    began = time.monotonic()
    store.close()
    assert everyone.next(timeout=2.0) is END
    assert mine.next(timeout=2.0) is END
    assert time.monotonic() - began < 2.0
