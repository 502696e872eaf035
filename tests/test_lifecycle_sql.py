"""Issue 9 checked underneath the API: forget_peer and export_peer by direct SQL on both backends,
daily resets across daylight-saving changes, the policy models, and a sweep over 200,000
sessions that must not stall concurrent appends.

Direct SQL reads the store's own SQLite file or PostgreSQL schema with sqlite3 / psycopg, so a
row the admin API would not show (an orphaned message, a leftover generation) is still seen.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import statistics
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from aisopod_session import (
    InvalidInputError,
    LifecyclePolicy,
    Policies,
    ResetPolicies,
    ResetPolicy,
    RetentionPolicy,
    SessionKey,
    SessionPatch,
    SessionStore,
    SlidingWindow,
    StoredMessage,
    Summarize,
    _time,
)
from aisopod_session.lifecycle import daily_boundary
from aisopod_session.store import _lifecycle
from tests.conformance.test_lifecycle import lines_of
from tests.conftest import PG_URL, StoreFactory, drop_pg_schema

# --- direct SQL -----------------------------------------------------------------------------


class Direct:
    """Plain SQL on a store's SQLite file or PostgreSQL schema, outside the store."""

    def __init__(self, backend: str, location: str) -> None:
        self.backend = backend
        self.location = location

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.location)
            try:
                return [tuple(r) for r in conn.execute(query, params).fetchall()]
            finally:
                conn.close()
        with psycopg.connect(PG_URL, autocommit=True) as pg:
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.location)))
            return [tuple(r) for r in pg.execute(query.replace("?", "%s"), params).fetchall()]

    def table(self, name: str) -> list[tuple[Any, ...]]:
        return self.rows(f"SELECT * FROM {name} ORDER BY id")

    def columns(self, name: str) -> list[str]:
        if self.backend == "sqlite":
            return [r[1] for r in self.rows(f"PRAGMA table_info({name})")]
        return [r[0] for r in self.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position", (self.location, name))]


def direct(factory: StoreFactory) -> Direct:
    # the http backend's service stores into a SQLite file at the factory's location
    return Direct("postgres" if factory.backend == "postgres" else "sqlite", factory.location)


def k(peer: str, *, agent: str = "bot", channel: str = "discord", account: str = "acct1",
      kind: str = "dm") -> SessionKey:
    return SessionKey(agent, channel, account, kind, peer)


PERSON = ("discord", "Alice#1")
SECRET = "ALICE-SECRET"


def build_world(store: Any) -> tuple[list[SessionKey], list[SessionKey]]:
    """The person's sessions everywhere, and look-alikes that are somebody (or something) else."""
    mine = [k("Alice#1"), k("Alice#1", account="acct2"), k("Alice#1", agent="other"),
            k("Alice#1", agent="third", account="acct9")]
    others = [
        k("Alice#1", channel="telegram"),  # someone else with the same id on another channel
        k("Alice#1", kind="group"),  # a group with the same id
        SessionKey.for_thread("bot", "discord", "acct1", "Alice#1", "t1"),  # ... and its thread
        k("alice#1"),  # ids are case-sensitive: another person
        k("alice_tg", channel="telegram"),  # the same person's id on another channel
        k("carol"),
        k("carol", agent="other", account="acct2"),
    ]
    for number, key in enumerate(mine + others):
        handle = store.for_agent(key.agent_id)
        handle.get_or_create(key)
        text = SECRET if key in mine else f"other-{number}"
        handle.append_messages(key, [
            StoredMessage.user(f"{text} hello", external_id=f"ext-{number}", token_count=3),
            StoredMessage.assistant(f"{text} reply", token_count=2),
            StoredMessage.assistant(None, tool_calls=[{"id": "c1", "name": "f",
                                                       "arguments": {"q": text}}]),
            StoredMessage.tool({"tool_call_id": "c1", "output": f"{text} result"}),
            StoredMessage.user(f"{text} more"),
        ])
        if number % 2 == 0:  # an archived generation with a compacted history
            handle.compact(key, Summarize(summary=f"{text} summary", keep_recent=2))
            handle.reset(key)
            handle.append_messages(key, [StoredMessage.user(f"{text} second generation")])
        if number % 3 == 0:
            handle.compact(key, SlidingWindow(max_messages=1))
        if number % 4 == 1:
            handle.patch(key, SessionPatch(status="idle", metadata={"note": f"{text} meta"}))
    return mine, others


def is_mine(session_row: tuple[Any, ...], columns: list[str]) -> bool:
    row = dict(zip(columns, session_row, strict=True))
    return (row["channel"], row["peer_id"], row["peer_kind"]) == (*PERSON, "dm")


def test_forget_peer_leaves_no_row_of_them_and_changes_no_other_row(open_store: Any) -> None:
    store = open_store()
    db = direct(open_store)
    _, others = build_world(store)
    session_columns = db.columns("sessions")
    message_columns = db.columns("messages")
    sessions_before = db.table("sessions")
    messages_before = db.table("messages")
    my_ids = {row[0] for row in sessions_before if is_mine(row, session_columns)}
    assert len(my_ids) == 6  # four keys, two of them with an archived generation
    assert len({row[0] for row in sessions_before}) == len(sessions_before)
    session_of = message_columns.index("session_id")
    my_messages = [m for m in messages_before if m[session_of] in my_ids]
    assert any(SECRET in str(m) for m in my_messages)
    compacted = message_columns.index("compacted")
    assert any(m[compacted] for m in my_messages)  # compacted originals exist to be erased

    result = store.forget_peer(" Discord ", "Alice#1", actor="privacy-officer")
    assert (result.sessions, result.messages) == (len(my_ids), len(my_messages))

    sessions_after = db.table("sessions")
    messages_after = db.table("messages")
    assert db.rows("SELECT count(*) FROM sessions WHERE channel = ? AND peer_id = ? "
                   "AND peer_kind = 'dm'", PERSON) == [(0,)]
    assert not [m for m in messages_after if m[session_of] in my_ids]
    assert db.rows("SELECT count(*) FROM messages WHERE session_id NOT IN "
                   "(SELECT id FROM sessions)") == [(0,)]
    for table in ("sessions", "messages", "audit_log"):
        for row in db.table(table):
            assert SECRET not in str(row), (table, row)
    # every other row is exactly as it was, field for field
    assert sessions_after == [r for r in sessions_before if r[0] not in my_ids]
    assert messages_after == [m for m in messages_before if m[session_of] not in my_ids]
    for key in others:
        assert store.for_agent(key.agent_id).get(key).key == key

    audit_columns = db.columns("audit_log")
    audit = [dict(zip(audit_columns, row, strict=True)) for row in db.table("audit_log")]
    assert len(audit) == 1
    record = audit[0]
    assert record["actor"] == "privacy-officer"
    assert record["action"] == "forget_peer"
    assert (record["sessions"], record["messages"]) == (len(my_ids), len(my_messages))
    assert str(record["subject"]).startswith("hmac-sha256:")
    assert "Alice" not in str(record) and "discord" not in str(record)
    now_us = _time.to_us(datetime.now(UTC))
    assert now_us - 300_000_000 < record["at"] <= now_us


def test_audit_subject_is_a_keyed_hash_under_the_database_key(open_store: Any,
                                                              tmp_path: Path) -> None:
    """The audit log names a person by an HMAC under the database's own random key: one person
    is one subject in a database, another database gives another, and the plain SHA-256 of
    their channel and id (computable by anyone guessing ids such as phone numbers) is nowhere."""
    store = open_store()
    store.forget_peer(*PERSON, actor="officer")
    store.forget_peer(*PERSON, actor="officer")
    store.forget_peer("discord", "bob", actor="officer")
    bob, alice, alice_again = (record.subject for record in store.audit_log(10))
    assert alice == alice_again != bob
    db = direct(open_store)
    (key,), = db.rows("SELECT key FROM audit_key")
    assert len(key) == 64  # 256 random bits, hex
    keyed = hmac.new(key.encode(), "\0".join(PERSON).encode(), hashlib.sha256).hexdigest()
    assert alice == f"hmac-sha256:{keyed}"
    plain = hashlib.sha256("\0".join(PERSON).encode()).hexdigest()
    assert plain not in str(db.table("audit_log"))
    # The key belongs to the database: a store opened on it again names the person the same.
    open_store().forget_peer(*PERSON, actor="officer")
    assert store.audit_log(1)[0].subject == alice
    with SessionStore.open(str(tmp_path / "another.db")) as another:
        another.forget_peer(*PERSON, actor="officer")
        assert another.audit_log(1)[0].subject not in (alice, None)


def test_export_peer_is_everything_about_them_and_imports_into_an_empty_store(
    open_store: Any, tmp_path: Path
) -> None:
    store = open_store()
    db = direct(open_store)
    build_world(store)
    lines = lines_of(store, store.export_peer("discord", "Alice#1", actor="dpo"))
    assert all(line.endswith("}") and "\n" not in line for line in lines)
    assert "other-" not in "".join(lines)  # nobody else's content

    target_location = (str(tmp_path / "empty.db") if open_store.backend != "postgres"
                       else f"t_{uuid.uuid4().hex[:12]}")
    target = StoreFactory(open_store.backend, open_store.flavour, target_location)
    try:
        empty = target()
        imported = empty.import_jsonl(lines)
        target_db = direct(target)
        columns = db.columns("sessions")
        mine = [r for r in db.table("sessions") if is_mine(r, columns)]
        assert imported.sessions == len(mine) == 6
        copied = target_db.table("sessions")
        assert [r[1:] for r in copied] == [r[1:] for r in mine]  # all but the id, in order
        message_columns = db.columns("messages")
        session_of = message_columns.index("session_id")
        old_to_new = {old[0]: new[0] for old, new in zip(mine, copied, strict=True)}

        def comparable(rows: list[tuple[Any, ...]], ids: dict[int, int]) -> list[Any]:
            return sorted(
                ((ids[r[session_of]], *[v for i, v in enumerate(r) if i not in (0, session_of)])
                 for r in rows if r[session_of] in ids),
                key=repr,
            )

        assert comparable(db.table("messages"), old_to_new) == comparable(
            target_db.table("messages"), {new: new for new in old_to_new.values()})
        assert imported.messages == len(target_db.table("messages"))
        assert target_db.table("audit_log") == []
        audit = db.rows("SELECT actor, action, sessions, messages FROM audit_log")
        assert audit == [("dpo", "export_peer", 6, imported.messages)]
        assert "Alice" not in str(db.table("audit_log"))
    finally:
        target.close_all()
        if open_store.backend == "postgres":
            drop_pg_schema(target_location)


# --- daily resets across daylight-saving changes -------------------------------------------

# (zone, local date of the change, what happens) in 2024
DST_CHANGES = [
    ("Europe/Berlin", date(2024, 3, 31), "spring"),  # 02:00 CET -> 03:00 CEST: no 02:xx
    ("Europe/Berlin", date(2024, 10, 27), "fall"),  # 03:00 CEST -> 02:00 CET: 02:xx twice
    ("America/New_York", date(2024, 3, 10), "spring"),  # 02:00 EST -> 03:00 EDT: no 02:xx
    ("America/New_York", date(2024, 11, 3), "fall"),  # 02:00 EDT -> 01:00 EST: 01:xx twice
]
# at_hour inside the changed hour (skipped or repeated), right after it, and well outside it,
# with messages every 11 to 60 minutes (11 and 45 drift across the hour)
SCENARIOS = [
    (zone, day, what, hour, minutes)
    for zone, day, what in DST_CHANGES
    for hour, minutes in (
        ((1, 20), (1, 11), (2, 45), (4, 20), (0, 60))
        if (zone, what) == ("America/New_York", "fall")
        else ((2, 20), (2, 11), (3, 45), (4, 20), (0, 60))
    )
]


def wall_clock_resets(steps: list[datetime], zone: ZoneInfo, hour: int) -> list[datetime]:
    """The oracle, independent of daily_boundary: for every local date, the first step whose
    local wall clock reads ``hour``:00 or later on that date (for a repeated hour, its first
    occurrence; for a skipped hour, the first instant after the gap)."""
    expected: list[datetime] = []
    seen: set[date] = set()
    first = steps[0].astimezone(zone)
    for step in steps[1:]:
        local = step.astimezone(zone)
        wall = local.replace(tzinfo=None)
        due = datetime.combine(local.date(), dtime(hour))
        if wall >= due and local.date() not in seen and (
                local.date() > first.date() or first.replace(tzinfo=None) < due):
            seen.add(local.date())
            expected.append(step)
    return expected


class FakeClock:
    """The store's clock, moved by the test (``updated_at`` of appends comes from it)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    monkeypatch.setattr(_time, "utc_now", clock)
    return clock


@pytest.mark.parametrize(("zone_name", "change", "what", "hour", "minutes"), SCENARIOS,
                         ids=[f"{z.split('/')[1]}-{w}-{h}h-every{m}m"
                              for z, _, w, h, m in SCENARIOS])
def test_daily_reset_across_a_dst_change_is_exactly_once_per_local_day(
    tmp_path: Path, fake_clock: FakeClock, zone_name: str, change: date, what: str, hour: int,
    minutes: int,
) -> None:
    zone = ZoneInfo(zone_name)
    policy = ResetPolicy(mode="daily", at_hour=hour, timezone=zone_name)
    start = datetime.combine(change - timedelta(days=2), dtime(12, 7), tzinfo=zone)
    end = datetime.combine(change + timedelta(days=3), dtime(12, 0), tzinfo=zone)
    steps = []
    at = start.astimezone(UTC)
    while at < end:
        steps.append(at)
        at += timedelta(minutes=minutes)
    # the change really is in the simulated range
    offsets = {step.astimezone(zone).utcoffset() for step in steps}
    assert len(offsets) == 2, what

    with SessionStore.open(str(tmp_path / "dst.db"), durability="normal",
                           policies=Policies(reset=ResetPolicies(default=policy))) as store:
        bot = store.for_agent("bot")
        alice = k("alice")
        resets: list[datetime] = []
        sessions: set[int] = set()
        for number, step in enumerate(steps):
            fake_clock.at = step
            resolution = bot.resolve(alice, now=step)
            if resolution.started and resolution.previous_id is not None:
                resets.append(step)
            sessions.add(resolution.session.id)
            bot.append_messages(alice, [StoredMessage.user(f"m{number}", created_at=step)])

        expected = wall_clock_resets(steps, zone, hour)
        assert resets == expected
        per_day = Counter(r.astimezone(zone).date() for r in resets)
        days = [change + timedelta(days=d) for d in range(-1, 3)]
        assert {day: per_day[day] for day in days} == dict.fromkeys(days, 1)
        assert set(per_day.values()) == {1}
        assert len(resets) == 5  # the 2 days before the change, its day, and the 2 after
        for reset in resets:  # at the local hour, or the first instant after a skipped one
            local = reset.astimezone(zone)
            assert local.hour in (hour, hour + 1)
            assert reset - timedelta(minutes=minutes) < daily_boundary(reset, hour, zone) <= reset

        db = Direct("sqlite", str(tmp_path / "dst.db"))
        archived = db.rows("SELECT id, archived_at FROM sessions WHERE status = 'archived' "
                           "ORDER BY id")
        assert [_time.from_us(at) for _, at in archived] == resets
        assert len(sessions) == len(resets) + 1
        # no message was lost or landed in the wrong day's session
        per_session = db.rows("SELECT session_id, min(created_at), max(created_at), count(*) "
                              "FROM messages GROUP BY session_id ORDER BY session_id")
        assert sum(row[3] for row in per_session) == len(steps)
        edges = [steps[0], *resets, steps[-1] + timedelta(minutes=minutes)]
        for (_, first, last, _count), lo, hi in zip(per_session, edges[:-1], edges[1:],
                                                     strict=True):
            assert lo <= _time.from_us(first) <= _time.from_us(last) < hi


@pytest.mark.parametrize(("zone_name", "change", "what"), DST_CHANGES)
def test_daily_boundary_minute_by_minute_across_a_dst_change(
    zone_name: str, change: date, what: str
) -> None:
    zone = ZoneInfo(zone_name)
    start = datetime.combine(change - timedelta(days=1), dtime(0), tzinfo=zone).astimezone(UTC)
    for hour in range(24):
        boundaries = []
        at = start
        for _ in range(3 * 24 * 60):
            boundary = daily_boundary(at, hour, zone)
            assert boundary <= at
            assert at - boundary <= timedelta(hours=25), (what, hour, at)
            if not boundaries or boundaries[-1] != boundary:
                boundaries.append(boundary)
            at += timedelta(minutes=1)
        dates = [b.astimezone(zone).date() for b in boundaries]
        assert len(set(dates)) == len(dates), (what, hour)  # one per local day
        assert all(b2 - b1 in (timedelta(hours=23), timedelta(hours=24), timedelta(hours=25))
                   for b1, b2 in pairwise(boundaries)), (what, hour)
        for boundary in boundaries:
            local = boundary.astimezone(zone)
            assert local.minute == 0
            if local.hour != hour:  # only where the hour does not exist that day
                assert what == "spring" and local.date() == change and local.hour == hour + 1


# --- policy models ---------------------------------------------------------------------------


def test_reset_policy_lookup_order_and_normalisation() -> None:
    a, b, c, d = (ResetPolicy(mode="idle", idle_minutes=m) for m in (1, 2, 3, 4))
    policies = ResetPolicies(default=d, channels={" Telegram ": c, "sms": None},
                             agents={"Bot": {"TELEGRAM": a, "*": b}, "mute": {"*": None}})
    assert policies.for_key("bot", "telegram") is a
    assert policies.for_key("bot", "sms") is b  # the agent's "*" beats channels
    assert policies.for_key("x", "telegram") is c
    assert policies.for_key("x", "sms") is None  # an explicit None beats the default
    assert policies.for_key("x", "discord") is d
    assert policies.for_key("mute", "telegram") is None
    assert ResetPolicies().for_key("bot", "telegram") is None


def test_idle_staleness_is_exact() -> None:
    policy = ResetPolicy(mode="idle", idle_minutes=90)
    last = datetime(2024, 5, 5, 10, 0, tzinfo=UTC)
    assert not policy.is_stale(last, last + timedelta(minutes=90, microseconds=-1))
    assert policy.is_stale(last, last + timedelta(minutes=90))
    assert not policy.is_stale(last, last - timedelta(days=1))  # a clock behind is not stale


def test_durations_accept_timedeltas_and_iso_strings_only() -> None:
    assert LifecyclePolicy(idle_after="PT2H").idle_after == timedelta(hours=2)
    assert RetentionPolicy(archived_sessions="P30D").archived_sessions == timedelta(days=30)
    assert Policies.model_validate(
        {"lifecycle": {"idle_after": "P1D", "archive_after": "P7D"}}
    ).lifecycle.archive_after == timedelta(days=7)


@pytest.mark.parametrize("build", [
    lambda: Policies(lifecycle=RetentionPolicy()),
    lambda: Policies(reset=ResetPolicy(mode="idle", idle_minutes=5)),
    lambda: Policies(retention="forever"),
    lambda: LifecyclePolicy(idle_after=5),
    lambda: LifecyclePolicy(idle_after=1.5),
    lambda: LifecyclePolicy(idle_after=True),
    lambda: LifecyclePolicy(idle_after=timedelta(0)),
    lambda: LifecyclePolicy(idle_after=-timedelta(hours=1)),
    lambda: LifecyclePolicy(idle_after=timedelta(days=36_501)),
    lambda: LifecyclePolicy(idle_after=timedelta(days=1), archive_after=timedelta(hours=1)),
    lambda: LifecyclePolicy(idle_after=timedelta(days=1), archive_after=timedelta(days=1)),
    lambda: LifecyclePolicy(idle_after=timedelta(days=1), retention=timedelta(days=1)),
    lambda: RetentionPolicy(archived_sessions=30),
    lambda: RetentionPolicy(compacted_messages="thirty days"),
    lambda: ResetPolicy(mode="weekly"),
    lambda: ResetPolicy(mode="idle"),
    lambda: ResetPolicy(mode="daily", idle_minutes=5),
    lambda: ResetPolicy(mode="idle", idle_minutes=0),
    lambda: ResetPolicy(mode="idle", idle_minutes="5"),
    lambda: ResetPolicy(mode="idle", idle_minutes=5.0),
    lambda: ResetPolicy(mode="daily", at_hour=24),
    lambda: ResetPolicy(mode="daily", at_hour=-1),
    lambda: ResetPolicy(mode="daily", at_hour=True),
    lambda: ResetPolicy(mode="daily", at_hour="4"),
    lambda: ResetPolicy(mode="daily", timezone="Mars/Olympus_Mons"),
    lambda: ResetPolicy(mode="daily", timezone="../../etc/passwd"),
    lambda: ResetPolicy(mode="daily", timezone=""),
    lambda: ResetPolicy(mode="daily", timezone=UTC),
    lambda: ResetPolicies(default="daily"),
    lambda: ResetPolicies(channels={"": ResetPolicy(mode="daily")}),
    lambda: ResetPolicies(channels={"Slack": ResetPolicy(mode="daily"),
                                    "slack": ResetPolicy(mode="daily")}),
    lambda: ResetPolicies(agents={"bot": {"a\nb": ResetPolicy(mode="daily")}}),
    lambda: ResetPolicies(agents={"bot": ResetPolicy(mode="daily")}),
])
def test_bad_policies_are_invalid_input(build: Callable[[], Any]) -> None:
    with pytest.raises(InvalidInputError):
        build()


# --- a sweep over 200,000 sessions -----------------------------------------------------------

SESSIONS = 200_000
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def bulk_sessions(path: str, count: int) -> None:
    """Insert ``count`` sessions the way ``get_or_create`` writes them (status active, created and
    updated at LONG_AGO + n µs, empty metadata, the other columns at their defaults), in one
    statement so that setup takes seconds."""
    stamp = _time.to_us(LONG_AGO)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # setup only: the sweep runs as configured
        conn.execute("PRAGMA cache_size = -262144")
        with conn:
            conn.execute(
                "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x + 1 < ?) "
                "INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status,"
                " created_at, updated_at, metadata) "
                "SELECT 'agent' || (x % 7), 'discord', 'acct', 'dm', printf('peer%07d', x), "
                "'active', ? + x, ? + x, '{}' FROM n",
                (count, stamp, stamp),
            )
    finally:
        conn.close()


def append_until(store: SessionStore, stop: threading.Event,
                 latencies: list[tuple[float, float]]) -> None:
    """Append to one session in a loop, recording (start, latency) of each append."""
    handle = store.for_agent("bot")
    while not stop.is_set():
        started = time.perf_counter()
        handle.append_messages(k("appender"), [StoredMessage.user("ping")])
        latencies.append((started, time.perf_counter() - started))


@pytest.mark.slow
def test_sweep_of_200k_sessions_is_bounded_and_never_stalls_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "big.db")
    hour = timedelta(hours=1)
    policies = Policies(lifecycle=LifecyclePolicy(idle_after=hour, archive_after=2 * hour))
    with SessionStore.open(path, policies=policies) as store:
        built = time.perf_counter()
        bulk_sessions(path, SESSIONS)
        build_time = time.perf_counter() - built

        batches = 0
        original = _lifecycle._transition_batch

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal batches
            batches += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(_lifecycle, "_transition_batch", counted)

        stop = threading.Event()
        latencies: list[tuple[float, float]] = []
        store.for_agent("bot").get_or_create(k("appender"))  # created now: never due
        thread = threading.Thread(target=append_until, args=(store, stop, latencies),
                                  daemon=True)
        thread.start()
        while not latencies:  # appends are under way before the sweep starts
            time.sleep(0.001)
        now = LONG_AGO + timedelta(days=1)

        tracemalloc.start()
        try:
            started = time.perf_counter()
            result = store.sweep(now=now)
            sweep_time = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()

        assert (result.idled, result.archived) == (SESSIONS, SESSIONS)
        assert batches == 2 * (SESSIONS // _lifecycle.SWEEP_BATCH + 1)
        during = [lat for at, lat in latencies if started <= at <= started + sweep_time]
        worst = max(lat for _, lat in latencies)
        median = statistics.median(lat for _, lat in latencies)
        print(
            f"\n200k sweep: setup {build_time:.2f} s; sweep {sweep_time:.2f} s in {batches} "
            f"batches ({sweep_time / batches * 1000:.1f} ms/batch); {len(during)} appends "
            f"during it, max latency {worst * 1000:.1f} ms, median {median * 1000:.2f} ms; "
            f"peak traced memory {peak / 1e6:.2f} MB"
        )
        assert len(during) >= 20  # appends really ran alongside the sweep
        assert worst < sweep_time / 3
        assert peak < 50e6
        statuses = dict(Direct("sqlite", path).rows(
            "SELECT status, count(*) FROM sessions GROUP BY status"))
        assert statuses == {"archived": SESSIONS, "active": 1}
        assert store.sweep(now=now) == result.model_copy(update={"idled": 0, "archived": 0})
