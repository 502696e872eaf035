"""Lifecycle, reset policies, retention and privacy (issue 9) on every backend x flavour.

Time is injected (``now=``): the store stamps ``updated_at`` with the real clock, so each test
reads a session's ``updated_at`` back and places ``now`` relative to it, a microsecond either
side of every threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from aisopod_session import (
    HistoryQuery,
    InvalidInputError,
    LifecyclePolicy,
    Policies,
    ResetPolicies,
    ResetPolicy,
    RetentionPolicy,
    SessionNotFoundError,
    SessionStatus,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session.lifecycle import daily_boundary

from ._support import EVERYTHING, key, populate, snapshot, texts

US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

LIFECYCLE = Policies(lifecycle=LifecyclePolicy(idle_after=HOUR, archive_after=3 * HOUR))


def status_of(store: Any, session_id: int) -> SessionStatus:
    return store.get_session_by_id(session_id).status


def lines_of(store: Any, produced: Any) -> list[str]:
    """The lines of export_peer / export_jsonl, from either flavour (the asyncio one streams
    an async iterator, collected on the store's event loop)."""
    if hasattr(produced, "__aiter__"):
        async def collect() -> list[str]:
            return [line async for line in produced]

        return list(store._portal.call(collect()))
    return list(produced)


# --- lifecycle: active → idle → archived ----------------------------------------------------


def test_sweep_transitions_happen_exactly_at_the_thresholds(open_store: Any) -> None:
    store = open_store(policies=LIFECYCLE)
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user("hello"), StoredMessage.assistant("hi")])
    session = bot.get(alice)
    u = session.updated_at

    result = store.sweep(now=u + HOUR - US)
    assert (result.idled, result.archived, result.dry_run) == (0, 0, False)
    assert result.at == u + HOUR - US
    assert bot.get(alice) == session  # not a field changed, a microsecond before the threshold

    result = store.sweep(now=u + HOUR)
    assert (result.idled, result.archived) == (1, 0)
    idle = bot.get(alice)
    assert idle.status is SessionStatus.IDLE
    assert idle.updated_at == u  # a sweep never counts as activity
    assert idle.model_copy(update={"status": SessionStatus.ACTIVE}) == session

    assert store.sweep(now=u + 3 * HOUR - US).archived == 0
    assert bot.get(alice).status is SessionStatus.IDLE

    result = store.sweep(now=u + 3 * HOUR)
    assert (result.idled, result.archived) == (0, 1)
    archived = store.get_session_by_id(session.id)
    assert archived.status is SessionStatus.ARCHIVED
    assert archived.updated_at == u
    assert texts(store.get_history_by_id(session.id)) == ["hello", "hi"]

    # the archived session freed its key: the next contact starts a new one
    with pytest.raises(SessionNotFoundError):
        bot.get(alice)
    fresh = bot.get_or_create(alice)
    assert fresh.id != session.id
    assert fresh.status is SessionStatus.ACTIVE
    assert bot.get_history(alice) == []
    assert store.sweep(now=fresh.updated_at + HOUR - US).idled == 0  # its clock starts afresh
    assert status_of(store, fresh.id) is SessionStatus.ACTIVE


def test_compacted_sessions_go_idle_and_a_message_makes_a_session_active(open_store: Any) -> None:
    store = open_store(policies=LIFECYCLE)
    bot = store.for_agent("bot")
    alice = key("alice")
    bot.get_or_create(alice)
    bot.append_messages(alice, [StoredMessage.user(f"m{i}") for i in range(6)])
    bot.compact(alice, SlidingWindow(max_messages=2))
    compacted = bot.get(alice)
    assert compacted.status is SessionStatus.COMPACTED

    assert store.sweep(now=compacted.updated_at + HOUR - US).idled == 0
    assert store.sweep(now=compacted.updated_at + HOUR).idled == 1
    assert bot.get(alice).status is SessionStatus.IDLE

    bot.append_messages(alice, [StoredMessage.user("back again")])
    active = bot.get(alice)
    assert active.id == compacted.id
    assert active.status is SessionStatus.ACTIVE
    assert active.updated_at > compacted.updated_at
    assert texts(bot.get_history(alice)) == ["m4", "m5", "back again"]
    # silence is measured from the new message now
    assert store.sweep(now=active.updated_at + HOUR - US).idled == 0
    assert store.sweep(now=active.updated_at + HOUR).idled == 1


