"""The admin routes through real HTTP requests, on SQLite and PostgreSQL, and the export →
import round trip."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session.service.app import create_app
from tests.conftest import PG_URL
from tests.service.conftest import (
    Api,
    assert_problem,
    message,
    service_config,
    serving,
    session_path,
)

pytestmark = pytest.mark.anyio

EVERY_STATUS = {"status": ["active", "idle", "compacted", "archived"]}


async def populate(api: Api) -> dict[str, int]:
    """Sessions of two agents in every status, with metadata, tokens, tool calls, external ids,
    an archived generation and a compaction. Returns session ids by name."""
    ids: dict[str, int] = {}
    ids["alice"] = (await api.put_session(peer="alice"))["id"]
    await api.append([
        message("hi", created_at="2024-05-01T12:00:00Z", external_id="ext-1", token_count=2),
        message("hello", role="assistant", created_at="2024-05-01T12:00:01.123456Z",
                tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]),
        message({"tool_call_id": "c1", "output": ["x", 1, 2.5, None, True]}, role="tool"),
        message("ünïcødé ✓", created_at="2024-05-01T12:00:03Z"),
    ], peer="alice")
    await api.patch(session_path(peer="alice"),
                    json={"metadata": {"lang": "fr", "nested": {"a": [1, {"b": None}]}},
                          "add_tokens": 40})
    await api.post(session_path(peer="alice", suffix="/compact"),
                   json={"kind": "summarize", "summary": "greetings", "keep_recent": 1})

    ids["bob-old"] = (await api.put_session(kind="group", peer="room/1"))["id"]
    await api.append([message("before reset")], kind="group", peer="room/1")
    ids["bob"] = (await api.post(session_path(kind="group", peer="room/1",
                                              suffix="/reset"))).json()["id"]
    ids["idle"] = (await api.put_session(channel="slack", peer="carol"))["id"]
    await api.patch(session_path(channel="slack", peer="carol"), json={"status": "idle"})
    ids["other"] = (await api.put_session(agent="other", peer="dave"))["id"]
    await api.append([message("from the other agent")], agent="other", peer="dave")
    return ids


async def snapshot(api: Api) -> list[dict[str, Any]]:
    """Every session (all statuses, all agents) with its full transcript, ids left out."""
    sessions: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {**EVERY_STATUS, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/admin/sessions", params=params)).json()
        for item in page["items"]:
            session = (await api.get(f"/v1/admin/sessions/{item['id']}")).json()
            history = (await api.get(f"/v1/admin/sessions/{item['id']}/messages",
                                     params={"include_compacted": "true"})).json()
            session.pop("id")
            session["history"] = [{k: v for k, v in m.items() if k != "id"} for m in history]
            sessions.append(session)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return sorted(sessions, key=lambda s: (json.dumps(s["key"]), s["created_at"]))


def without_ids(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Export lines with session ids replaced by their order of appearance."""
    order: dict[int, int] = {}
    out = []
    for line in lines:
        renumbered = dict(line)
        if line.get("kind") == "session":
            renumbered["id"] = order.setdefault(line["id"], len(order))
        elif line.get("kind") == "message":
            renumbered["session"] = order[line["session"]]
        out.append(renumbered)
    return out


async def test_admin_list_lookup_history(api: Api) -> None:
    ids = await populate(api)
    listed = (await api.get("/v1/admin/sessions")).json()
    # Archived generations only when asked for; every agent's sessions.
    assert {item["id"] for item in listed["items"]} == {
        ids["alice"], ids["bob"], ids["idle"], ids["other"]}
    archived = (await api.get("/v1/admin/sessions", params={"status": "archived"})).json()
    assert [item["id"] for item in archived["items"]] == [ids["bob-old"]]
    other = (await api.get("/v1/admin/sessions", params={"agent_id": "OTHER"})).json()
    assert [item["id"] for item in other["items"]] == [ids["other"]]
    slack = (await api.get("/v1/admin/sessions", params={"channel": "slack"})).json()
    assert [item["id"] for item in slack["items"]] == [ids["idle"]]
    first = (await api.get("/v1/admin/sessions", params={"limit": 1})).json()
    assert len(first["items"]) == 1
    second = (await api.get("/v1/admin/sessions",
                            params={"limit": 1, "cursor": first["next_cursor"]})).json()
    assert second["items"][0]["id"] != first["items"][0]["id"]

    old = (await api.get(f"/v1/admin/sessions/{ids['bob-old']}")).json()
    assert (old["status"], old["key"]["peer_id"]) == ("archived", "room/1")
    history = (await api.get(f"/v1/admin/sessions/{ids['alice']}/messages")).json()
    assert [m["content"] for m in history] == ["greetings", "ünïcødé ✓"]
    full = (await api.get(f"/v1/admin/sessions/{ids['alice']}/messages",
                          params={"include_compacted": "true", "limit": 2})).json()
    assert [m["content"] for m in full] == ["hi", "hello"]
    tail = (await api.get(f"/v1/admin/sessions/{ids['alice']}/messages",
                          params={"tail": "true", "limit": 1})).json()
    assert [m["content"] for m in tail] == ["ünïcødé ✓"]
    assert_problem(await api.get("/v1/admin/sessions/987654321"), 404)
    assert_problem(await api.get("/v1/admin/sessions/987654321/messages"), 404)
    assert_problem(await api.get("/v1/admin/sessions/0"), 422)
    assert_problem(await api.get("/v1/admin/sessions/x"), 422)


