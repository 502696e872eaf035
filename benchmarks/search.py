"""Full-text search: its latency against the raw database query, its cost to appends, and the
memory of building the index of an existing database.

    .venv/bin/python -m benchmarks.search [--messages N] [--quick] [--no-postgres]
                                          [--output docs/performance.md]

``python -m benchmarks`` (``./scripts/bench``) runs it too, at 1,000,000 messages (issue 20's
acceptance; ``--search-messages``, ``--no-search``), and writes its tables as the ``## Search``
section of docs/performance.md; ``--output FILE`` here replaces only that section of FILE.

1. A corpus of ``--messages`` messages (sessions of 50; ~20 words each from a 20,000-word
   vocabulary with Zipf-like frequencies, some Chinese and Japanese, some tool calls) is stored
   with search off (``search=False``), then the index is built by ``build_search_index`` in a
   child process of its own: the table gives its time and the child's peak RSS (and the RSS
   before the build, for scale).
2. Search p50 / p99 for queries of each kind (a rare word, a common one, two words, a phrase, a
   prefix, an exclusion, a CJK substring; a common word in one conversation and two words in
   user messages, through ``SearchFilter``), ``agent.search(query, limit=10)`` in both orders,
   against the raw statement a hand-written application would run for the same page on the same
   index: the same MATCH / tsquery, scope and filters, ``ORDER BY`` the database's own rank (FTS5
   ``rank`` over a bm25-capable copy of the index is not there: ``columnsize = 0``, so FTS5's
   ``rank`` re-reads the content; PostgreSQL ``ts_rank``) or newest first, ``LIMIT 10``,
   through the bare driver. The raw query returns rows; the store also confirms each candidate,
   scores it, cuts snippets and builds models.
3. W1 appends (one writer, one session, one message per ``append_messages``, durability full)
   with search on and off, alternating ``--rounds`` times on fresh databases; medians.

Nothing is asserted about speed; ``--quick`` is a smoke run with tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aisopod_session import SearchFilter, SessionKey, SessionStore, StoredMessage
from benchmarks import common, report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "bench_search_"
AGENT = "bot"
VOCABULARY = 20_000
CJK = "我在东京工作了三年東京タワーが見えます今日は天気がいいですね"
X = "\N{MULTIPLICATION SIGN}"


def word(index: int) -> str:
    return f"w{index}x"


def corpus_text(rng: random.Random, i: int) -> Any:
    words = [word(min(VOCABULARY - 1, int(rng.paretovariate(1.1)) - 1)) for _ in range(20)]
    if i % 37 == 0:
        start = rng.randrange(len(CJK) - 6)
        words.append(CJK[start : start + 6])
    if i % 11 == 0:
        words.append("zanzibar")
    return " ".join(words)


QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("rare word", "zanzibar", {}),
    ("common word", word(1), {}),
    ("two words", f"{word(2)} {word(40)}", {}),
    ("phrase", f'"{word(0)} {word(0)}"', {}),
    ("prefix", "w123*", {}),
    ("exclusion", f"zanzibar -{word(3)}", {}),
    ("CJK substring", "東京", {}),
    ("common word, one conversation", word(1), {"peer_id": "peer7"}),
    ("two words, user messages", f"{word(2)} {word(40)}", {"role": ["user"]}),
]
"""(kind, query, filter): the filters are those of ``SearchFilter``; the raw statement applies
the same conditions."""


def place(backend: str, workdir: Path, pg_url: str) -> tuple[str, dict[str, Any]]:
    if backend == "sqlite":
        return str(workdir / f"search-{uuid.uuid4().hex[:8]}.db"), {}
    return pg_url, {"schema": SCHEMA_PREFIX + uuid.uuid4().hex[:10]}


def drop(url: str, options: dict[str, Any]) -> None:
    if "schema" in options:
        import psycopg
        from psycopg import sql

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(options["schema"])))
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(url + suffix).unlink(missing_ok=True)


def fill(url: str, options: dict[str, Any], messages: int) -> None:
    rng = random.Random(20)
    store = SessionStore.open(url, **options, search=False, durability="normal")
    agent = store.for_agent(AGENT)
    for start in range(0, messages, 50):
        key = SessionKey(AGENT, "discord", "acct", "dm", f"peer{start // 50}")
        agent.get_or_create(key)
        batch = []
        for i in range(start, min(messages, start + 50)):
            if i % 13 == 0:
                arguments = json.dumps({"q": corpus_text(rng, i)})
                batch.append(StoredMessage.assistant(None, tool_calls=[{
                    "id": f"c{i}", "function": {"name": "lookup", "arguments": arguments}}]))
            else:
                batch.append(StoredMessage.user(corpus_text(rng, i)))
        agent.append_messages(key, batch)
    store.close()


def child_build(url: str, options: dict[str, Any]) -> None:
    """In a child process: turn search on and build the index; print seconds and peak RSS."""
    store = SessionStore.open(url, **options, search=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    status = store.build_search_index()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store.close()
    print(json.dumps({"seconds": seconds, "rss_before_kb": before, "peak_rss_kb": peak,
                      "pending": status.pending}))


def build_in_child(url: str, options: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.search", "--child-build", url,
         "--child-options", json.dumps(options)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=7200, check=True)
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def _vacuum(url: str, options: dict[str, Any]) -> None:
    """VACUUM ANALYZE the grown tables, as autovacuum leaves them after a million inserts
    (statistics, and the visibility map a bitmap scan skips rechecks with): otherwise the cells
    measure whatever part autovacuum reached meanwhile."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(options["schema"])))
        conn.execute("VACUUM ANALYZE")


