"""Lifecycle, retention and privacy through real HTTP requests, on SQLite and PostgreSQL: resolve
with a reset policy from the service config, sweep and purge (dry runs included), forgetting and
exporting a person, the audit log, who may call what, and the service's maintenance loop.

Stale state is built in the past without waiting: through the library's ``now=`` where it can
(``resolve(key, now=...)`` starts a session at that instant), otherwise by moving timestamps back
with plain SQL on the test database (``updated_at``, ``compacted_at`` and ``archived_at`` are
integer microseconds on both backends). Also: a config with bad policies fails ``load_config``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql

from aisopod_session.errors import InvalidInputError, StoreUnavailableError
from aisopod_session.lifecycle import Policies, PurgeResult, ResetPolicy, SweepResult
from aisopod_session.models import SessionKey, utc_now
from aisopod_session.results import SearchIndexStatus
from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig, load_config
from aisopod_session.service.maintenance import run_maintenance
from tests.conftest import PG_URL
from tests.service.conftest import (
    BOT,
    Api,
    assert_problem,
    encode_part,
    message,
    service_config,
    serving,
    session_path,
)

pytestmark = pytest.mark.anyio

Location = tuple[str, dict[str, Any]]
"""``(url, options)`` of a test database, as the ``backend_url`` fixture gives it."""

HOUR = 3600
EVERY_STATUS = {"status": ["active", "idle", "compacted", "archived"]}

POLICIES: dict[str, Any] = {
    "lifecycle": {"idle_after": "PT1H", "archive_after": "PT3H"},
    "reset": {
        "channels": {"discord": {"mode": "idle", "idle_minutes": 1}},
        "agents": {"other": {"*": None}},  # agent "other" is never reset automatically
    },
    "retention": {"compacted_messages": "PT1H", "archived_sessions": "P1D"},
    "maintenance": {"interval_seconds": 0},  # the tests sweep and purge themselves
}


# --- helpers shared with tests/test_cli_lifecycle.py ------------------------------------------


def execute(location: Location, statement: str, params: tuple[Any, ...] = ()) -> int:
    """Run one SQL statement (``?`` placeholders) on the test database; returns the row count."""
    url, options = location
    if "schema" in options:
        with psycopg.connect(PG_URL, autocommit=True) as pg:
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(options["schema"])))
            return pg.execute(statement.replace("?", "%s"), params).rowcount
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite, lite:
        return lite.execute(statement, params).rowcount


def silence(location: Location, session_id: int, seconds: float) -> None:
    """Make a session look silent for ``seconds`` longer than it has been."""
    moved = execute(location, "UPDATE sessions SET updated_at = updated_at - ? WHERE id = ?",
                    (int(seconds * 1_000_000), session_id))
    assert moved == 1


def archived_earlier(location: Location, session_id: int, seconds: float) -> None:
    moved = execute(location, "UPDATE sessions SET archived_at = archived_at - ? "
                    "WHERE id = ? AND status = 'archived'", (int(seconds * 1_000_000), session_id))
    assert moved == 1


def compacted_earlier(location: Location, session_id: int, seconds: float) -> int:
    return execute(location, "UPDATE messages SET compacted_at = compacted_at - ? "
                   "WHERE session_id = ? AND compacted = 1",
                   (int(seconds * 1_000_000), session_id))


def lifecycle_config(location: Location, **sections: Any) -> ServiceConfig:
    """The test service config (tokens included) with these policy sections."""
    url, options = location
    base = service_config(url, options).model_dump(by_alias=True, exclude=set(POLICIES))
    return ServiceConfig.model_validate({**base, **POLICIES, **sections})


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def location(backend_url: Location) -> Location:
    return backend_url


@pytest.fixture
async def api(location: Location) -> AsyncIterator[Api]:
    async with serving(create_app(lifecycle_config(location))) as client:
        yield client


async def session_id(api: Api, **parts: Any) -> int:
    return int((await api.put_session(**parts))["id"])


async def status_of(api: Api, sid: int) -> str:
    response = await api.get(f"/v1/admin/sessions/{sid}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def talk(api: Api, *texts: str, **parts: Any) -> int:
    """Start (or find) a session and append these user messages; returns its id."""
    sid = await session_id(api, **parts)
    await api.append([message(text) for text in texts], **parts)
    return sid


async def resolve(api: Api, **parts: Any) -> dict[str, Any]:
    response = await api.post(session_path(suffix="/resolve", **parts))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- resolve ---------------------------------------------------------------------------------


async def test_resolve_starts_keeps_and_resets_by_the_configured_policy(
    api: Api, location: Location,
) -> None:
    first = await resolve(api, peer="alice")
    assert (first["started"], first["previous_id"]) == (True, None)
    assert first["session"]["status"] == "active"
    again = await resolve(api, peer="alice")
    assert (again["started"], again["previous_id"]) == (False, None)
    assert again["session"]["id"] == first["session"]["id"]
    await api.append([message("remind me at 9")], peer="alice")

    # discord resets after a minute of silence: two minutes make the session stale
    old_id = first["session"]["id"]
    silence(location, old_id, 120)
    fresh = await resolve(api, peer="alice")
    assert fresh["started"] is True
    assert fresh["previous_id"] == old_id
    assert fresh["session"]["id"] != old_id
    assert fresh["session"]["message_count"] == 0
    assert await status_of(api, old_id) == "archived"
    kept = (await api.get(f"/v1/admin/sessions/{old_id}/messages")).json()
    assert [m["content"] for m in kept] == ["remind me at 9"]  # the history is archived, kept
    assert (await resolve(api, peer="alice"))["started"] is False

    # a session started in the past through the library's clock: stale at the first resolve
    store = api.app.state.store
    bob = SessionKey("bot", "discord", "acct", "dm", "bob")
    past = await store.for_agent("bot").resolve(bob, now=utc_now() - timedelta(hours=2))
    assert past.started
    reset = await resolve(api, peer="bob")
    assert (reset["started"], reset["previous_id"]) == (True, past.session.id)

    # no policy for slack, and agent "other" is exempt everywhere: silence changes nothing
    for parts in ({"channel": "slack", "peer": "carol"}, {"agent": "other", "peer": "alice"}):
        started = await resolve(api, **parts)
        silence(location, started["session"]["id"], 30 * 24 * HOUR)
        later = await resolve(api, **parts)
        assert later["started"] is False, parts
        assert later["session"]["id"] == started["session"]["id"]

    # an agent's token resolves its own sessions only
    mine = await api.post(session_path(peer="alice", suffix="/resolve"), headers=BOT)
    assert mine.status_code == 200
    assert mine.json()["session"]["id"] == fresh["session"]["id"]
    assert_problem(await api.post(session_path(agent="other", suffix="/resolve"), headers=BOT),
                   403)


# --- sweep and purge -------------------------------------------------------------------------


async def test_sweep_dry_run_then_for_real(api: Api, location: Location) -> None:
    fresh = await session_id(api, channel="slack", peer="fresh")
    quiet = await session_id(api, channel="slack", peer="quiet")  # silent 2 h: goes idle
    gone = await session_id(api, channel="slack", peer="gone")  # silent 4 h: idle, archived
    idle = await session_id(api, channel="slack", peer="idle")  # idle and silent 4 h: archived
    await api.patch(session_path(channel="slack", peer="idle"), json={"status": "idle"})
    silence(location, quiet, 2 * HOUR)
    silence(location, gone, 4 * HOUR)
    silence(location, idle, 4 * HOUR)
    before = {sid: await status_of(api, sid) for sid in (fresh, quiet, gone, idle)}

    dry = await api.post("/v1/admin/sweep", params={"dry_run": "true"})
    assert dry.status_code == 200, dry.text
    assert {k: dry.json()[k] for k in ("idled", "archived", "dry_run")} == {
        "idled": 2, "archived": 2, "dry_run": True}
    assert dry.json()["at"]
    assert {sid: await status_of(api, sid) for sid in before} == before  # nothing changed

    done = (await api.post("/v1/admin/sweep")).json()
    assert (done["idled"], done["archived"], done["dry_run"]) == (2, 2, False)
    assert [await status_of(api, sid) for sid in (fresh, quiet, gone, idle)] == [
        "active", "idle", "archived", "archived"]
    again = (await api.post("/v1/admin/sweep", params={"dry_run": "false"})).json()
    assert (again["idled"], again["archived"]) == (0, 0)
    # an idle session that hears from its peer is active again
    await api.append([message("back")], channel="slack", peer="quiet")
    assert await status_of(api, quiet) == "active"
    assert_problem(await api.post("/v1/admin/sweep", params={"dry_run": "maybe"}), 422)


async def test_purge_dry_run_then_for_real(api: Api, location: Location) -> None:
    # X: 3 of 4 messages compacted two hours ago (retention: 1 hour)
    x = await talk(api, "x0", "x1", "x2", "x3", channel="slack", peer="x")
    await api.post(session_path(channel="slack", peer="x", suffix="/compact"),
                   json={"kind": "sliding_window", "max_messages": 1})
    assert compacted_earlier(location, x, 2 * HOUR) == 3
    # Y: an archived generation with 2 messages, archived two days ago (retention: 1 day)
    y_old = await talk(api, "y0", "y1", channel="slack", peer="y")
    await api.post(session_path(channel="slack", peer="y", suffix="/reset"))
    archived_earlier(location, y_old, 2 * 24 * HOUR)
    # Z: compacted and archived just now: kept
    z_old = await talk(api, "z0", "z1", "z2", channel="slack", peer="z")
    await api.post(session_path(channel="slack", peer="z", suffix="/compact"),
                   json={"kind": "sliding_window", "max_messages": 1})
    await api.post(session_path(channel="slack", peer="z", suffix="/reset"))

    dry = (await api.post("/v1/admin/purge", params={"dry_run": "true"})).json()
    assert (dry["sessions"], dry["messages"], dry["dry_run"]) == (1, 2 + 3, True)
    assert await status_of(api, y_old) == "archived"
    stats = (await api.get("/v1/admin/stats")).json()
    assert stats["messages_compacted"] == 3 + 2

    done = (await api.post("/v1/admin/purge")).json()
    assert (done["sessions"], done["messages"], done["dry_run"]) == (1, 5, False)
    assert_problem(await api.get(f"/v1/admin/sessions/{y_old}"), 404)
    history = (await api.get(f"/v1/admin/sessions/{x}/messages",
                             params={"include_compacted": "true"})).json()
    assert [m["content"] for m in history] == ["x3"]
    z_history = (await api.get(f"/v1/admin/sessions/{z_old}/messages",
                               params={"include_compacted": "true"})).json()
    assert [m["content"] for m in z_history] == ["z0", "z1", "z2"]
    again = (await api.post("/v1/admin/purge")).json()
    assert (again["sessions"], again["messages"]) == (0, 0)


# --- privacy: export, forget, audit ----------------------------------------------------------


async def test_export_forget_import_and_audit_a_person(api: Api) -> None:
    # alice on discord: two agents, two bot accounts, an archived generation
    await talk(api, "secret one", "secret two", peer="alice")
    await api.post(session_path(peer="alice", suffix="/reset"))
    await talk(api, "secret three", peer="alice")
    await talk(api, "secret four", agent="other", account="acct2", peer="alice")
    # not hers (or not only hers): bob, alice on slack, a group whose id happens to be "alice"
    await talk(api, "bob's", peer="bob")
    await talk(api, "slack alice", channel="slack", peer="alice")
    await talk(api, "group talk", kind="group", peer="alice")
    # a person whose id has a slash and dots in it
    await talk(api, "eve's", channel="matrix", peer="@eve:x.org/.")

    export_path = "/v1/admin/peers/discord/alice/export"
    exported = await api.get(export_path)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[0]["kind"] == "aisopod-session-export"
    sessions = [line for line in lines if line["kind"] == "session"]
    assert sorted((s["key"]["agent_id"], s["status"]) for s in sessions) == [
        ("bot", "active"), ("bot", "archived"), ("other", "active")]
    assert all((s["key"]["channel"], s["key"]["peer_kind"], s["key"]["peer_id"]) ==
               ("discord", "dm", "alice") for s in sessions)
    assert sorted(m["content"] for m in lines if m["kind"] == "message") == [
        "secret four", "secret one", "secret three", "secret two"]

    forget_path = "/v1/admin/peers/discord/alice"
    for params, status in (({}, 422), ({"confirm": "false"}, 400)):
        body = assert_problem(await api.delete(forget_path, params=params), status)
        assert "confirm" in body["detail"]
    assert (await api.get(export_path)).text.count('"kind":"session"') == 3  # still there

    erased = await api.delete(forget_path, params={"confirm": "true"})
    assert erased.status_code == 200, erased.text
    assert erased.json() == {"sessions": 3, "messages": 4}
    left = (await api.get("/v1/admin/sessions", params={**EVERY_STATUS, "limit": 100})).json()
    assert sorted((i["key"]["channel"], i["key"]["peer_kind"], i["key"]["peer_id"])
                  for i in left["items"]) == [
        ("discord", "dm", "bob"), ("discord", "group", "alice"), ("matrix", "dm", "@eve:x.org/."),
        ("slack", "dm", "alice")]
    again = await api.delete(forget_path, params={"confirm": "true"})
    assert again.json() == {"sessions": 0, "messages": 0}
    nothing = [json.loads(line) for line in (await api.get(export_path)).text.splitlines()]
    assert [line["kind"] for line in nothing] == ["aisopod-session-export"]

    # the export is importable: it brings her sessions back as they were
    imported = await api.post("/v1/admin/import", content=exported.content,
                              headers={"Content-Type": "application/x-ndjson"})
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"sessions": 3, "messages": 4, "queued": 0, "skipped": 0,
                               "archived": 0}
    restored = [json.loads(line) for line in (await api.get(export_path)).text.splitlines()]
    assert strip_ids(restored) == strip_ids(lines)

    # percent-encoded parts: a slash inside the id, a dot-only segment
    eve = f"/v1/admin/peers/matrix/{encode_part('@eve:x.org/.')}"
    assert (await api.delete(eve, params={"confirm": "true"})).json() == {
        "sessions": 1, "messages": 1}
    dots = await api.get(f"/v1/admin/peers/discord/{encode_part('..')}/export")
    assert dots.status_code == 200, dots.text
    assert_problem(await api.get(f"/v1/admin/peers/{encode_part(' ')}/alice/export"), 422)
    assert_problem(await api.delete("/v1/admin/peers/discord/alice",
                                    params={"confirm": "true", "agent_id": "bot"}), 422)

    # the audit log: who, what, how much; never the person's id or any content
    audit = await api.get("/v1/admin/audit")
    assert audit.status_code == 200, audit.text
    records = audit.json()
    assert [(r["action"], r["sessions"], r["messages"]) for r in records] == [
        ("export_peer", 0, 0),  # the dot-only id
        ("forget_peer", 1, 1),  # eve
        ("export_peer", 3, 4),  # after the import
        ("export_peer", 0, 0),
        ("forget_peer", 0, 0),
        ("forget_peer", 3, 4),
        ("export_peer", 3, 4),
        ("export_peer", 3, 4),
    ]
    assert {r["actor"] for r in records} == {"admin"}
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)
    alice = {r["subject"] for r in records[2:]}
    assert len(alice) == 1
    assert alice.pop().startswith("hmac-sha256:")
    for leak in ("alice", "eve", "secret"):
        assert leak not in audit.text
    assert len((await api.get("/v1/admin/audit", params={"limit": 2})).json()) == 2
    assert_problem(await api.get("/v1/admin/audit", params={"limit": 0}), 422)
    assert_problem(await api.get("/v1/admin/audit", params={"limit": 10_001}), 422)


def strip_ids(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Export records without the session ids (each store assigns its own), in a fixed order."""
    out = [{k: v for k, v in line.items() if k not in ("id", "session")} for line in lines]
    return sorted(out, key=lambda line: json.dumps(line, sort_keys=True))