async def test_admin_stats(api: Api) -> None:
    empty = (await api.get("/v1/admin/stats")).json()
    assert empty == {"sessions_by_status": {}, "agents": 0, "messages_live": 0,
                     "messages_compacted": 0}
    await populate(api)
    stats = (await api.get("/v1/admin/stats")).json()
    assert stats["sessions_by_status"] == {"active": 2, "archived": 1, "idle": 1,
                                           "compacted": 1}
    assert stats["agents"] == 2
    # alice: summary + 1 kept live, 3 compacted; bob-old: 1; other: 1.
    assert stats["messages_live"] == 4
    assert stats["messages_compacted"] == 3


async def test_admin_clear(api: Api) -> None:
    ids = await populate(api)
    refused = await api.delete("/v1/admin/sessions", params={"confirm": "false"})
    assert_problem(refused, 400)
    assert_problem(await api.delete("/v1/admin/sessions"), 422)
    # A misspelt parameter must not widen the deletion to every agent.
    body = assert_problem(await api.delete("/v1/admin/sessions",
                                           params={"confirm": "true", "agent": "other"}), 422)
    assert body["errors"][0]["field"] == "agent"
    assert (await api.get(f"/v1/admin/sessions/{ids['alice']}")).status_code == 200

    cleared = await api.delete("/v1/admin/sessions", params={"confirm": "true",
                                                              "agent_id": "other"})
    assert cleared.json() == {"deleted": 1}
    assert_problem(await api.get(f"/v1/admin/sessions/{ids['other']}"), 404)
    assert (await api.get(f"/v1/admin/sessions/{ids['alice']}")).status_code == 200
    everything = await api.delete("/v1/admin/sessions", params={"confirm": "true"})
    assert everything.json() == {"deleted": 4}
    assert (await api.get("/v1/admin/stats")).json()["agents"] == 0


async def test_export_format_and_agent_filter(api: Api) -> None:
    ids = await populate(api)
    lines = await api.export_lines()
    assert lines[0] == {"kind": "aisopod-session-export", "version": 1}
    sessions = [line for line in lines if line["kind"] == "session"]
    assert sorted(s["id"] for s in sessions) == sorted(ids.values())
    assert sum(line["kind"] == "message" for line in lines) == 7
    only_other = await api.export_lines(agent_id="other")
    assert [line["kind"] for line in only_other] == ["aisopod-session-export", "session",
                                                     "message"]
    assert only_other[1]["key"]["agent_id"] == "other"


async def test_export_import_round_trip_is_exact(api: Api) -> None:
    await populate(api)
    before = await snapshot(api)
    exported = await api.export_lines()
    body = "\n".join(json.dumps(line) for line in exported) + "\n"

    # Importing over the live sessions collides with them.
    conflict = await api.post("/v1/admin/import", content=body.encode(),
                              headers={"content-type": "application/x-ndjson"})
    assert_problem(conflict, 409)
    assert await snapshot(api) == before  # nothing half-imported

    await api.delete("/v1/admin/sessions", params={"confirm": "true"})
    assert await snapshot(api) == []
    imported = await api.post("/v1/admin/import", content=body.encode(),
                              headers={"content-type": "application/x-ndjson"})
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"sessions": 5, "messages": 7, "queued": 0, "skipped": 0,
                               "archived": 0}
    assert await snapshot(api) == before
    assert without_ids(await api.export_lines()) == without_ids(exported)
    # The imported sessions are live: the agent API carries on where the export left off.
    carry_on = await api.append([message("after import")], peer="alice")
    assert carry_on[0]["content"] == "after import"
    history = (await api.get(session_path(peer="alice", suffix="/messages"))).json()
    assert [m["content"] for m in history] == ["greetings", "ünïcødé ✓", "after import"]


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_import_streams_in_small_chunks(api: Api) -> None:
    await populate(api)
    exported = await api.export_lines()
    body = ("\n".join(json.dumps(line) for line in exported) + "\n").encode()
    await api.delete("/v1/admin/sessions", params={"confirm": "true"})
    response = await api.post("/v1/admin/import", content=chunks(body, 7))
    assert response.status_code == 200, response.text
    assert without_ids(await api.export_lines()) == without_ids(exported)


@pytest.mark.parametrize(("body", "field"), [
    (b"", "file"),
    (b"not json\n", "line 1"),
    (b'{"kind": "aisopod-session-export", "version": 1}\n\n\xff\xfe\n', "line 3"),
    (b'{"kind": "session"}\n', "line 1"),
    (b'{"kind": "aisopod-session-export", "version": 99}\n', "line 1.version"),
])
async def test_import_refuses_bad_files(api: Api, body: bytes, field: str) -> None:
    problem = assert_problem(await api.post("/v1/admin/import", content=body), 422)
    assert problem["detail"].startswith(f"{field}: "), problem
    assert (await api.get("/v1/admin/stats")).json()["agents"] == 0


async def test_import_refuses_an_endless_line(api: Api) -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield b'{"kind": "aisopod-session-export", "version": 1}\n'
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    problem = assert_problem(await api.post("/v1/admin/import", content=endless()), 422)
    assert problem["errors"][0]["field"] == "line 2"


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
async def test_round_trip_across_backends(api: Api, target: str, tmp_path: Path,
                                          pg_schema: str) -> None:
    """An export of either backend imports into either backend, exactly."""
    await populate(api)
    before = await snapshot(api)
    body = (await api.get("/v1/admin/export")).content
    if target == "sqlite":
        config = service_config(str(tmp_path / "target.db"), {})
    else:
        config = service_config(PG_URL, {"schema": pg_schema, "pool_size": 2})
    async with serving(create_app(config)) as other:
        response = await other.post("/v1/admin/import", content=body)
        assert response.status_code == 200, response.text
        assert await snapshot(other) == before
        assert (await other.get("/v1/admin/export")).content.count(b"\n") == body.count(b"\n")


