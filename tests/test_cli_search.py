"""``aisopod-session search``: hits with their matched terms highlighted (colour on a terminal,
``[`` ``]`` elsewhere), every filter, cursor paging, JSON, malformed queries, an empty answer
naming the database, search turned off, and the same answers from a server (``--server``).

Run in-process through Typer's CliRunner, as tests/test_cli.py runs the other commands.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import (
    SessionKey,
    SessionPatch,
    SessionStatus,
    SessionStore,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session.cli import app
from tests.test_cli import (  # noqa: F401  (live_server: the fixture tests/test_cli.py defines)
    AGENT_TOKEN,
    CLEAN_ENV,
    LiveServer,
    db_args,
    fails,
    live_server,
    ok,
    open_store,
    run,
    runner,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DM = SessionKey("bot", "discord", "acct", "dm", "alice")
GROUP = SessionKey("bot", "slack", "work", "group", "team")
HELPER = SessionKey("helper", "telegram", "b2", "dm", "bob")
# Rich markup and text that line splitters break on: shown as typed, never interpreted.
ODD = "parcel [bold]not markup[/bold]\u2028second line"
ODD_SNIPPED = "parcel [bold]not markup[/bold] second line"  # a snippet's whitespace: one space


def say(store: SessionStore, key: SessionKey, *texts: str, role: str = "user",
        at: datetime = T0) -> None:
    agent = store.for_agent(key.agent_id)
    agent.get_or_create(key)
    agent.append_messages(key, [StoredMessage(role=role, content=text,
                                              created_at=at + timedelta(seconds=i))
                                for i, text in enumerate(texts)])


def populate(url: str, options: dict[str, Any]) -> None:
    with open_store(url, options) as store:
        say(store, DM, "the parcel left Lyon on Tuesday", at=T0)
        say(store, DM, "your parcel arrives tomorrow", role="assistant", at=T0 + timedelta(days=1))
        say(store, GROUP, "parcel for the whole team", ODD, at=T0 + timedelta(days=2))
        say(store, HELPER, "helper parcel secret", at=T0 + timedelta(days=3))
        store.for_agent("bot").patch(GROUP, SessionPatch(status=SessionStatus.IDLE))


@pytest.fixture
def db(backend_url: tuple[str, dict[str, Any]]) -> tuple[list[str], str, dict[str, Any]]:
    url, options = backend_url
    populate(url, options)
    return db_args(url, options), url, options


def found(args: list[str]) -> list[str]:
    """The messages a --json search found, read back from their snippets."""
    page = json.loads(ok([*args, "--json"]).stdout)
    return sorted("".join(s["text"] for s in hit["snippet"]) for hit in page["hits"])


def test_hits_show_where_they_are_with_the_matches_highlighted(
        db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    result = ok([*args, "search", "lyon tues*"])
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    with open_store(url, options) as store:
        session = store.for_agent("bot").get(DM)
    heading = lines[0]
    assert heading.startswith(re.match(r"\d+\.\d{4}", heading).group(0))  # type: ignore[union-attr]
    assert f"{DM.canonical()} (session {session.id})" in heading
    assert "2026-03-01 12:00:00  user #1  " in heading
    # not a terminal: the matched terms between brackets, no escape sequence
    assert lines[1] == "  the parcel left [Lyon] on [Tuesday]"
    assert "\x1b" not in result.stdout and result.stderr == ""
    # on a colour terminal: in bold yellow, no brackets
    colour = runner.invoke(app, [*args, "search", "lyon"], env={**CLEAN_ENV, "FORCE_COLOR": "1"})
    assert colour.exit_code == 0, colour.output
    assert "the parcel left \x1b[1;33mLyon\x1b[0m on Tuesday" in colour.stdout
    # NO_COLOR: the brackets again
    plain = runner.invoke(app, [*args, "search", "lyon"],
                          env={**CLEAN_ENV, "FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "the parcel left [Lyon] on Tuesday" in plain.stdout and "\x1b[1;33m" not in plain.stdout
    # the user's text is never read as Rich markup, and stays on its line
    odd = ok([*args, "search", "markup"]).stdout.splitlines()
    assert odd[1] == "  parcel [bold]not [markup][/bold] second line"
    assert "(session " in odd[0] and "status idle" in odd[0]


def test_every_filter(db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    search = [*args, "search", "parcel"]
    everything = found(search)
    assert len(everything) == 5 and "helper parcel secret" in everything
    assert found([*search, "--agent", "helper"]) == ["helper parcel secret"]
    assert "helper parcel secret" not in found([*search, "--agent", "bot"])
    group = sorted(["parcel for the whole team", ODD_SNIPPED])
    assert found([*search, "--channel", "slack"]) == group
    assert found([*search, "--account", "b2"]) == ["helper parcel secret"]
    assert found([*search, "--peer-kind", "group", "--role", "user"]) == group
    assert found([*search, "--peer-id", "alice"]) == [
        "the parcel left Lyon on Tuesday", "your parcel arrives tomorrow"]
    assert found([*search, "--peer", "bob"]) == ["helper parcel secret"]
    assert found([*search, "--role", "assistant"]) == ["your parcel arrives tomorrow"]
    assert len(found([*search, "--role", "assistant", "--role", "user"])) == 5
    assert found([*search, "--since", "2026-03-01T12:00:00", "--until", "2026-03-03"]) == [
        "your parcel arrives tomorrow"]  # both bounds exclusive, UTC without a zone
    assert found([*search, "--until", "2026-03-01T13:00:00+01:00"]) == []  # 12:00 UTC
    assert found([*search, "--status", "idle"]) == group
    assert "parcel for the whole team" not in found([*search, "--status", "active"])
    # compacted originals and archived generations only when asked for
    with open_store(url, options) as store:
        bot = store.for_agent("bot")
        bot.compact(DM, SlidingWindow(max_messages=1))
        bot.reset(GROUP)
    assert found([*search, "--agent", "bot"]) == ["your parcel arrives tomorrow"]
    assert found([*search, "--agent", "bot", "--include-compacted"]) == [
        "the parcel left Lyon on Tuesday", "your parcel arrives tomorrow"]
    assert len(found([*search, "--agent", "bot", "--include-archived"])) == 3
    assert len(found([*search, "--status", "archived"])) == 2
    compacted = ok([*search, "lyon", "--include-compacted"]).stdout
    assert "user (compacted) #1" in compacted
    # a bad value is a usage error (exit 2), named
    assert "--since" in fails([*search, "--since", "yesterday"], code=2)
    assert "--role" in fails([*search, "--role", "robot"], code=2)
    assert "--limit" in fails([*search, "--limit", "101"], code=2)
    assert "--order" in fails([*search, "--order", "worst"], code=2)


@pytest.mark.parametrize("order", ["best", "newest"])
def test_paging_with_the_cursor_it_prints(db: tuple[list[str], str, dict[str, Any]],
                                          order: str) -> None:
    args, _, _ = db
    search = [*args, "search", "parcel", "--limit", "2", "--order", order]
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(3):
        result = ok([*search, *cursor])
        seen += [line for line in result.stdout.splitlines() if line.startswith("  ")]
        hint = re.fullmatch(r"more: --cursor (\S+)\n", result.stderr)
        if hint is None:
            assert result.stderr == ""
            break
        cursor = ["--cursor", hint.group(1)]
    assert len(seen) == len(set(seen)) == 5
    page = json.loads(ok([*search, "--json"]).stdout)
    assert len(page["hits"]) == 2 and page["next_cursor"]
    rest = json.loads(ok([*args, "search", "parcel", "--limit", "3", "--order", order,
                          "--cursor", page["next_cursor"], "--json"]).stdout)
    assert rest["next_cursor"] is None and len(rest["hits"]) == 3
    # a cursor belongs to its search
    other = "newest" if order == "best" else "best"
    line = fails([*args, "search", "parcel", "--order", other, "--cursor", page["next_cursor"]])
    assert line.startswith("error: cursor")


def test_json_is_the_page_as_the_library_answers_it(
        db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, options = db
    page = json.loads(ok([*args, "search", "parcel lyon", "--json"]).stdout)
    assert set(page) == {"hits", "next_cursor", "complete", "partial_ranking"}
    (hit,) = page["hits"]
    with open_store(url, options) as store:
        expected = store.for_agent("bot").search("parcel lyon")
    assert hit == expected.hits[0].model_dump(mode="json")
    assert SessionKey.model_validate(hit["key"]) == DM
    assert [s for s in hit["snippet"] if s["match"]] == [
        {"text": "parcel", "match": True}, {"text": "Lyon", "match": True}]


def test_a_malformed_query_is_one_line_and_exit_status_1(
        db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, _, _ = db
    assert fails([*args, "search", '"unbalanced']) == (
        'error: query: has an unbalanced quote: close the "phrase" with a second "')
    # a query that starts with "-" comes after "--" (else it reads as an option)
    assert "only exclusions" in fails([*args, "search", "--", "-parcel"])
    assert "No such option" in fails([*args, "search", "-parcel"], code=2)
    assert "empty" in fails([*args, "search", " "])


def test_no_hit_says_where_it_looked(db: tuple[list[str], str, dict[str, Any]]) -> None:
    args, url, _ = db
    result = ok([*args, "search", "zeppelin"])
    assert result.stdout == ""
    where = (f"database {Path(url).resolve()}" if "://" not in url
             else "database postgresql://")
    assert result.stderr.startswith(f"no messages match 'zeppelin' (looked in {where}")
    as_json = ok([*args, "search", "zeppelin", "--json"])
    assert json.loads(as_json.stdout)["hits"] == []
    assert as_json.stderr.startswith("no messages match 'zeppelin' (looked in ")


def test_search_turned_off_is_one_clear_line(tmp_path: Path) -> None:
    """A database whose search was turned off stays so: the CLI opens it with the store's
    default, which keeps the database's setting."""
    path = tmp_path / "off.db"
    populate(str(path), {})
    SessionStore.open(str(path), search=False).close()
    line = fails(["--db", str(path), "search", "parcel"])
    assert line.startswith(f"error: search is turned off (looked in database {path}): ")
    assert "search=False" in line
    ok(["--db", str(path), "sessions", "list"])
    with SessionStore.open(str(path)) as store:
        assert store.search_index_status().enabled is False


