"""The ``aisopod-session`` command line, on SQLite and PostgreSQL, on a database and a server.

Commands run in-process through Typer's CliRunner; ``serve`` and ``python -m aisopod_session``
also run for real in a subprocess. Server mode talks to a real uvicorn on a free local port.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner, Result

from aisopod_session import (
    HistoryQuery,
    SessionFilter,
    SessionKey,
    SessionPatch,
    SessionStatus,
    SessionStore,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session import cli as cli_package
from aisopod_session.cli import app
from aisopod_session.service import create_app, load_config
from aisopod_session.service.config import ServiceConfig
from aisopod_session.store._migrations import latest_version

ADMIN_TOKEN = "admin-token-0123456789abcdef"
AGENT_TOKEN = "bot-agent-token-0123456789abcdef"

ALICE = SessionKey("bot", "matrix", "acct", "dm", "@alice:matrix.org")
THREAD = SessionKey.for_thread("bot", "slack", "b1", "C42", "1700.1")
SPACED = SessionKey("bot", "irc", "acct", "dm", "Bob Smith 100%")
HELPER = SessionKey("helper", "discord", "b2", "group", "G1")
# Text JSON leaves unescaped but that some line splitters break on.
ODD_TEXT = "line\u2028separator\x85next [bold]not markup[/bold] é"

runner = CliRunner()
CLEAN_ENV: dict[str, str | None] = dict.fromkeys((
    "AISOPOD_DATABASE_URL", "AISOPOD_DATABASE_SCHEMA", "AISOPOD_SERVER", "AISOPOD_TOKEN",
    "AISOPOD_ADMIN_TOKEN", "AISOPOD_AGENT_TOKENS"))


def run(args: list[str], input: str | None = None) -> Result:
    return runner.invoke(app, args, input=input, env=CLEAN_ENV)


def ok(args: list[str], input: str | None = None) -> Result:
    result = run(args, input)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def fails(args: list[str], input: str | None = None, code: int = 1) -> str:
    """Run a command that must fail; returns its one-line error."""
    result = run(args, input)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.output
    if code != 1:
        return result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors, result.stderr
    assert errors[-1].startswith("error: "), result.stderr
    assert all(not line.startswith("error: ") for line in errors[:-1])
    return errors[-1]


def db_args(url: str, options: dict[str, Any]) -> list[str]:
    return ["--db", url] + (["--schema", options["schema"]] if "schema" in options else [])


def open_store(url: str, options: dict[str, Any]) -> SessionStore:
    return SessionStore.open(url, **options)


def populate(url: str, options: dict[str, Any]) -> None:
    """Sessions of two agents: an archived generation, a compaction, metadata, tool calls."""
    with open_store(url, options) as store:
        bot = store.for_agent("bot")
        for key in (ALICE, THREAD, SPACED):
            bot.get_or_create(key)
        bot.append_messages(ALICE, [
            StoredMessage.user("first", external_id="m1", token_count=3),
            StoredMessage.assistant("calling", tool_calls=[{"id": "c1", "name": "lookup"}]),
            StoredMessage.tool({"tool_call_id": "c1", "output": "x" * 500}),
            StoredMessage.user(ODD_TEXT),
        ])
        bot.patch(ALICE, SessionPatch(metadata={"lang": "en"}, add_tokens=42))
        bot.reset(ALICE)
        bot.append_messages(ALICE, [StoredMessage.user(f"message {i}") for i in range(6)])
        bot.compact(ALICE, SlidingWindow(max_messages=2))
        bot.append_messages(SPACED, [StoredMessage.user("hello from irc")])
        store.for_agent("helper").get_or_create(HELPER)


def live_count(url: str, options: dict[str, Any]) -> int:
    with open_store(url, options) as store:
        return sum(store.count_sessions_by_status().values())


def without_ids(export: str) -> list[dict[str, Any]]:
    """An export's records without the session ids, which each store assigns itself."""
    records = [json.loads(line) for line in export.split("\n")[:-1]]
    for record in records:
        record.pop("id", None)
        record.pop("session", None)
    return records


