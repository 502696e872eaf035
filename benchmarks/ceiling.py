"""How fast can an append be with aisopod-session's statements, whatever the Python around them?

    .venv-bench/bin/python -m benchmarks.ceiling [--appends 2000] [--repeats 2]

Raw ``sqlite3`` only, on the store's own schema (its migrations, read from the package), with
20,000 other sessions so that the indexes are not trivially small. For W1 (one session) and W2
(500 sessions round-robin), at ``synchronous=FULL`` and ``NORMAL``, it times:

* ``insert``: one INSERT and a commit per message (the benchmark's raw baseline);
* ``store``: what the store runs per append (``BEGIN IMMEDIATE``, the counter ``UPDATE …
  RETURNING`` on the session row, the ``INSERT … RETURNING``, ``COMMIT``) on the schema as it
  was before migration 0003 (four indexes holding ``updated_at``), as shipped (two), and with
  none.

The ratios to ``insert`` are the best any store keeping that session row can reach: the W1/W2
targets of issue 6 are measured against ``insert``. Last, like W6: the store's statements for
64 sessions, 64 appends per transaction (group commit), on the schema as shipped.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from importlib import resources
from pathlib import Path

SCHEMAS = {
    # name: (apply the migrations numbered below this, then drop these indexes)
    "before 0003 (4 recency indexes)": (3, ()),
    "as shipped (2 recency indexes)": (10_000, ()),
    "no recency index": (10_000, ("sessions_agent_status_updated", "sessions_status_updated")),
}
LIVE_KEY = ("agent_id = ? AND channel = ? AND account_id = ? AND peer_kind = ? AND peer_id = ? "
            "AND status <> 'archived'")
COUNT_APPEND = (
    "UPDATE sessions SET message_count = message_count + 1, token_usage = token_usage + 0, "
    f"last_seq = last_seq + 1, updated_at = ?, status = 'active' WHERE {LIVE_KEY} "
    "RETURNING id, last_seq, token_usage"
)
INSERT_RETURNING = (
    "INSERT INTO messages (session_id, seq, role, content, tool_calls, created_at, token_count, "
    "external_id) VALUES (?, ?, 'user', ?, NULL, ?, NULL, NULL) RETURNING id"
)
INSERT_PLAIN = (
    "INSERT INTO messages (session_id, seq, role, content, created_at) VALUES (?, ?, 'user', ?, ?)"
)
OTHER_SESSIONS = 20_000
BATCH = 64


def _schema(below: int) -> str:
    folder = resources.files("aisopod_session.store") / "migrations" / "sqlite"
    names = sorted(entry.name for entry in folder.iterdir()
                   if entry.name.endswith(".sql") and int(entry.name.split("_")[0]) < below)
    return "\n".join((folder / name).read_text() for name in names)


def _now() -> int:
    return time.time_ns() // 1000


def _database(path: Path, schema: tuple[int, tuple[str, ...]],
              sessions: int) -> sqlite3.Connection:
    below, dropped = schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(_schema(below))
    for index in dropped:
        conn.execute(f"DROP INDEX {index}")
    insert = ("INSERT INTO sessions (agent_id, channel, account_id, peer_kind, peer_id, status, "
              "created_at, updated_at) VALUES (?, 'discord', 'acct', 'dm', ?, ?, ?, ?)")
    now = _now()
    with conn:  # one transaction: set-up, not measured
        conn.execute("BEGIN")
        conn.executemany(insert, [("bench", f"user{s}", "active", now, now)
                                  for s in range(sessions)])
        conn.executemany(insert, [(f"agent{i % 10}", f"p{i}", "idle", now - i, now - i)
                                  for i in range(OTHER_SESSIONS)])
    return conn


def _rate(variant: str, schema: tuple[int, tuple[str, ...]], synchronous: str, sessions: int,
          appends: int) -> float:
    with tempfile.TemporaryDirectory(prefix="aisopod-ceiling-") as tmp:
        conn = _database(Path(tmp) / "c.db", schema, sessions)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        content = json.dumps("a message of about the benchmark's size " * 3)
        seqs = [0] * sessions
        started = time.perf_counter()
        for i in range(appends):
            s = i % sessions
            if variant == "batch":
                if i % BATCH == 0:
                    conn.execute("BEGIN IMMEDIATE")
                session_id, seq, _ = conn.execute(
                    COUNT_APPEND, (_now(), "bench", "discord", "acct", "dm", f"user{s}")
                ).fetchone()
                conn.execute(INSERT_RETURNING, (session_id, seq, content, _now())).fetchall()
                if i % BATCH == BATCH - 1 or i == appends - 1:
                    conn.execute("COMMIT")
            elif variant == "insert":
                seqs[s] += 1
                conn.execute("BEGIN")
                conn.execute(INSERT_PLAIN, (s + 1, seqs[s], content, _now()))
                conn.execute("COMMIT")
            else:
                conn.execute("BEGIN IMMEDIATE")
                session_id, seq, _ = conn.execute(
                    COUNT_APPEND, (_now(), "bench", "discord", "acct", "dm", f"user{s}")
                ).fetchone()
                conn.execute(INSERT_RETURNING, (session_id, seq, content, _now())).fetchall()
                conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return appends / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling")
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    print(f"sqlite {sqlite3.sqlite_version}; best of {args.repeats}; appends/s "
          "(ratio to raw INSERT + commit)")
    for synchronous in ("FULL", "NORMAL"):
        for workload, sessions in (("W1", 1), ("W2", 500)):
            base = _best(args, "insert", SCHEMAS["as shipped (2 recency indexes)"], synchronous,
                         sessions)
            cells = [f"raw INSERT + commit {base:,.0f}"]
            for name, schema in SCHEMAS.items():
                rate = _best(args, "store", schema, synchronous, sessions)
                cells.append(f"store's statements, {name} {rate:,.0f} ({rate / base:.2f}x)")
            print(f"{workload} synchronous={synchronous}: " + "; ".join(cells), flush=True)
        shipped = SCHEMAS["as shipped (2 recency indexes)"]
        rate = _best(args, "batch", shipped, synchronous, BATCH)
        print(f"W6-like synchronous={synchronous}: store's statements, {BATCH} sessions, {BATCH} "
              f"appends per transaction {rate:,.0f} ({1e6 / rate:.1f} µs per append)", flush=True)


def _best(args: argparse.Namespace, variant: str, schema: tuple[int, tuple[str, ...]],
          synchronous: str, sessions: int) -> float:
    return max(_rate(variant, schema, synchronous, sessions, args.appends)
               for _ in range(args.repeats))

if __name__ == "__main__":
    main()
