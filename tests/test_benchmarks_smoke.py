"""The benchmark driver's quick mode runs end to end (aisopod-session and the raw drivers only:
the peer libraries are not in the test environment). Nothing is asserted about speed."""

from __future__ import annotations

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
    for kind in ("rare word", "common word", "phrase", "prefix", "exclusion", "CJK substring"):
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
