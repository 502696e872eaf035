"""Group commit: many callers share one transaction, yet each keeps its own all-or-nothing.

Batching is forced rather than hoped for: ``hold_first_batch`` wraps the engine's ``_run_batch``
so that the first batch waits until every caller's job is in it or queued behind it; so the
batches hold many jobs, each in its own savepoint. The recorded batches let a test assert that a
multi-job batch really ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql

from aisopod_session import (
    AsyncSessionStore,
    InvalidInputError,
    SessionKey,
    SessionNotFoundError,
    SessionStore,
    StoreClosedError,
    StoredMessage,
    StoreUnavailableError,
)
from aisopod_session.limits import MAX_TOKEN_USAGE
from aisopod_session.results import ChangeKind
from aisopod_session.store import _engine, _group_commit, _messages, _sessions
from aisopod_session.store._changes import record
from aisopod_session.store._engine import Engine
from aisopod_session.store._group_commit import Job
from aisopod_session.store._tx import Dialect, Tx
from tests._threads import JOIN_SECONDS, key_for, run_threads

PG_URL = os.environ.get("AISOPOD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PER_CALL = 4




class Batches:
    """Every batch the engine ran (the jobs, and their outcome once it ran)."""

    def __init__(self) -> None:
        self.jobs: list[list[Job]] = []
        self.errors: list[list[BaseException | None]] = []

    @property
    def sizes(self) -> list[int]:
        return [len(jobs) for jobs in self.jobs]


def queued(engine: Engine) -> int:
    committer = engine._committer
    with committer._mutex:
        return len(committer._queue)


def hold_first_batch(engine: Engine, monkeypatch: pytest.MonkeyPatch, callers: int) -> Batches:
    """Record batches; the first one starts only once ``callers`` jobs are in it or queued."""
    batches = Batches()
    original = engine._run_batch

    def run_batch(jobs: list[Job]) -> None:
        first = not batches.jobs
        batches.jobs.append(list(jobs))
        if first:
            deadline = time.monotonic() + 30  # a guard only: the test then fails on sizes
            while len(jobs) + queued(engine) < callers and time.monotonic() < deadline:
                time.sleep(0.001)
        original(jobs)
        batches.errors.append([job.error for job in jobs])

    monkeypatch.setattr(engine, "_run_batch", run_batch)
    return batches


def contents_of(call: str) -> list[str]:
    return [f"{call}-{j}" for j in range(PER_CALL)]


def direct_rows(url: str, options: dict[str, Any], query: str) -> list[Any]:
    """Rows of ``query`` (``{}`` for the messages, then the sessions table), read by direct SQL
    on the store's SQLite file or PostgreSQL schema, not through the store."""
    if "schema" in options:
        schema = options["schema"]
        with psycopg.connect(PG_URL) as conn:
            return conn.execute(sql.SQL(query).format(
                sql.Identifier(schema, "messages"), sql.Identifier(schema, "sessions")
            )).fetchall()
    conn = sqlite3.connect(url)
    try:
        return conn.execute(query.format("messages", "sessions")).fetchall()
    finally:
        conn.close()


def db_contents(url: str, options: dict[str, Any]) -> dict[str, list[str]]:
    """peer_id -> live message contents in history order, read without the store."""
    query = (
        "SELECT s.peer_id, m.content FROM {} m JOIN {} s ON s.id = m.session_id "
        "WHERE m.compacted = 0 ORDER BY s.peer_id, m.seq"
    )
    rows = direct_rows(url, options, query)
    found: dict[str, list[str]] = {}
    for peer_id, content in rows:
        found.setdefault(peer_id, []).append(json.loads(content))
    return found


