"""The MCP server, driven by the ``mcp`` package's own client: over stdio (``aisopod-session
mcp`` in a subprocess) and over streamable HTTP (``/mcp`` of the service), where the bearer token
decides the agent."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from aisopod_session import SessionStore
from aisopod_session.service import BackgroundService, load_config
from aisopod_session.tools import TOOL_NAMES, ToolPolicy
from tests.tools.conftest import (
    ADMIN_TOKEN,
    BOT_TOKEN,
    CALLER,
    FOREIGN,
    OTHER_TOKEN,
    SIBLING,
    THREAD,
    seed,
)


def _answer(result: Any) -> dict[str, Any]:
    answer = json.loads(result.content[0].text)
    assert result.structured_content == answer
    assert result.is_error == ("error" in answer)
    return answer


async def _exercise(session: ClientSession) -> None:
    await session.initialize()
    listed = await session.list_tools()
    assert [tool.name for tool in listed.tools] == list(TOOL_NAMES)
    history = _answer(await session.call_tool("sessions_history", {
        "session_key": str(THREAD), "limit": None, "offset": None, "include_tools": None}))
    assert [m["text"] for m in history["messages"]] == ["hello from g1/t1", "reply in g1/t1"]
    refused = _answer(await session.call_tool("sessions_history", {
        "session_key": str(SIBLING), "limit": None, "offset": None, "include_tools": None}))
    assert refused["error"]["rule"] == "visibility"
    foreign = _answer(await session.call_tool("session_status", {"session_key": str(FOREIGN)}))
    assert foreign["error"]["type"] == "forbidden"
    bad = _answer(await session.call_tool("sessions_list", {"limit": "many"}))
    assert bad["error"]["type"] == "invalid_arguments"


def test_stdio_server_lists_and_calls_the_tools(tmp_path: Path) -> None:
    db = tmp_path / "stdio.db"
    with SessionStore.open(str(db)) as store:
        seed(store)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aisopod_session", "--db", str(db), "mcp", "--agent", "bot",
              "--session", str(CALLER)])

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await _exercise(session)

    anyio.run(main)
    with SessionStore.open(str(db)) as store:
        actions = [record.action for record in store.audit_log(50)]
    assert "tool.sessions_history" in actions
    assert "tool.sessions_history_denied" in actions


async def _over_http(service: BackgroundService, token: str, caller: str,
                     check: Any) -> None:
    headers = {"Authorization": f"Bearer {token}", "X-Aisopod-Session": caller}
    async with httpx2.AsyncClient(headers=headers) as http, \
            streamable_http_client(service.url + "/mcp", http_client=http) as streams, \
            ClientSession(streams[0], streams[1]) as session:
        await check(session)


def test_http_endpoint_lists_and_calls_the_tools(served: BackgroundService) -> None:
    anyio.run(_over_http, served, BOT_TOKEN, str(CALLER), _exercise)


def test_http_token_decides_the_agent(served: BackgroundService) -> None:
    # the other agent's token cannot act as bot's session
    response = httpx2.post(served.url + "/mcp", json={}, headers={
        "Authorization": f"Bearer {OTHER_TOKEN}", "X-Aisopod-Session": str(CALLER)})
    assert response.status_code == 403
    assert "agent 'bot'" in response.json()["error"]
    # no token, a wrong one, no session header
    assert httpx2.post(served.url + "/mcp", json={}, headers={
        "X-Aisopod-Session": str(CALLER)}).status_code == 401
    assert httpx2.post(served.url + "/mcp", json={}, headers={
        "Authorization": "Bearer wrong-token-0123456789", "X-Aisopod-Session": str(CALLER),
    }).status_code == 401
    assert httpx2.post(served.url + "/mcp", json={}, headers={
        "Authorization": f"Bearer {BOT_TOKEN}"}).status_code == 400

    async def other_agent_sees_only_its_own(session: ClientSession) -> None:
        await session.initialize()
        own = _answer(await session.call_tool("session_status", {"session_key": None}))
        assert own["session_key"] == str(FOREIGN)
        for key in (CALLER, THREAD):
            refused = _answer(await session.call_tool("sessions_history", {
                "session_key": str(key), "limit": None, "offset": None,
                "include_tools": None}))
            assert refused["error"]["type"] == "forbidden", refused
        listed = _answer(await session.call_tool("sessions_list", {
            "kinds": None, "channel": None, "agent_id": None, "active_minutes": None,
            "limit": None, "include_preview": None}))
        assert [row["session_key"] for row in listed["sessions"]] == [str(FOREIGN)]

    anyio.run(_over_http, served, OTHER_TOKEN, str(FOREIGN), other_agent_sees_only_its_own)
    with SessionStore.open(served.url, token=ADMIN_TOKEN) as admin:
        records = admin.audit_log(50)
    # the refusals are audited, under the agent the token is
    assert {(r.actor, r.action) for r in records} >= {
        ("agent:other", "tool.sessions_history_denied"), ("agent:other", "tool.sessions_list")}


@pytest.mark.parametrize("token", [BOT_TOKEN])
def test_http_refuses_a_session_header_that_is_not_a_key(served: BackgroundService,
                                                         token: str) -> None:
    response = httpx2.post(served.url + "/mcp", json={}, headers={
        "Authorization": f"Bearer {token}", "X-Aisopod-Session": "not a key"})
    assert response.status_code == 400
    assert "x-aisopod-session" in response.json()["error"]


POLICY_TOML = f"""
[[tokens]]
token = "{BOT_TOKEN}"
agent = "bot"

