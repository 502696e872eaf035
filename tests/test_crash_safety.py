"""A writer killed with SIGKILL loses nothing it acknowledged, and leaves consistent counters.

The child appends in a loop from a few threads and, only after ``append_messages`` returns,
writes one line per acknowledged call to its stdout. The parent reads those lines, kills the
child mid-loop, reads whatever acknowledgements were already in the pipe, then reopens the store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from aisopod_session import SessionStore, StoredMessage
from aisopod_session.models import SessionKey

CHILD = r"""
import sys
import threading

from aisopod_session import SessionKey, SessionStore, StoredMessage

path, durability, threads, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = SessionStore.open(path, durability=durability)
agent = store.for_agent("bot")
out = threading.Lock()


def loop(thread):
    key = SessionKey("bot", "cli", "acct", "dm", f"peer{thread % 2}")
    agent.get_or_create(key)
    i = 0
    while True:
        call = f"{tag}t{thread}-{i}"
        batch = [StoredMessage.user(f"{call}-q"), StoredMessage.assistant(f"{call}-a"),
                 StoredMessage.user(f"{call}-z")]
        agent.append_messages(key, batch)
        with out:
            sys.stdout.write(call + "\n")
            sys.stdout.flush()
        i += 1


for thread in range(threads):
    threading.Thread(target=loop, args=(thread,), daemon=True).start()
threading.Event().wait()
"""

PER_CALL = ("q", "a", "z")
CALL_CONTENT = re.compile(r"^r\d+t\d+-\d+-[qaz]$")


def run_and_kill(
    path: Path, durability: str, threads: int, acks_before_kill: int, tag: str = "r0"
) -> list[str]:
    """Start the child, SIGKILL it after ``acks_before_kill`` acks; every ack it sent."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), durability, str(threads), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        while len(acked) < acks_before_kill:
            line = child.stdout.readline()
            if not line:  # the child died on its own: show why
                child.wait(timeout=30)
                assert child.stderr is not None
                pytest.fail(f"writer exited early ({child.returncode}): {child.stderr.read()}")
            acked.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        # Lines already in the pipe were written after their append returned: acks too.
        acked.extend(line.strip() for line in child.stdout)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def check_after_crash(path: Path, acked: list[str], *, in_flight: int = 4) -> None:
    assert len(acked) == len(set(acked))
    with SessionStore.open(str(path)) as store:  # recovers the WAL
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            sessions = conn.execute(
                "SELECT id, message_count, last_seq FROM sessions WHERE status <> 'archived'"
            ).fetchall()
            rows = conn.execute(
                "SELECT session_id, seq, content FROM messages WHERE compacted = 0 "
                "ORDER BY session_id, seq"
            ).fetchall()
        finally:
            conn.close()
        assert 1 <= len(sessions) <= 2  # one per key that a thread had created
        for session_id, message_count, last_seq in sessions:
            seqs = [seq for sid, seq, _ in rows if sid == session_id]
            assert message_count == len(seqs), "message_count equals the live rows"
            assert seqs == list(range(1, last_seq + 1)), "seq runs 1..last_seq, no gaps"

        stored = Counter(json.loads(content) for _, _, content in rows)
        assert max(stored.values()) == 1, "no message stored twice"
        stored = Counter(c for c in stored if CALL_CONTENT.match(c))  # not "after the crash"
        missing = [f"{a}-{p}" for a in acked for p in PER_CALL if f"{a}-{p}" not in stored]
        assert missing == [], "every acknowledged append survives the kill"
        calls = Counter(content.rsplit("-", 1)[0] for content in stored)
        assert set(calls.values()) == {len(PER_CALL)}, "each append is all or nothing"
        # At most one call per thread was in flight (committed or not) when a child died.
        assert len(set(calls) - set(acked)) <= in_flight

        # The store is usable again: counters keep following the rows.
        agent = store.for_agent("bot")
        key = SessionKey("bot", "cli", "acct", "dm", "peer0")
        before = agent.get_or_create(key).message_count
        agent.append_messages(key, [StoredMessage.user(f"after the crash, {len(acked)} acks")])
        assert agent.get(key).message_count == before + 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("durability", "acks_before_kill"),
    [("full", 1), ("full", 150), ("full", 400), ("normal", 250)],
)
def test_sigkill_loses_no_acknowledged_append(
    tmp_path: Path, durability: str, acks_before_kill: int
) -> None:
    path = tmp_path / "sessions.db"
    acked = run_and_kill(path, durability, threads=4, acks_before_kill=acks_before_kill)
    assert len(acked) >= acks_before_kill
    check_after_crash(path, acked)


@pytest.mark.slow
def test_repeated_kills_on_one_file(tmp_path: Path) -> None:
    """Kill, reopen and kill again: every generation of acks survives on the same file."""
    path = tmp_path / "sessions.db"
    acked: list[str] = []
    for round_, acks in enumerate((120, 60, 200)):
        acked.extend(run_and_kill(path, "full", threads=4, acks_before_kill=acks, tag=f"r{round_}"))
        check_after_crash(path, acked, in_flight=4 * (round_ + 1))