@pytest.fixture
def searchable_server(live_server: LiveServer) -> LiveServer:  # noqa: F811
    with open_store(live_server.db_url, live_server.options) as store:
        say(store, DM, "the parcel left Lyon on Tuesday", "parcel again")
        say(store, HELPER, "helper parcel secret")
    return live_server


def test_server_mode_searches_like_local_mode(searchable_server: LiveServer) -> None:
    remote = searchable_server.args()
    local = db_args(searchable_server.db_url, searchable_server.options)
    for command in (["search", "parcel"], ["search", "parcel", "--json"],
                    ["search", "parcel", "--agent", "bot", "--order", "newest", "--limit", "1"],
                    ["search", "parcel", "--role", "user", "--peer-kind", "dm", "--json"],
                    ["search", "zeppelin"]):
        remote_result, local_result = ok([*remote, *command]), ok([*local, *command])
        assert remote_result.stdout == local_result.stdout, command
    assert fails([*remote, "search", '"unbalanced']).startswith("error: query: ")
    agent = searchable_server.args(AGENT_TOKEN)
    assert fails([*agent, "search", "parcel"]).endswith(
        "an agent token searches its own agent's messages: pass --agent <its agent id>")
    mine = json.loads(ok([*agent, "search", "parcel", "--agent", "bot", "--json"]).stdout)
    assert mine["hits"] and all(hit["key"]["agent_id"] == "bot" for hit in mine["hits"])
    assert "may not use agent 'helper'" in fails([*agent, "search", "parcel", "--agent",
                                                  "helper"])