# --- auth --------------------------------------------------------------------------------------

ADMIN_ONLY = [
    ("POST", "/v1/admin/sweep"),
    ("POST", "/v1/admin/sweep?dry_run=true"),
    ("POST", "/v1/admin/purge"),
    ("POST", "/v1/admin/purge?dry_run=true"),
    ("DELETE", "/v1/admin/peers/discord/alice?confirm=true"),
    ("GET", "/v1/admin/peers/discord/alice/export"),
    ("GET", "/v1/admin/audit"),
]


@pytest.mark.parametrize(("method", "url"), ADMIN_ONLY)
async def test_lifecycle_admin_routes_need_an_admin_token(shared_api: Api, method: str,
                                                          url: str) -> None:
    await talk(shared_api, "hello", peer="alice")
    forbidden = assert_problem(await shared_api.request(method, url, headers=BOT), 403)
    assert "admin" in forbidden["detail"]
    anonymous = shared_api.build_request(method, url)
    del anonymous.headers["Authorization"]
    assert_problem(await shared_api.send(anonymous), 401)
    assert_problem(await shared_api.request(method, url,
                                            headers={"Authorization": "Bearer nope-nope-nope"}),
                   401)
    # nothing was erased by the refused calls
    export = await shared_api.get("/v1/admin/peers/discord/alice/export")
    assert export.text.count('"kind":"message"') >= 1


