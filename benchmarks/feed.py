"""The change feed's cost to the append path, and how soon a watcher sees a commit.

    .venv/bin/python -m benchmarks.feed [--quick] [--baseline-src PATH] [--no-postgres]
                                        [--search off|on]

1. Throughput, with the feed and without: W1 (one writer, one session, one message per
   ``append_messages`` call, blocking ``SessionStore``) and W6 (64 asyncio tasks on one
   ``AsyncSessionStore``, each appending one message per call to its own session), on SQLite (a
   file in a temporary directory) and PostgreSQL (a fresh schema, dropped afterwards),
   durability "full". "With the feed" is this checkout's ``src`` (or ``--feed-src``); "without"
   is ``--baseline-src`` (the ``src`` of a checkout before the feed, e.g. a ``git worktree`` of
   ``d87135c~1``) or, if not given, that revision extracted with ``git archive`` into a
   temporary directory. The feed variant's store is opened with ``search=False`` unless
   ``--search on`` (the search index, issue 20, is written in the same transaction; the baseline
   has none, so the default measures the feed alone). Every measurement is a child process of
   its own (``PYTHONPATH`` set to the ``src`` it measures) on a fresh database whose sessions
   were created (and warmed up with a few appends) before the clock starts; it appends for
   ``--seconds``. The two variants take turns, ``--rounds`` times (the order flips every round
   so that drifting machine load falls on both alike); the table gives each variant's median and
   the ratio of the medians, and beside them the measuring process's CPU time (user + system,
   all its threads) per append, which other load on the machine moves less than the rates (on
   PostgreSQL the server's CPU is not in it).
2. Watch latency: from the moment a writer's ``append_messages`` returned to the moment a
   watcher's ``watch()`` yielded the entry (matched by message id; ``time.monotonic``, which on
   Linux is one clock for every process). The watcher is either ``SessionStore.watch()`` iterated
   in a thread or ``AsyncSessionStore.watch()`` iterated by an asyncio task, over a cursor taken
   before the writer starts. The writer is (a) in the same process, on the watcher's own store
   handle, appending at a steady ``--rate``; (b) another process with a store of its own,
   appending at the same rate (SQLite wakes the watcher by its ``PRAGMA data_version`` poll,
   every 20 ms; PostgreSQL by LISTEN/NOTIFY); (c) a W6-like load: 64 asyncio writers at full
   speed, in the watcher's process (asyncio watcher on the load's store) or in another process,
   every append timed. Entries written in the writer's first 0.3 s are not counted (the
   listener or poller starts then). Each row pools the samples of ``--watch-runs`` runs (each a
   fresh process and database); its p99 is of the pooled samples, the per-run p99s are listed
   beside it. A negative delay means the watcher yielded the entry before the writer's call had
   returned (both are woken by the same commit; under a load, a writer task resumes only when its
   event loop gets to it). The last column measures from the entry's own ``at`` instead
   (``time.time()`` at the yield minus ``at``, which the store stamps just before COMMIT): the
   commit itself (its fsync) is in it, the writer's scheduling is not.

Nothing is asserted about speed; ``--quick`` is a smoke run with tiny sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisopod_session import AsyncSessionStore, SessionKey, SessionStore, StoredMessage
from benchmarks import common

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FEED_COMMIT = "d87135c"
"""The commit that added the change feed: without ``--baseline-src``, its parent is measured."""
SCHEMA_PREFIX = "bench_feed_"
BACKENDS = ("sqlite", "postgres")
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
WORKLOADS = ("w1", "w6")
VARIANTS = ("feed", "baseline")
APPENDED = "messages.appended"
DRAIN_SECONDS = 5.0
"""How long a watcher may take to see the last entries once the writer is done."""
CHILD_TIMEOUT = 300.0

X = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"

now = time.monotonic


@dataclass
class Sizes:
    rounds: int = 5
    seconds: float = 3.0
    warmup: int = 50
    writers: int = 64
    watch_runs: int = 3
    watch_seconds: float = 3.0
    warm_seconds: float = 0.3
    """Entries written this long after the writer started are not counted (watch latency)."""
    rate: float = 100.0


QUICK = Sizes(rounds=1, seconds=0.2, warmup=5, writers=8, watch_runs=1, watch_seconds=0.3,
              warm_seconds=0.1, rate=50.0)


def key(i: int) -> SessionKey:
    return SessionKey(common.AGENT, common.CHANNEL, common.ACCOUNT, "dm", f"user{i}")


def message(i: int) -> StoredMessage:
    return StoredMessage.user(common.text(i)) if i % 2 == 0 else StoredMessage.assistant(
        common.text(i))


def _url(backend: str, where: str, pg_url: str) -> tuple[str, str | None]:
    """The URL and schema a child opens: ``where`` is a file (SQLite) or a schema name."""
    if backend == "sqlite":
        return f"sqlite:///{where}", None
    return pg_url, where


# --- children: each runs under the src it measures (the baseline has no feed) -----------------


def _identity() -> dict[str, Any]:
    import aisopod_session

    return {"src": str(Path(aisopod_session.__file__).resolve().parent.parent),
            "feed": hasattr(SessionStore, "latest_cursor")}


def _search_option(search: bool | None) -> dict[str, Any]:
    """``search=`` for ``open``: only where given (the baseline's store has no such option)."""
    return {} if search is None else {"search": search}


def w1(backend: str, where: str, pg_url: str, durability: str, seconds: float,
       warmup: int, search: bool | None = None) -> dict[str, Any]:
    """One writer, one session, one message per call, for ``seconds``."""
    url, schema = _url(backend, where, pg_url)
    with SessionStore.open(url, durability=durability, schema=schema,  # type: ignore[arg-type]
                           **_search_option(search)) as store:
        agent = store.for_agent(common.AGENT)
        k = key(0)
        agent.get_or_create(k)
        for i in range(warmup):
            agent.append_messages(k, [message(i)])
        done = 0
        cpu, started = time.process_time(), time.perf_counter()
        deadline = started + seconds
        while True:
            agent.append_messages(k, [message(warmup + done)])
            done += 1
            if time.perf_counter() > deadline:
                break
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert agent.get(k).message_count == warmup + done
    return {"ops": done, "seconds": elapsed, "rate": done / elapsed,
            "cpu_us": cpu / done * 1e6, **_identity()}


def w6(backend: str, where: str, pg_url: str, durability: str, seconds: float, warmup: int,
       writers: int, search: bool | None = None) -> dict[str, Any]:
    """``writers`` asyncio tasks on one AsyncSessionStore, each on its own session."""

    async def main() -> dict[str, Any]:
        url, schema = _url(backend, where, pg_url)
        store = await AsyncSessionStore.open(url, durability=durability,  # type: ignore[arg-type]
                                             schema=schema, **_search_option(search))
        async with store:
            agent = store.for_agent(common.AGENT)
            keys = [key(w) for w in range(writers)]
            for k in keys:
                await agent.get_or_create(k)
            await asyncio.gather(*(agent.append_messages(keys[i % writers], [message(i)])
                                   for i in range(max(warmup, writers))))
            cpu = time.process_time()
            result = await common.concurrent_writers(
                writers, 10**9, seconds,
                lambda w, i: agent.append_messages(keys[w], [message(i)]))
            result["cpu_us"] = (time.process_time() - cpu) / max(1, result["ops"]) * 1e6
            return result

    result = asyncio.run(main())
    return {**result, **_identity()}


# --- watch latency (the feed's src only) ------------------------------------------------------


Sent = list[tuple[int, float]]
"""(message id, clock when its append_messages call returned)."""


def _paced(append: Callable[[int], Sequence[StoredMessage]], rate: float,
           seconds: float) -> Sent:
    sent: Sent = []
    interval, started = 1.0 / rate, now()
    for i in range(max(1, round(rate * seconds))):
        delay = started + i * interval - now()
        if delay > 0:
            time.sleep(delay)
        stored = append(i)
        sent.append((stored[0].id or 0, now()))
    return sent


async def _paced_async(agent: Any, rate: float, seconds: float) -> Sent:
    sent: Sent = []
    interval, started, k = 1.0 / rate, now(), key(0)
    for i in range(max(1, round(rate * seconds))):
        delay = started + i * interval - now()
        if delay > 0:
            await asyncio.sleep(delay)
        stored = await agent.append_messages(k, [message(i)])
        sent.append((stored[0].id or 0, now()))
    return sent


async def _load(agent: Any, writers: int, seconds: float) -> tuple[Sent, float]:
    """A W6-like load: ``writers`` tasks appending as fast as they can; every append timed."""
    sent: Sent = []
    keys = [key(w) for w in range(writers)]
    for k in keys:
        await agent.get_or_create(k)
    started = now()
    deadline = started + seconds

    async def writer(w: int) -> None:
        i = 0
        while now() < deadline:
            stored = await agent.append_messages(keys[w], [message(i)])
            sent.append((stored[0].id or 0, now()))
            i += 1

    await asyncio.gather(*(writer(w) for w in range(writers)))
    return sent, len(sent) / (now() - started)


def writer(backend: str, where: str, pg_url: str, durability: str, kind: str, rate: float,
           seconds: float, writers: int) -> dict[str, Any]:
    """The writer of another process: paced (blocking store) or a W6-like load (asyncio)."""
    url, schema = _url(backend, where, pg_url)
    if kind == "paced":
        with SessionStore.open(url, durability=durability, schema=schema) as store:  # type: ignore[arg-type]
            agent = store.for_agent(common.AGENT)
            agent.get_or_create(key(0))
            started = now()
            sent = _paced(lambda i: agent.append_messages(key(0), [message(i)]), rate, seconds)
            achieved = len(sent) / (now() - started)
    else:

        async def main() -> tuple[Sent, float]:
            store = await AsyncSessionStore.open(url, durability=durability,  # type: ignore[arg-type]
                                                 schema=schema)
            async with store:
                return await _load(store.for_agent(common.AGENT), writers, seconds)

        sent, achieved = asyncio.run(main())
    return {"sent": sent, "rate": achieved, **_identity()}


def _spawn_writer(spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`writer` in another process (same interpreter and PYTHONPATH)."""
    return _run_child({"func": "writer", "kwargs": spec}, env=None)


Seen = dict[int, tuple[float, float]]
"""Message id -> (clock when the watcher yielded its entry, ms since the entry's ``at``)."""


def _note(seen: Seen, change: Any) -> None:
    t, wall = now(), time.time()
    if change.kind == APPENDED:
        age = (wall - change.at.timestamp()) * 1000
        for mid in change.data["message_ids"]:
            seen.setdefault(mid, (t, age))


def _samples(sent: Sent, seen: Seen, warm_seconds: float) -> dict[str, Any]:
    if not sent:
        return {"delays_ms": [], "ages_ms": [], "missed": 0, "sent": 0}
    cutoff = min(t for _, t in sent) + warm_seconds
    counted = [(mid, t) for mid, t in sent if t >= cutoff]
    delays = [(seen[mid][0] - t) * 1000 for mid, t in counted if mid in seen]
    ages = [seen[mid][1] for mid, _ in counted if mid in seen]
    return {"delays_ms": delays, "ages_ms": ages, "missed": len(counted) - len(delays),
            "sent": len(sent)}


class _ThreadWatcher:
    """``SessionStore.watch()`` iterated in a thread, noting when each appended id came out."""

    def __init__(self, store: SessionStore, since: str) -> None:
        self.seen: Seen = {}
        self.error: str | None = None
        self.stopping = False
        self._store, self._since = store, since
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-watcher")
        self._thread.start()

    def _run(self) -> None:
        try:
            for change in self._store.watch(since=self._since):
                _note(self.seen, change)
        except Exception as exc:  # the store closed under a read: only an error before that
            if not self.stopping:
                self.error = f"{type(exc).__name__}: {exc}"

    def drain(self, sent: Sent) -> None:
        """Wait until every sent id was seen (or DRAIN_SECONDS pass); the store closes next."""
        pending, deadline = [mid for mid, _ in sent], now() + DRAIN_SECONDS
        while pending and now() < deadline:
            time.sleep(0.01)
            pending = [mid for mid in pending if mid not in self.seen]
        self.stopping = True

    def join(self) -> None:
        self._thread.join(timeout=10)


async def _async_watcher(store: AsyncSessionStore, since: str, seen: Seen) -> None:
    async for change in store.watch(since=since):
        _note(seen, change)


async def _drain_async(seen: Seen, sent: Sent) -> None:
    pending, deadline = [mid for mid, _ in sent], now() + DRAIN_SECONDS
    while pending and now() < deadline:
        await asyncio.sleep(0.01)
        pending = [mid for mid in pending if mid not in seen]


async def _stop_watcher(task: asyncio.Task[None]) -> None:
    """Cancel the watcher and wait for it, cancelling again if a cancel was lost: on Python 3.11
    ``asyncio.wait_for`` (the watch's wait for a wake-up) swallows a cancel that comes as the
    wake-up does (CPython gh-86296), and the watch then goes on (seen about once in 30 runs of
    PostgreSQL's W6 load on the watcher's store)."""
    lost = 0
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
        lost += not task.done()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if lost:
        print(f"the watcher went on after {lost} cancel(s) (Python {platform.python_version()}'s "
              "asyncio.wait_for lost them)", file=sys.stderr, flush=True)


def watch(backend: str, where: str, pg_url: str, durability: str, watcher: str, mode: str,
          rate: float, seconds: float, writers: int, warm_seconds: float) -> dict[str, Any]:
    """One watch-latency run: ``watcher`` "thread" or "asyncio"; ``mode`` "same" (a paced
    writer on the watcher's store), "process" (a paced writer in another process), "load-same"
    (a W6-like load on the watcher's store) or "load-process" (that load in another process)."""
    url, schema = _url(backend, where, pg_url)
    remote = {"backend": backend, "where": where, "pg_url": pg_url, "durability": durability,
              "kind": "load" if mode == "load-process" else "paced", "rate": rate,
              "seconds": seconds, "writers": writers}
    load_rate: float | None = None
    if watcher == "thread":
        assert mode in ("same", "process", "load-process")
        with SessionStore.open(url, durability=durability, schema=schema) as store:  # type: ignore[arg-type]
            agent = store.for_agent(common.AGENT)
            agent.get_or_create(key(0))
            watching = _ThreadWatcher(store, store.latest_cursor())
            if mode == "same":
                sent = _paced(lambda i: agent.append_messages(key(0), [message(i)]), rate,
                              seconds)
            else:
                done = _spawn_writer(remote)
                sent = [(int(mid), t) for mid, t in done["sent"]]
                load_rate = done["rate"]
            watching.drain(sent)
        watching.join()
        seen, error = watching.seen, watching.error
    else:

        async def main() -> tuple[Sent, Seen, float | None]:
            seen: Seen = {}
            store = await AsyncSessionStore.open(url, durability=durability,  # type: ignore[arg-type]
                                                 schema=schema)
            rate_of_load: float | None = None
            async with store:
                agent = store.for_agent(common.AGENT)
                await agent.get_or_create(key(0))
                task = asyncio.create_task(_async_watcher(store, await store.latest_cursor(),
                                                          seen))
                if mode == "same":
                    sent = await _paced_async(agent, rate, seconds)
                elif mode == "load-same":
                    sent, rate_of_load = await _load(agent, writers, seconds)
                else:
                    done = await asyncio.to_thread(_spawn_writer, remote)
                    sent = [(int(mid), t) for mid, t in done["sent"]]
                    rate_of_load = done["rate"]
                await _drain_async(seen, sent)
                if task.done() and task.exception() is not None:
                    raise RuntimeError(f"the watcher failed: {task.exception()!r}")
                await _stop_watcher(task)
            return sent, seen, rate_of_load

        sent, seen, load_rate = asyncio.run(main())
        error = None
    result = _samples(sent, seen, warm_seconds)
    result.update(error=error, writer_rate=load_rate, **_identity())
    return result


# --- the parent ---------------------------------------------------------------------------------


def _run_child(spec: dict[str, Any], env: dict[str, str] | None) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.feed", "--child", json.dumps(spec)],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"{spec['func']} exited {proc.returncode}: {tail}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def _child_main(raw: str) -> None:
    spec = json.loads(raw)
    func = {"w1": w1, "w6": w6, "watch": watch, "writer": writer}[spec["func"]]
    result = func(**spec["kwargs"])  # type: ignore[operator]
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


class Parent:
    def __init__(self, sizes: Sizes, sources: dict[str, Path], pg_url: str,
                 workdir: Path, search: bool) -> None:
        self.sizes = sizes
        self.search = search
        """Whether the feed variant's store keeps the search index (the baseline has none)."""
        self.sources = sources
        self.pg_url = pg_url
        self.workdir = workdir
        self._counter = 0

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def database(self, backend: str) -> Iterator[str]:
        """A fresh place for one child: a file path, or a schema name (dropped afterwards)."""
        self._counter += 1
        if backend == "sqlite":
            path = self.workdir / f"feed-{self._counter}.db"
            try:
                yield str(path)
            finally:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:10]}"
            try:
                yield schema
            finally:
                drop_schema(self.pg_url, schema)

    def child(self, variant: str, func: str, backend: str, **kwargs: Any) -> dict[str, Any]:
        src = self.sources[variant]
        env = {**os.environ, "PYTHONPATH": str(src)}
        with self.database(backend) as where:
            result = _run_child({"func": func, "kwargs": {
                "backend": backend, "where": where, "pg_url": self.pg_url,
                "durability": "full", **kwargs}}, env)
        if Path(result["src"]) != src.resolve() or result["feed"] != (variant == "feed"):
            raise RuntimeError(f"the {variant} child ran {result['src']} "
                               f"(feed: {result['feed']}), not {src}")
        return result

    def throughput(self, backend: str, workload: str) -> dict[str, Any]:
        sizes = self.sizes
        variants = [v for v in VARIANTS if v in self.sources]
        rates: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        errors = 0
        for r in range(sizes.rounds):
            for variant in variants if r % 2 == 0 else variants[::-1]:
                extra: dict[str, Any] = {"seconds": sizes.seconds, "warmup": sizes.warmup}
                if workload == "w6":
                    extra["writers"] = sizes.writers
                if variant == "feed":
                    extra["search"] = self.search
                result = self.child(variant, workload, backend, **extra)
                rates[variant].append(result["rate"])
                cpu[variant].append(result["cpu_us"])
                errors += result.get("errors", 0)
                self.log(f"  {backend:8} {workload} {variant:8} round {r + 1}: "
                         f"{result['rate']:,.0f}/s, {result['cpu_us']:.0f} us CPU/append")
        return {"rates": rates, "cpu": cpu, "errors": errors}

    def watch_row(self, backend: str, watcher: str, mode: str) -> dict[str, Any]:
        sizes = self.sizes
        delays: list[float] = []
        ages: list[float] = []
        p99s: list[float] = []
        missed = sent = 0
        writer_rates: list[float] = []
        errors: list[str] = []
        for _ in range(sizes.watch_runs):
            result = self.child("feed", "watch", backend, watcher=watcher, mode=mode,
                                rate=sizes.rate, seconds=sizes.watch_seconds,
                                writers=sizes.writers, warm_seconds=sizes.warm_seconds)
            run = sorted(result["delays_ms"])
            delays += run
            ages += result["ages_ms"]
            p99s.append(common.percentile(run, 0.99))
            missed += result["missed"]
            sent += result["sent"]
            if result["writer_rate"] is not None:
                writer_rates.append(result["writer_rate"])
            if result["error"]:
                errors.append(result["error"])
        delays.sort()
        ages.sort()
        row = {"n": len(delays), "missed": missed, "sent": sent, "p99s": p99s,
               "p50": common.percentile(delays, 0.50), "p90": common.percentile(delays, 0.90),
               "p99": common.percentile(delays, 0.99),
               "min": delays[0] if delays else float("nan"),
               "max": delays[-1] if delays else float("nan"),
               "writer_rate": statistics.median(writer_rates) if writer_rates else None,
               "age_p50": common.percentile(ages, 0.50), "age_p99": common.percentile(ages, 0.99),
               "errors": errors}
        self.log(f"  {backend:8} {watcher:7} {mode:12} p50 {row['p50']:.2f} "
                 f"p99 {row['p99']:.2f} ms (n={row['n']}, missed {missed})")
        return row


WATCH_ROWS: tuple[tuple[str, str, str], ...] = (
    # (mode, watcher, the writer as the table names it)
    ("same", "thread", "(a) same process, same store"),
    ("same", "asyncio", "(a) same process, same store"),
    ("process", "thread", "(b) another process"),
    ("process", "asyncio", "(b) another process"),
    ("load-same", "asyncio", "(c) W6 load, same process, same store"),
    ("load-process", "thread", "(c) W6 load in another process"),
    ("load-process", "asyncio", "(c) W6 load in another process"),
)


def drop_schema(pg_url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def pg_version(pg_url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(pg_url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return None if row is None else str(row[0])
    except Exception:
        return None


def extract_baseline(target: Path) -> Path | None:
    """``src`` of the commit before the feed, from ``git archive`` (None if git cannot)."""
    try:
        archive = subprocess.run(["git", "archive", f"{FEED_COMMIT}~1", "src"], cwd=ROOT,
                                 capture_output=True, check=True, timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return target / "src"


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def render(sizes: Sizes, throughput: dict[tuple[str, str], dict[str, Any]],
           latency: dict[tuple[str, str, str], dict[str, Any]], context: dict[str, Any]) -> str:
    quick = " (quick mode: not a measurement)" if context["quick"] else ""
    lines = [f"## Change feed: append cost and watch latency{quick}", "",
             f"- Machine: {context['machine']}; Python {platform.python_version()}; SQLite "
             f"{sqlite3.sqlite_version}; PostgreSQL {context['postgres'] or 'not measured'}",
             f"- With the feed: `{context['feed_src']}` (search index {context['search']}); "
             f"without: `{context['baseline_src']}`",
             f"- Load average before / after: {context['load_before']} / "
             f"{context['load_after']}; {context['seconds']:.0f} s in all",
             "- Durability `full` on both backends (SQLite WAL + synchronous=FULL; PostgreSQL "
             "synchronous_commit=on); every measurement a fresh child process and database",
             ""]
    if throughput:
        lines += [f"### Appends/s, with the feed and without (median of {sizes.rounds} "
                  f"alternating rounds of {sizes.seconds:g} s; lowest and highest in brackets)", "",
                  "| backend | workload | with feed | without | ratio | ≥ 0.85 | "
                  "CPU µs/append with / without (this process, medians) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for (backend, workload), cell in throughput.items():
            label = ("W1 one writer, 1 session" if workload == "w1"
                     else f"W6 {sizes.writers} async writers")
            cells = []
            for variant in VARIANTS:
                values = cell["rates"].get(variant)
                cells.append(f"{_rate(statistics.median(values))} ({min(values):,.0f}{DASH}"
                             f"{max(values):,.0f})" if values else "—")
            ratio = verdict = "—"
            if cell["rates"].get("baseline"):
                value = (statistics.median(cell["rates"]["feed"])
                         / statistics.median(cell["rates"]["baseline"]))
                ratio, verdict = f"**{value:.2f}{X}**", "yes" if value >= 0.85 else "**no**"
            errors = f" ({cell['errors']} errors)" if cell["errors"] else ""
            cpu = " / ".join(f"{statistics.median(cell['cpu'][v]):.0f}" if cell["cpu"].get(v)
                             else "—" for v in VARIANTS)
            lines.append(f"| {BACKEND_NAMES[backend]} | {label}{errors} | {cells[0]} | "
                         f"{cells[1]} | {ratio} | {verdict} | {cpu} |")
        lines.append("")
    if latency:
        lines += [f"### Watch latency: writer's append returned → watcher yielded (ms; "
                  f"{sizes.watch_runs} runs of {sizes.watch_seconds:g} s pooled; paced writers "
                  f"at {sizes.rate:g} appends/s)", "",
                  "| backend | writer | watcher | woken by | p50 | p90 | p99 | min / max | "
                  "p99 per run | n (missed) | writer appends/s | since `at`: p50 / p99 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for (backend, mode, watcher), row in latency.items():
            label = next(text for m, w, text in WATCH_ROWS if m == mode and w == watcher)
            if mode in ("same", "load-same"):
                woken = "in-process wake-up"
            elif backend == "sqlite":
                woken = "data_version poll (20 ms)"
            else:
                woken = "LISTEN/NOTIFY"
            per_run = ", ".join(_ms(v) for v in row["p99s"])
            rate = "—" if row["writer_rate"] is None else _rate(row["writer_rate"])
            if mode in ("same", "process"):
                rate = f"{sizes.rate:g}/s (paced)"
            failed = f"; watcher failed: {row['errors'][0]}" if row["errors"] else ""
            lines.append(
                f"| {BACKEND_NAMES[backend]} | {label} | {watcher} | {woken} | "
                f"{_ms(row['p50'])} | {_ms(row['p90'])} | {_ms(row['p99'])} | "
                f"{_ms(row['min'])} / {_ms(row['max'])} | {per_run} | "
                f"{row['n']:,} ({row['missed']}){failed} | {rate} | "
                f"{_ms(row['age_p50'])} / {_ms(row['age_p99'])} |")
        lines.append("")
    lines += [f"_{note}_" for note in context["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feed",
                                     description="The change feed's cost to appends (W1, W6) "
                                                 "and its watch latency.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: a smoke run, not a measurement")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="the src directory of a checkout without the feed (default: "
                             f"{FEED_COMMIT}~1 extracted with git archive)")
    parser.add_argument("--feed-src", type=Path, default=ROOT / "src",
                        help="the src directory measured with the feed (default: this "
                             "checkout's; e.g. a worktree of a fixed commit)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="measure the feed's src only (no ratios)")
    parser.add_argument("--pg-url", default=os.environ.get("AISOPOD_BENCH_PG_URL",
                                                           DEFAULT_PG_URL))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--only", choices=("throughput", "watch"), default=None)
    parser.add_argument("--watch-rows", choices=("all", "load"), default="all",
                        help="the watch-latency rows: all, or only the (c) W6-load ones "
                             "(the change feed's lag under W6, in ./scripts/bench)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, help="seconds of one throughput measurement")
    parser.add_argument("--writers", type=int)
    parser.add_argument("--watch-runs", type=int)
    parser.add_argument("--watch-seconds", type=float)
    parser.add_argument("--rate", type=float, help="appends/s of a paced writer")
    parser.add_argument("--search", choices=("off", "on"), default="off",
                        help="the feed variant's search index (default off: the baseline has "
                             "no search, so off measures the feed alone)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child is not None:
        _child_main(args.child)
        return 0
    sizes = Sizes(**vars(QUICK)) if args.quick else Sizes()
    for name in ("rounds", "seconds", "writers", "watch_runs", "watch_seconds", "rate"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    notes: list[str] = []
    started = time.perf_counter()
    load_before = common.loadavg()
    with tempfile.TemporaryDirectory(prefix="aisopod-feed-") as tmp:
        workdir = Path(tmp)
        sources = {"feed": args.feed_src.resolve()}
        if not args.no_baseline and args.only != "watch":
            baseline = args.baseline_src or extract_baseline(workdir)
            if baseline is None or not (baseline / "aisopod_session").is_dir():
                notes.append(f"No baseline src (git archive {FEED_COMMIT}~1 failed or "
                             f"{baseline} holds no aisopod_session): no ratios.")
            else:
                sources["baseline"] = baseline.resolve()
        backends = ["sqlite"]
        version = None if args.no_postgres else pg_version(args.pg_url)
        if version:
            backends.append("postgres")
        elif not args.no_postgres:
            notes.append(f"PostgreSQL at {args.pg_url} is not reachable: left out.")
        parent = Parent(sizes, sources, args.pg_url, workdir, search=args.search == "on")
        throughput: dict[tuple[str, str], dict[str, Any]] = {}
        latency: dict[tuple[str, str, str], dict[str, Any]] = {}
        if args.only != "watch":
            parent.log("throughput")
            for backend in backends:
                for workload in WORKLOADS:
                    throughput[backend, workload] = parent.throughput(backend, workload)
        if args.only != "throughput":
            parent.log("watch latency")
            for backend in backends:
                for mode, watcher, _ in WATCH_ROWS:
                    if args.watch_rows == "load" and not mode.startswith("load"):
                        continue
                    latency[backend, mode, watcher] = parent.watch_row(backend, watcher, mode)
        context = {"quick": args.quick, "machine": common.machine(), "postgres": version,
                   "feed_src": sources["feed"],
                   "baseline_src": args.baseline_src or (
                       f"git archive {FEED_COMMIT}~1" if "baseline" in sources else "—"),
                   "search": args.search, "load_before": load_before,
                   "load_after": common.loadavg(), "seconds": time.perf_counter() - started,
                   "notes": notes}
        print(render(sizes, throughput, latency, context))
    failed = any(row["missed"] or row["errors"] for row in latency.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