def test_a_message_to_an_idle_session_keeps_it_from_being_archived(open_store: Any) -> None:
    store = open_store(policies=LIFECYCLE)
    bot = store.for_agent("bot")
    alice = key("alice")
    first = bot.get_or_create(alice)
    store.sweep(now=first.updated_at + HOUR)
    assert bot.get(alice).status is SessionStatus.IDLE
    assert bot.get_or_create(alice).id == first.id  # get_or_create finds an idle session
    bot.append_messages(alice, [StoredMessage.user("still here")])
    touched = bot.get(alice)
    assert touched.status is SessionStatus.ACTIVE
    result = store.sweep(now=first.updated_at + 3 * HOUR)
    assert result.archived == 0  # active sessions are never archived directly
    assert bot.get(alice).id == first.id


def test_sweep_dry_run_reports_the_same_counts_and_changes_nothing(open_store: Any) -> None:
    store = open_store(policies=Policies(
        lifecycle=LifecyclePolicy(idle_after=HOUR, archive_after=DAY)))
    bot, other = store.for_agent("bot"), store.for_agent("other")
    early = [key("a"), key("b", kind="group")]
    for k in early:
        bot.get_or_create(k)
    bot.append_messages(early[0], [StoredMessage.user("x")])
    first_idle = max(bot.get(k).updated_at for k in early) + HOUR
    assert store.sweep(now=first_idle).idled == 2
    late = [key("c", agent="other"), key("d", agent="other")]
    for k in late:
        other.get_or_create(k)
    other.append_messages(late[1], [StoredMessage.user(str(i)) for i in range(4)])
    other.compact(late[1], SlidingWindow(max_messages=1))
    newest = max(other.get(k).updated_at for k in late)
    oldest = min(other.get(k).updated_at for k in late)

    for now, expected in [
        (oldest + HOUR - US, (0, 0)),
        (newest + HOUR, (2, 0)),  # c and d go idle
        (first_idle - HOUR + DAY, (2, 2)),  # ... and a, b are archived
        (newest + DAY, (2, 4)),  # c and d are idled and archived in the same pass
    ]:
        before = snapshot(store)
        dry = store.sweep(now=now, dry_run=True)
        assert (dry.idled, dry.archived, dry.dry_run) == (*expected, True)
        assert snapshot(store) == before  # nothing changed, not even updated_at

    ids_before = {s.id: s for s, _ in snapshot(store)}
    real = store.sweep(now=newest + DAY)
    assert (real.idled, real.archived, real.dry_run) == (2, 4, False)
    after = {s.id: s for s, _ in snapshot(store)}
    assert after.keys() == ids_before.keys()
    changed = [i for i in after if after[i] != ids_before[i]]
    assert len(changed) == real.archived
    for session_id in changed:
        assert after[session_id].status is SessionStatus.ARCHIVED
        assert after[session_id].updated_at == ids_before[session_id].updated_at
    assert store.sweep(now=newest + DAY) == store.sweep(now=newest + DAY, dry_run=True).model_copy(
        update={"dry_run": False})  # nothing left to do, and both say so


def test_sweep_with_no_lifecycle_thresholds_changes_nothing(open_store: Any) -> None:
    store = open_store(policies=Policies(lifecycle=LifecyclePolicy(idle_after=None)))
    world = populate(store)
    before = snapshot(store)
    far = datetime(9000, 1, 1, tzinfo=UTC)
    assert (store.sweep(now=far).idled, store.sweep(now=far).archived) == (0, 0)
    assert snapshot(store) == before
    assert world["bot"].get(world["alice"]).status is SessionStatus.COMPACTED