def raw_search(backend: str, url: str, options: dict[str, Any], query: str, order: str,
               filter: dict[str, Any]) -> Callable[[], object]:
    """The raw statement for the same page (see the module's docstring)."""
    from aisopod_session.store import _search_text

    parsed = _search_text.parse(query)
    scope = ("s.agent_id = ? AND s.status IN ('active', 'idle', 'compacted') "
             "AND m.compacted = 0")
    values: list[Any] = [AGENT]
    if "peer_id" in filter:
        scope += " AND s.peer_id = ?"
        values.append(filter["peer_id"])
    if "role" in filter:
        scope += f" AND m.role IN ({', '.join('?' for _ in filter['role'])})"
        values.extend(filter["role"])
    if backend == "sqlite":
        match = " AND ".join('"' + " ".join(t.tokens) + '"' + ("*" if t.prefix else "")
                             for t in parsed.wanted)
        match += "".join(' NOT "' + " ".join(t.tokens) + '"' for t in parsed.excluded)
        ranking = "f.rank" if order == "best" else "m.created_at DESC, m.id DESC"
        statement = (f"SELECT m.id, m.seq, m.role, m.created_at, m.content, s.id "
                     "FROM message_fts f JOIN messages m ON m.id = f.rowid JOIN sessions s ON "
                     f"s.id = m.session_id WHERE f.body MATCH ? AND {scope} "
                     f"ORDER BY {ranking} LIMIT 10")
        conn = sqlite3.connect(url, check_same_thread=False)
        return lambda: conn.execute(statement, (match, *values)).fetchall()
    import psycopg
    from psycopg import sql

    lexemes = " & ".join(
        f"'{token}'" + (":*" if term.prefix and i == len(term.tokens) - 1 else "")
        for term in parsed.wanted for i, token in enumerate(term.tokens))
    lexemes += "".join(f" & !'{t.tokens[0]}'" for t in parsed.excluded)
    ranking = ("ts_rank(f.terms, q) DESC" if order == "best"
               else "m.created_at DESC, m.id DESC")
    statement = ("SELECT m.id, m.seq, m.role, m.created_at, m.content, s.id FROM message_search f "
                 "JOIN messages m ON m.id = f.message_id JOIN sessions s ON s.id = m.session_id, "
                 f"CAST(%s AS tsquery) q WHERE f.terms @@ q AND {scope.replace('?', '%s')} "
                 f"ORDER BY {ranking} LIMIT 10")
    pg = psycopg.connect(url, autocommit=True)
    pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(options["schema"])))
    return lambda: pg.execute(statement, (lexemes, *values)).fetchall()


TIME_BUDGET = 15.0
"""Seconds of timed calls per cell: a slower query stops early, after at least 5 calls."""