# --- the maintenance loop ----------------------------------------------------------------------


async def test_maintenance_loop_sweeps_and_purges(location: Location) -> None:
    config = lifecycle_config(location, maintenance={"interval_seconds": 1})
    async with serving(create_app(config)) as api:
        silent = await session_id(api, channel="slack", peer="silent")
        talking = await session_id(api, channel="slack", peer="talking")
        old = await talk(api, "long ago", channel="slack", peer="old")
        await api.post(session_path(channel="slack", peer="old", suffix="/reset"))
        silence(location, silent, 2 * HOUR)
        archived_earlier(location, old, 2 * 24 * HOUR)
        deadline = time.monotonic() + 15
        while True:
            idle = await status_of(api, silent) == "idle"
            purged = (await api.get(f"/v1/admin/sessions/{old}")).status_code == 404
            if idle and purged:
                break
            assert time.monotonic() < deadline, f"no maintenance: idle={idle} purged={purged}"
            await asyncio.sleep(0.2)
        assert await status_of(api, talking) == "active"


class FlakyStore:
    """A store whose sweeps fail twice (once with a bug, once with a database outage)."""

    def __init__(self) -> None:
        self.sweeps = 0
        self.purges = 0

    async def sweep(self) -> SweepResult:
        self.sweeps += 1
        if self.sweeps == 1:
            raise RuntimeError("a bug")
        if self.sweeps == 2:
            raise StoreUnavailableError("the database is down")
        return SweepResult(idled=1, at=utc_now())

    async def purge(self) -> PurgeResult:
        self.purges += 1
        return PurgeResult(at=utc_now())

    async def search_index_status(self) -> SearchIndexStatus:
        return SearchIndexStatus(enabled=True, pending=0)


