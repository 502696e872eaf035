"""The benchmark driver's quick mode runs end to end (aisopod-session and the raw drivers only:
the peer libraries are not in the test environment). Nothing is asserted about speed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_produces_the_table(tmp_path: Path) -> None:
    output = tmp_path / "performance.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--systems", "aisopod,raw",
         "--output", str(output), "--workdir", str(tmp_path / "data")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("### Appends, SQLite", "### Concurrent asyncio writers",
                    "### Reads, SQLite", "### Listing (W5)", "### Peak RSS"):
        assert heading in result.stdout
    assert "| W1 " in result.stdout and "| W3 newest 20 of " in result.stdout
    assert "### Targets of issue 24 (quick mode" in result.stdout
    assert "### Reads, lean path (W3)" in result.stdout
    assert "| W3 lean, newest 20 of 100 | " in result.stdout
    assert "failed" not in result.stdout.lower()
    document = output.read_text()
    assert document.startswith("# Performance") and "quick mode" in document
    assert "| W5 first page of " in document
    searched = document.partition("## Search (600 messages, quick mode)")[2]
    assert "| SQLite | two words, user messages " in searched.partition("## Settings")[0]
    service = document.partition("### Service over HTTP")[2].partition("## Settings")[0]
    for workers in (1, 2):
        for workload in ("bare", "append", "history"):
            assert f"| SQLite | {workers} | {workload} | " in service
    capabilities = document.partition("## Capabilities (runs, change feed under W6, import, "
                                      "quick mode)")[2].partition("## Settings")[0]
    assert "The capabilities step" not in document
    assert "### Runs: start_run + finish_run pairs/s (quick mode" in capabilities
    assert "| SQLite | full | " in capabilities and "| SQLite | normal | " in capabilities
    for waiter in ("one handle", "two handles", "two processes"):
        assert f"| SQLite (poll 20 ms) | {waiter} | " in capabilities
    assert "### Change feed: append cost and watch latency (quick mode" in capabilities
    assert "| SQLite | (c) W6 load in another process | asyncio | " in capabilities
    assert "(a) same process" not in capabilities and "(b) another" not in capabilities
    if importlib.util.find_spec("agents") is not None:
        assert "### Import rate: an OpenAI Agents SDK database" in capabilities
        assert "| import-from openai-agents | 300 |" in capabilities


def test_a_run_without_capabilities_keeps_their_earlier_section(tmp_path: Path) -> None:
    """write_document with no capabilities (--no-capabilities, or the step failed) keeps the
    output's earlier ``## Capabilities`` section; a new one replaces it."""
    from benchmarks.run import CAPABILITIES, write_document

    output = tmp_path / "performance.md"
    document = "# Performance\n\n## Results\n\n| r |\n\n## Settings each system ran with\n"
    write_document(output, document, None, f"{CAPABILITIES} (x)\n\n### Runs\n\n| old |\n")
    first = output.read_text()
    assert first.index("| r |") < first.index("| old |") < first.index("## Settings")
    write_document(output, document, "## Search (1 message)\n\n| s |\n", None)
    second = output.read_text()
    assert "| old |" in second and "| s |" in second and second.count(CAPABILITIES) == 1
    write_document(output, document, None, f"{CAPABILITIES} (y)\n\n### Runs\n\n| new |\n")
    third = output.read_text()
    assert "| old |" not in third and "| new |" in third and "| s |" in third


@pytest.mark.slow
def test_quick_service_benchmark_with_the_asyncio_load_generator() -> None:
    """benchmarks.service end to end on SQLite with httpx clients (wrk has a test of its own
    through the driver when installed): every workload on one worker and two, no failure."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.service", "--quick", "--no-postgres",
         "--client", "httpx"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "load from an asyncio load generator" in result.stdout
    for workers in (1, 2):
        for workload in ("bare", "append", "history"):
            assert f"| SQLite | {workers} | {workload} | " in result.stdout
    assert "≥ 0.5: " in result.stdout and "≥ 0.6: " in result.stdout
    assert "failed" not in result.stdout


WRK_REPORT = """Running 5s test @ http://127.0.0.1:8123
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.61ms    2.16ms  32.93ms   80.12%
    Req/Sec     3.03k   198.41     3.33k    74.00%
  Latency Distribution
     50%   10.24ms
     75%   11.23ms
     90%   12.71ms
     99%    1.02s
  15083 requests in 5.01s, 6.41MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   3010.51
