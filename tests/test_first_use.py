"""What a new user's first hour found (issue 19): a mistyped database URL fails instead of
creating files and folders, and database files are private to their owner."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aisopod_session import InvalidInputError, SessionKey, SessionStore, StoredMessage

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