async def test_maintenance_survives_failures(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    caplog.set_level(logging.INFO, logger="aisopod_session.service")
    task = asyncio.create_task(run_maintenance(cast(Any, store), 0.01))
    try:
        deadline = time.monotonic() + 10
        while store.purges < 2:
            assert not task.done(), task
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    messages = [record.getMessage() for record in caplog.records]
    assert any("failed unexpectedly" in m for m in messages)
    assert any("the database is down" in m for m in messages)
    assert any("maintenance: 1 idle" in m for m in messages)


# --- configuration -------------------------------------------------------------------------------

GOOD_POLICIES = """
[lifecycle]
idle_after = "PT6H"
archive_after = "P30D"

[reset.default]
mode = "daily"
at_hour = 4
timezone = "Europe/Berlin"

[reset.channels.slack]
mode = "idle"
idle_minutes = 120

[reset.agents.helper."*"]
mode = "idle"
idle_minutes = 5

[retention]
compacted_messages = "P90D"
archived_sessions = "P365D"

[maintenance]
interval_seconds = 60
"""


def test_config_policies(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text(GOOD_POLICIES, "utf-8")
    config = load_config(path, env={})
    policies = config.policies
    assert isinstance(policies, Policies)
    assert policies.lifecycle.idle_after == timedelta(hours=6)
    assert policies.lifecycle.archive_after == timedelta(days=30)
    assert policies.reset.for_key("bot", "discord") == ResetPolicy(
        mode="daily", at_hour=4, timezone="Europe/Berlin")
    assert policies.reset.for_key("bot", "slack") == ResetPolicy(mode="idle", idle_minutes=120)
    assert policies.reset.for_key("helper", "slack") == ResetPolicy(mode="idle", idle_minutes=5)
    assert policies.retention.archived_sessions == timedelta(days=365)
    assert config.maintenance.interval_seconds == 60
    defaults = load_config(env={})
    assert defaults.policies == Policies()
    assert defaults.maintenance.interval_seconds == 300


BAD_POLICIES = [
    ('[reset.default]\nmode = "daily"\ntimezone = "Mars/Olympus_Mons"\n',
     "reset.default.timezone", "IANA time zone"),
    ('[reset.channels.slack]\nmode = "daily"\ntimezone = "Europe/Berlin "\n',
     "reset.channels.slack.timezone", "IANA time zone"),
    ('[lifecycle]\nidle_after = "P2D"\narchive_after = "P1D"\n', "lifecycle", "archive_after"),
    ('[lifecycle]\nidle_after = "P1D"\narchive_after = "P1D"\n', "lifecycle", "archive_after"),
    ('[lifecycle]\narchive_after = "PT12H"\n', "lifecycle", "archive_after"),  # default 1 day
    ('[reset.channels.slack]\nmode = "idle"\n', "reset.channels.slack", "idle_minutes"),
    ('[reset.agents.bot."*"]\nmode = "idle"\nidle_minutes = 0\n',
     "reset.agents.bot.*.idle_minutes", ""),
    ('[reset.default]\nmode = "daily"\nat_hour = 24\n', "reset.default.at_hour", ""),
    ('[reset.default]\nmode = "weekly"\n', "reset.default.mode", ""),
    ("[maintenance]\ninterval_seconds = -1\n", "maintenance.interval_seconds", ""),
    ("[maintenance]\ninterval_seconds = 86401\n", "maintenance.interval_seconds", ""),
    ('[retention]\ncompacted_messages = "-P1D"\n', "retention.compacted_messages", ""),
    ('[retention]\narchived_sessions = "P0D"\n', "retention.archived_sessions", ""),
    ("[lifecycle]\nidle_after = 30\n", "lifecycle.idle_after", "ISO 8601"),
    ('[lifecycle]\nidle_after = "soon"\n', "lifecycle.idle_after", ""),
    ('[lifecycle]\nidle_afte = "PT1H"\n', "lifecycle.idle_afte", ""),
    ('[retention]\narchived = "P1D"\n', "retention.archived", ""),
]


@pytest.mark.parametrize(("text", "field", "words"), BAD_POLICIES)
def test_bad_policies_fail_load_config_naming_the_setting(
    tmp_path: Path, text: str, field: str, words: str,
) -> None:
    path = tmp_path / "service.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(InvalidInputError) as raised:
        load_config(path, env={})
    assert [e["field"] for e in raised.value.errors] == [field]
    assert f"{field}: " in str(raised.value)
    assert words in str(raised.value)
    assert str(path) in str(raised.value)