def timings(step: Callable[[], object], runs: int) -> tuple[float, float]:
    step()  # warm
    samples: list[float] = []
    deadline = time.perf_counter() + TIME_BUDGET
    for _ in range(runs):
        if len(samples) >= 5 and time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        step()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return common.percentile(samples, 0.5), common.percentile(samples, 0.99)


def w1_rate(url: str, options: dict[str, Any], search: bool,
            seconds: float) -> tuple[float, float]:
    """Appends per second, and this process's CPU microseconds per append."""
    store = SessionStore.open(url, **options, search=search)
    agent = store.for_agent(AGENT)
    key = SessionKey(AGENT, "discord", "acct", "dm", "w1")
    agent.get_or_create(key)
    for i in range(20):
        agent.append_messages(key, [StoredMessage.user(common.text(i))])
    count, deadline, started = 0, time.perf_counter() + seconds, time.perf_counter()
    cpu = time.process_time()
    while time.perf_counter() < deadline:
        agent.append_messages(key, [StoredMessage.user(common.text(count))])
        count += 1
    rate = count / (time.perf_counter() - started)
    cpu_us = (time.process_time() - cpu) / count * 1e6
    store.close()
    return rate, cpu_us


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[backend]
    lines: list[str] = []
    url, options = place(backend, workdir, args.pg_url)
    try:
        started = time.perf_counter()
        fill(url, options, args.messages)
        filled = time.perf_counter() - started
        built = build_in_child(url, options)
        if "schema" in options:
            _vacuum(url, options)
        lines.append(f"| {name} | {args.messages:,} | {filled:.1f} s | {built['seconds']:.1f} s "
                     f"| {built['rss_before_kb'] / 1024:.0f} MiB | "
                     f"{built['peak_rss_kb'] / 1024:.0f} MiB |")
        store = SessionStore.open(url, **options)
        agent = store.for_agent(AGENT)
        rows = []
        for kind, query, filter in QUERIES:
            checked = SearchFilter.model_validate(filter)
            hits = len(agent.search(query, limit=100, order="newest", filter=checked).hits)
            for order in ("best", "newest"):
                def step(q: str = query, o: Any = order, f: SearchFilter = checked) -> object:
                    return agent.search(q, limit=10, order=o, filter=f)

                ours = timings(step, args.runs)
                raw = timings(raw_search(backend, url, options, query, order, filter),
                              args.runs)
                rows.append(f"| {name} | {kind} `{query}` | {order} | {hits}"
                            f"{'+' if hits == 100 else ''} | {ours[0]:.2f} / {ours[1]:.2f} | "
                            f"{raw[0]:.2f} / {raw[1]:.2f} | {raw[0] / ours[0]:.2f}{X} |")
        deletes = []
        for peer in range(3):  # a session of 50 messages each: the erasure's cost
            started = time.perf_counter()
            agent.delete(SessionKey(AGENT, "discord", "acct", "dm", f"peer{peer}"))
            deletes.append((time.perf_counter() - started) * 1000)
        store.close()
        lines[-1] += f" {statistics.median(deletes):.0f} ms |"
        lines.append("")
        lines.extend(rows)
    finally:
        drop(url, options)
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    for round_ in range(args.rounds):
        for search in ((True, False) if round_ % 2 == 0 else (False, True)):
            w_url, w_options = place(backend, workdir, args.pg_url)
            try:
                (on if search else off).append(w1_rate(w_url, w_options, search, args.seconds))
            finally:
                drop(w_url, w_options)
    median_on = statistics.median(rate for rate, _ in on)
    median_off = statistics.median(rate for rate, _ in off)
    cpu_on = statistics.median(cpu for _, cpu in on)
    cpu_off = statistics.median(cpu for _, cpu in off)
    lines.append("")
    lines.append(f"| {name} | {median_on:,.0f}/s | {median_off:,.0f}/s | "
                 f"{median_on / median_off:.2f}{X} | {cpu_on:.0f} µs | {cpu_off:.0f} µs |")
    return lines


