"""PostgreSQL restarted under a running writer: what the store promises.

The shared server on :5432 serves the other tests in parallel, so this test starts a private
server of its own (initdb in a temporary folder, run as the ``postgres`` user) and restarts
*that* one with ``pg_ctl restart -m immediate`` (a crash-like stop) while a writer appends.

Promise under test (documented in docs/postgres.md): a write that loses its connection before
COMMIT is retried on a fresh connection for up to the retry window, so the loop normally sees no
error at all; if the outage outlasts the window the caller gets StoreUnavailableError and the write
is not acknowledged. Every acknowledged append is present afterwards, no batch is half-written,
and writes continue through the pool once the server is back.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aisopod_session import SessionKey, SessionStore, StoredMessage, StoreUnavailableError

pytestmark = pytest.mark.slow


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aisopod-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def _ctl(self, *args: str) -> None:
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
            "-l", str(self.root / "log"),
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", *args,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivateServer]:
    server = PrivateServer()
    yield server
    server.stop()


def test_writes_survive_a_server_restart(private_pg: PrivateServer) -> None:
    store = SessionStore.open(private_pg.url, pool_size=2)
    agent = store.for_agent("bot")
    key = SessionKey("bot", "slack", "acct", "dm", "U1")
    agent.get_or_create(key)
    acknowledged: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    restarted = threading.Event()
    after_restart: list[str] = []

    def writer() -> None:
        index = 0
        while not stop.is_set():
            batch = [StoredMessage.user(f"m{index}-a"), StoredMessage.assistant(f"m{index}-b")]
            try:
                agent.append_messages(key, batch)
            except StoreUnavailableError as exc:
                errors.append(exc)
            except BaseException as exc:  # anything else is a broken promise
                errors.append(exc)
                raise
            else:
                acknowledged.extend(m.content for m in batch)
                if restarted.is_set():
                    after_restart.append(batch[0].content)
            index += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.5)
        private_pg.restart()
        restarted.set()
        deadline = time.monotonic() + 30
        while len(after_restart) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=60)

    print(f"acknowledged={len(acknowledged)} unavailable_errors={len(errors)}")
    assert not [e for e in errors if not isinstance(e, StoreUnavailableError)]
    assert len(after_restart) >= 50, "writes did not continue through the pool after the restart"

    history = [m.content for m in agent.get_history(key)]
    stored = set(history)
    assert all(content in stored for content in acknowledged), "an acknowledged append is missing"
    assert len(history) == len(stored), "a message was stored twice"
    # no half-written batch: every "-a" has its "-b" right after it
    for first, second in zip(history[::2], history[1::2], strict=True):
        assert first.endswith("-a") and second == first[:-1] + "b"
    assert agent.get(key).message_count == len(history)
    store.close()

    with psycopg.connect(private_pg.url) as conn:
        rows = conn.execute("SELECT count(*) FROM aisopod_session.messages").fetchone()
    assert rows is not None and rows[0] == len(history)