Transfer/sec:      1.28MB
"""


def test_service_benchmark_reads_wrks_report() -> None:
    """Requests, duration, percentiles and failures (error responses and socket errors)."""
    from benchmarks.service import parse_wrk

    load = parse_wrk(WRK_REPORT)
    assert (load.requests, load.seconds, load.errors) == (15083, 5.01, 5)
    assert (load.p50_ms, load.p99_ms) == pytest.approx((10.24, 1020.0))
    assert load.first_error == "Non-2xx or 3xx responses: 3"
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        parse_wrk("Running 5s test\n")


def test_the_bare_endpoint_is_only_in_the_benchmarks_app(tmp_path: Path) -> None:
    """The product's app has no benchmark route; the benchmark's app is the product's plus
    that one route."""
    from benchmarks.service_app import BARE_PATH, create_bench_app

    from aisopod_session.service.app import create_app
    from aisopod_session.service.config import ServiceConfig

    config = tmp_path / "service.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n')
    product = {getattr(route, "path", None) for route in create_app(ServiceConfig()).routes}
    bench = {getattr(route, "path", None) for route in create_bench_app(str(config)).routes}
    assert BARE_PATH not in product
    assert bench == product | {BARE_PATH}


@pytest.mark.slow
def test_quick_feed_benchmark_produces_its_tables() -> None:
    """benchmarks.feed end to end on SQLite: appends with the feed and without (the commit before
    it, from git archive: if git cannot, the table says so), and every watch-latency row."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.feed", "--quick", "--no-postgres"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "### Appends/s, with the feed and without" in result.stdout
    assert "| SQLite | W1 one writer, 1 session |" in result.stdout
    assert "### Watch latency" in result.stdout
    for writer in ("(a) same process", "(b) another process", "(c) W6 load in another process"):
        assert f"| SQLite | {writer}" in result.stdout
    assert "watcher failed" not in result.stdout


def test_report_sets_each_framework_beside_its_aisopod_backed_store() -> None:
    """The frameworks table, from made-up measurements (no framework package needed)."""
    from benchmarks import report
    from benchmarks.run import GROUPS, SYSTEMS, Measurement

    assert set(GROUPS["frameworks"]) <= set(SYSTEMS)
    label = "W1 50 appends, 1 session"
    measurements = [
        Measurement("w1", label, "openai", "default", {"ops": 50, "planned": 50, "rate": 100.0},
                    50.0),
        Measurement("w1", label, "openai-aisopod", "full",
                    {"ops": 50, "planned": 50, "rate": 250.0}, 50.0),
        Measurement("w1", label, "adk", "default", {"ops": 50, "planned": 50, "rate": 40.0},
                    50.0),
    ]
    context = report.Context(date="now", command="bench", quick=True, machine="m", python="3",
                             postgres=None, sizes={"durabilities": ("full",)}, versions={},
                             settings={}, notes=[], seconds=1.0)
    text = report.render(measurements, context)
    assert f"### {report.FRAMEWORKS_TITLE}" in text
    rows = [line for line in text.splitlines()
            if line.startswith(f"| {label} | Agents SDK: SQLiteSession vs AisopodSession")]
    assert rows == [f"| {label} | Agents SDK: SQLiteSession vs AisopodSession | 100/s | 250/s | "
                    f"**2.50{report.X}** |"]
    assert "| ADK: DatabaseSessionService vs AisopodSessionService | 40/s | — | — |" in text


def test_a_benchmarks_own_section_replaces_only_itself() -> None:
    """``benchmarks.search --output`` and a run with --no-search keep the rest of the file,
    and the search section of the last run that had it."""
    from benchmarks import report

    document = ("# Performance\n\n## Results\n\n### Appends\n\n| a |\n\n"
                "### Service over HTTP\n\n| s |\n\n## Settings each system ran with\n\n- x\n")
    first = report.with_section(document, "## Search", "## Search (1 message)\n\n| old |\n")
    assert first.index("| s |") < first.index("## Search (1") < first.index("## Settings")
    second = report.with_section(first, "## Search", "## Search (2 messages)\n\n| new |\n")
    assert "| old |" not in second and second.count("## Search") == 1
    assert second.replace("## Search (2 messages)\n\n| new |\n\n", "") == document
    assert report.section(second, "## Search") == "## Search (2 messages)\n\n| new |\n"
    assert report.section(document, "## Search") is None
    table = report.with_section(second, "### Service over HTTP", "### Service over HTTP\n| t |")
    assert "| s |" not in table and "| t |\n\n## Search (2" in table


