"""Runs: how fast start_run + finish_run go, and how soon a waiting start_run takes over a lease.

    .venv/bin/python -m benchmarks.runs [--budget 1.5] [--keys 100] [--handovers 50]
                                        [--no-postgres] [--quick] [--markdown]

``--markdown`` prints the results as markdown tables (the progress goes to stderr): the form
``python -m benchmarks`` puts in docs/performance.md's ``## Capabilities``.

1. Throughput: one writer thread, start_run then finish_run, over one key and round-robin over
   ``--keys`` keys, on SQLite (durability "full" and "normal") and PostgreSQL ("full" and
   "normal"), each against raw statements doing the same work on this benchmark's own small
   tables in the same database: a start is one transaction that locks the session row (FOR
   UPDATE on PostgreSQL; BEGIN IMMEDIATE on SQLite), reads the database's clock, takes the next
   fence from a counter and upserts the key's runs row; a finish is one transaction updating the
   runs row. Each is committed on its own.
2. Hand-over: the holder starts a run; a waiter calls ``start_run(wait=5)`` on the same key;
   after a random hold the holder finishes and notes the clock right after ``finish_run``
   returns, the waiter right after its ``start_run`` returns. The waiter is another thread on the
   holder's store handle (woken in-process), another thread with a handle of its own (on
   PostgreSQL woken by LISTEN/NOTIFY; on SQLite only its poll finds the lease free) or another
   process (``time.time()`` as the shared clock). Median and p90 of the difference over
   ``--handovers`` hand-overs (also from just before ``finish_run`` was called), next to an
   uncontended start_run's latency: a waiter that only polls should take over about half its
   poll interval plus one start after a finish; a woken one, about one start.

PostgreSQL runs in a fresh schema (dropped afterwards); SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from aisopod_session import AgentSessions, SessionKey, SessionStore
from aisopod_session.store._engine import Durability
from aisopod_session.store._postgres import PostgresEngine
from aisopod_session.store._sqlite import SQLiteEngine

from .common import ACCOUNT, AGENT, CHANNEL, percentile

URL = os.environ.get("AISOPOD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TTL = 30.0
DURABILITIES: tuple[Durability, ...] = ("full", "normal")
WARMUP = 20
ROUNDS = 3

Step = Callable[[int], object]

# --- raw statements --------------------------------------------------------------------------
# The key is the store's five columns, the session row found by them (status <> 'archived'),
# the runs row keyed by them: the same lookups a store start does, on tables of our own.

RAW_KEY = "agent_id = ? AND channel = ? AND account_id = ? AND peer_kind = ? AND peer_id = ?"
RAW_TABLES = (
    "CREATE TABLE bench_sessions (id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, "
    "channel TEXT NOT NULL, account_id TEXT NOT NULL, peer_kind TEXT NOT NULL, "
    "peer_id TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active')",
    "CREATE UNIQUE INDEX bench_sessions_key ON bench_sessions "
    "(agent_id, channel, account_id, peer_kind, peer_id) WHERE status <> 'archived'",
    "CREATE TABLE bench_runs (agent_id TEXT NOT NULL, channel TEXT NOT NULL, "
    "account_id TEXT NOT NULL, peer_kind TEXT NOT NULL, peer_id TEXT NOT NULL, "
    "fence BIGINT NOT NULL, owner TEXT, started_at BIGINT, expires_at BIGINT, ttl BIGINT, "
    "stop_requested INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (agent_id, channel, account_id, peer_kind, peer_id))",
)
RAW_SESSION = "INSERT INTO bench_sessions (agent_id, channel, account_id, peer_kind, peer_id) " \
              "VALUES (?, ?, ?, ?, ?)"
RAW_LOCK = f"SELECT id FROM bench_sessions WHERE {RAW_KEY} AND status <> 'archived'"
RAW_UPSERT = (
    "INSERT INTO bench_runs (agent_id, channel, account_id, peer_kind, peer_id, fence, owner, "
    "started_at, expires_at, ttl, stop_requested) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) "
    "ON CONFLICT (agent_id, channel, account_id, peer_kind, peer_id) DO UPDATE SET "
    "fence = excluded.fence, owner = excluded.owner, started_at = excluded.started_at, "
    "expires_at = excluded.expires_at, ttl = excluded.ttl, stop_requested = 0 "
    "WHERE bench_runs.owner IS NULL OR bench_runs.expires_at <= excluded.started_at"
)
RAW_FINISH = ("UPDATE bench_runs SET owner = NULL, started_at = NULL, expires_at = NULL, "
              f"ttl = NULL, stop_requested = 0 WHERE {RAW_KEY} AND fence = ?")
SQLITE_NOW = "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER) * 1000"
SQLITE_FENCE = "UPDATE bench_fences SET value = value + 1 WHERE id = 1 RETURNING value"
PG_NOW = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
PG_FENCE = "SELECT nextval('bench_fences')"  # the store's fences come from a sequence too


def _keys(count: int) -> list[SessionKey]:
    return [SessionKey(AGENT, CHANNEL, ACCOUNT, "dm", f"user{i}") for i in range(count)]


def _params(key: SessionKey) -> tuple[str, str, str, str, str]:
    return (key.agent_id, key.channel, key.account_id, key.peer_kind.value, key.peer_id)


class RawSQLite:
    """One connection, WAL, the durability's synchronous level: start and finish by hand."""

    def __init__(self, path: str, durability: str, keys: list[SessionKey]) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = " + ("FULL" if durability == "full" else "NORMAL"))
        self.conn.execute("BEGIN")
        for statement in RAW_TABLES:
            self.conn.execute(statement.replace("BIGINT", "INTEGER"))
        self.conn.execute("CREATE TABLE bench_fences (id INTEGER PRIMARY KEY, value INTEGER)")
        self.conn.execute("INSERT INTO bench_fences VALUES (1, 0)")
        self.conn.executemany(RAW_SESSION, [_params(k) for k in keys])
        self.conn.execute("COMMIT")

    def start(self, key: SessionKey) -> int:
        params = _params(key)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(RAW_LOCK, params).fetchone()
        now = int(self.conn.execute(SQLITE_NOW).fetchone()[0])
        fence = int(self.conn.execute(SQLITE_FENCE).fetchone()[0])
        length = int(TTL * 1_000_000)
        self.conn.execute(RAW_UPSERT, (*params, fence, "raw", now, now + length, length))
        self.conn.execute("COMMIT")
        return fence

    def finish(self, key: SessionKey, fence: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(RAW_FINISH, (*_params(key), fence))
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawPostgres:
    """One autocommit connection in the benchmark's schema: explicit BEGIN / COMMIT, like the
    store's writes, so each statement is one round trip."""

    def __init__(self, schema: str, durability: str, keys: list[SessionKey]) -> None:
        self.conn = psycopg.connect(URL, autocommit=True)
        self.conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        if durability == "normal":
            self.conn.execute("SET synchronous_commit TO off")  # what the store's "normal" sets
        self.conn.execute("BEGIN")
        for statement in RAW_TABLES:
            self.conn.execute(statement.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY"))
        self.conn.execute("CREATE SEQUENCE bench_fences")
        with self.conn.cursor() as cursor:
            cursor.executemany(_pg(RAW_SESSION), [_params(k) for k in keys])
        self.conn.execute("COMMIT")
        self.cursor = self.conn.cursor()

    def start(self, key: SessionKey) -> int:
        params = _params(key)
        cur = self.cursor
        cur.execute("BEGIN")
        cur.execute(_pg(RAW_LOCK + " FOR UPDATE"), params)
        cur.fetchone()
        now = int(_one(cur.execute(PG_NOW)))
        fence = int(_one(cur.execute(PG_FENCE)))
        length = int(TTL * 1_000_000)
        cur.execute(_pg(RAW_UPSERT), (*params, fence, "raw", now, now + length, length))
        cur.execute("COMMIT")
        return fence

    def finish(self, key: SessionKey, fence: int) -> None:
        cur = self.cursor
        cur.execute("BEGIN")
        cur.execute(_pg(RAW_FINISH), (*_params(key), fence))
        cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def _pg(statement: str) -> str:
    return statement.replace("?", "%s")


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    assert row is not None
    return row[0]


# --- the databases -----------------------------------------------------------------------------


@contextmanager
def _sqlite_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="aisopod-runs-") as tmp:
        yield str(Path(tmp) / "runs.db")


@contextmanager
def _pg_schema() -> Iterator[str]:
    schema = f"bench_runs_{uuid.uuid4().hex[:10]}"
    try:
        yield schema
    finally:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def _open(backend: str, where: str, durability: Durability) -> SessionStore:
    if backend == "sqlite":
        return SessionStore.open(where, durability=durability)
    return SessionStore.open(URL, schema=where, pool_size=4, durability=durability)


# --- 1. throughput -----------------------------------------------------------------------------


def _pairs_per_second(step: Step, seconds: float, start: int) -> tuple[float, int]:
    """Calls of ``step`` per second for ``seconds``; and the next index to use."""
    started = time.perf_counter()
    deadline = started + seconds
    done = 0
    while True:
        step(start + done)
        done += 1
        if time.perf_counter() > deadline:
            break
    return done / (time.perf_counter() - started), start + done


def _alternating(steps: dict[str, Step], budget: float) -> dict[str, float]:
    """Each step's rate, the median of ROUNDS rounds that take turns (so that drifting machine
    load falls on every variant alike)."""
    rates: dict[str, list[float]] = {name: [] for name in steps}
    index = dict.fromkeys(steps, 0)
    for step in steps.values():
        for i in range(WARMUP):
            step(i)
    for _ in range(ROUNDS):
        for name, step in steps.items():
            rate, index[name] = _pairs_per_second(step, budget / ROUNDS, index[name])
            rates[name].append(rate)
    return {name: statistics.median(values) for name, values in rates.items()}


def throughput(backend: str, durability: Durability, key_count: int,
               budget: float) -> dict[str, float]:
    """start+finish pairs per second: the store and raw statements, one key and many keys."""
    keys = _keys(key_count)
    result: dict[str, float] = {}
    context = _sqlite_file() if backend == "sqlite" else _pg_schema()
    with context as where:
        store = _open(backend, where, durability)
        raw: RawSQLite | RawPostgres = (RawSQLite(where, durability, keys) if backend == "sqlite"
                                        else RawPostgres(where, durability, keys))
        try:
            agent = store.for_agent(AGENT)
            for key in keys:  # the sessions and runs rows exist before timing, for both
                agent.finish_run(agent.start_run(key, "setup", ttl=TTL))
                raw.finish(key, raw.start(key))
            for label, count in (("1 key", 1), (f"{key_count} keys", key_count)):

                def store_step(i: int, count: int = count) -> None:
                    agent.finish_run(agent.start_run(keys[i % count], "bench", ttl=TTL))

                def raw_step(i: int, count: int = count) -> None:
                    key = keys[i % count]
                    raw.finish(key, raw.start(key))

                rates = _alternating({"store": store_step, "raw": raw_step}, budget)
                result[f"store {label}"] = rates["store"]
                result[f"raw {label}"] = rates["raw"]
        finally:
            raw.close()
            store.close()
    return result


# --- 2. hand-over ------------------------------------------------------------------------------

MODES = ("one handle", "two handles", "two processes")
"""Where the waiter is: another thread on the holder's own store handle (woken in-process by the
finish); another thread with a second handle (an engine of its own: like another process, but
sharing the holder's clock and GIL); another process (its own interpreter; time.time())."""
HOLD = (0.04, 0.10)
"""Seconds a holder keeps its run, at random: the waiter is waiting by then, at a random phase
of its poll interval."""
HANDOVER_WARMUP = 3  # hand-overs not counted (the PostgreSQL listener starts on the first wait)

Outcome = tuple[float, str | None]  # when the waiter's start_run returned, or nan and the error


def _take(agent: AgentSessions, key: SessionKey, clock: Callable[[], float]) -> Outcome:
    try:
        run = agent.start_run(key, "waiter", ttl=TTL, wait=5)
    except Exception as exc:  # reported, not hidden: a missed hand-over is a finding
        return float("nan"), f"{type(exc).__name__}: {exc}"
    acquired = clock()
    agent.finish_run(run)
    return acquired, None


class _ThreadWaiter:
    def __init__(self, agent: AgentSessions, key: SessionKey) -> None:
        self._agent, self._key = agent, key
        self._go = threading.Event()
        self._stop = False
        self._results: queue.Queue[Outcome] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="waiter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()  # the holder sets it again only after this result
            if self._stop:
                return
            self._results.put(_take(self._agent, self._key, time.monotonic))

    def go(self) -> None:
        self._go.set()

    def result(self) -> Outcome:
        return self._results.get(timeout=10)

    def close(self) -> None:
        self._stop = True
        self._go.set()
        self._thread.join(10)


def _waiter_process(backend: str, where: str, peer_id: str, go: Any, stop: Any,
                    results: Any) -> None:
    key = SessionKey(AGENT, CHANNEL, ACCOUNT, "dm", peer_id)
    with _open(backend, where, "full") as store:
        agent = store.for_agent(AGENT)
        agent.current_run(key)  # connected before the first hand-over
        results.put((0.0, None))
        while True:
            go.wait()
            go.clear()
            if stop.is_set():
                return
            results.put(_take(agent, key, time.time))


class _ProcessWaiter:
    def __init__(self, backend: str, where: str, key: SessionKey) -> None:
        context = multiprocessing.get_context("spawn")
        self._go, self._stop = context.Event(), context.Event()
        self._results = context.Queue()
        self._process = context.Process(target=_waiter_process, args=(
            backend, where, key.peer_id, self._go, self._stop, self._results), daemon=True)
        self._process.start()
        self._results.get(timeout=60)  # ready

    def go(self) -> None:
        self._go.set()

    def result(self) -> Outcome:
        outcome: Outcome = self._results.get(timeout=10)
        return outcome

    def close(self) -> None:
        self._stop.set()
        self._go.set()
        self._process.join(10)


Waiter = _ThreadWaiter | _ProcessWaiter


def handover(backend: str, count: int) -> dict[str, dict[str, float]]:
    """Per mode, median and p90 (ms) of waiter acquired - holder finished, over ``count``
    hand-overs on one key; and an uncontended start_run's latency ("uncontended")."""
    key = _keys(1)[0]
    results: dict[str, dict[str, float]] = {}
    context = _sqlite_file() if backend == "sqlite" else _pg_schema()
    with context as where, _open(backend, where, "full") as holder_store:
        holder = holder_store.for_agent(AGENT)
        uncontended = []
        for i in range(WARMUP + 30):
            t0 = time.monotonic()
            run = holder.start_run(key, "probe", ttl=TTL)
            if i >= WARMUP:
                uncontended.append((time.monotonic() - t0) * 1000)
            holder.finish_run(run)
        uncontended.sort()
        results["uncontended"] = {"p50": statistics.median(uncontended),
                                  "p90": percentile(uncontended, 0.90)}
        for mode in MODES:
            if mode == "one handle":
                results[mode] = _handovers(holder, _ThreadWaiter(holder, key), key, count,
                                           time.monotonic)
            elif mode == "two handles":
                with _open(backend, where, "full") as other:
                    results[mode] = _handovers(holder, _ThreadWaiter(other.for_agent(AGENT),
                                                                     key),
                                               key, count, time.monotonic)
            else:
                results[mode] = _handovers(holder, _ProcessWaiter(backend, where, key), key,
                                           count, time.time)
    return results


def _handovers(holder: AgentSessions, waiter: Waiter, key: SessionKey, count: int,
               clock: Callable[[], float]) -> dict[str, float]:
    rng = random.Random(6)
    since_return: list[float] = []
    since_call: list[float] = []
    finish: list[float] = []
    failures: list[str] = []
    try:
        for i in range(HANDOVER_WARMUP + count):
            run = holder.start_run(key, "holder", ttl=TTL)
            waiter.go()
            time.sleep(rng.uniform(*HOLD))
            before = clock()
            holder.finish_run(run)
            after = clock()
            acquired, error = waiter.result()
            if i < HANDOVER_WARMUP:
                continue
            if error is not None:
                failures.append(error)
                continue
            since_return.append((acquired - after) * 1000)
            since_call.append((acquired - before) * 1000)
            finish.append((after - before) * 1000)
    finally:
        waiter.close()
    if failures:
        print(f"    {len(failures)} hand-overs failed, the first: {failures[0]}",
              file=sys.stderr)
    since_return.sort()
    since_call.sort()
    return {
        "n": len(since_return), "failures": len(failures),
        "p50": statistics.median(since_return), "p90": percentile(since_return, 0.90),
        "p99": percentile(since_return, 0.99),
        "min": since_return[0], "max": since_return[-1],
        "early": sum(1 for v in since_return if v < 0),
        "p50_call": statistics.median(since_call), "p90_call": percentile(since_call, 0.90),
        "finish_p50": statistics.median(finish),
    }


def _poll_ms(backend: str) -> str:
    """The poll interval of a waiting start_run (an internal of the engine: "?" if renamed)."""
    engine = SQLiteEngine if backend == "sqlite" else PostgresEngine
    poll = getattr(engine.dialect, "run_poll_seconds", None)
    return "?" if poll is None else f"{poll * 1000:g} ms"


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runs")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per throughput cell, in ROUNDS turns (default 1.5)")
    parser.add_argument("--keys", type=int, default=None,
                        help="keys for the many-keys cells (default 100)")
    parser.add_argument("--handovers", type=int, default=None, help="default 50")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (budget 0.3, 10 keys, 5 hand-overs): a smoke run")
    parser.add_argument("--markdown", action="store_true",
                        help="markdown tables on stdout, the progress on stderr")
    args = parser.parse_args()
    quick = {"budget": 0.3, "keys": 10, "handovers": 5}
    full = {"budget": 1.5, "keys": 100, "handovers": 50}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    out = sys.stderr if args.markdown else sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    backends = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
    load = os.getloadavg()
    say(f"sqlite {sqlite3.sqlite_version}; {os.cpu_count()} CPUs; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    say(f"\n1. start_run + finish_run pairs/s, one writer thread ({args.budget:g} s per cell; "
        f"median of {ROUNDS} alternating rounds; ratio store / raw)")
    rates: dict[tuple[str, str], dict[str, float]] = {}
    for backend in backends:
        for durability in DURABILITIES:
            r = rates[backend, durability] = throughput(backend, durability, args.keys,
                                                        args.budget)
            cells = []
            for label in ("1 key", f"{args.keys} keys"):
                store, raw = r[f"store {label}"], r[f"raw {label}"]
                cells.append(f"{label}: store {store:,.0f} raw {raw:,.0f} ({store / raw:.2f}x)")
            say(f"  {backend:8} {durability:6}  " + ";  ".join(cells))
    say(f"\n2. hand-over, {args.handovers} times per row: waiter's start_run(wait=5) "
        "returned - holder's finish_run returned (ms)")
    handovers: dict[str, dict[str, dict[str, float]]] = {}
    for backend in backends:
        h = handovers[backend] = handover(backend, args.handovers)
        free = h["uncontended"]
        say(f"  {backend} (poll {_poll_ms(backend)}; uncontended start_run median "
            f"{free['p50']:.1f} p90 {free['p90']:.1f}; hold {HOLD[0] * 1000:.0f}-"
            f"{HOLD[1] * 1000:.0f} ms)")
        for mode in MODES:
            m = h[mode]
            say(f"    {mode:13} median {m['p50']:5.1f}  p90 {m['p90']:5.1f}  "
                f"(min {m['min']:.2f} max {m['max']:.1f}; from before finish_run: median "
                f"{m['p50_call']:.1f} p90 {m['p90_call']:.1f}; finish_run {m['finish_p50']:.1f};"
                f" n={m['n']}, before finish_run returned {m['early']}, "
                f"failed {m['failures']})")
    load = os.getloadavg()
    say(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.markdown:
        print(markdown(args, rates, handovers))
    failed = any(h[mode]["failures"] for h in handovers.values() for mode in MODES)
    sys.exit(1 if failed else 0)


def markdown(args: argparse.Namespace, rates: dict[tuple[str, str], dict[str, float]],
             handovers: dict[str, dict[str, dict[str, float]]]) -> str:
    """The results as ``--markdown`` prints them."""
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    quick = " (quick mode: not a measurement)" if args.quick else ""
    many = f"{args.keys} keys"
    lines = [f"### Runs: start_run + finish_run pairs/s{quick}", "",
             f"One writer thread, each call its own transaction; median of {ROUNDS} alternating "
             f"rounds, {args.budget:g} s per cell; raw = the same statements by hand "
             "(`python -m benchmarks.runs`).", "",
             f"| backend | durability | store, 1 key | raw, 1 key | store, {many} | "
             f"raw, {many} | store / raw ({many}) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (backend, durability), r in rates.items():
        lines.append(f"| {names[backend]} | {durability} | {r['store 1 key']:,.0f}/s | "
                     f"{r['raw 1 key']:,.0f}/s | {r[f'store {many}']:,.0f}/s | "
                     f"{r[f'raw {many}']:,.0f}/s | "
                     f"{r[f'store {many}'] / r[f'raw {many}']:.2f}x |")
    lines += ["", f"### Runs: hand-over latency (ms){quick}", "",
              "Holder's finish_run returned → a waiting start_run(wait=5) returned, "
              f"{args.handovers} hand-overs per row; holds of {HOLD[0] * 1000:.0f}-"
              f"{HOLD[1] * 1000:.0f} ms.", "",
              "| backend | waiter | p50 | p90 | p99 | min / max | n (failed) | "
              "uncontended start_run p50 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for backend, h in handovers.items():
        free = h["uncontended"]["p50"]
        for mode in MODES:
            m = h[mode]
            lines.append(f"| {names[backend]} (poll {_poll_ms(backend)}) | {mode} | "
                         f"{m['p50']:.2f} | {m['p90']:.2f} | {m['p99']:.2f} | "
                         f"{m['min']:.2f} / {m['max']:.2f} | {m['n']} ({m['failures']}) | "
                         f"{free:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