# --- reset policies: agent.resolve ----------------------------------------------------------


def idle_reset(minutes: int) -> ResetPolicy:
    return ResetPolicy(mode="idle", idle_minutes=minutes)


def test_idle_reset_happens_at_exactly_idle_minutes(open_store: Any) -> None:
    store = open_store(policies=Policies(reset=ResetPolicies(default=idle_reset(30))))
    bot = store.for_agent("bot")
    alice = key("alice")
    first = bot.resolve(alice)
    assert first.started and first.previous_id is None
    bot.append_messages(alice, [StoredMessage.user("one"), StoredMessage.assistant("two")])
    u = bot.get(alice).updated_at

    kept = bot.resolve(alice, now=u + timedelta(minutes=30) - US)
    assert (kept.started, kept.session.id) == (False, first.session.id)

    at = u + timedelta(minutes=30)
    reset = bot.resolve(alice, now=at)
    assert reset.started and reset.previous_id == first.session.id
    assert reset.session.id != first.session.id
    assert reset.session.status is SessionStatus.ACTIVE
    assert reset.session.created_at == reset.session.updated_at == at
    assert bot.get(alice).id == reset.session.id
    assert bot.get_history(alice) == []
    old = store.get_session_by_id(first.session.id)
    assert old.status is SessionStatus.ARCHIVED
    assert texts(store.get_history_by_id(old.id)) == ["one", "two"]  # history kept

    again = bot.resolve(alice, now=at)  # the fresh session is not stale at the same instant
    assert (again.started, again.session.id) == (False, reset.session.id)
    assert bot.resolve(alice, now=at + timedelta(minutes=30) - US).started is False
    assert bot.resolve(alice, now=at + timedelta(minutes=30)).started is True


def next_boundary(after: datetime, hour: int, zone: ZoneInfo) -> datetime:
    """The first instant after ``after`` at which a daily reset at ``hour`` is due."""
    for hours in range(1, 27):  # local days are 23 to 25 hours long
        boundary = daily_boundary(after + timedelta(hours=hours), hour, zone)
        if boundary > after:
            return boundary
    raise AssertionError("no daily boundary within 26 hours")  # pragma: no cover


def test_daily_reset_happens_at_the_local_hour(open_store: Any) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    store = open_store(policies=Policies(reset=ResetPolicies(
        default=ResetPolicy(mode="daily", at_hour=4, timezone="Europe/Berlin"))))
    bot = store.for_agent("bot")
    alice = key("alice")
    first = bot.resolve(alice).session
    boundary = next_boundary(first.updated_at, 4, berlin)
    assert boundary.astimezone(berlin).hour == 4

    assert bot.resolve(alice, now=boundary - US).started is False
    reset = bot.resolve(alice, now=boundary)
    assert reset.started and reset.previous_id == first.id
    # once a day: not again until the next local 04:00
    following = next_boundary(boundary, 4, berlin)
    assert following - boundary >= timedelta(hours=23)
    assert bot.resolve(alice, now=following - US).started is False
    assert bot.resolve(alice, now=following).started is True
    archived = [s for s, _ in snapshot(store) if s.status is SessionStatus.ARCHIVED]
    assert [s.id for s in archived] == [first.id, reset.session.id]


def test_resolve_without_a_policy_never_resets(open_store: Any) -> None:
    store = open_store()
    bot = store.for_agent("bot")
    first = bot.resolve(key("alice"))
    later = bot.resolve(key("alice"), now=datetime(9000, 1, 1, tzinfo=UTC))
    assert (later.started, later.session.id) == (False, first.session.id)