@pytest.mark.slow
def test_quick_search_benchmark_produces_its_tables() -> None:
    """benchmarks.search end to end on SQLite: the index build (time, peak RSS), search latency
    beside the raw statement for every query kind and order, W1 with search on and off."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.search", "--quick", "--no-postgres"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("### Building the index of an existing database", "### Search latency",
                    "### W1 appends/s, search on and off"):
        assert heading in result.stdout
    for kind in ("rare word", "common word", "phrase", "prefix", "exclusion", "CJK substring",
                 "common word, one conversation", "two words, user messages"):
        assert f"| SQLite | {kind} " in result.stdout
    assert "| SQLite | 600 |" in result.stdout


@pytest.mark.slow
def test_import_from_benchmark_runs_end_to_end() -> None:
    """benchmarks.import_from on a tiny Agents SDK database: both imports store every message
    and the table is printed (nothing is asserted about speed)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.import_from", "--messages", "300",
         "--per-session", "50"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| import-from openai-agents | 300 |" in result.stdout
    assert "| import (JSON Lines) | 300 |" in result.stdout
    assert "x the rate of the JSON Lines import" in result.stdout


def test_service_table_replaces_its_previous_one_in_the_document() -> None:
    from benchmarks.service import with_table

    document = ("# Performance\n\n## Results\n\n### Reads\n\nr\n\n## Search\n\n### Build\n\n"
                "s\n\n## Settings each system ran with\n\n- x\n")
    first = with_table(document, "### Service over HTTP: 32\n\nold\n")
    assert first == document.replace("r\n\n## Search", "r\n\n### Service over HTTP: 32\n\n"
                                                      "old\n\n## Search")
    second = with_table(first, "### Service over HTTP: 32\n\nnew\n")
    assert second == first.replace("old", "new")
    assert with_table("# P\n", "### Service over HTTP\n") == "# P\n### Service over HTTP\n\n"


def _context(quick: bool = True, service: str | None = None) -> Any:
    from benchmarks import report

    return report.Context(date="now", command="bench", quick=quick, machine="m", python="3",
                          postgres=None, sizes={"durabilities": ("full", "normal")},
                          versions={}, settings={}, notes=[], seconds=1.0, service=service)


def _rate(rate: float) -> dict[str, Any]:
    return {"ops": 10, "planned": 10, "rate": rate, "p50_ms": 0.1, "p99_ms": 0.2}


def _service_table() -> str:
    """A service table as ``benchmarks.service.render`` writes it (its numbers made up)."""
    x, d = "\N{MULTIPLICATION SIGN}", "\N{EN DASH}"
    rows = [
        ("SQLite", 1, "bare", "2,560", "—", "—"),
        ("SQLite", 1, "append", "1,300", f"**0.51{x}**", "≥ 0.5: yes"),
        ("SQLite", 1, "history (2 failed: 500)", "763", f"**0.30{x}**", "≥ 0.6: **no**"),
        ("SQLite", 2, "append", "844", f"**0.34{x}**", "—"),
        ("PostgreSQL", 1, "bare", "2,464", "—", "—"),
        ("PostgreSQL", 1, "append", "704", f"**0.29{x}**", "≥ 0.5: **no**"),
    ]
    return "\n".join([
        "### Service over HTTP: 32 concurrent clients", "", "text", "",
        "| backend | workers | workload | requests/s | p50 ms | p99 ms | server CPU µs/request "
        f"| {x} bare | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {b} | {w} | {name} | {rate} (1{d}9) | 12.25 | 15.98 | 391 | {ratio} | {goal} |"
          for b, w, name, rate, ratio, goal in rows)]) + "\n"


