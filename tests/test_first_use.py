"""What a new user's first hour found (issue 19): a mistyped database URL fails instead of
creating files and folders, database files are private to their owner, an empty answer says
which database it read, export shows progress on a terminal, a port in use is one line with a
hint, and the demo says when it compacts."""

from __future__ import annotations

import json
import os
import pty
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aisopod_session import InvalidInputError, SessionKey, SessionStore, StoredMessage
from tests.conftest import PG_URL

CLI = [str(Path(sys.executable).with_name("aisopod-session"))]


@pytest.mark.parametrize("url", ["mysql://localhost/x", "redis://127.0.0.1:6379/0",
                                 "file:///tmp/x.db", "sqlite3:///x.db"])
def test_an_unknown_scheme_is_refused_and_creates_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          url: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match="scheme"):
        SessionStore.open(url)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_an_error_not_created(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(InvalidInputError, match="does not exist"):
        SessionStore.open(str(target))
    with pytest.raises(InvalidInputError, match="does not exist"):
        SessionStore.open(f"sqlite:///{target}")
    assert list(tmp_path.iterdir()) == []


def test_database_files_are_private_to_their_owner(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    old = os.umask(0o022)  # the usual umask, which made them world-readable
    try:
        with SessionStore.open(str(path)) as store:
            key = SessionKey("bot", "telegram", "b", "dm", "u")
            agent = store.for_agent("bot")
            agent.get_or_create(key)
            agent.append_messages(key, [StoredMessage.user("a secret")])
            files = [p for p in tmp_path.iterdir() if p.name.startswith("private.db")]
            assert {p.name for p in files} >= {"private.db", "private.db-wal"}
            for file in files:
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        os.umask(old)


def test_an_existing_database_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SessionStore.open(str(path)).close()
    path.chmod(0o640)  # the operator's choice
    SessionStore.open(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_the_cli_names_the_mistake(tmp_path: Path) -> None:
    for db, expected in (("mysql://localhost/x", "unknown scheme 'mysql'"),
                         (str(tmp_path / "nope" / "x.db"), "does not exist")):
        done = subprocess.run([*CLI, "--db", db, "sessions", "list"], check=False, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert expected in done.stderr
        assert "Traceback" not in done.stderr + done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_cli_default_database_is_created_with_its_folder(tmp_path: Path) -> None:
    done = subprocess.run([*CLI, "sessions", "list"], check=False, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / "data" / "sessions.db").stat().st_mode) == 0o600


def test_the_cli_reads_its_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    from aisopod_session.service.config import ServiceConfig
    from aisopod_session.service.server import BackgroundService

    token = "a-long-admin-token-for-the-cli-test"
    config = ServiceConfig.model_validate({"tokens": [{"token": token, "role": "admin"}]})
    with BackgroundService.over(str(tmp_path / "served.db"), config) as service:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AISOPOD_")}
        for extra, more_env in (
                (["--token-file", str(token_file)], {}),
                ([], {"AISOPOD_TOKEN_FILE": str(token_file)}),
                ([], {"AISOPOD_TOKEN": token})):
            done = subprocess.run([*CLI, "--server", service.url, *extra, "sessions", "list"],
                                  check=False, capture_output=True, text=True, timeout=60,
                                  env={**env, **more_env}, cwd=tmp_path)
            assert done.returncode == 0, (extra, more_env, done.stderr)
        (tmp_path / "empty").write_text("\n")
        for bad, expected in ((tmp_path / "empty", "first line is empty"),
                              (tmp_path / "missing", "cannot read it")):
            done = subprocess.run([*CLI, "--server", service.url, "--token-file", str(bad),
                                   "sessions", "list"], check=False, capture_output=True,
                                  text=True, timeout=60, env=env, cwd=tmp_path)
            assert done.returncode != 0
            assert expected in done.stderr
            assert "Traceback" not in done.stderr
    help_text = subprocess.run([*CLI, "--help"], check=False, capture_output=True, text=True,
                               timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout
    assert "--token-file" in help_text
    assert "process list" in help_text


def test_scripts_cli_runs_the_cli_from_anywhere(tmp_path: Path) -> None:
    """After the two commands, the README's way to run the CLI (issue 19): paths are the
    caller's."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "cli"
    env = {**os.environ, "AISOPOD_EXTRAS": "dev"}  # the environment ./scripts/test built
    env.pop("AISOPOD_DATABASE_URL", None)
    done = subprocess.run([str(script), "--db", "here.db", "sessions", "list"], check=False,
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "no sessions" in done.stdout + done.stderr
    assert (tmp_path / "here.db").exists()


# --- an empty answer says where it looked; help, progress, serve, compact, demo (issue 19) ----


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AISOPOD_")}
    return subprocess.run([*CLI, *args], check=False, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})})


def test_an_empty_answer_names_the_database_it_read(tmp_path: Path, pg_schema: str) -> None:
    """A user in the wrong directory sees that the empty store is not the one they meant."""
    where = f"(looked in database {tmp_path / 'data' / 'sessions.db'})"
    for command, empty in ((["sessions", "list"], "no sessions"),
                           (["changes"], "no changes"),
                           (["audit"], "no audit records"),
                           (["usage"], "no messages in that window"),
                           (["db", "stats"], "no sessions"),
                           (["webhooks", "deliveries"], "no deliveries"),
                           (["export"], "no sessions to export"),
                           (["peers", "export", "telegram", "@nobody"],
                            "no sessions to export")):
        done = _cli(tmp_path, *command)
        assert done.returncode == 0, (command, done.stderr)
        assert f"{empty} {where}" in done.stderr, (command, done.stderr)
    # with --json too, on stderr: stdout stays the JSON alone
    done = _cli(tmp_path, "sessions", "list", "--json")
    assert json.loads(done.stdout) == {"items": [], "next_cursor": None}
    assert f"no sessions {where}" in done.stderr
    # a session that is not there: the error says where it looked
    done = _cli(tmp_path, "sessions", "history", "agent:bot:slack:b1:dm:u1")
    assert done.returncode == 1
    assert done.stderr == f"error: no live session for agent:bot:slack:b1:dm:u1 {where}\n"
    # the environment's database, a relative one: named by its absolute path
    done = _cli(tmp_path, "sessions", "list", env={"AISOPOD_DATABASE_URL": "other.db"})
    assert f"no sessions (looked in database {tmp_path / 'other.db'})" in done.stderr
    # PostgreSQL: the URL without its password, and the schema
    url = PG_URL.replace("postgres@", "postgres:not-shown@", 1)
    done = _cli(tmp_path, "--db", url, "--schema", pg_schema, "sessions", "list")
    assert done.returncode == 0, done.stderr
    assert "not-shown" not in done.stderr
    assert "postgres:***@" in done.stderr and f"schema {pg_schema}" in done.stderr
    assert "Traceback" not in done.stderr


def _with_a_pty_for_stderr(command: list[str], cwd: Path, stdout: Path) -> tuple[int, str]:
    """Run ``command`` with its stderr on a pseudo-terminal (as in a shell), stdout to a file;
    what the terminal received, and the exit status."""
    leader, follower = pty.openpty()
    with stdout.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=follower,
                                   env={**os.environ, "COLUMNS": "100"})
        os.close(follower)
        received = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is done with it
                break
            if not chunk:
                break
            received += chunk
        os.close(leader)
        status = process.wait(timeout=60)
    return status, received.decode("utf-8", "replace")


def test_export_shows_progress_on_a_terminal_and_writes_the_same(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SessionStore.open(str(db)) as store:
        key = SessionKey("bot", "telegram", "b", "dm", "u")
        agent = store.for_agent("bot")
        agent.get_or_create(key)
        agent.append_messages(key, [StoredMessage.user(f"message {i}") for i in range(50)])
    plain = _cli(tmp_path, "--db", str(db), "export")
    assert plain.returncode == 0 and plain.stderr == ""  # not a terminal: no progress
    for args, written in ((["export"], tmp_path / "stdout.jsonl"),
                          (["export", "--out", str(tmp_path / "file.jsonl")], tmp_path / "x")):
        status, terminal = _with_a_pty_for_stderr([*CLI, "--db", str(db), *args], tmp_path,
                                                  written)
        assert status == 0, terminal
        assert "exporting" in terminal  # the progress display, on the terminal
        assert "bytes" in terminal or "kB" in terminal
        assert "Traceback" not in terminal
    assert (tmp_path / "stdout.jsonl").read_text("utf-8") == plain.stdout
    assert (tmp_path / "file.jsonl").read_text("utf-8") == plain.stdout


def test_a_port_in_use_is_one_line_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _cli(tmp_path, "serve", "--port", str(port))
    assert done.returncode == 1
    assert done.stderr == (f"error: port {port} is in use on 127.0.0.1; pass --port or set "
                           "[server] port\n")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # it stopped before opening the database


def test_the_demo_says_when_it_compacts_and_its_help_is_plain_text(tmp_path: Path) -> None:
    demo = [sys.executable, "-m", "aisopod_session.demo", "--db", f"sqlite:///{tmp_path}/d.db"]
    first = subprocess.run(demo, check=True, capture_output=True, text=True, timeout=60)
    compactions = [line for line in first.stdout.splitlines() if "compacted:" in line]
    assert compactions == ["    compacted: the newest 4 of 8 messages stay live, the others are "
                           "kept as compacted (compaction 1)"]
    with SessionStore.open(str(tmp_path / "d.db")) as store:
        key = SessionKey.parse("agent:support-bot:discord:bot-1:dm:alice#1234")
        assert store.for_agent("support-bot").get(key).compaction_count == 1
    second = subprocess.run(demo, check=True, capture_output=True, text=True, timeout=60)
    assert "(compaction 2)" in second.stdout
    help_text = subprocess.run([*demo[:3], "--help"], check=True, capture_output=True,
                               text=True, timeout=60).stdout
    assert "usage: python -m aisopod_session.demo" in help_text
    assert "compacted" in help_text
    for markup in ("``", ":class:", ":meth:", "[bold]"):
        assert markup not in help_text