def test_reset_policy_lookup_order(open_store: Any) -> None:
    policies = ResetPolicies(
        default=idle_reset(50),
        channels={"Telegram": idle_reset(30), "slack": idle_reset(40), "whatsapp": None},
        agents={"bot": {"telegram": idle_reset(10), "*": idle_reset(20)},
                "quiet": {"*": None}},
    )
    store = open_store(policies=Policies(reset=policies))
    cases = [
        ("bot", "telegram", 10),  # agents[agent][channel]
        ("bot", "slack", 20),  # agents[agent]["*"] beats channels[channel]
        ("bot", "discord", 20),
        ("other", "telegram", 30),  # channels[channel]
        ("other", "slack", 40),
        ("other", "discord", 50),  # default
        ("other", "whatsapp", None),  # an explicit None: never
        ("quiet", "telegram", None),
    ]
    for agent, channel, minutes in cases:
        handle = store.for_agent(agent)
        k = key("alice", agent=agent, channel=channel)
        u = handle.resolve(k).session.updated_at
        limit = timedelta(minutes=minutes or 60 * 24 * 365 * 50)
        label = f"{agent}/{channel}"
        assert handle.resolve(k, now=u + limit - US).started is False, label
        assert handle.resolve(k, now=u + limit).started is (minutes is not None), label


def test_concurrent_resolves_of_a_stale_session_reset_it_once(open_store: Any) -> None:
    store = open_store(policies=Policies(reset=ResetPolicies(default=idle_reset(5))))
    bot = store.for_agent("bot")
    alice = key("alice")
    old = bot.resolve(alice).session
    bot.append_messages(alice, [StoredMessage.user("before")])
    # a day later: the fresh session must be stamped at this ``now``, or the next resolve at
    # the same ``now`` would find it stale too and reset again
    at = bot.get(alice).updated_at + DAY
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: bot.resolve(alice, now=at), range(16)))
    assert sum(r.started for r in results) == 1
    assert {r.session.id for r in results} == {bot.get(alice).id}
    assert [r.previous_id for r in results if r.started] == [old.id]
    generations = [s for s, _ in snapshot(store)]
    assert [(s.id, s.status) for s in generations] == [
        (old.id, SessionStatus.ARCHIVED), (results[0].session.id, SessionStatus.ACTIVE)]
    assert texts(store.get_history_by_id(old.id)) == ["before"]


def test_concurrent_first_contacts_start_one_session(open_store: Any) -> None:
    store = open_store(policies=Policies(reset=ResetPolicies(default=idle_reset(5))))
    bot = store.for_agent("bot")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: bot.resolve(key("new")), range(16)))
    assert len({r.session.id for r in results}) == 1
    assert sum(r.started for r in results) == 1
    assert all(r.previous_id is None for r in results)


# --- retention ------------------------------------------------------------------------------


def test_compacted_messages_are_purged_counting_from_their_compaction(open_store: Any) -> None:
    week = timedelta(days=7)
    store = open_store(policies=Policies(retention=RetentionPolicy(compacted_messages=week)))
    bot = store.for_agent("bot")
    alice, bob = key("alice"), key("bob")
    ancient = datetime(2001, 1, 1, tzinfo=UTC)  # created long ago: irrelevant to retention
    for k in (alice, bob):
        bot.get_or_create(k)
        bot.append_messages(k, [StoredMessage.user(f"{k.peer_id}{i}", created_at=ancient)
                                for i in range(5)])
    compacted_at = bot.compact(alice, SlidingWindow(max_messages=2)).last_compacted_at
    assert compacted_at is not None
    live_before = bot.get_history(alice)
    everything_before = snapshot(store)

    result = store.purge(now=compacted_at + week - US)
    assert (result.messages, result.sessions) == (0, 0)
    dry = store.purge(now=compacted_at + week, dry_run=True)
    assert (dry.messages, dry.sessions, dry.dry_run) == (3, 0, True)
    assert snapshot(store) == everything_before

    result = store.purge(now=compacted_at + week)
    assert (result.messages, result.sessions, result.dry_run) == (3, 0, False)
    assert bot.get_history(alice) == live_before  # live history untouched
    assert bot.get_history(alice, EVERYTHING) == live_before  # the originals are gone
    assert bot.get(alice) == everything_before[0][0]  # the session itself is unchanged
    assert snapshot(store)[1] == everything_before[1]  # bob untouched
    assert store.purge(now=compacted_at + 2 * week).messages == 0


