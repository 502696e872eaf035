"""The benchmark driver's quick mode runs end to end (aisopod-session and the raw drivers only:
the peer libraries are not in the test environment). Nothing is asserted about speed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

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