def test_targets_table_of_issue_24_from_the_runs_own_measurements() -> None:
    """Each target's row computes its ratio from the run's measurements (the service's from its
    table); a target without a measurement shows "—" and is not met."""
    from benchmarks import report
    from benchmarks.run import Measurement

    x, d = report.X, report.DASH
    w1, w2 = "W1 50 appends, 1 session", "W2 10 sessions x 4 appends"
    pg1, pg6 = "W7 PG W1 50 appends", "W7 PG W6 8 async writers"
    measurements = [
        Measurement("w1", w1, "aisopod", "full", _rate(900.0), 50.0),
        Measurement("w1", w1, "raw", "full/insert", _rate(1000.0), 50.0),
        Measurement("w1", w1, "raw", "full/same", _rate(950.0), 50.0),
        Measurement("w1", w1, "aisopod", "normal", _rate(400.0), 50.0),
        Measurement("w1", w1, "raw", "normal/insert", _rate(1000.0), 50.0),
        Measurement("w1", w1, "openai", "default", _rate(300.0), 50.0),
        Measurement("w2", w2, "aisopod", "full", _rate(700.0), 50.0),
        Measurement("w2", w2, "raw", "full/insert", _rate(1000.0), 50.0),
        Measurement("w3", f"{report.W3_MODEL} 100", "aisopod", "", _rate(80.0), 50.0),
        Measurement("w3", f"{report.W3_MODEL} 100", "raw", "", _rate(100.0), 50.0),
        Measurement("w3", f"{report.W3_MODEL} 10,000", "aisopod", "", _rate(60.0), 50.0),
        Measurement("w3", f"{report.W3_MODEL} 10,000", "raw", "", _rate(100.0), 50.0),
        Measurement("w3", f"{report.W3_LEAN} 100", "aisopod", "", _rate(90.0), 50.0),
        Measurement("w3", f"{report.W3_LEAN} 100", "raw", "", _rate(100.0), 50.0),
        Measurement("w3", f"{report.W3_LEAN} 10,000", "aisopod", "", _rate(95.0), 50.0),
        Measurement("w3", f"{report.W3_LEAN} 10,000", "raw", "", None, 0.0, "boom"),
        Measurement("w7", pg1, "aisopod", "full", _rate(100.0), 50.0),
        Measurement("w7", pg1, "raw", "full", _rate(120.0), 50.0),
        Measurement("w7", pg6, "aisopod", "full", _rate(450.0), 50.0),
    ]
    text = report.render(measurements, _context(service=_service_table()))
    table = text.partition(f"### {report.TARGETS_TITLE}")[2].partition("\n\n")[2]
    rows = table.partition("\n\n")[0].splitlines()[2:]
    assert rows == [
        f"| W1 ≥ 0.8{x} raw INSERT + commit, `full` | 0.64{x} | 0.90{x} (900/s vs 1,000/s) "
        "| met |",
        f"| W1 ≥ 0.5{x} raw INSERT + commit, `normal` | 0.24{x} | 0.40{x} (400/s vs 1,000/s) "
        "| **missed** |",
        f"| W1 ≥ 2{x} the Agents SDK's `SQLiteSession` (aisopod `full`, the SDK its defaults) "
        f"| 1.29{x} | 3.00{x} (900/s vs 300/s) | met |",
        f"| W2 ≥ 0.8{x} raw INSERT + commit, `full` | 0.55{x} | 0.70{x} (700/s vs 1,000/s) "
        "| **missed** |",
        f"| W2 ≥ 0.5{x} raw INSERT + commit, `normal` | 0.21{x} | — | {report.NOT_MEASURED} |",
        f"| W2 ≥ 2{x} the Agents SDK's `SQLiteSession` (aisopod `full`, the SDK its defaults) "
        f"| 1.68{x} | — | {report.NOT_MEASURED} |",
        f"| W3 ≥ 0.7{x} raw sqlite3, model path (`get_history`), every history size "
        f"| 0.46{d}0.55{x} | 0.60{d}0.80{x} (0.80{x} / 0.60{x} at 100, 10,000 messages) "
        "| **missed** |",
        f"| W3 ≥ 0.85{x} raw sqlite3, lean path (`get_contents`), every history size "
        f"| not measured | 0.90{x} (0.90{x} / — at 100, 10,000 messages) "
        "| not met: not measured at 10,000 messages |",
        f"| PostgreSQL W6 ≥ 4{x} its W1, `full` | 2.4{x} | 4.50{x} (450/s vs 100/s) | met |",
        f"| PostgreSQL W1 ≥ 0.8{x} raw psycopg with the store's statements, `full` | 0.73{x} "
        f"| 0.83{x} (100/s vs 120/s) | met |",
        f"| Service appends ≥ 0.5{x} the bare endpoint, 32 clients, one worker | not measured "
        f"| SQLite 0.51{x}, PostgreSQL 0.29{x} | **missed** on PostgreSQL |",
        f"| Service history reads ≥ 0.6{x} the bare endpoint, 32 clients, one worker "
        f"| not measured | SQLite 0.30{x} | **missed** |",
    ]
    lean = text.partition("### Reads, lean path (W3)")[2]
    assert (f"| {report.W3_LEAN} 100 | 90/s (0.10 / 0.20 ms) | 100/s (0.10 / 0.20 ms) · "
            f"**0.90{x}** | 80/s (0.10 / 0.20 ms) | **1.12{x}** |") in lean
    reads = text.partition("### Reads, SQLite")[2].partition("###")[0]
    assert report.W3_LEAN not in reads and f"| {report.W3_MODEL} 10,000 |" in reads
    assert f"the largest history ÷ at the smallest = **0.75{x}**" in reads