@pytest.fixture
def db(backend_url: tuple[str, dict[str, Any]]) -> tuple[list[str], str, dict[str, Any]]:
    """A populated store: (CLI database arguments, url, open options)."""
    url, options = backend_url
    populate(url, options)
    return db_args(url, options), url, options


# --- reading ------------------------------------------------------------------------------------


def test_sessions_list_table_json_filters_and_pages(
    db: tuple[list[str], str, dict[str, Any]],
) -> None:
    args, _, _ = db
    table = ok([*args, "sessions", "list"]).stdout
    for key in (ALICE, THREAD, SPACED, HELPER):
        assert key.canonical() in table
    assert "archived" not in table  # archived generations only when asked for

    everything = json.loads(ok([*args, "sessions", "list", "--json"]).stdout)
    assert everything["next_cursor"] is None
    keys = [SessionKey.model_validate(item["key"]) for item in everything["items"]]
    assert sorted(map(str, keys)) == sorted(map(str, [ALICE, THREAD, SPACED, HELPER]))

    def listed(*extra: str) -> list[str]:
        body = json.loads(ok([*args, "sessions", "list", "--json", *extra]).stdout)
        return sorted(str(SessionKey.model_validate(i["key"])) for i in body["items"])

    assert listed("--agent", "helper") == [str(HELPER)]
    assert listed("--agent", "BOT") == sorted(map(str, [ALICE, THREAD, SPACED]))
    assert listed("--channel", "irc") == [str(SPACED)]
    assert listed("--agent", "bot", "--peer-kind", "thread") == [str(THREAD)]
    assert listed("--peer", "Bob Smith 100%") == [str(SPACED)]
    assert listed("--account", "b2") == [str(HELPER)]
    assert listed("--status", "archived") == [str(ALICE)]
    assert len(listed("--status", "archived", "--status", "active")) == 4

    first = json.loads(ok([*args, "sessions", "list", "--json", "--limit", "3"]).stdout)
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    rest = json.loads(ok([*args, "sessions", "list", "--json", "--limit", "3",
                          "--cursor", first["next_cursor"]]).stdout)
    assert rest["next_cursor"] is None
    assert {i["id"] for i in first["items"]} | {i["id"] for i in rest["items"]} == {
        i["id"] for i in everything["items"]}
    paged = run([*args, "sessions", "list", "--limit", "3"])
    assert "--cursor" in paged.stderr

    assert "no sessions" in ok([*args, "sessions", "list", "--agent", "nobody"]).stderr
    assert fails([*args, "sessions", "list", "--status", "bogus"], code=2)
    assert fails([*args, "sessions", "list", "--limit", "0"], code=2)