def test_archived_sessions_are_purged_counting_from_archived_at(open_store: Any) -> None:
    month = timedelta(days=30)
    store = open_store(policies=Policies(
        lifecycle=LifecyclePolicy(idle_after=HOUR, archive_after=3 * HOUR),
        retention=RetentionPolicy(archived_sessions=month),
    ))
    bot = store.for_agent("bot")
    old_key, live_key = key("old"), key("live")
    old = bot.get_or_create(old_key)
    bot.append_messages(old_key, [StoredMessage.user(str(i)) for i in range(3)])
    bot.compact(old_key, SlidingWindow(max_messages=1))
    archived_at = bot.get(old_key).updated_at + 3 * HOUR
    assert store.sweep(now=archived_at).archived == 1  # archived_at is the sweep's now
    live = bot.get_or_create(live_key)
    bot.append_messages(live_key, [StoredMessage.user("keep me")])
    before = snapshot(store)

    assert store.purge(now=archived_at + month - US).sessions == 0
    dry = store.purge(now=archived_at + month, dry_run=True)
    assert (dry.sessions, dry.messages) == (1, 3)  # 2 compacted originals + 1 live message
    assert snapshot(store) == before

    result = store.purge(now=archived_at + month)
    assert (result.sessions, result.messages) == (1, 3)
    with pytest.raises(SessionNotFoundError):
        store.get_session_by_id(old.id)
    with pytest.raises(SessionNotFoundError):
        store.get_history_by_id(old.id)
    assert snapshot(store) == [entry for entry in before if entry[0].id == live.id]


def test_purge_dry_run_counts_a_message_once(open_store: Any) -> None:
    """An archived session's compacted originals go with the session; a dry run must not count
    them a second time as compacted messages."""
    store = open_store(policies=Policies(retention=RetentionPolicy(
        compacted_messages=DAY, archived_sessions=DAY)))
    world = populate(store)  # alice: compacted originals; bob: an archived generation
    bot = world["bot"]
    bot.append_messages(world["bob"], [StoredMessage.user(str(i)) for i in range(3)])
    bot.compact(world["bob"], SlidingWindow(max_messages=1))
    bot.reset(world["bob"])  # the compacted generation is archived now
    later = datetime.now(UTC) + 2 * DAY
    before = snapshot(store)
    dry = store.purge(now=later, dry_run=True)
    assert snapshot(store) == before
    real = store.purge(now=later)
    assert (dry.sessions, dry.messages) == (real.sessions, real.messages)
    assert real.sessions == 2
    after = snapshot(store)
    assert all(not m.compacted for _, history in after for m in history)
    assert all(s.status is not SessionStatus.ARCHIVED for s, _ in after)


def test_a_reset_by_resolve_is_archived_at_its_now(open_store: Any) -> None:
    store = open_store(policies=Policies(
        reset=ResetPolicies(default=idle_reset(10)),
        retention=RetentionPolicy(archived_sessions=DAY)))
    bot = store.for_agent("bot")
    first = bot.resolve(key("alice")).session
    at = first.updated_at + timedelta(minutes=10)
    assert bot.resolve(key("alice"), now=at).started
    assert store.purge(now=at + DAY - US).sessions == 0
    assert store.purge(now=at + DAY).sessions == 1


# --- privacy: forget_peer, export_peer, audit ------------------------------------------------


