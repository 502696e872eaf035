"""The benchmark's framework table: the LangGraph row (W8, checkpointer against LangGraph's own
SqliteSaver on the same graph) and the Agents SDK adapter built from a URL, end to end on tiny
sizes (nothing is asserted about speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.run import GROUPS, SYSTEMS, Measurement

ROOT = Path(__file__).resolve().parents[2]


def test_the_frameworks_table_has_a_langgraph_row() -> None:
    assert {"langgraph", "langgraph-aisopod"} <= set(GROUPS["frameworks"]) <= set(SYSTEMS)
    label = "W8 12 graph turns, threads of 10"
    measurements = [
        Measurement("w8", label, "langgraph", "default", {"ops": 12, "planned": 12,
                                                          "rate": 100.0}, 50.0),
        Measurement("w8", label, "langgraph-aisopod", "full", {"ops": 12, "planned": 12,
                                                               "rate": 80.0}, 50.0),
    ]
    context = report.Context(date="now", command="bench", quick=True, machine="m", python="3",
                             postgres=None, sizes={"durabilities": ("full",), "appends": 50},
                             versions={}, settings={}, notes=[], seconds=1.0)
    text = report.render(measurements, context)
    assert (f"| {label} | LangGraph: SqliteSaver vs AisopodSaver | 100/s | 80/s | "
            f"**0.80{report.X}** |") in text
    assert "LangGraph (its defaults)" not in text  # not a column of the session workloads


def test_quick_run_measures_the_langgraph_and_agents_sdk_rows(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--systems",
         "openai,openai-aisopod,langgraph,langgraph-aisopod", "--workloads", "w1,w3,w8",
         "--output", "-", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| W")]
    assert any("W8 12 graph turns" in row and "LangGraph: SqliteSaver vs AisopodSaver" in row
               and "—" not in row for row in rows), rows
    for workload in ("W1 50 appends", "W3 newest 20 of 100"):
        assert any(workload in row and "Agents SDK: SQLiteSession vs AisopodSession" in row
                   and "—" not in row for row in rows), rows
