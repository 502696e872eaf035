"""The lifecycle commands of ``aisopod-session``: ``sweep``, ``purge``, ``peers forget``,
``peers export`` and ``audit``, on SQLite and PostgreSQL, each on a database (policies from
``--config``) and on a real uvicorn server (the server's policies, its token's principal).

Stale state is made with plain SQL (see tests/service/test_lifecycle_api.py): timestamps moved
into the past rather than waited for.
"""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from aisopod_session import SessionKey, SessionStore, SlidingWindow, StoredMessage
from aisopod_session.cli import cli_actor
from aisopod_session.service import create_app, load_config
from tests.service.test_lifecycle_api import (
    HOUR,
    Location,
    archived_earlier,
    compacted_earlier,
    silence,
    strip_ids,
)
from tests.test_cli import ADMIN_TOKEN, AGENT_TOKEN, _free_socket, db_args, fails, ok, run

POLICY_TOML = """
[lifecycle]
idle_after = "PT1H"
archive_after = "PT3H"

[reset.channels.discord]
mode = "idle"
idle_minutes = 1

[retention]
compacted_messages = "PT1H"
archived_sessions = "P1D"

[maintenance]
interval_seconds = 0
"""


def slack(peer: str) -> SessionKey:
    return SessionKey("bot", "slack", "acct", "dm", peer)


ALICE = SessionKey("bot", "discord", "acct", "dm", "alice")
ALICE_OTHER = SessionKey("other", "discord", "acct2", "dm", "alice")
BOB = SessionKey("bot", "discord", "acct", "dm", "bob")
GROUP = SessionKey("bot", "discord", "acct", "group", "alice")


def populate(location: Location) -> dict[str, int]:
    """Slack sessions for sweep and purge, alice's across two agents; returns ids by name."""
    url, options = location
    ids: dict[str, int] = {}
    with SessionStore.open(url, **options) as store:
        bot = store.for_agent("bot")
        for peer in ("fresh", "quiet", "gone"):
            ids[peer] = bot.get_or_create(slack(peer)).id
        ids["x"] = bot.get_or_create(slack("x")).id
        bot.append_messages(slack("x"), [StoredMessage.user(f"x{i}") for i in range(4)])
        bot.compact(slack("x"), SlidingWindow(max_messages=1))
        ids["y"] = bot.get_or_create(slack("y")).id
        bot.append_messages(slack("y"), [StoredMessage.user("y0"), StoredMessage.user("y1")])
        bot.reset(slack("y"))

        bot.append_messages(bot.get_or_create(ALICE).key, [StoredMessage.user("secret one"),
                                                          StoredMessage.user("secret two")])
        bot.reset(ALICE)
        bot.append_messages(ALICE, [StoredMessage.user("secret three")])
        other = store.for_agent("other")
        other.get_or_create(ALICE_OTHER)
        other.append_messages(ALICE_OTHER, [StoredMessage.user("secret four")])
        for key in (BOB, GROUP):
            bot.get_or_create(key)
            bot.append_messages(key, [StoredMessage.user("not hers")])
    silence(location, ids["quiet"], 2 * HOUR)  # idle after 1 h
    silence(location, ids["gone"], 4 * HOUR)  # and archived after 3 h
    assert compacted_earlier(location, ids["x"], 2 * HOUR) == 3  # kept 1 h
    archived_earlier(location, ids["y"], 2 * 24 * HOUR)  # kept 1 day
    return ids


def statuses(location: Location, ids: dict[str, int], *names: str) -> list[str]:
    url, options = location
    with SessionStore.open(url, **options) as store:
        return [store.get_session_by_id(ids[name]).status.value for name in names]


def write_config(path: Path, location: Location, *, database: bool = True) -> Path:
    """The policies, and with ``database`` the test database, as a service TOML file."""
    url, options = location
    text = POLICY_TOML
    if database:
        text += f"\n[database]\nurl = {json.dumps(url)}\n"
        if "schema" in options:
            text += f"schema = {json.dumps(options['schema'])}\npool_size = 2\n"
    path.write_text(text, "utf-8")
    return path