def test_export_and_forget_a_peer_through_the_api(open_store: Any) -> None:
    store = open_store()
    bot, other = store.for_agent("bot"), store.for_agent("other")
    mine = [key("P-1"), key("P-1", account="acct2"), key("P-1", agent="other")]
    bot.get_or_create(mine[0])
    bot.append_messages(mine[0], [StoredMessage.user("secret one"),
                                  StoredMessage.assistant("reply")])
    bot.reset(mine[0])
    bot.append_messages(mine[0], [StoredMessage.user(f"secret {i}") for i in range(4)])
    bot.compact(mine[0], SlidingWindow(max_messages=1))
    bot.get_or_create(mine[1])
    other.get_or_create(mine[2])
    other.append_messages(mine[2], [StoredMessage.user("secret to other")])
    not_mine = [key("P-1", channel="telegram"), key("P-1", kind="group"), key("p-1")]
    for k in not_mine:
        bot.get_or_create(k)
        bot.append_messages(k, [StoredMessage.user(f"not theirs {k.channel} {k.peer_kind}")])
    others_before = [entry for entry in snapshot(store) if entry[0].key not in mine]

    lines = lines_of(store, store.export_peer("Discord", " P-1 ", actor="dpo@example.org"))
    records = [json.loads(line) for line in lines]
    assert records[0]["kind"] == "aisopod-session-export"
    sessions = [r for r in records if r["kind"] == "session"]
    messages = [r for r in records if r["kind"] == "message"]
    assert len(sessions) == 4  # two generations of mine[0], mine[1], mine[2]
    assert {tuple(r["key"].values()) for r in sessions} == {
        (k.agent_id, k.channel, k.account_id, k.peer_kind.value, k.peer_id) for k in mine}
    assert len(messages) == 2 + 4 + 1  # compacted originals included
    assert "not theirs" not in "".join(lines)

    result = store.forget_peer("discord", "P-1", actor="dpo@example.org")
    assert (result.sessions, result.messages) == (4, 7)
    for k in mine:
        with pytest.raises(SessionNotFoundError):
            store.for_agent(k.agent_id).get(k)
    assert snapshot(store) == others_before
    again = lines_of(store, store.export_peer("discord", "P-1", actor="dpo@example.org"))
    assert len(again) == 1  # the header only
    assert store.forget_peer("discord", "P-1", actor="dpo").sessions == 0

    log = store.audit_log()
    assert [(r.action, r.actor, r.sessions, r.messages) for r in log] == [
        ("forget_peer", "dpo", 0, 0),
        ("export_peer", "dpo@example.org", 0, 0),
        ("forget_peer", "dpo@example.org", 4, 7),
        ("export_peer", "dpo@example.org", 4, 7),
    ]
    subjects = {r.subject for r in log}
    assert len(subjects) == 1  # the same person, always the same pseudonym
    now = datetime.now(UTC)
    for record in log:
        assert now - timedelta(minutes=5) < record.at <= now + timedelta(seconds=1)
        dumped = record.model_dump_json()
        assert "P-1" not in dumped and "secret" not in dumped and "reply" not in dumped
    assert store.audit_log(limit=1) == log[:1]


# --- bad input ------------------------------------------------------------------------------

NAIVE = datetime(2024, 1, 1, 12, 0)
BAD_NOWS: list[Any] = [NAIVE, "2024-01-01T00:00:00Z", 1_700_000_000, datetime(2024, 1, 1).date(),
                       datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)]
BAD_NAMES: list[Any] = ["", "   ", "a\nb", "x" * 257, None, 5, b"discord", "\x00"]
BAD_ACTORS: list[Any] = ["", "   ", None, 5, "x" * 257, "evil\nactor", b"admin"]