def test_targets_without_the_service_table_measure_nothing_there() -> None:
    """No service table in the run: "—"; a table without one-worker rows: a pointer to it."""
    from benchmarks import report

    for service, after in ((None, "—"), ("### Service over HTTP: 32 concurrent clients\n\n"
                                         "_SQLite, 1 worker(s) failed: x_\n",
                                         "see Service over HTTP")):
        text = report.render([], _context(service=service))
        rows = [line for line in text.splitlines() if line.startswith("| Service ")]
        assert len(rows) == 2
        assert all(f"| not measured | {after} | {report.NOT_MEASURED} |" in row
                   for row in rows), rows
    assert "(quick mode: not a measurement)" in text


def test_lean_read_baselines_return_what_the_store_returns(tmp_path: Path) -> None:
    """W3 lean: raw sqlite3's list is the store's get_contents, on the same history."""
    import sqlite3

    from benchmarks import sys_aisopod, sys_raw

    from aisopod_session import HistoryQuery, SessionStore

    path = tmp_path / "h.db"
    sys_aisopod.prepare_history(str(path), 50)
    with SessionStore.open(f"sqlite:///{path}") as store:
        ours = store.for_agent("bench").get_contents(sys_aisopod.key(0),
                                                     HistoryQuery(limit=20, tail=True))
    conn = sqlite3.connect(path)
    try:
        assert sys_raw.tail_contents(conn, sys_raw.key_params(0)) == ours
    finally:
        conn.close()
    assert len(ours) == 20 and ours[-1] == sys_aisopod.common.text(49)


def test_raw_appends_run_the_stores_statements(tmp_path: Path) -> None:
    """The "store's statements" baseline runs exactly what the store runs for one append (search
    on, the default), with the same parameters but the times: traced from both."""
    import re
    import sqlite3

    from benchmarks import common, sys_aisopod, sys_raw

    from aisopod_session.store import _search_index

    def traced(run: Any, path: Path) -> list[str]:
        statements: list[str] = []
        real = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real(*args, **kwargs)
            conn.set_trace_callback(statements.append)
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]
        try:
            run(str(path))
        finally:
            sqlite3.connect = real  # type: ignore[assignment]
        # the appends only, times blanked, statements of FTS5's own ("-- ...") left out
        first = statements.index("BEGIN IMMEDIATE")
        last = len(statements) - statements[::-1].index("COMMIT")
        return [re.sub(r"\b1[0-9]{15}\b", "T", s) for s in statements[first:last]
                if not s.startswith("--")]

    for name in ("store", "raw"):
        sys_aisopod.prepare_sessions(str(tmp_path / f"{name}.db"), 1)
    ours = traced(lambda p: sys_aisopod.w1(p, "full", 3, 10.0), tmp_path / "store.db")
    raw = traced(lambda p: sys_raw.w1(p, "full", 3, 10.0, variant="same"), tmp_path / "raw.db")
    assert raw == ours
    assert sum("INSERT INTO message_fts_staged" in s for s in raw) == 3
    assert sys_raw.STAGED_LIMIT == _search_index.STAGED_LIMIT  # raw never imports the store
    assert sum("INSERT INTO changes" in s and "messages.appended" in s for s in raw) == 3
    assert common.text(2).split(":")[0] in "".join(raw)