def without_at(output: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(output)
    assert body.pop("at").endswith("Z")
    return body


# --- local and remote, one test body ---------------------------------------------------------


@dataclass
class Target:
    mode: str
    args: list[str]
    """What selects the backend: --db/--config, or --server/--token."""
    actor: str
    """Who the audit log names: the CLI's OS user, on a database and through a server alike."""
    location: Location
    ids: dict[str, int]
    server_url: str | None = None


@pytest.fixture
def served(backend_url: Location, tmp_path: Path) -> Iterator[str]:
    """A real uvicorn server on the populated test database, with the test policies."""
    config = load_config(write_config(tmp_path / "server.toml", backend_url),
                         env={"AISOPOD_ADMIN_TOKEN": ADMIN_TOKEN,
                              "AISOPOD_AGENT_TOKENS": f"bot={AGENT_TOKEN}"})
    sock = _free_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(params=["local", "remote"])
def target(request: pytest.FixtureRequest, backend_url: Location, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Target:
    ids = populate(backend_url)
    monkeypatch.setattr(getpass, "getuser", lambda: "dana")
    if request.param == "remote":
        url = request.getfixturevalue("served")
        return Target("remote", ["--server", url, "--token", ADMIN_TOKEN], "cli:dana",
                      backend_url, ids, url)
    config = write_config(tmp_path / "policies.toml", backend_url, database=False)
    return Target("local", [*db_args(*backend_url), "--config", str(config)], "cli:dana",
                  backend_url, ids)


def test_sweep_and_purge(target: Target) -> None:
    args, where, ids = target.args, target.location, target.ids
    slack_names = ("fresh", "quiet", "gone", "x")
    before = statuses(where, ids, *slack_names)
    assert before == ["active", "active", "active", "compacted"]

    dry = ok([*args, "sweep", "--dry-run"]).stdout
    assert dry == "dry run: would make 2 sessions idle and archive 1\n"
    assert without_at(ok([*args, "sweep", "--dry-run", "--json"]).stdout) == {
        "idled": 2, "archived": 1, "dry_run": True}
    assert statuses(where, ids, *slack_names) == before
    assert ok([*args, "sweep"]).stdout == "made 2 sessions idle, archived 1\n"
    assert statuses(where, ids, *slack_names) == ["active", "idle", "archived", "compacted"]
    assert without_at(ok([*args, "sweep", "--json"]).stdout) == {
        "idled": 0, "archived": 0, "dry_run": False}

    dry = ok([*args, "purge", "--dry-run"]).stdout
    assert dry == ("dry run: would purge 1 archived session, 5 messages and 0 change-feed "
                   "records\n")
    assert without_at(ok([*args, "purge", "--dry-run", "--json"]).stdout) == {
        "sessions": 1, "messages": 5, "changes": 0, "dry_run": True}
    assert statuses(where, ids, "y") == ["archived"]
    assert ok([*args, "purge"]).stdout == ("purged 1 archived session, 5 messages and 0 "
                                          "change-feed records\n")
    assert "no session with id" in fails([*args, "sessions", "show", str(ids["y"])])
    history = json.loads(ok([*args, "sessions", "history", str(ids["x"]), "--json",
                             "--include-compacted"]).stdout)
    assert [m["content"] for m in history] == ["x3"]
    assert without_at(ok([*args, "purge", "--json"]).stdout) == {
        "sessions": 0, "messages": 0, "changes": 0, "dry_run": False}
    fails([*args, "sweep", "--dry-run=maybe"], code=2)


def test_peers_export_forget_and_audit(target: Target, tmp_path: Path) -> None:
    args = target.args
    exported = ok([*args, "peers", "export", "discord", "alice"]).stdout
    lines = [json.loads(line) for line in exported.splitlines()]
    assert lines[0]["kind"] == "aisopod-session-export"
    assert sorted((r["key"]["agent_id"], r["status"]) for r in lines if r["kind"] == "session") \
        == [("bot", "active"), ("bot", "archived"), ("other", "active")]
    assert sorted(r["content"] for r in lines if r["kind"] == "message") == [
        "secret four", "secret one", "secret three", "secret two"]
    out = tmp_path / "alice.jsonl"
    assert ok([*args, "peers", "export", "discord", "alice", "--out", str(out)]).stdout == \
        f"wrote 8 lines to {out}\n"
    assert out.read_text("utf-8") == exported
    assert not out.with_name(out.name + ".partial").exists()

    for answer in ("n\n", None, "\n"):  # no, end of input, the default (no)
        result = run([*args, "peers", "forget", "discord", "alice"], input=answer)
        assert result.exit_code == 1
        assert "'alice' on 'discord'" in result.stderr  # the question
        assert result.stderr.splitlines()[-1] == (
            "error: not confirmed: nothing was changed (pass --yes to skip the question)")
    assert ok([*args, "peers", "export", "discord", "alice"]).stdout == exported  # all there

    # (CliRunner shows the typed answer on stdout; a terminal would show it with the question)
    assert ok([*args, "peers", "forget", "discord", "alice"], input="y\n").stdout.endswith(
        "\nerased 3 sessions and 4 messages of alice on discord\n")
    assert json.loads(ok([*args, "peers", "forget", "discord", "alice", "--yes",
                          "--json"]).stdout) == {"sessions": 0, "messages": 0}
    assert ok([*args, "peers", "export", "discord", "alice"]).stdout.count("\n") == 1  # header
    left = json.loads(ok([*args, "sessions", "list", "--json", "--channel", "discord"]).stdout)
    assert sorted((i["key"]["peer_kind"], i["key"]["peer_id"]) for i in left["items"]) == [
        ("dm", "bob"), ("group", "alice")]

    # what was exported imports again, as it was
    assert json.loads(ok([*args, "import", str(out), "--json"]).stdout) == {
        "sessions": 3, "messages": 4, "queued": 0, "skipped": 0, "archived": 0}
    again = [json.loads(line) for line in
             ok([*args, "peers", "export", "discord", "alice"]).stdout.splitlines()]
    assert strip_ids(again) == strip_ids(lines)

    records = json.loads(ok([*args, "audit", "--json"]).stdout)
    assert [(r["action"], r["sessions"], r["messages"]) for r in records] == [
        ("export_peer", 3, 4), ("export_peer", 0, 0), ("forget_peer", 0, 0),
        ("forget_peer", 3, 4), ("export_peer", 3, 4), ("export_peer", 3, 4),
        ("export_peer", 3, 4)]
    assert {r["actor"] for r in records} == {target.actor}
    assert len({r["subject"] for r in records}) == 1
    assert records[0]["subject"].startswith("hmac-sha256:")
    assert json.loads(ok([*args, "audit", "--json", "--limit", "2"]).stdout) == records[:2]
    table = ok([*args, "audit"]).stdout
    assert target.actor in table
    assert "forget_peer" in table
    assert records[0]["subject"] in table
    for leak in ("alice", "secret"):
        assert leak not in table
    fails([*args, "audit", "--limit", "0"], code=2)
    fails([*args, "peers", "forget", "discord"], code=2)
    assert "peer_id" in fails([*args, "peers", "export", "discord", " "])


# --- local only: --config ------------------------------------------------------------------------


def test_local_policies_come_from_config(backend_url: Location, tmp_path: Path) -> None:
    ids = populate(backend_url)
    plain = db_args(*backend_url)
    # without --config the default policies: idle after a day, nothing archived or purged
    assert without_at(ok([*plain, "sweep", "--dry-run", "--json"]).stdout) == {
        "idled": 0, "archived": 0, "dry_run": True}
    assert without_at(ok([*plain, "purge", "--dry-run", "--json"]).stdout) == {
        "sessions": 0, "messages": 0, "changes": 0, "dry_run": True}
    # the config's database too, when --db is not given (as `serve --config` does)
    config = write_config(tmp_path / "service.toml", backend_url)
    assert without_at(ok(["--config", str(config), "sweep", "--json"]).stdout) == {
        "idled": 2, "archived": 1, "dry_run": False}
    assert statuses(backend_url, ids, "quiet", "gone") == ["idle", "archived"]
    if "schema" not in backend_url[1]:  # --db wins over the config's database
        elsewhere = tmp_path / "elsewhere.db"
        assert without_at(ok(["--db", str(elsewhere), "--config", str(config), "purge",
                              "--json"]).stdout) == {"sessions": 0, "messages": 0,
                                                     "changes": 0, "dry_run": False}
        assert elsewhere.exists()


def test_bad_config_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    db = ["--db", str(tmp_path / "s.db")]
    for text, setting in (
        ('[reset.default]\nmode = "daily"\ntimezone = "Nowhere/Atlantis"\n',
         "reset.default.timezone"),
        ('[lifecycle]\nidle_after = "P2D"\narchive_after = "P1D"\n', "lifecycle: archive_after"),
        ('[reset.channels.slack]\nmode = "idle"\n', "reset.channels.slack: an idle reset"),
        ("[maintenance]\ninterval_seconds = -5\n", "maintenance.interval_seconds"),
    ):
        config.write_text(text, "utf-8")
        for command in (["sweep"], ["purge", "--dry-run"], ["audit"]):
            line = fails([*db, "--config", str(config), *command])
            assert line.startswith(f"error: invalid {config}: {setting}"), line
    assert "no such file" in fails([*db, "--config", str(tmp_path / "missing.toml"), "sweep"])
    assert not (tmp_path / "s.db").exists()  # nothing was opened


def test_local_actor_is_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "operator-7")
    assert cli_actor() == "cli:operator-7"

    def nobody() -> str:
        raise OSError("no user name")

    monkeypatch.setattr(getpass, "getuser", nobody)
    assert cli_actor().startswith("cli:uid-")


# --- remote only: auth ---------------------------------------------------------------------------


def test_remote_needs_an_admin_token(backend_url: Location, served: str) -> None:
    populate(backend_url)
    for token, expected in (
        (AGENT_TOKEN, "this store's token is agent 'bot''s; admin operations need an admin "
                      "token"),
        ("wrong-token-0123456789", f"server {served} refused access: a valid bearer token is "
                                   "required"),
        (None, f"server {served} refused access: missing bearer token"),
    ):
        remote = ["--server", served] + (["--token", token] if token else [])
        for command in (["sweep"], ["sweep", "--dry-run"], ["purge"], ["audit"],
                        ["peers", "export", "discord", "alice"],
                        ["peers", "forget", "discord", "alice", "--yes"]):
            line = fails([*remote, *command])
            assert line == f"error: {expected}", (command, line)
    admin = ["--server", served, "--token", ADMIN_TOKEN]
    assert json.loads(ok([*admin, "audit", "--json"]).stdout) == []  # nothing was done
    assert "no audit records" in run([*admin, "audit"]).stderr
    # the server's policies apply, whatever --config says
    assert without_at(ok([*admin, "--config", "/nonexistent.toml", "sweep", "--dry-run",
                          "--json"]).stdout) == {"idled": 2, "archived": 1, "dry_run": True}


def test_serve_takes_the_global_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aisopod_session.service import server
    from aisopod_session.service.config import ServiceConfig

    started: list[ServiceConfig] = []
    monkeypatch.setattr(server, "serve", started.append)
    config = write_config(tmp_path / "service.toml", (str(tmp_path / "s.db"), {}))
    ok(["--config", str(config), "serve"])
    assert started[-1].policies.lifecycle.archive_after == timedelta(hours=3)
    assert started[-1].database.url == str(tmp_path / "s.db")
    other = tmp_path / "other.toml"
    other.write_text('[lifecycle]\nidle_after = "PT5M"\n', "utf-8")
    ok(["--config", str(config), "serve", "--config", str(other)])  # the command's own wins
    assert started[-1].policies.lifecycle.idle_after == timedelta(minutes=5)
