"""Several processes (replicas) appending to shared sessions on one PostgreSQL database.

    .venv/bin/python -m benchmarks.scale_out --processes 1 2 4 --threads 8 --sessions 50

Each process opens its own SessionStore (its own pool) on one fresh schema, runs N threads that
append one message per call round-robin over the shared sessions, then the parent checks that
every session's message_count equals its stored rows. Prints messages/s per configuration.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from aisopod_session import SessionKey, SessionStore, StoredMessage

URL = "postgresql://postgres@127.0.0.1:5432/test"


def _keys(sessions: int) -> list[SessionKey]:
    return [SessionKey("bench", "slack", "acct", "dm", f"user{i}") for i in range(sessions)]


def _replica(schema: str, pool: int, threads: int, sessions: int, per_thread: int,
             barrier: Any, results: Any) -> None:
    import threading

    with SessionStore.open(URL, schema=schema, pool_size=pool) as store:
        agent = store.for_agent("bench")
        keys = _keys(sessions)
        for key in keys:
            agent.get_or_create(key)
        errors: list[str] = []

        def work(offset: int) -> None:
            for i in range(per_thread):
                try:
                    agent.append_messages(keys[(offset + i) % sessions],
                                          [StoredMessage.user(f"{offset}-{i}")])
                except Exception as exc:
                    errors.append(repr(exc))

        barrier.wait()
        started = time.perf_counter()
        pool_threads = [threading.Thread(target=work, args=(t * 7,)) for t in range(threads)]
        for thread in pool_threads:
            thread.start()
        for thread in pool_threads:
            thread.join()
        results.put((time.perf_counter() - started, threads * per_thread, errors))


def run(processes: int, threads: int, sessions: int, per_thread: int, pool: int) -> str:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    SessionStore.open(URL, schema=schema, pool_size=1).close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    procs = [context.Process(target=_replica, args=(schema, pool, threads, sessions, per_thread,
                                                     barrier, results)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    seconds = max(o[0] for o in outcomes)
    total = sum(o[1] for o in outcomes)
    errors = [e for o in outcomes for e in o[2]]
    with psycopg.connect(URL, autocommit=True) as conn:
        mismatched = conn.execute(sql.SQL(
            "SELECT count(*) FROM {s}.sessions s WHERE message_count <> "
            "(SELECT count(*) FROM {s}.messages m WHERE m.session_id = s.id AND compacted = 0)"
        ).format(s=sql.Identifier(schema))).fetchone()
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}.messages").format(
            sql.Identifier(schema))).fetchone()
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    assert rows is not None and mismatched is not None
    return (f"| {processes} | {threads} | {pool} | {total:,} | {rows[0]:,} | {mismatched[0]} | "
            f"{len(errors)} | {total / seconds:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--per-thread", type=int, default=250)
    parser.add_argument("--pool", type=int, default=4)
    args = parser.parse_args()
    print("| processes | threads each | pool each | appends | rows stored | counter mismatches "
          "| errors | appends/s |")
    print("|---|---|---|---|---|---|---|---|")
    for processes in args.processes:
        print(run(processes, args.threads, args.sessions, args.per_thread, args.pool), flush=True)


if __name__ == "__main__":
    main()
