"""A run killed with SIGKILL halfway, then run again, ends with exactly the store an
uninterrupted run makes; the CLI prints the verification report; importing the importers
imports no framework."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agents import SQLiteSession
from typer.testing import CliRunner

from aisopod_session import SessionStore
from aisopod_session.cli import app
from tests.importers.conftest import contents, run_import

ROOT = Path(__file__).resolve().parents[2]
SESSIONS, ITEMS = 40, 100


def write_source(path: Path) -> None:
    async def write() -> None:
        for n in range(SESSIONS):
            session = SQLiteSession(f"s-{n:03d}", str(path))
            await session.add_items(
                [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{n}/{i}"}
                 for i in range(ITEMS)])
            session.close()

    asyncio.run(write())


def stored_sessions(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_a_run_killed_halfway_then_run_again_equals_an_uninterrupted_run(
        tmp_path: Path) -> None:
    source, killed, whole = tmp_path / "sdk.db", tmp_path / "killed.db", tmp_path / "whole.db"
    write_source(source)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.importers._kill_worker", str(killed), str(source)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while stored_sessions(killed) < 4 and worker.poll() is None:
            assert time.monotonic() < deadline, "the import never committed a batch"
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    halfway = stored_sessions(killed)
    assert 4 <= halfway < SESSIONS
    with SessionStore.open(str(killed)) as store:
        report = run_import(store, "openai-agents", str(source))
        assert report.count("already-imported") == halfway
        assert report.count("imported") == SESSIONS - halfway
        resumed = contents(store)
    with SessionStore.open(str(whole)) as store:
        run_import(store, "openai-agents", str(source))
        assert contents(store) == resumed
    assert len(resumed) == 1 + SESSIONS + SESSIONS * ITEMS


def test_cli_report_dry_run_and_errors(tmp_path: Path) -> None:
    source, target = tmp_path / "sdk.db", tmp_path / "target.db"

    async def write() -> None:
        session = SQLiteSession("u1", str(source))
        await session.add_items([{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "hello"}])
        session.close()

    asyncio.run(write())
    runner = CliRunner()
    base = ["--db", f"sqlite:///{target}", "import-from", "openai-agents", str(source)]
    dry = runner.invoke(app, [*base, "--dry-run", "--agent", "support"])
    assert dry.exit_code == 0, dry.output
    assert "would-import" in dry.output
    assert "agent:support:openai-agents:default:dm:u1: read 2, imported 2" in dry.output
    assert "nothing was written" in dry.output
    done = runner.invoke(app, [*base, "--agent", "support"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == "imported 1 session (2 messages of 2 read)"
    again = runner.invoke(app, [*base, "--agent", "support", "--json"])
    assert '"already-imported"' in again.output
    missing = runner.invoke(app, ["--db", f"sqlite:///{target}", "import-from", "adk",
                                  str(tmp_path / "nope.db")])
    assert missing.exit_code == 1
    assert missing.output.startswith("error: ") and "no such file" in missing.output
    assert "Traceback" not in missing.output
    unknown = runner.invoke(app, ["import-from", "rasa", str(source)])
    assert unknown.exit_code == 2


def test_importing_the_importers_imports_no_framework() -> None:
    code = ("import sys, aisopod_session.importers as m, aisopod_session.cli; "
            "from aisopod_session.importers import _adk, _agents_sdk, _langchain, _openclaw; "
            "bad = [n for n in sys.modules if n.split('.')[0] in "
            "('agents', 'google', 'langchain_core', 'langchain_community', 'sqlalchemy')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