def _traced_pipelines(run: Any) -> list[list[tuple[Any, ...]]]:
    """What ``run()`` sends through psycopg in pipeline mode: for each ``conn.pipeline()`` block,
    in order, its statements (cursor, SQL text, parameters with times blanked, whether sent in
    pipeline mode), its fetches (the waits for an answer) and its syncs, the block's end (where
    psycopg syncs and waits for every answer) included. Statements outside a pipeline block
    (opening the store, the pool's settings, reads, NOTIFYs) are left out: the store's write
    transactions are pipeline blocks (``PostgresEngine._write_tx``)."""
    import contextlib
    import threading
    from collections.abc import Iterator

    import psycopg
    from psycopg import pq

    # (connection, cursor, event); a connection known by its libpq connection, which its
    # cursors and its pipeline name publicly
    events: list[tuple[int, int | None, tuple[Any, ...]]] = []
    lock = threading.Lock()  # the store writes on its group committer's thread

    def blank(value: Any) -> Any:
        # a time in µs since the epoch; ids and counters are far smaller
        return "T" if type(value) is int and value >= 10**15 else value

    def note(pgconn: Any, cursor: Any, event: tuple[Any, ...]) -> None:
        with lock:
            events.append((id(pgconn), None if cursor is None else id(cursor), event))

    real_execute = psycopg.Cursor.execute
    real_fetchone, real_fetchall = psycopg.Cursor.fetchone, psycopg.Cursor.fetchall
    real_sync, real_pipeline = psycopg.Pipeline.sync, psycopg.Connection.pipeline

    def execute(self: psycopg.Cursor[Any], query: Any, params: Any = None,
                **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else query.as_string(self.connection)
        piped = self.connection.pgconn.pipeline_status != pq.PipelineStatus.OFF
        note(self.connection.pgconn, self,
             ("execute", text, tuple(map(blank, params or ())), "piped" if piped else "alone"))
        return real_execute(self, query, params, **kwargs)

    def fetchone(self: psycopg.Cursor[Any]) -> Any:
        note(self.connection.pgconn, self, ("fetchone",))
        return real_fetchone(self)

    def fetchall(self: psycopg.Cursor[Any]) -> Any:
        note(self.connection.pgconn, self, ("fetchall",))
        return real_fetchall(self)

    def sync(self: psycopg.Pipeline) -> None:
        note(self.pgconn, None, ("sync",))
        real_sync(self)

    @contextlib.contextmanager
    def pipeline(self: psycopg.Connection[Any]) -> Iterator[psycopg.Pipeline]:
        note(self.pgconn, None, ("pipeline",))
        with real_pipeline(self) as piped:
            yield piped
        note(self.pgconn, None, ("end of pipeline: sync",))

    with pytest.MonkeyPatch.context() as patch:
        for name, replacement in (("execute", execute), ("fetchone", fetchone),
                                  ("fetchall", fetchall)):
            patch.setattr(psycopg.Cursor, name, replacement)
        patch.setattr(psycopg.Pipeline, "sync", sync)
        patch.setattr(psycopg.Connection, "pipeline", pipeline)
        run()
    blocks: list[list[tuple[Any, ...]]] = []
    open_blocks: dict[int, tuple[list[tuple[Any, ...]], dict[int, str]]] = {}
    for conn, cursor, event in events:
        if event == ("pipeline",):
            open_blocks[conn] = ([], {})
            continue
        if conn not in open_blocks:
            continue  # outside a pipeline
        block, cursors = open_blocks[conn]
        if cursor is None:
            block.append(event)
        else:  # cursors named in order of first use within the block
            label = cursors.setdefault(cursor, f"cursor {len(cursors) + 1}")
            block.append((label, *event))
        if event == ("end of pipeline: sync",):
            blocks.append(block)
            del open_blocks[conn]
    return blocks


def test_raw_postgres_appends_send_the_stores_statements(pg_schema: str) -> None:
    """PostgreSQL's "store's statements" baseline (``pg_w1``) sends exactly what the store
    sends for one append (search on, the default): the same statements with the same parameters
    (times blanked), in pipeline mode, on the same cursors, waiting where the store waits.
    Traced from both through psycopg, on two schemas made alike (so ids are equal too)."""
    import json

    from benchmarks import common, sys_aisopod, sys_raw

    from tests.conftest import PG_URL

    schemas = {f"{pg_schema}_store": 1, f"{pg_schema}_raw": 1}
    store_schema, raw_schema = schemas
    try:
        sys_aisopod.prepare_pg_schemas(PG_URL, schemas)
        ours = _traced_pipelines(
            lambda: sys_aisopod.w1(PG_URL, "full", 3, 10.0, schema=store_schema))
        raw = _traced_pipelines(
            lambda: sys_raw.pg_w1(PG_URL, "full", 3, 10.0, schema=raw_schema))
    finally:
        sys_aisopod.drop_pg_schemas(PG_URL, list(schemas))
    assert len(ours) == 3, ours  # one transaction an append, nothing else pipelined
    assert raw == ours
    executed = [event[2:4] for block in raw for event in block if event[1:2] == ("execute",)]
    statements = [statement for statement, _ in executed]
    assert statements.count("BEGIN") == statements.count("COMMIT") == 3
    for table in ("messages", "message_search", "changes"):
        assert sum(f"INSERT INTO {table} " in s for s in statements) == 3, table
    assert any(json.dumps(common.text(2)) in params for _, params in executed)
