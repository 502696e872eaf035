"""The agent routes through real HTTP requests, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.service.conftest import BOT, Api, assert_problem, message, session_path

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def test_get_or_create_get_patch_delete(api: Api) -> None:
    created = await api.put_session(peer="alice")
    assert created["key"] == {"agent_id": "bot", "channel": "discord", "account_id": "acct",
                              "peer_kind": "dm", "peer_id": "alice"}
    assert created["status"] == "active"
    assert created["message_count"] == 0
    assert created["metadata"] == {}
    again = await api.put_session(peer="alice")
    assert again["id"] == created["id"]

    got = await api.get(session_path(peer="alice"))
    assert got.status_code == 200
    assert got.json() == created

    patched = await api.patch(session_path(peer="alice"), json={
        "status": "idle", "add_tokens": 7, "metadata": {"lang": "fr", "tags": ["a", "b"]}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["status"], body["token_usage"]) == ("idle", 7)
    assert body["metadata"] == {"lang": "fr", "tags": ["a", "b"]}
    merged = (await api.patch(session_path(peer="alice"),
                              json={"metadata": {"lang": None, "tz": "UTC"},
                                    "add_tokens": 3})).json()
    assert merged["metadata"] == {"tags": ["a", "b"], "tz": "UTC"}
    assert merged["token_usage"] == 10
    replaced = (await api.patch(session_path(peer="alice"),
                                json={"metadata": {"only": 1}, "replace_metadata": True,
                                      "token_usage": 2})).json()
    assert (replaced["metadata"], replaced["token_usage"]) == ({"only": 1}, 2)
    assert (await api.get(session_path(peer="alice"))).json() == replaced

    deleted = await api.delete(session_path(peer="alice"))
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": True})
    assert_problem(await api.get(session_path(peer="alice")), 404)
    assert (await api.delete(session_path(peer="alice"))).json() == {"deleted": False}
    assert_problem(await api.patch(session_path(peer="alice"), json={"status": "idle"}), 404)


async def test_key_parts_are_normalised(api: Api) -> None:
    created = await api.put_session(agent="BOT", channel=" Discord ", account="ACCT", peer="Alice")
    assert created["key"] == {"agent_id": "bot", "channel": "discord", "account_id": "acct",
                              "peer_kind": "dm", "peer_id": "Alice"}
    assert (await api.get(session_path(peer="Alice"))).json()["id"] == created["id"]
    # Peer ids keep their case: "alice" is somebody else.
    assert_problem(await api.get(session_path(peer="alice")), 404)


ODD_PARTS = [
    pytest.param({"peer": "user:42"}, id="colon"),
    pytest.param({"peer": "a/b"}, id="slash"),
    pytest.param({"channel": "slack/eu", "account": "team:t1/bot", "peer": "x/messages"},
                 id="slash-in-every-part"),
    pytest.param({"peer": "Jörg Müller"}, id="space-non-ascii"),
    pytest.param({"peer": "日本語 🎉"}, id="cjk-emoji"),
    pytest.param({"peer": "%2F and %25 and ?#&="}, id="percent-and-url-syntax"),
    pytest.param({"peer": "a\ue000b"}, id="private-use"),
    pytest.param({"kind": "thread", "peer": "group-1/thread 7"}, id="thread"),
    pytest.param({"agent": "bot", "channel": "..", "peer": "."}, id="dots"),
]


@pytest.mark.parametrize("parts", ODD_PARTS)
async def test_percent_encoded_key_parts(api: Api, parts: dict[str, str]) -> None:
    created = await api.put_session(**parts)
    key = created["key"]
    assert key["peer_id"] == parts["peer"]
    assert key["channel"] == parts.get("channel", "discord")
    assert key["account_id"] == parts.get("account", "acct")
    assert key["peer_kind"] == parts.get("kind", "dm")
    stored = await api.append([message("hello")], **parts)
    assert [m["content"] for m in stored] == ["hello"]
    history = await api.get(session_path(suffix="/messages", **parts))
    assert [m["content"] for m in history.json()] == ["hello"]
    got = (await api.get(session_path(**parts))).json()
    assert got["id"] == created["id"]
    assert got["message_count"] == 1
    listed = (await api.get("/v1/agents/bot/sessions")).json()["items"]
    assert [item["key"] for item in listed] == [key]
    # A part holding "/" is one part: no other session appeared, and the neighbours of the key
    # (its part before the slash) do not exist.
    if "/" in parts["peer"]:
        prefix = dict(parts, peer=parts["peer"].split("/")[0])
        assert (await api.get(session_path(**prefix))).status_code in (404, 422)


async def test_encoded_slash_and_private_use_character_are_different_peers(api: Api) -> None:
    slash = await api.put_session(peer="a/b")
    private = await api.put_session(peer="a\ue000b")
    assert slash["id"] != private["id"]
    assert (slash["key"]["peer_id"], private["key"]["peer_id"]) == ("a/b", "a\ue000b")


async def test_agent_id_with_encoded_slash(api: Api) -> None:
    created = await api.put_session(agent="team/bot")
    assert created["key"]["agent_id"] == "team/bot"
    listed = await api.get("/v1/agents/team%2Fbot/sessions")
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]
    assert (await api.get("/v1/agents/team/sessions")).json()["items"] == []


async def test_append_and_read_history(api: Api) -> None:
    await api.put_session()
    sent = [
        message("q1", created_at=at(0), external_id="m-1", token_count=3),
        message("a1", role="assistant", created_at=at(1),
                tool_calls=[{"id": "c1", "name": "lookup", "arguments": {"q": "x"}}]),
        message({"tool_call_id": "c1", "output": "42"}, role="tool", created_at=at(2)),
        message("a2", role="assistant", created_at=at(3)),
        message("q2", created_at=at(4)),
    ]
    stored = await api.append(sent)
    assert [m["content"] for m in stored] == [m["content"] for m in sent]
    ids = [m["id"] for m in stored]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert stored[0]["external_id"] == "m-1"
    assert stored[0]["token_count"] == 3
    assert stored[0]["created_at"] == "2024-05-01T12:00:00Z"
    assert stored[1]["tool_calls"] == sent[1]["tool_calls"]
    assert stored[2]["content"] == {"tool_call_id": "c1", "output": "42"}

    # A redelivered message (same external id) is not stored twice.
    again = await api.append([message("q1 again", external_id="m-1")])
    assert again[0]["id"] == ids[0]
    assert again[0]["content"] == "q1"
    session = (await api.get(session_path())).json()
    assert session["message_count"] == 5
    assert session["token_usage"] == 3

    async def contents(**params: Any) -> list[Any]:
        response = await api.get(session_path(suffix="/messages"), params=params)
        assert response.status_code == 200, response.text
        return [m["content"] for m in response.json()]

    everything = await contents()
    assert everything == [m["content"] for m in sent]
    assert await contents(limit=2) == ["q1", "a1"]
    assert await contents(limit=2, offset=1) == ["a1", sent[2]["content"]]
    assert await contents(offset=3) == ["a2", "q2"]
    assert await contents(limit=2, tail="true") == ["a2", "q2"]
    assert await contents(limit=2, tail="true", offset=1) == [sent[2]["content"], "a2"]
    assert await contents(after=at(2)) == ["a2", "q2"]
    assert await contents(before=at(1)) == ["q1"]
    assert await contents(after=at(0), before=at(3)) == ["a1", sent[2]["content"]]
    assert await contents(after="2024-05-01T14:00:00+02:00") == ["a1", sent[2]["content"],
                                                                 "a2", "q2"]


async def test_append_is_all_or_nothing(api: Api) -> None:
    await api.put_session()
    bad = await api.post(session_path(suffix="/messages"), json={
        "messages": [message("fine"), {"role": "narrator", "content": "x"}]})
    body = assert_problem(bad, 422)
    assert any("messages.1" in error["field"] for error in body["errors"]), body
    assert (await api.get(session_path(suffix="/messages"))).json() == []
    # Appending to a session that does not exist is a 404, not an implicit create.
    assert_problem(await api.post(session_path(peer="nobody", suffix="/messages"),
                                  json={"messages": [message("x")]}), 404)
    assert_problem(await api.get(session_path(peer="nobody")), 404)


async def test_reset_archives_and_starts_fresh(api: Api) -> None:
    first = await api.put_session()
    await api.append([message("old")])
    reset = await api.post(session_path(suffix="/reset"))
    assert reset.status_code == 200, reset.text
    fresh = reset.json()
    assert fresh["id"] != first["id"]
    assert (fresh["status"], fresh["message_count"]) == ("active", 0)
    assert (await api.get(session_path())).json()["id"] == fresh["id"]
    assert (await api.get(session_path(suffix="/messages"))).json() == []

    archived = (await api.get("/v1/agents/bot/sessions", params={"status": "archived"})).json()
    assert [item["id"] for item in archived["items"]] == [first["id"]]
    old = (await api.get(f"/v1/admin/sessions/{first['id']}/messages")).json()
    assert [m["content"] for m in old] == ["old"]


async def test_compact_and_compaction_record(api: Api) -> None:
    await api.put_session()
    record = (await api.get(session_path(suffix="/compaction"))).json()
    assert record == {"compaction_count": 0, "last_compacted_at": None, "summary": None}
    await api.append([message(f"m{i}", created_at=at(i)) for i in range(6)])

    window = await api.post(session_path(suffix="/compact"),
                            json={"kind": "sliding_window", "max_messages": 2})
    assert window.status_code == 200, window.text
    assert window.json()["compaction_count"] == 1
    assert window.json()["last_compacted_at"] is not None
    live = (await api.get(session_path(suffix="/messages"))).json()
    assert [m["content"] for m in live] == ["m4", "m5"]
    full = (await api.get(session_path(suffix="/messages"),
                          params={"include_compacted": "true"})).json()
    assert [(m["content"], m["compacted"]) for m in full] == [
        *((f"m{i}", True) for i in range(4)), ("m4", False), ("m5", False)]

    summary = await api.post(session_path(suffix="/compact"), json={
        "kind": "summarize", "summary": "they said hi", "keep_recent": 1})
    assert summary.status_code == 200, summary.text
    assert summary.json()["compaction_count"] == 2
    assert summary.json()["summary"] == "they said hi"
    live = (await api.get(session_path(suffix="/messages"))).json()
    assert [(m["role"], m["content"]) for m in live] == [("system", "they said hi"),
                                                         ("user", "m5")]
    got = (await api.get(session_path(suffix="/compaction"))).json()
    assert got == summary.json()
    session = (await api.get(session_path())).json()
    assert (session["compaction_count"], session["last_compaction_summary"]) == (
        2, "they said hi")
    assert session["message_count"] == 2

    await api.append([message("t" * 500, role="tool")])
    truncated = await api.post(session_path(suffix="/compact"),
                               json={"kind": "truncate_tool_results", "max_chars": 100})
    assert truncated.status_code == 200, truncated.text
    last = (await api.get(session_path(suffix="/messages"),
                          params={"tail": "true", "limit": 1})).json()[0]
    assert last["role"] == "tool"
    assert len(last["content"]) <= 100

    assert_problem(await api.post(session_path(suffix="/compact"),
                                  json={"kind": "sliding_window", "max_messages": 0}), 422)
    assert_problem(await api.post(session_path(suffix="/compact"),
                                  json={"max_messages": 2}), 422)
    assert_problem(await api.post(session_path(peer="nobody", suffix="/compact"),
                                  json={"kind": "sliding_window", "max_messages": 2}), 404)
    assert_problem(await api.get(session_path(peer="nobody", suffix="/compaction")), 404)


async def test_list_filters(api: Api) -> None:
    alice = await api.put_session(peer="alice")
    group = await api.put_session(kind="group", peer="g1")
    slack = await api.put_session(channel="slack", peer="alice")
    other_account = await api.put_session(account="acct2", peer="bob")
    await api.patch(session_path(kind="group", peer="g1"), json={"status": "idle"})
    await api.put_session(agent="other", peer="alice")  # another agent's: never listed here

    async def ids(**params: Any) -> list[int]:
        response = await api.get("/v1/agents/bot/sessions", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["next_cursor"] is None
        return [item["id"] for item in body["items"]]

    # Most recently updated first.
    assert await ids() == [group["id"], other_account["id"], slack["id"], alice["id"]]
    assert await ids(channel="slack") == [slack["id"]]
    assert await ids(channel="SLACK") == [slack["id"]]
    assert await ids(account_id="acct2") == [other_account["id"]]
    assert await ids(peer_kind="group") == [group["id"]]
    assert sorted(await ids(peer_id="alice")) == sorted([alice["id"], slack["id"]])
    assert await ids(status="idle") == [group["id"]]
    assert sorted(await ids(status=["idle", "active"])) == sorted(
        [alice["id"], group["id"], slack["id"], other_account["id"]])
    assert await ids(status="archived") == []
    created = datetime.fromisoformat(slack["created_at"])
    later = (await ids(created_after=slack["created_at"]))
    assert later == [other_account["id"]]
    assert sorted(await ids(created_before=slack["created_at"])) == sorted(
        [alice["id"], group["id"]])
    assert await ids(created_after=(created + timedelta(days=1)).isoformat()) == []
    updated = (await api.get(session_path(kind="group", peer="g1"))).json()["updated_at"]
    assert await ids(updated_after=updated) == []
    assert group["id"] not in await ids(updated_before=updated)


async def test_list_cursor_pagination(api: Api) -> None:
    made = [(await api.put_session(peer=f"p{i}"))["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.get("/v1/agents/bot/sessions", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 3
        seen.extend(item["id"] for item in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))
    assert_problem(await api.get("/v1/agents/bot/sessions", params={"cursor": "nonsense"}), 422)


async def test_a_list_cursor_is_refused_by_another_listing_and_when_edited(api: Api) -> None:
    for peer in ("p1", "p2", "p3"):
        await api.put_session(peer=peer)
        await api.put_session(agent="other", peer=peer)
    first = (await api.get("/v1/agents/bot/sessions", params={"limit": 1})).json()
    cursor = first["next_cursor"]
    edited = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    for path, params in (
        ("/v1/agents/other/sessions", {"cursor": cursor}),  # another agent
        ("/v1/agents/bot/sessions", {"cursor": cursor, "channel": "discord"}),  # a filter
        ("/v1/admin/sessions", {"cursor": cursor, "agent_id": "bot"}),  # the admin's list
        ("/v1/agents/bot/sessions", {"cursor": edited}),
    ):
        body = assert_problem(await api.get(path, params=params), 422)
        assert [error["field"] for error in body["errors"]] == ["cursor"], (path, params)
    document = (await api.get("/openapi.json")).json()
    for path in ("/v1/agents/{agent_id}/sessions", "/v1/admin/sessions"):
        [described] = [p for p in document["paths"][path]["get"]["parameters"]
                       if p["name"] == "cursor"]
        assert "same filters" in described["description"]
    # the listing it came from, here the detailed one with another page size, takes it
    rest = await api.get("/v1/agents/bot/session-details", params={"cursor": cursor, "limit": 5})
    assert rest.status_code == 200, rest.text
    assert len(rest.json()["items"]) == 2


async def test_agent_token_uses_its_own_agent(api: Api) -> None:
    api.headers.update(BOT)
    created = await api.put_session()
    assert (await api.get(session_path())).json()["id"] == created["id"]
    assert (await api.get("/v1/agents/BOT/sessions")).status_code == 200


@pytest.mark.parametrize("stamp", ["2024-05-01T12:00:00Z", "2024-05-01 14:00:00+02:00",
                                   "2024-05-01t12:00:00.000z"])
async def test_timestamps_are_rfc3339_as_the_library_reads_them(shared_api: Api,
                                                                 stamp: str) -> None:
    """One RFC 3339 pattern (``aisopod_session._time.RFC3339``) for the API and the library:
    a space between date and time is RFC 3339 too."""
    peer = f"rfc3339-{stamp}"
    await shared_api.put_session(peer=peer)
    stored = await shared_api.append([message("x", created_at=stamp)], peer=peer)
    assert stored[0]["created_at"] == "2024-05-01T12:00:00Z"
    for params in ({"after": stamp}, {"before": stamp}):
        history = await shared_api.get(session_path(peer=peer, suffix="/messages"),
                                       params=params)
        assert (history.status_code, history.json()) == (200, [])
    listed = await shared_api.get("/v1/agents/bot/sessions", params={"created_before": stamp})
    assert listed.status_code == 200
