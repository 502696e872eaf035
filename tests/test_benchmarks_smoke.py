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