def test_bad_input_raises_and_changes_nothing(open_store: Any) -> None:
    store = open_store(policies=Policies(
        lifecycle=LifecyclePolicy(idle_after=timedelta(seconds=1),
                                  archive_after=timedelta(seconds=2)),
        reset=ResetPolicies(default=idle_reset(1)),
        retention=RetentionPolicy(compacted_messages=timedelta(seconds=1),
                                  archived_sessions=timedelta(seconds=1)),
    ))
    world = populate(store)
    bot = world["bot"]
    before = snapshot(store)
    cases: list[tuple[str, Callable[[], Any]]] = []
    for now in BAD_NOWS:
        cases += [
            (f"sweep now={now!r}", lambda now=now: store.sweep(now=now)),
            (f"sweep dry now={now!r}", lambda now=now: store.sweep(now=now, dry_run=True)),
            (f"purge now={now!r}", lambda now=now: store.purge(now=now)),
            (f"resolve now={now!r}", lambda now=now: bot.resolve(world["alice"], now=now)),
        ]
    for flag in ["yes", 1, None]:
        cases += [
            (f"sweep dry_run={flag!r}", lambda flag=flag: store.sweep(dry_run=flag)),
            (f"purge dry_run={flag!r}", lambda flag=flag: store.purge(dry_run=flag)),
        ]
    for bad in BAD_NAMES:
        cases += [
            (f"forget channel={bad!r}", lambda bad=bad: store.forget_peer(bad, "alice")),
            (f"forget peer={bad!r}", lambda bad=bad: store.forget_peer("discord", bad)),
            (f"export channel={bad!r}",
             lambda bad=bad: lines_of(store, store.export_peer(bad, "alice"))),
            (f"export peer={bad!r}",
             lambda bad=bad: lines_of(store, store.export_peer("discord", bad))),
        ]
    for actor in BAD_ACTORS:
        cases += [
            (f"forget actor={actor!r}",
             lambda actor=actor: store.forget_peer("discord", "alice", actor=actor)),
            (f"export actor={actor!r}",
             lambda actor=actor: lines_of(store, store.export_peer("discord", "alice",
                                                                   actor=actor))),
        ]
    for limit in [0, -1, 10_001, "5", 2.0, True, None]:
        cases.append((f"audit_log limit={limit!r}", lambda limit=limit: store.audit_log(limit)))
    for label, case in cases:
        with pytest.raises(InvalidInputError):
            case()
        assert snapshot(store) == before, label
    assert store.audit_log() == []  # no refused request was audited


def test_policies_of_the_wrong_type_are_refused(open_store: Any) -> None:
    with pytest.raises(InvalidInputError):
        open_store(policies="30 days")
    with pytest.raises(InvalidInputError):
        open_store(policies={"lifecycle": {}})
    # policies that skipped validation are caught when they are applied, before any change
    unchecked = Policies.model_construct(
        lifecycle=LifecyclePolicy.model_construct(idle_after=-HOUR, archive_after=None),
        reset=ResetPolicies.model_construct(
            default=ResetPolicy.model_construct(mode="idle", at_hour=4, timezone="UTC",
                                                idle_minutes=-5),
            channels={}, agents={}),
        retention=RetentionPolicy.model_construct(compacted_messages=-DAY, archived_sessions=None),
    )
    store = open_store(policies=unchecked)
    world = populate(store)
    before = snapshot(store)
    with pytest.raises(InvalidInputError):
        store.sweep()
    with pytest.raises(InvalidInputError):
        store.purge()
    with pytest.raises(InvalidInputError):
        world["bot"].resolve(world["alice"])
    wrong = Policies.model_construct(lifecycle=RetentionPolicy(), reset=ResetPolicies(),
                                     retention=LifecyclePolicy())
    other = open_store(policies=wrong)
    with pytest.raises(InvalidInputError):
        other.sweep()
    with pytest.raises(InvalidInputError):
        other.purge()
    assert snapshot(store) == before


def test_history_query_sees_compacted_originals_until_purged(open_store: Any) -> None:
    """The retention purge removes compacted originals only: include_compacted shows them
    before, and the live history is the same before and after."""
    store = open_store(policies=Policies(retention=RetentionPolicy(compacted_messages=US)))
    bot = store.for_agent("bot")
    bot.get_or_create(key("alice"))
    bot.append_messages(key("alice"), [StoredMessage.user(str(i)) for i in range(4)])
    record = bot.compact(key("alice"), SlidingWindow(max_messages=1))
    assert len(bot.get_history(key("alice"), HistoryQuery(include_compacted=True))) == 4
    assert record.last_compacted_at is not None
    assert store.purge(now=record.last_compacted_at + US).messages == 3
    assert texts(bot.get_history(key("alice"), EVERYTHING)) == ["3"]