def render(results: dict[str, list[str]], args: argparse.Namespace, seconds: float) -> str:
    """The benchmark's tables: the ``## Search`` section of docs/performance.md."""

    out = [f"{SECTION} ({args.messages:,} messages{', quick mode' if args.quick else ''})", "",
           f"Written by `python -m benchmarks.search` (also run by `./scripts/bench`): "
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
           f"`--messages {args.messages} --runs {args.runs}`, {seconds / 60:.1f} minutes, "
           f"{common.machine()}. A corpus of sessions of 50 messages (~20 words each from a "
           f"{VOCABULARY:,}-word Zipf-like vocabulary, some Chinese and Japanese, one in 13 a "
           "tool call) is stored with search off, then indexed by `build_search_index` in a "
           "child process of its own (its time and peak RSS below); PostgreSQL's schema is then "
           "`VACUUM ANALYZE`d, as autovacuum leaves it. *Raw statement*: the same "
           "MATCH / tsquery with the same scope, filters and order, `LIMIT 10`, through the bare "
           "driver, returning rows; it cuts no snippet and confirms nothing (the store also "
           "confirms each candidate with its matcher, scores it, cuts its snippet and builds "
           "models). Each cell times up to `--runs` calls after one warm-up, fewer (at least 5) "
           f"once {TIME_BUDGET:.0f} s are spent, so a slow cell's p99 is its slowest call. "
           "raw ÷ store is of the p50s (above 1: the store is faster); the issue's "
           "target is at least 0.5\N{MULTIPLICATION SIGN}.", "",
           "### Building the index of an existing database", "",
           "| backend | messages | stored in (search off) | index built in | RSS before | "
           "peak RSS | delete of a 50-message session |", "|---|---|---|---|---|---|---|"]
    out += [results[backend][0] for backend in results]
    out += ["", "### Search latency, limit 10 (ms, p50 / p99)", "",
            "| backend | query | order | hits (≤100) | store | raw statement | raw ÷ store |",
            "|---|---|---|---|---|---|---|"]
    for section in results.values():
        out += section[2 : section.index("", 2)]
    out += ["", "### W1 appends/s, search on and off (medians)", "",
            "| backend | search on | search off | on ÷ off | CPU/append on | off |",
            "|---|---|---|---|---|---|"]
    out += [section[-1] for section in results.values()]
    return "\n".join(out) + "\n"


SECTION = "## Search"


def run_for_report(pg_url: str | None, quick: bool, messages: int,
                   notes: list[str]) -> str | None:
    """For ``python -m benchmarks`` (``./scripts/bench``): this benchmark in a process of its
    own (its progress goes to stderr), PostgreSQL too when ``pg_url``; its ``## Search``
    section, or None (with a note) when it failed."""
    command = [sys.executable, "-m", "benchmarks.search", "--messages", str(messages)]
    command += ["--quick"] if quick else []
    command += ["--pg-url", pg_url] if pg_url else ["--no-postgres"]
    print(f"search ({' '.join(command[2:])})", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0 or not done.stdout.startswith(SECTION):
        notes.append(f"The search benchmark exited {done.returncode} without its tables.")
        return None
    return done.stdout


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=50, help="timed searches per query")
    parser.add_argument("--rounds", type=int, default=3, help="W1 rounds per variant")
    parser.add_argument("--seconds", type=float, default=3.0, help="per W1 round")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--pg-url", default=os.environ.get("AISOPOD_TEST_PG_URL",
                                                           DEFAULT_PG_URL))
    parser.add_argument("--output", metavar="FILE",
                        help="also write the tables as the '## Search' section of FILE "
                             "(e.g. docs/performance.md), leaving the rest of it as it is")
    parser.add_argument("--child-build", help=argparse.SUPPRESS)
    parser.add_argument("--child-options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_build:
        child_build(args.child_build, json.loads(args.child_options))
        return
    if args.quick:
        args.messages, args.runs, args.rounds, args.seconds = 600, 5, 1, 0.3
    backends = ["sqlite"] if args.no_postgres else ["sqlite", "postgres"]
    results: dict[str, list[str]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aisopod-search-") as workdir:
        for backend in backends:
            results[backend] = run_backend(backend, args, Path(workdir))
            print(f"{backend} done in {time.perf_counter() - started:.0f} s", file=sys.stderr,
                  flush=True)
    text = render(results, args, time.perf_counter() - started)
    print(text)
    if args.output:
        path = Path(args.output)
        path.write_text(report.with_section(path.read_text() if path.exists() else "",
                                            SECTION, text))
        print(f"written to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