def db_counters(url: str, options: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """peer_id of each live session -> (message_count, live rows)."""
    query = (
        "SELECT s.peer_id, s.message_count, "
        "(SELECT count(*) FROM {} m WHERE m.session_id = s.id AND m.compacted = 0) "
        "FROM {} s WHERE s.status <> 'archived'"
    )
    rows = direct_rows(url, options, query)
    return {peer: (count, live) for peer, count, live in rows}


def assert_contiguous(history: list[str], calls: list[str]) -> None:
    """Each call's messages are stored once, next to each other, in the order given."""
    assert len(history) == len(set(history))
    position = {content: index for index, content in enumerate(history)}
    for call in calls:
        expected = contents_of(call)
        assert expected[0] in position, f"{call} is missing"
        start = position[expected[0]]
        assert history[start : start + PER_CALL] == expected, f"{call} is not contiguous"
    assert len(history) == len(calls) * PER_CALL


def assert_counters_match(url: str, options: dict[str, Any]) -> None:
    for peer, (count, live) in db_counters(url, options).items():
        assert count == live, f"{peer}: message_count {count} but {live} live rows"


# --- (a) concurrent multi-message batches ------------------------------------------------------


def test_thread_batches_are_atomic_and_contiguous(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, options = backend_url
    threads, rounds, keys = 16, 3, 2
    calls: dict[str, list[str]] = {f"peer{k}": [] for k in range(keys)}
    lock = threading.Lock()
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        for k in range(keys):
            agent.get_or_create(key_for(k))
        batches = hold_first_batch(store._engine, monkeypatch, callers=threads)

        def body(thread: int) -> None:
            for i in range(rounds):
                key = key_for((thread + i) % keys)
                call = f"t{thread}-{i}"
                stored = agent.append_messages(
                    key, [StoredMessage.user(c) for c in contents_of(call)]
                )
                assert [m.content for m in stored] == contents_of(call)
                ids = [m.id for m in stored]
                assert all(isinstance(i, int) for i in ids)
                assert ids == sorted(ids)
                with lock:
                    calls[key.peer_id].append(call)

        assert run_threads(threads, body) == []
        assert max(batches.sizes) > 1, batches.sizes
        for k in range(keys):
            history = [m.content for m in agent.get_history(key_for(k))]
            assert_contiguous(history, calls[f"peer{k}"])
            assert agent.get(key_for(k)).message_count == len(history)
    found = db_contents(url, options)
    for peer, peer_calls in calls.items():
        assert_contiguous(found[peer], peer_calls)
    assert_counters_match(url, options)


def test_async_batches_are_atomic_and_contiguous(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, options = backend_url
    tasks, rounds, keys = 32, 3, 3
    calls: dict[str, list[str]] = {f"peer{k}": [] for k in range(keys)}

    async def main() -> list[int]:
        async with await AsyncSessionStore.open(url, **options) as store:
            agent = store.for_agent("bot")
            for k in range(keys):
                await agent.get_or_create(key_for(k))
            batches = hold_first_batch(store._engine, monkeypatch, callers=tasks)

            async def task(index: int) -> None:
                for i in range(rounds):
                    key = key_for((index + i) % keys)
                    call = f"a{index}-{i}"
                    stored = await agent.append_messages(
                        key, [StoredMessage.user(c) for c in contents_of(call)]
                    )
                    assert [m.content for m in stored] == contents_of(call)
                    calls[key.peer_id].append(call)

            outcomes = await asyncio.wait_for(
                asyncio.gather(*(task(i) for i in range(tasks)), return_exceptions=True),
                JOIN_SECONDS,
            )
            assert [o for o in outcomes if o is not None] == []
            for k in range(keys):
                history = [m.content for m in await agent.get_history(key_for(k))]
                assert_contiguous(history, calls[f"peer{k}"])
            return batches.sizes

    sizes = asyncio.run(main())
    assert max(sizes) > 1, sizes
    found = db_contents(url, options)
    for peer, peer_calls in calls.items():
        assert_contiguous(found[peer], peer_calls)
    assert_counters_match(url, options)


# --- (b) one caller's failure is its own -------------------------------------------------------


def test_failed_batches_do_not_touch_the_others(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends to a missing session fail alone, inside batches where others succeed."""
    url, options = backend_url
    threads = 12
    missing = SessionKey("bot", "discord", "acct", "dm", "nobody")
    outcomes: dict[int, str] = {}
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        batches = hold_first_batch(store._engine, monkeypatch, callers=threads)

        def body(thread: int) -> None:
            doomed = thread % 3 == 1
            try:
                agent.append_messages(
                    missing if doomed else key_for(0),
                    [StoredMessage.user(c) for c in contents_of(f"t{thread}")],
                )
                outcomes[thread] = "stored"
            except SessionNotFoundError:
                outcomes[thread] = "not found"

        assert run_threads(threads, body) == []
        assert outcomes == {
            t: "not found" if t % 3 == 1 else "stored" for t in range(threads)
        }
        mixed = [
            errors for errors in batches.errors
            if len(errors) > 1
            and any(isinstance(e, SessionNotFoundError) for e in errors)
            and any(e is None for e in errors)
        ]
        assert mixed, f"no batch mixed failures and successes: {batches.sizes}"
        stored = [t for t in range(threads) if t % 3 != 1]
        history = [m.content for m in agent.get_history(key_for(0))]
        assert_contiguous(history, [f"t{t}" for t in sorted(stored, key=history_order(history))])
        with pytest.raises(SessionNotFoundError):
            agent.get(missing)
    assert_counters_match(url, options)


def history_order(history: list[str]) -> Callable[[int], int]:
    return lambda thread: history.index(f"t{thread}-0")


class Boom(BaseException):
    """Not an Exception: the kind of thing a job should never raise (KeyboardInterrupt-like)."""


def _append_then(key: SessionKey, call: str, failure: str) -> Callable[[Tx], Any]:
    """A job that appends (rows written, counters bumped) and then fails in a given way."""
    messages = [StoredMessage.user(c) for c in contents_of(call)]
    append = _messages.append_messages(key, messages).write
    assert append is not None

    def job(tx: Tx) -> Any:
        append(tx)
        if failure == "exception":
            raise RuntimeError("the job had a bug")
        if failure == "sql":
            tx.run("UPDATE no_such_table SET x = 1")
        if failure == "base":
            raise Boom
        raise AssertionError("unreachable")

    return job


@pytest.mark.parametrize("failure", ["exception", "sql", "base"])
def test_job_raising_inside_a_batch(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A job that writes and then raises is rolled back alone; nobody else fails or hangs."""
    url, options = backend_url
    threads = 10
    outcomes: dict[int, str] = {}
    with SessionStore.open(url, **options) as store:
        engine = store._engine
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        batches = hold_first_batch(engine, monkeypatch, callers=threads)

        def body(thread: int) -> None:
            call = f"t{thread}"
            try:
                if thread % 4 == 2:
                    engine.write(_append_then(key_for(0), call, failure))
                    outcomes[thread] = "stored"
                else:
                    agent.append_messages(
                        key_for(0), [StoredMessage.user(c) for c in contents_of(call)]
                    )
                    outcomes[thread] = "stored"
            except RuntimeError:
                outcomes[thread] = "exception"
            except StoreUnavailableError:
                outcomes[thread] = "sql"
            except Boom:
                outcomes[thread] = "base"
            except BaseException:
                outcomes[thread] = traceback.format_exc()

        assert run_threads(threads, body) == []
        assert outcomes == {t: failure if t % 4 == 2 else "stored" for t in range(threads)}
        assert max(batches.sizes) > 1, batches.sizes
        history = [m.content for m in agent.get_history(key_for(0))]
        good = [f"t{t}" for t in range(threads) if t % 4 != 2]
        assert_contiguous(history, sorted(good, key=lambda c: history.index(f"{c}-0")))
        # The store keeps working afterwards.
        agent.append_messages(key_for(0), [StoredMessage.user("later")])
        assert agent.get(key_for(0)).message_count == len(history) + 1
    assert_counters_match(url, options)


def test_batch_runs_in_lock_key_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs that name the key they lock run sorted by it (and in arrival order per key), so
    batches of different processes take row locks in one global order and cannot deadlock."""
    ran: list[tuple[str, int]] = []

    def job_for(key: str, index: int) -> Callable[[Tx], None]:
        def job(tx: Tx) -> None:
            tx.one("SELECT 1")
            ran.append((key, index))

        job.index = index  # type: ignore[attr-defined]
        return job

    async def main() -> Batches:
        async with await AsyncSessionStore.open(str(tmp_path / "s.db")) as store:
            engine = store._engine
            batches = hold_first_batch(engine, monkeypatch, callers=30)
            keys = ["k2", "k0", "k1"]  # arrival order is not key order
            await asyncio.gather(
                *(engine.write_async(job_for(keys[i % 3], i), keys[i % 3]) for i in range(30))
            )
            return batches

    batches = asyncio.run(main())
    assert max(batches.sizes) > 1, batches.sizes
    expected = []
    for jobs in batches.jobs:
        members = [(job.lock_key, job.fn.index) for job in jobs]  # type: ignore[attr-defined]
        # By key; per key by index, which is the order the tasks queued them in.
        expected.extend(sorted(members))
    assert ran == expected


# --- (c) acknowledged means committed ----------------------------------------------------------


def visible_elsewhere(url: str, options: dict[str, Any], contents: list[str]) -> int:
    """How many of ``contents`` a brand-new connection sees."""
    encoded = [json.dumps(c) for c in contents]
    if "schema" in options:
        with psycopg.connect(PG_URL) as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE content = ANY(%s)").format(
                    sql.Identifier(options["schema"], "messages")
                ),
                (encoded,),
            ).fetchone()
            assert row is not None
            return int(row[0])
    conn = sqlite3.connect(url)
    try:
        marks = ", ".join("?" for _ in encoded)
        return int(
            conn.execute(f"SELECT count(*) FROM messages WHERE content IN ({marks})", encoded)
            .fetchone()[0]
        )
    finally:
        conn.close()


def test_acknowledged_only_after_commit_threads(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, options = backend_url
    threads, rounds = 12, 3
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        agent.get_or_create(key_for(1))
        batches = hold_first_batch(store._engine, monkeypatch, callers=threads)
        unseen: list[str] = []

        def body(thread: int) -> None:
            for i in range(rounds):
                call = f"t{thread}-{i}"
                agent.append_messages(
                    key_for(thread % 2), [StoredMessage.user(c) for c in contents_of(call)]
                )
                # The caller has its answer: the commit must already be visible to anyone.
                if visible_elsewhere(url, options, contents_of(call)) != PER_CALL:
                    unseen.append(call)

        assert run_threads(threads, body) == []
        assert unseen == []
        assert max(batches.sizes) > 1, batches.sizes


def test_acknowledged_only_after_commit_async(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, options = backend_url
    tasks = 24

    async def main() -> tuple[list[str], list[int]]:
        unseen: list[str] = []
        async with await AsyncSessionStore.open(url, **options) as store:
            agent = store.for_agent("bot")
            await agent.get_or_create(key_for(0))
            batches = hold_first_batch(store._engine, monkeypatch, callers=tasks)

            async def task(index: int) -> None:
                call = f"a{index}"
                await agent.append_messages(
                    key_for(0), [StoredMessage.user(c) for c in contents_of(call)]
                )
                # Checked before this task yields again: nothing can commit in between for it.
                if visible_elsewhere(url, options, contents_of(call)) != PER_CALL:
                    unseen.append(call)

            await asyncio.wait_for(asyncio.gather(*(task(i) for i in range(tasks))), JOIN_SECONDS)
            return unseen, batches.sizes

    unseen, sizes = asyncio.run(main())
    assert unseen == []
    assert max(sizes) > 1, sizes


def test_writers_woken_in_one_loop_turn_share_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not forced: tasks that queue writes in the same turn of the event loop are one batch,
    because the background leader starts only once that turn is over."""
    writers, rounds = 64, 4
    # Only the end of the turn may start the leader, however slow this machine is.
    monkeypatch.setattr(_group_commit, "GATHER_WAIT_SECONDS", JOIN_SECONDS)

    async def main() -> list[int]:
        async with await AsyncSessionStore.open(str(tmp_path / "s.db")) as store:
            agent = store.for_agent("bot")
            for index in range(writers):
                await agent.get_or_create(key_for(index))
            sizes: list[int] = []
            original = store._engine._run_batch

            def run_batch(jobs: list[Job]) -> None:
                sizes.append(len(jobs))
                original(jobs)

            monkeypatch.setattr(store._engine, "_run_batch", run_batch)
            start = asyncio.Event()

            async def writer(index: int) -> None:
                await start.wait()  # every writer wakes in the same turn
                for round_ in range(rounds):
                    await agent.append_messages(key_for(index), [StoredMessage.user(round_)])

            tasks = [asyncio.create_task(writer(index)) for index in range(writers)]
            await asyncio.sleep(0)
            start.set()
            await asyncio.wait_for(asyncio.gather(*tasks), JOIN_SECONDS)
            for index in range(writers):
                history = await agent.get_history(key_for(index))
                assert [m.content for m in history] == list(range(rounds))
            return sizes

    sizes = asyncio.run(main())
    # From idle, the first round is one batch by construction. Later rounds usually are too,
    # but a leader still draining the queue when a round starts takes what it finds.
    assert sizes[0] == writers and sum(sizes) == writers * rounds, sizes


def test_loop_stopped_before_its_next_turn_does_not_strand_the_queue(tmp_path: Path) -> None:
    """The leader waits for the caller's loop to finish its turn, but not forever: a loop that
    stops (and is closed) right after queueing a write leaves nobody else waiting."""
    store = SessionStore.open(str(tmp_path / "s.db"))
    try:
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        committer = store._engine._committer
        loop = asyncio.new_event_loop()
        try:
            write = loop.create_task(committer.run_async(
                lambda tx: tx.run("UPDATE sessions SET metadata = '{\"x\": 1}'")))
            loop.call_soon(loop.stop)  # runs in the same turn as the task's first step
            loop.run_forever()
            assert not write.done()
        finally:
            loop.close()
        write._log_destroy_pending = False  # stranded on purpose: its loop is gone
        # A blocking writer still gets through, and so did the stranded job. (On a thread: were
        # the queue stranded, the call would hang, and run_threads reports that instead.)
        assert run_threads(
            1, lambda _: agent.append_messages(key_for(0), [StoredMessage.user("after")])) == []
        assert [m.content for m in agent.get_history(key_for(0))] == ["after"]
        assert agent.get(key_for(0)).metadata == {"x": 1}
    finally:
        store.close()


# --- closing -----------------------------------------------------------------------------------


def test_close_idle_then_use_raises(tmp_path: Path) -> None:
    store = SessionStore.open(str(tmp_path / "s.db"))
    agent = store.for_agent("bot")
    agent.get_or_create(key_for(0))
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreClosedError):
        agent.append_messages(key_for(0), [StoredMessage.user("late")])
    with pytest.raises(StoreClosedError):
        agent.get_or_create(key_for(0))
    with pytest.raises(StoreClosedError):
        agent.get(key_for(0))
    with pytest.raises(StoreClosedError):
        store.list_all_sessions()


def test_async_close_idle_then_use_raises(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url

    async def main() -> None:
        store = await AsyncSessionStore.open(url, **options)
        agent = store.for_agent("bot")
        await agent.get_or_create(key_for(0))
        await store.close()
        await store.close()
        with pytest.raises(StoreClosedError):
            await agent.append_messages(key_for(0), [StoredMessage.user("late")])
        with pytest.raises(StoreClosedError):
            await agent.get(key_for(0))
        with pytest.raises(StoreClosedError):
            await store.list_all_sessions()

    asyncio.run(main())


def test_close_while_writers_are_busy(tmp_path: Path) -> None:
    """Writes queued before close finish; later ones get StoreClosedError; nothing else."""
    path = str(tmp_path / "s.db")
    threads = 8
    acked: list[str] = []
    errors: list[str] = []
    started = threading.Barrier(threads + 1)
    store = SessionStore.open(path)
    agent = store.for_agent("bot")
    agent.get_or_create(key_for(0))

    def body(thread: int) -> None:
        started.wait(timeout=JOIN_SECONDS)
        i = 0
        while True:
            call = f"t{thread}-{i}"
            try:
                agent.append_messages(
                    key_for(0), [StoredMessage.user(c) for c in contents_of(call)]
                )
            except StoreClosedError:
                return
            except BaseException:
                errors.append(traceback.format_exc())
                return
            acked.append(call)
            i += 1

    workers = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    started.wait(timeout=JOIN_SECONDS)
    while len(acked) < 100 and not errors:
        time.sleep(0.001)
    store.close()
    for worker in workers:
        worker.join(timeout=JOIN_SECONDS)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    found = db_contents(path, {})["peer0"]
    stored_calls = {content.rsplit("-", 1)[0] for content in found}
    assert set(acked) <= stored_calls
    assert_contiguous(found, sorted(stored_calls, key=lambda c: found.index(f"{c}-0")))
    assert_counters_match(path, {})


# --- statements sent without waiting for their answer (pipelined on PostgreSQL) ----------------


def _append_then_send_a_failure(key: SessionKey, call: str) -> Callable[[Tx], Any]:
    """A job that appends, then sends a statement that fails without waiting for its answer:
    on PostgreSQL the failure comes back only with a later statement's answer."""
    append = _messages.append_messages(key, [StoredMessage.user(c)
                                             for c in contents_of(call)]).write
    assert append is not None

    def job(tx: Tx) -> Any:
        result = append(tx)
        tx.send("UPDATE no_such_table SET x = 1")
        return result

    return job


def test_a_sent_statement_that_fails_fails_its_own_job(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure of a statement sent without waiting is blamed on the job that sent it (not
    on the job after it in the batch), says nothing was committed, and the others are stored."""
    url, options = backend_url
    threads = 8
    outcomes: dict[int, str] = {}
    with SessionStore.open(url, **options) as store:
        engine = store._engine
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        batches = hold_first_batch(engine, monkeypatch, callers=threads)

        def body(thread: int) -> None:
            try:
                if thread == 2:
                    engine.write(_append_then_send_a_failure(key_for(0), f"t{thread}"))
                else:
                    agent.append_messages(key_for(0), [StoredMessage.user(c)
                                                       for c in contents_of(f"t{thread}")])
                outcomes[thread] = "stored"
            except StoreUnavailableError as exc:
                outcomes[thread] = "maybe" if exc.maybe_committed else "failed"

        assert run_threads(threads, body) == []
        assert max(batches.sizes) > 1, batches.sizes
        assert outcomes == {t: "failed" if t == 2 else "stored" for t in range(threads)}
        history = [m.content for m in agent.get_history(key_for(0))]
        assert not any(c.startswith("t2-") for c in history)
        assert len(history) == (threads - 1) * len(contents_of("t0"))
    assert_counters_match(url, options)


def test_a_failure_that_travels_with_commit_is_not_maybe_committed(
    backend_url: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the change feed's statement is sent with COMMIT: if it fails, the server
    answered and rolled back, so the caller is told nothing was stored (not "maybe"), nothing
    was, and the store works once the fault is gone."""
    url, options = backend_url
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))
        real = _engine.write_recorded

        def broken(tx: Tx, entries: Any) -> None:
            tx.send("INSERT INTO no_such_table VALUES (1)")

        monkeypatch.setattr(_engine, "write_recorded", broken)
        with pytest.raises(StoreUnavailableError) as raised:
            agent.append_messages(key_for(0), [StoredMessage.user("lost")])
        assert raised.value.maybe_committed is False
        monkeypatch.setattr(_engine, "write_recorded", real)
        agent.append_messages(key_for(0), [StoredMessage.user("kept")])
        assert [m.content for m in agent.get_history(key_for(0))] == ["kept"]
        assert [c.kind for c in store.changes()][-1] == "messages.appended"
    assert_counters_match(url, options)


# --- a transaction that cannot commit ----------------------------------------------------------


def test_refused_commit_fails_its_callers_and_store_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite keeps a transaction open when COMMIT fails (here: a deferred foreign key). The
    callers of that batch get an error, nothing of it is stored, and later writes work."""
    path = str(tmp_path / "s.db")
    with SessionStore.open(path) as store:
        engine = store._engine
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))

        def orphan(tx: Tx) -> None:
            tx.run("PRAGMA defer_foreign_keys = ON")
            tx.run(
                "INSERT INTO messages (session_id, seq, role, content, created_at) "
                "VALUES (999999, 1, 'user', '\"orphan\"', 0)"
            )

        with pytest.raises(StoreUnavailableError):
            engine.write(orphan)
        agent.append_messages(key_for(0), [StoredMessage.user("next")])
        assert [m.content for m in agent.get_history(key_for(0))] == ["next"]

        # The same inside a batch: the others in it are not lost.
        threads = 6
        batches = hold_first_batch(engine, monkeypatch, callers=threads)
        outcomes: dict[int, str] = {}

        def body(thread: int) -> None:
            try:
                if thread == 3:
                    engine.write(orphan)
                else:
                    agent.append_messages(key_for(0), [StoredMessage.user(f"b{thread}")])
                outcomes[thread] = "stored"
            except StoreUnavailableError as exc:
                outcomes[thread] = "maybe" if exc.maybe_committed else "failed"

        assert run_threads(threads, body) == []
        assert max(batches.sizes) > 1
        assert outcomes == {t: "failed" if t == 3 else "stored" for t in range(threads)}
        history = [m.content for m in agent.get_history(key_for(0))]
        assert sorted(history) == sorted(["next", *(f"b{t}" for t in range(threads) if t != 3)])
    assert_counters_match(path, {})


# --- appends answered together (PostgreSQL: one statement each, one round trip per batch) ------


def _append_job(key: SessionKey, content: str, tokens: int | None = None) -> Callable[[Tx], Any]:
    """What the store runs for ``append_messages`` (the pipelined form where there is one)."""
    work = _messages.append_messages(key, [StoredMessage.user(content, token_count=tokens)])
    job = work.pipelined or work.write
    assert job is not None
    return job


def test_appends_answered_together_fail_alone(backend_url: tuple[str, dict[str, Any]]) -> None:
    """In one batch, an append that would overflow token_usage and one to a missing session
    fail alone; the others are stored, and every caller gets a finished answer."""
    url, options = backend_url
    missing = SessionKey("bot", "discord", "acct", "dm", "nobody")
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        full, other = key_for(0), key_for(1)
        agent.get_or_create(full)
        agent.get_or_create(other)
        agent.append_messages(full, [StoredMessage.user("big", token_count=MAX_TOKEN_USAGE - 5)])
        jobs = [Job(_append_job(other, "a")), Job(_append_job(full, "over", tokens=10)),
                Job(_append_job(missing, "lost")), Job(_append_job(other, "b"))]
        store._engine._run_batch(jobs)
        assert [type(job.error) for job in jobs] == [
            type(None), InvalidInputError, SessionNotFoundError, type(None)]
        for job, content in ((jobs[0], "a"), (jobs[3], "b")):
            assert [m.content for m in job.result] == [content]
            assert job.result[0].id is not None
        assert [m.content for m in agent.get_history(other)] == ["a", "b"]
        assert [m.id for m in agent.get_history(other)] == [jobs[0].result[0].id,
                                                            jobs[3].result[0].id]
        session = agent.get(full)
        assert (session.message_count, session.token_usage) == (1, MAX_TOKEN_USAGE - 5)
        appended = [c for c in store.changes(limit=100)
                    if c.kind.value == "messages.appended" and c.key == other]
        assert [c.data["message_ids"] for c in appended] == [[jobs[0].result[0].id],
                                                            [jobs[3].result[0].id]]
    assert_counters_match(url, options)


def _kinds(store: SessionStore, key: SessionKey) -> list[str]:
    return [c.kind.value for c in store.changes(limit=100) if c.key == key]


def test_appends_answered_together_keep_their_turn_in_the_feed(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    """A batch's appends are answered after its later jobs ran: their feed entries still go
    where their statements ran (before a reset that followed them), and an append that found
    no session is not retried after a later job created it (it fails, as in its turn)."""
    url, options = backend_url
    with SessionStore.open(url, **options) as store:
        agent = store.for_agent("bot")
        existing, created = key_for(0), key_for(1)
        agent.get_or_create(existing)
        reset = _sessions.reset(existing).write
        create = _sessions.get_or_create(created).write
        assert reset is not None and create is not None
        jobs = [Job(_append_job(existing, "before the reset")), Job(reset)]
        store._engine._run_batch(jobs)
        jobs += [Job(_append_job(created, "before the session")), Job(create)]
        store._engine._run_batch(jobs[2:])
        assert [type(job.error) for job in jobs] == [
            type(None), type(None), SessionNotFoundError, type(None)]
        assert _kinds(store, existing) == ["session.created", "messages.appended",
                                           "session.reset", "session.created"]
        assert _kinds(store, created) == ["session.created"]
        assert agent.get_history(existing) == []
        assert agent.get_history(created) == []
    assert_counters_match(url, options)


@pytest.mark.parametrize("ids", [[7], [1, 2, 3], list(range(10**12, 10**12 + 5))])
def test_the_appended_entry_is_the_text_record_writes(ids: list[int]) -> None:
    """``record_appended`` writes its JSON by hand (the hottest entry): the same text as the
    general ``record``."""
    dialect = Dialect("test", "?", "", "", "", "")
    written, general = Tx(cast(Any, None), dialect), Tx(cast(Any, None), dialect)
    _messages.record_appended(written, "bot", 42, ids, 5)
    record(general, ChangeKind.MESSAGES_APPENDED, "bot", 42, count=len(ids), message_ids=ids,
           first_seq=5, last_seq=5 + len(ids) - 1)
    assert written.changes == general.changes
    assert json.loads(written.changes[0][3])["message_ids"] == ids


def test_postgres_appends_of_a_batch_are_answered_after_the_batch_sent_them(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL a batch's appends are sent back to back and answered together: the job
    after an append runs before the append's rows are fetched. Without a second cursor in the
    write transaction each append fetched its answer at once (a round trip per job)."""
    events: list[str] = []
    fetchall = psycopg.Cursor.fetchall

    def recorded_fetchall(self: psycopg.Cursor[Any]) -> list[Any]:
        events.append("fetch")
        return fetchall(self)

    with SessionStore.open(PG_URL, schema=pg_schema, pool_size=2) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(key_for(0))

        def next_job(tx: Tx) -> None:
            events.append("next job")

        jobs = [Job(_append_job(key_for(0), "first")), Job(next_job)]
        monkeypatch.setattr(psycopg.Cursor, "fetchall", recorded_fetchall)
        store._engine._run_batch(jobs)
        monkeypatch.undo()
        assert events[:2] == ["next job", "fetch"]
        assert [m.content for m in cast(list[StoredMessage], jobs[0].result)] == ["first"]
        assert [m.content for m in agent.get_history(key_for(0))] == ["first"]
