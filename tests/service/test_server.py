"""A real uvicorn server on a loopback port: raw paths as a real server passes them, and graceful
shutdown (an in-flight request completes; the store is closed cleanly afterwards)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aisopod_session import SessionKey, SessionStore, StoredMessage
from aisopod_session.errors import StoreClosedError
from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig
from aisopod_session.store import AsyncSessionStore
from tests.service.conftest import ADMIN, ADMIN_TOKEN, message, session_path

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


class HoldRequests:
    """Test-only ASGI wrapper: a request with ``x-hold: <seconds>`` waits that long before it
    reaches the app, and ``entered`` is set when it arrives — a request surely in flight."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.entered = threading.Event()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            hold = dict(scope["headers"]).get(b"x-hold")
            if hold is not None:
                self.entered.set()
                await asyncio.sleep(float(hold))
        await self.app(scope, receive, send)


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[tuple[uvicorn.Server, str]]:
    """Serve ``app`` on a free loopback port from a thread; yields (server, base URL)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            timeout_graceful_shutdown=10, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "uvicorn did not stop"


def test_real_server_routes_encoded_key_parts(config: ServiceConfig) -> None:
    with uvicorn_thread(create_app(config)) as (_, base), \
            httpx.Client(base_url=base, headers=ADMIN, timeout=30) as client:
        parts = {"channel": "slack/eu", "account": "team:1", "kind": "thread",
                 "peer": "général/thread 1"}
        created = client.put(session_path(**parts))
        assert created.status_code == 200, created.text
        assert created.json()["key"]["peer_id"] == "général/thread 1"
        appended = client.post(session_path(suffix="/messages", **parts),
                               json={"messages": [message("ünï")]})
        assert appended.status_code == 200, appended.text
        history = client.get(session_path(suffix="/messages", **parts)).json()
        assert [m["content"] for m in history] == ["ünï"]
        # The group's own key is a different session (the thread's "/" stayed in its part).
        group = client.get(session_path(channel="slack/eu", account="team:1", kind="group",
                                        peer="général"))
        assert group.status_code == 404
        missing = client.get(session_path(peer="nobody"))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


def test_in_flight_request_completes_on_shutdown(
        config: ServiceConfig, backend_url: tuple[str, dict[str, Any]]) -> None:
    app = create_app(config)  # the app opens the store at start-up and closes it at shutdown
    held = HoldRequests(app)
    results: dict[str, Any] = {}
    with uvicorn_thread(held) as (server, base), \
            httpx.Client(base_url=base, headers=ADMIN, timeout=30) as client:
        assert client.put(session_path()).status_code == 200

        def slow_append() -> None:
            with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as slow:
                results["response"] = slow.post(
                    session_path(suffix="/messages"), headers={"x-hold": "1.0"},
                    json={"messages": [message(f"m{i}") for i in range(200)]})

        sender = threading.Thread(target=slow_append)
        sender.start()
        assert held.entered.wait(10), "the slow request never arrived"
        store: AsyncSessionStore = app.state.store
        server.should_exit = True  # what SIGTERM does: shutdown begins now
        sender.join(timeout=30)
    response = results["response"]
    assert response.status_code == 200, response.text
    assert len(response.json()) == 200
    # After shutdown the app's store is closed...
    with pytest.raises(StoreClosedError):
        asyncio.run(store.stats())
    # ...cleanly: the database opens again with everything the in-flight request wrote.
    url, options = backend_url
    with SessionStore.open(url, **options) as reopened:
        key = SessionKey("bot", "discord", "acct", "dm", "alice")
        history = reopened.for_agent("bot").get_history(key)
        assert [m.content for m in history] == [f"m{i}" for i in range(200)]


SESSIONS = 30
MESSAGES = 100


def populate(path: Path) -> None:
    with SessionStore.open(str(path), durability="normal") as store:
        agent = store.for_agent("bot")
        for i in range(SESSIONS):
            key = SessionKey("bot", "discord", "acct", "dm", f"peer-{i}")
            agent.get_or_create(key)
            agent.append_messages(key, [StoredMessage.user(f"{i}/{n} " + "x" * 3000)
                                        for n in range(MESSAGES)])


def test_sigterm_lets_a_large_export_finish(tmp_path: Path) -> None:
    """`serve` in its own process: SIGTERM while an export streams; the export is complete, the
    app shuts down, and the SQLite database is closed cleanly (no WAL left behind)."""
    db = tmp_path / "sessions.db"
    populate(db)
    config = tmp_path / "service.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n\n[server]\nport = 0\n'
                      f'\n[[tokens]]\ntoken = "{ADMIN_TOKEN}"\nrole = "admin"\n', "utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AISOPOD_ADMIN_TOKEN", None)
    env.pop("AISOPOD_AGENT_TOKENS", None)
    env.pop("AISOPOD_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\n"
         "from aisopod_session.service.config import load_config\n"
         "from aisopod_session.service.server import serve\n"
         "serve(load_config(sys.argv[1]))\n", str(config)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    log: list[str] = []
    try:
        base = None
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            if "Uvicorn running on " in line:
                base = line.split("Uvicorn running on ")[1].split()[0]
                break
        assert base, "".join(log)
        lines: list[bytes] = []
        with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as client, \
                client.stream("GET", "/v1/admin/export") as response:
            assert response.status_code == 200
            assert "server" not in response.headers  # serve() sends no banner
            chunks = response.iter_bytes(64 * 1024)
            first = next(chunks)
            process.send_signal(signal.SIGTERM)  # shutdown begins mid-stream
            time.sleep(0.5)
            # Still running: it waits for this response, which the client has not read yet.
            assert process.poll() is None
            body = first + b"".join(chunks)
        lines = body.splitlines()
        records = [json.loads(line) for line in lines]
        assert records[0]["kind"] == "aisopod-session-export"
        assert sum(r["kind"] == "session" for r in records) == SESSIONS
        assert sum(r["kind"] == "message" for r in records) == SESSIONS * MESSAGES
        assert len(body) > 8 * 1024 * 1024  # large enough to still be streaming at SIGTERM
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        rest = process.stderr.read() if process.stderr else ""
    log.append(rest)
    assert "Waiting for connections to close" in "".join(log), "".join(log)
    assert "Application shutdown complete" in "".join(log), "".join(log)
    assert "Traceback" not in "".join(log), "".join(log)
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    with SessionStore.open(str(db)) as reopened:
        stats = reopened.stats()
        assert stats.messages_live == SESSIONS * MESSAGES