def test_sessions_show_and_history(db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    shown = ok([*args, "sessions", "show", ALICE.canonical()]).stdout
    assert ALICE.canonical() in shown
    assert "compactions" in shown
    live = json.loads(ok([*args, "sessions", "show", ALICE.canonical(), "--json"]).stdout)
    assert SessionKey.model_validate(live["key"]) == ALICE
    assert live["status"] == "compacted"
    assert live["message_count"] == 2
    assert live["compaction_count"] == 1

    with open_store(url, options) as store:
        archived = store.list_all_sessions(SessionFilter(status=SessionStatus.ARCHIVED))[0]
        expected = store.get_history_by_id(archived.id, HistoryQuery())
    by_id = json.loads(ok([*args, "sessions", "show", str(archived.id), "--json"]).stdout)
    assert by_id["status"] == "archived"
    assert by_id["metadata"] == {"lang": "en"}
    assert by_id["token_usage"] == 42 + 3  # added, plus the message token_count

    old = json.loads(ok([*args, "sessions", "history", str(archived.id), "--json"]).stdout)
    assert [m["content"] for m in old] == [m.content for m in expected]
    assert old[3]["content"] == ODD_TEXT
    assert old[1]["tool_calls"] == [{"id": "c1", "name": "lookup"}]
    human = ok([*args, "sessions", "history", str(archived.id)]).stdout
    assert "[bold]not markup[/bold]" in human  # data is never read as Rich markup
    assert "tool_calls" in human

    def contents(*extra: str) -> list[Any]:
        out = ok([*args, "sessions", "history", ALICE.canonical(), "--json", *extra]).stdout
        return [m["content"] for m in json.loads(out)]

    assert contents() == ["message 4", "message 5"]
    assert contents("--include-compacted") == [f"message {i}" for i in range(6)]
    assert contents("--include-compacted", "--limit", "2") == ["message 0", "message 1"]
    assert contents("--include-compacted", "--limit", "2", "--tail") == ["message 4",
                                                                         "message 5"]
    assert "message" not in ok([*args, "sessions", "history", THREAD.canonical()]).stdout
    assert "no messages" in run([*args, "sessions", "history", THREAD.canonical()]).stderr

    missing = SessionKey("bot", "matrix", "acct", "dm", "@nobody:x").canonical()
    assert "no live session" in fails([*args, "sessions", "show", missing])
    assert "no session with id 999999" in fails([*args, "sessions", "history", "999999"])


def test_bad_keys_and_usage(db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, _, _ = db
    for command in (["sessions", "show"], ["sessions", "history"], ["sessions", "reset"],
                    ["compact", "--window", "3"]):
        line = fails([*args, *command, "not-a-key"])
        assert "key" in line
        assert "agent:<agent>" in line
    result = run([*args, "sessions", "delete", "agent:bot:slack:b1:dm"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert fails([*args, "sessions", "show", "agent:bot:slack:b1:cave:x"]).startswith(
        "error: invalid SessionKey: peer_kind")
    # usage errors (Click's exit status 2): a missing argument, an unknown option or command
    assert "Missing argument" in fails([*args, "sessions", "show"], code=2)
    assert fails([*args, "sessions", "list", "--nope"], code=2)
    assert fails([*args, "nothing-like-this"], code=2)
    # a store that cannot be opened: one line, no traceback
    assert "only applies to PostgreSQL" in fails(
        ["--db", "sqlite:///x.db", "--schema", "s", "sessions", "list"])


# --- writing ------------------------------------------------------------------------------------


def test_compact_strategies(db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    key = SPACED.canonical()
    with open_store(url, options) as store:
        store.for_agent("bot").append_messages(SPACED, [
            StoredMessage.assistant("calling", tool_calls=[{"id": "t"}]),
            StoredMessage.tool("y" * 1000),
            *[StoredMessage.user(f"u{i}") for i in range(4)],
        ])

    record = json.loads(ok([*args, "compact", key, "--truncate-tools", "100", "--json"]).stdout)
    assert record["compaction_count"] == 1
    with open_store(url, options) as store:
        tool = [m for m in store.for_agent("bot").get_history(SPACED) if m.role == "tool"]
        assert len(tool[0].content) <= 100

    assert "compacted" in ok([*args, "compact", key, "--window", "5"]).stdout
    ok([*args, "compact", key, "--summary", "they said hello", "--keep-recent", "2"])
    with open_store(url, options) as store:
        agent = store.for_agent("bot")
        history = agent.get_history(SPACED)
        assert [m.content for m in history] == ["they said hello", "u2", "u3"]
        assert agent.get(SPACED).compaction_count == 3

    usage = [[], ["--window", "2", "--summary", "s"], ["--keep-recent", "1", "--window", "2"],
             ["--window", "0"]]
    for extra in usage:
        fails([*args, "compact", key, *extra], code=2)
    assert "max_chars" in fails([*args, "compact", key, "--truncate-tools", "10"])


def test_destructive_commands_refuse_without_confirmation(
    db: tuple[list[str], str, dict[str, Any]],
) -> None:
    args, url, options = db
    before = live_count(url, options)
    key = THREAD.canonical()
    for answer in ("n\n", None, "\n"):  # no, end of input, the default (no)
        assert "nothing was changed" in fails([*args, "sessions", "delete", key], input=answer)
        assert "nothing was changed" in fails([*args, "sessions", "clear", "--agent", "bot"],
                                              input=answer)
        assert "nothing was changed" in fails([*args, "sessions", "clear"], input=answer)
        assert "nothing was changed" in fails([*args, "reset"], input=answer)
    assert live_count(url, options) == before == 5
    assert "(5 sessions)" in run([*args, "reset"], input="n\n").stderr
    assert "of agent 'bot' (4 sessions)" in run([*args, "sessions", "clear", "--agent", "bot"],
                                                input="n\n").stderr

    assert f"deleted {THREAD}" in ok([*args, "sessions", "delete", key], input="y\n").stdout
    assert "nothing was deleted" in fails([*args, "sessions", "delete", key, "--yes"])
    assert live_count(url, options) == 4

    reset = json.loads(ok([*args, "sessions", "reset", SPACED.canonical(), "--json"]).stdout)
    assert reset["status"] == "active"
    assert reset["message_count"] == 0
    assert live_count(url, options) == 5  # the old generation is archived, not deleted

    assert "deleted 1 session" in ok([*args, "sessions", "clear", "--agent", "helper",
                                      "--yes"]).stdout
    assert "deleted 4 sessions" in ok([*args, "sessions", "clear", "--agent", "bot"],
                                      input="yes\n").stdout
    assert live_count(url, options) == 0

    populate(url, options)
    assert "deleted 5 sessions" in ok([*args, "reset", "--yes"]).stdout
    assert live_count(url, options) == 0
    populate(url, options)
    assert "deleted 5 sessions" in ok([*args, "sessions", "clear", "-y"]).stdout
    assert live_count(url, options) == 0


# --- export, import, db -------------------------------------------------------------------------


@pytest.fixture
def empty_target(backend_url: tuple[str, dict[str, Any]], tmp_path: Path,
                 request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """A second, empty location on the same backend."""
    url, options = backend_url
    if "schema" in options:
        return url, {**options, "schema": request.getfixturevalue("pg_schema")}
    return str(tmp_path / "copy.db"), {}


def test_export_import_round_trip(db: tuple[list[str], str, dict[str, Any]],
                                  empty_target: tuple[str, dict[str, Any]],
                                  tmp_path: Path) -> None:
    args, _, _ = db
    exported = ok([*args, "export"]).stdout
    lines = exported.split("\n")
    assert lines.pop() == ""
    assert json.loads(lines[0])["kind"] == "aisopod-session-export"
    assert len(lines) == 1 + 5 + 4 + 6 + 1  # header, sessions, messages of each generation
    assert ODD_TEXT in exported  # one line per record, even with U+2028 inside

    out = tmp_path / "export.jsonl"
    assert "wrote 17 lines" in ok([*args, "export", "--out", str(out)]).stdout
    assert out.read_text("utf-8") == exported
    assert not out.with_name(out.name + ".partial").exists()
    helper_only = ok([*args, "export", "--agent", "helper"]).stdout.split("\n")[:-1]
    assert len(helper_only) == 2
    assert "helper" in helper_only[1]

    target = db_args(*empty_target)
    imported = ok([*target, "import", str(out), "--json"])
    assert json.loads(imported.stdout) == {"sessions": 5, "messages": 11, "queued": 0,
                                           "skipped": 0, "archived": 0}
    assert ok([*target, "export"]).stdout == exported  # reproduced exactly

    assert "already exists" in fails([*target, "import", str(out)])
    ok([*target, "reset", "--yes"])
    assert "imported 5 sessions, 11 messages" in ok([*target, "import", "-"],
                                                   input=exported).stdout
    # PostgreSQL does not hand out the ids of the deleted sessions again
    assert without_ids(ok([*target, "export"]).stdout) == without_ids(exported)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "aisopod-session-export", "version": 1}\n{"kind": "nope"}\n')
    assert "line 2" in fails([*target, "import", str(bad)])
    assert "No such file" in fails([*target, "import", str(tmp_path / "missing.jsonl")])
    fails([*target, "import"], code=2)
    assert "No such file" in fails([*args, "export", "--out", str(tmp_path / "no/dir/x")])


def test_db_migrate_and_stats(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url
    args = db_args(url, options)
    backend = "postgres" if "schema" in options else "sqlite"
    latest = latest_version(backend)
    migrated = ok([*args, "db", "migrate"]).stdout
    assert f"{backend} database is at schema version {latest}" in migrated
    assert json.loads(ok([*args, "db", "migrate", "--json"]).stdout) == {
        "backend": backend, "schema_version": latest}
    empty = json.loads(ok([*args, "db", "stats", "--json"]).stdout)
    assert empty == {"sessions_by_status": {s.value: 0 for s in SessionStatus}, "agents": 0,
                     "messages_live": 0, "messages_compacted": 0}
    populate(url, options)
    stats = json.loads(ok([*args, "db", "stats", "--json"]).stdout)
    assert stats == {"sessions_by_status": {"active": 3, "idle": 0, "compacted": 1,
                                            "archived": 1},
                     "agents": 2, "messages_live": 4 + 1 + 2, "messages_compacted": 4}
    table = ok([*args, "db", "stats"]).stdout
    assert "sessions archived" in table
    assert "messages compacted" in table


# --- serve --------------------------------------------------------------------------------------


def test_serve_builds_the_config_from_file_env_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aisopod_session.service import server

    started: list[ServiceConfig] = []
    monkeypatch.setattr(server, "serve", started.append)
    config_file = tmp_path / "service.toml"
    config_file.write_text('[database]\nurl = "sqlite:///from-file.db"\n'
                           '[server]\nport = 9000\n')

    ok(["serve", "--config", str(config_file)])
    assert started[-1].database.url == "sqlite:///from-file.db"
    assert started[-1].server.port == 9000
    ok(["serve", "--config", str(config_file), "--db", "flag.db", "--host", "::1",
        "--port", "9001"])
    assert (started[-1].database.url, started[-1].server.host, started[-1].server.port) == (
        "flag.db", "::1", 9001)
    ok(["--db", "global.db", "--schema", "s1", "serve", "--config", str(config_file)])
    assert started[-1].database.url == "global.db"
    assert started[-1].database.db_schema == "s1"
    ok(["serve"])
    assert started[-1].database.url == "sqlite:///data/sessions.db"
    assert len(started) == 4

    assert "no such file" in fails(["serve", "--config", str(tmp_path / "missing.toml")])
    config_file.write_text("[server]\nport = 'x'\n")
    assert "server.port" in fails(["serve", "--config", str(config_file)])
    fails(["serve", "--port", "70000"], code=2)
    assert len(started) == 4


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_python_m_serve_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISOPOD_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "aisopod_session", "--db", str(tmp_path / "s.db"), "serve",
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    # uvicorn re-raises the signal once it has shut down cleanly
    assert process.returncode in (0, -signal.SIGTERM), output
    # the sockets are bound before the app starts; the log still says where it listens
    assert f"Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in output
    assert "Application shutdown complete" in output
    assert (tmp_path / "s.db").exists()


# --- server mode --------------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    db_url: str
    options: dict[str, Any]

    def args(self, token: str | None = ADMIN_TOKEN) -> list[str]:
        return ["--server", self.url] + (["--token", token] if token else [])


@pytest.fixture
def live_server(backend_url: tuple[str, dict[str, Any]]) -> Iterator[LiveServer]:
    url, options = backend_url
    populate(url, options)
    config = load_config(env={"AISOPOD_ADMIN_TOKEN": ADMIN_TOKEN,
                              "AISOPOD_AGENT_TOKENS": f"bot={AGENT_TOKEN}"}, db_url=url)
    if "schema" in options:
        database = config.database.model_copy(update={"db_schema": options["schema"],
                                                      "pool_size": 2})
        config = config.model_copy(update={"database": database})
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", url, options)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def test_server_mode_reads_like_local_mode(live_server: LiveServer) -> None:
    remote = live_server.args()
    local = db_args(live_server.db_url, live_server.options)
    for command in (["sessions", "list", "--json"],
                    ["sessions", "list", "--json", "--status", "archived", "--status", "active"],
                    ["sessions", "list", "--json", "--agent", "bot", "--peer-kind", "dm",
                     "--limit", "1"],
                    ["sessions", "list", "--json", "--peer", "Bob Smith 100%"],
                    ["sessions", "show", "--json", ALICE.canonical()],
                    ["sessions", "show", "--json", THREAD.canonical()],
                    ["sessions", "show", "--json", "1"],
                    ["sessions", "history", "--json", "1"],
                    ["sessions", "history", "--json", SPACED.canonical()],
                    ["sessions", "history", "--json", "--include-compacted", "--limit", "3",
                     "--tail", ALICE.canonical()],
                    ["db", "stats", "--json"], ["usage", "--json"],
                    ["usage", "--json", "--days", "1", "--agent", "bot"],
                    ["export"], ["export", "--agent", "helper"]):
        assert ok([*remote, *command]).stdout == ok([*local, *command]).stdout, command
    assert ODD_TEXT in ok([*remote, "export"]).stdout
    assert THREAD.canonical() in ok([*remote, "sessions", "list"]).stdout
    assert json.loads(ok([*remote, "usage", "--json"]).stdout)  # the populated messages count
    assert "messages" in ok([*remote, "usage"]).stdout
    assert "no live session" in fails([*remote, "sessions", "show",
                                       SessionKey("bot", "x", "y", "dm", "z").canonical()])
    # the server's store raises what a local store raises: the same one-line errors, each
    # saying where it looked
    for command in (["sessions", "history", "424242"], ["sessions", "show", "424242"],
                    ["sessions", "history", SessionKey("bot", "x", "y", "dm", "z").canonical()]):
        remote_error, local_error = fails([*remote, *command]), fails([*local, *command])
        assert remote_error.endswith(f" (looked in server {live_server.url})"), remote_error
        assert " (looked in database " in local_error, local_error
        assert remote_error.split(" (looked in ")[0] == local_error.split(" (looked in ")[0]
    assert fails([*remote, "sessions", "history", "424242"]) == \
        f"error: no session with id 424242 (looked in server {live_server.url})"


def test_server_mode_writes(live_server: LiveServer, tmp_path: Path) -> None:
    remote = live_server.args()
    db = (live_server.db_url, live_server.options)
    exported = ok([*remote, "export"]).stdout

    assert "nothing was changed" in fails([*remote, "sessions", "delete", THREAD.canonical()],
                                          input="n\n")
    assert "nothing was changed" in fails([*remote, "reset"], input="n\n")
    assert "nothing was changed" in fails([*remote, "sessions", "clear", "--agent", "bot"])
    # the question counts what would go, through the server too
    assert "(5 sessions)" in run([*remote, "reset"], input="n\n").stderr
    assert "of agent 'bot' (4 sessions)" in run([*remote, "sessions", "clear", "--agent", "bot"],
                                                input="n\n").stderr
    assert live_count(*db) == 5
    ok([*remote, "sessions", "delete", THREAD.canonical(), "--yes"])
    assert "nothing was deleted" in fails([*remote, "sessions", "delete", THREAD.canonical(),
                                           "--yes"])
    assert live_count(*db) == 4
    reset = json.loads(ok([*remote, "sessions", "reset", SPACED.canonical(), "--json"]).stdout)
    assert SessionKey.model_validate(reset["key"]) == SPACED
    assert reset["message_count"] == 0
    record = json.loads(ok([*remote, "compact", ALICE.canonical(), "--summary", "s",
                            "--json"]).stdout)
    assert record["compaction_count"] == 2
    assert record["summary"] == "s"
    fails([*remote, "compact", ALICE.canonical(), "--window", "1", "--truncate-tools", "99"],
          code=2)

    assert "deleted 1 session" in ok([*remote, "sessions", "clear", "--agent", "helper",
                                      "--yes"]).stdout
    assert "deleted 4 sessions" in ok([*remote, "reset", "--yes"]).stdout
    assert live_count(*db) == 0

    dump = tmp_path / "dump.jsonl"
    dump.write_text(exported, "utf-8")
    assert json.loads(ok([*remote, "import", str(dump), "--json"]).stdout) == {
        "sessions": 5, "messages": 11, "queued": 0, "skipped": 0, "archived": 0}
    # ids are the target's own; in this store they may come after the deleted ones
    assert without_ids(ok([*remote, "export"]).stdout) == without_ids(exported)
    assert "already exists" in fails([*remote, "import", "-"], input=exported)
    assert "db migrate works on a database" in fails([*remote, "db", "migrate"])


def test_server_mode_auth_and_connection_errors(live_server: LiveServer) -> None:
    for token, refusal in (("wrong-token-0123456789", "a valid bearer token is required"),
                           (None, "missing bearer token")):
        line = fails([*live_server.args(token), "sessions", "list"])
        # the server (401) refused it when the store was opened
        assert line == f"error: server {live_server.url} refused access: {refusal}"
        assert "wrong-token" not in line
    agent = live_server.args(AGENT_TOKEN)
    # every agent's sessions are an admin's to list; the error says how to list its own
    assert fails([*agent, "sessions", "list"]) == (
        "error: this store's token is agent 'bot''s; admin operations need an admin token; an "
        "agent token lists its own agent's sessions: pass --agent <its agent id>")
    assert "may not use agent 'helper'" in fails([*agent, "sessions", "show",
                                                  HELPER.canonical()])
    mine = json.loads(ok([*agent, "sessions", "list", "--agent", "bot", "--json"]).stdout)
    assert len(mine["items"]) == 3
    assert ok([*agent, "sessions", "history", "--json", SPACED.canonical()]).stdout

    sock = _free_socket()  # bound, never listening: connections are refused
    try:
        port = sock.getsockname()[1]
        line = fails(["--server", f"127.0.0.1:{port}", "db", "stats"])
    finally:
        sock.close()
    assert line.startswith(f"error: cannot talk to the server http://127.0.0.1:{port}: ")
    assert "ConnectError" in line
    assert fails(["--server", "ftp://127.0.0.1:21", "db", "stats"]) == (
        "error: --server: 'ftp://127.0.0.1:21' is not an http:// or https:// URL")


# --- the CLI is the store's API, not a layer of its own ---------------------------------------


def test_commands_call_the_store_directly() -> None:
    """No HTTP client and no class wrapping the store in the CLI: every command opens the store
    the global options name (``SessionStore.open``, also for --server) and calls its methods,
    so an admin operation is added to the CLI by writing its command, nothing else."""
    cli = Path(cli_package.__file__).parent
    classes: dict[str, list[str]] = {}
    for path in sorted(cli.glob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name.split(".")[0] == "httpx"}, path.name
        classes[path.name] = [node.name for node in ast.walk(tree)
                              if isinstance(node, ast.ClassDef)]
    # the error handler, the operator's error, the global options, the help's display of
    # options and arguments: nothing that holds a store
    assert sorted(name for found in classes.values() for name in found) == [
        "CliError", "Settings", "_Cli", "_ReadableArgument", "_ReadableOption"]


def test_sessions_show_has_the_run_and_stop_asks_it_to_stop(
        db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    assert "no run is active" in ok([*args, "sessions", "stop", ALICE.canonical()]).stderr
    with open_store(url, options) as store:
        bot = store.for_agent(ALICE.agent_id)
        run = bot.start_run(ALICE, "replica-7", ttl=600)
        bot.enqueue(ALICE, [StoredMessage.user("waiting")])
    shown = json.loads(ok([*args, "sessions", "show", "--json", ALICE.canonical()]).stdout)
    assert shown["run"]["owner"] == "replica-7" and shown["run"]["fence"] == run.fence
    assert shown["inbox"] == 1
    assert "replica-7" in ok([*args, "sessions", "show", ALICE.canonical()]).stdout
    assert "asked the run" in ok([*args, "sessions", "stop", ALICE.canonical()]).stdout
    with open_store(url, options) as store:
        assert store.for_agent(ALICE.agent_id).renew_run(run).stop_requested is True
    assert "no live session" in fails(
        [*args, "sessions", "stop", SessionKey("bot", "x", "y", "dm", "z").canonical()])


# --- first use: readable help, a compaction that did nothing (issue 19) ------------------------


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


RAW_TYPE = re.compile(r"<(?:str|bool|int|float|path|Path|datetime|list\[[^>]*|[\w ]+ range|"
                      r"[\w-]+(?:\|[\w-]+)+)>")


def test_every_help_shows_readable_placeholders() -> None:
    """No raw Python type (``<bool>``, ``<list[active|…]>``, ``<int range>``) in any --help:
    flags are bare, choices read ``[a|b]``, values ``TEXT``, ``INTEGER`` or their metavar."""
    from typer.main import get_command

    paths = list(_command_paths(get_command(app)))
    assert ("sessions", "list") in paths and ("webhooks", "status") in paths
    assert len(paths) >= 25
    env = {**CLEAN_ENV, "COLUMNS": "200"}
    helps = {}
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env=env)
        assert result.exit_code == 0, (path, result.output)
        assert not RAW_TYPE.search(result.output), (path, RAW_TYPE.search(result.output))
        helps[path] = result.output

    def row(path: tuple[str, ...], option: str) -> str:
        return next(line for line in helps[path].splitlines()
                    if re.match(rf"│\s*{option} ", line))  # a row of the options panel

    assert "[active|idle|compacted|archived]" in row(("sessions", "list"), "--status")
    assert "[dm|group|thread]" in row(("sessions", "list"), "--peer-kind")
    assert "INTEGER [1<=x<=1000]" in row(("sessions", "list"), "--limit")
    assert "TEXT" in row(("sessions", "list"), "--agent")
    assert "[fail|skip|archive-existing]" in row(("import",), "--on-conflict")
    assert "URL" in row((), "--db")
    for path, flag in ((("sessions", "list"), "--json"), (("changes",), "--follow"),
                       (("reset",), "--yes"), ((), "--help")):
        # a flag takes no value: nothing between it and its help
        assert re.search(rf"{flag}\s+(?:-\w\s+)?[A-Z]", row(path, flag)), row(path, flag)


def test_import_help_says_what_it_prints() -> None:
    """import prints one line (or JSON), never a table; its help says so."""
    env = {**CLEAN_ENV, "COLUMNS": "200"}
    for path in (["import"], ["compact"], ["sweep"], ["purge"], ["db", "migrate"],
                 ["sessions", "reset"], ["sessions", "stop"], ["peers", "forget"]):
        text = runner.invoke(app, [*path, "--help"], env=env).output
        assert "table" not in text, path
        assert "Print the result as JSON instead of a line of text." in text, path
    assert "Prints one line" in runner.invoke(app, ["import", "--help"], env=env).output
    assert "instead of a table" in runner.invoke(app, ["sessions", "list", "--help"],
                                                 env=env).output


def test_a_compaction_with_nothing_to_do_says_so(
        db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    key = SPACED.canonical()  # one live message, never compacted
    for strategy, why in (
            (["--window", "5"], "it has 1 live message and --window keeps 5"),
            (["--summary", "s", "--keep-recent", "3"],
             "it has 1 live message and --keep-recent keeps 3"),
            (["--truncate-tools", "100"], "no tool result is longer than 100 characters")):
        result = ok([*args, "compact", key, *strategy])
        assert result.stdout == f"nothing compacted in {key}: {why} (0 earlier compactions)\n"
        # --json: the record as it stands on stdout, the sentence on stderr
        result = ok([*args, "compact", key, *strategy, "--json"])
        assert json.loads(result.stdout)["compaction_count"] == 0
        assert f"nothing compacted in {key}: {why}" in result.stderr
    with open_store(url, options) as store:
        bot = store.for_agent("bot")
        assert bot.get(SPACED).compaction_count == 0
        # the newest message answers the tool call before it: a window cannot start between
        bot.append_messages(THREAD, [
            StoredMessage.assistant("calling", tool_calls=[{"id": "t"}]),
            StoredMessage.tool("result")])
    thread = THREAD.canonical()
    assert ok([*args, "compact", thread, "--window", "1"]).stdout == (
        f"nothing compacted in {thread}: it has 2 live messages; keeping the newest 1 without "
        "the tool call they answer is not allowed, so all are kept (0 earlier compactions)\n")
    assert ok([*args, "compact", thread, "--summary", "s"]).stdout == (
        f"compacted {thread}: 1 compaction so far\n")
    assert ok([*args, "compact", ALICE.canonical(), "--window", "5"]).stdout.endswith(
        "(1 earlier compaction)\n")
    # a compaction that did something, with --json: the record alone
    compacted = ok([*args, "compact", ALICE.canonical(), "--window", "1", "--json"])
    assert json.loads(compacted.stdout)["compaction_count"] == 2
    assert compacted.stderr == ""