[tools]
visibility = "agent"
max_list = 2
tools = {{ sessions_search = false }}

[[tools.send.deny]]
peer_kind = "dm"
"""


def test_the_configs_tool_policy_is_the_one_at_mcp(tmp_path: Path) -> None:
    """[tools] of the service config, loaded as `serve --config` loads it: visibility agent
    (the default, tree, refuses SIBLING), a tool turned off (not listed; a call names the
    rule), a send deny rule (named), a bound (max_list)."""
    config_file = tmp_path / "service.toml"
    config_file.write_text(POLICY_TOML, "utf-8")
    config = load_config(config_file, env={})
    assert config.tools.visibility == "agent" and not config.tools.enabled("sessions_search")

    async def check(session: ClientSession) -> None:
        await session.initialize()
        listed = await session.list_tools()
        assert [tool.name for tool in listed.tools] == [
            name for name in TOOL_NAMES if name != "sessions_search"]
        history = _answer(await session.call_tool("sessions_history", {
            "session_key": str(SIBLING), "limit": None, "offset": None, "include_tools": None}))
        assert [m["text"] for m in history["messages"]] == ["hello from alice", "reply in alice"]
        off = _answer(await session.call_tool("sessions_search", {"query": "hello"}))
        assert off["error"]["rule"] == "tools.sessions_search", off
        denied = _answer(await session.call_tool("sessions_send", {
            "session_key": str(SIBLING), "message": "hi", "timeout_seconds": 0}))
        assert denied["error"]["rule"] == "send.deny[0]", denied
        sessions = _answer(await session.call_tool("sessions_list", {
            "kinds": None, "channel": None, "agent_id": None, "active_minutes": None,
            "limit": None, "include_preview": None}))["sessions"]
        assert len(sessions) == 2  # max_list

    with BackgroundService.over(str(tmp_path / "policy.db"), config) as service:
        with SessionStore.open(str(tmp_path / "policy.db")) as store:
            seed(store)
        anyio.run(_over_http, service, BOT_TOKEN, str(CALLER), check)


def test_the_stdio_server_takes_the_configs_tool_policy(tmp_path: Path) -> None:
    from aisopod_session.cli._mcp import _policy

    config_file = tmp_path / "service.toml"
    config_file.write_text(POLICY_TOML, "utf-8")
    policy = _policy(None, config_file, None, [], ["sessions_list"])
    assert policy.visibility == "agent" and policy.max_list == 2
    assert policy.tools == {"sessions_search": False, "sessions_list": False}
    assert policy.send.deny[0].peer_kind == "dm"
    assert _policy(None, None, None, [], []) == ToolPolicy()  # no config: the defaults
