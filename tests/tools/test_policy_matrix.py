"""The policy matrix: every tool x visibility x agent-to-agent setting x target (the caller
itself, its thread, another session of its agent, a session of another agent), with the
expected allow or deny (and the rule that denies), on the local store (both flavours) and the
remote one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SessionKey, SessionStore
from aisopod_session.service import BackgroundService
from aisopod_session.tools import (
    TOOL_NAMES,
    AgentToAgent,
    AsyncSessionTools,
    SessionTools,
    ToolPolicy,
)
from tests.conftest import PG_URL
from tests.tools.conftest import (
    ADMIN_TOKEN,
    BOT_TOKEN,
    CALLER,
    FOREIGN,
    SIBLING,
    THREAD,
    seed,
)

VISIBILITIES = ("self", "tree", "agent", "all")
A2A = {"off": AgentToAgent(enabled=False, allow=["*"]),
       "on": AgentToAgent(enabled=True, allow=["BOT", "Oth*"]),  # globs, any case
       "on-unlisted": AgentToAgent(enabled=True, allow=["bot"])}
TARGETS = {"self": CALLER, "thread": THREAD, "sibling": SIBLING, "foreign": FOREIGN}

def expected(tool: str, visibility: str, a2a: str, target: str) -> str | None:
    """None when allowed, else the rule that denies."""
    if target == "foreign":
        if visibility != "all":
            rule = "visibility"
        elif a2a == "off":
            rule = "agent_to_agent.enabled"
        elif a2a == "on-unlisted":
            rule = "agent_to_agent.allow"
        else:
            rule = None
    else:
        sees = {"self": {"self"}, "tree": {"self", "thread"},
                "agent": {"self", "thread", "sibling"},
                "all": {"self", "thread", "sibling"}}[visibility]
        rule = None if target in sees else "visibility"
    if tool == "sessions_send" and target == "self":
        return "send.self"
    return rule


def arguments(tool: str, key: SessionKey) -> dict[str, Any]:
    return {
        "sessions_list": {"kinds": None, "channel": None, "agent_id": key.agent_id,
                          "active_minutes": None, "limit": None, "include_preview": True},
        "sessions_history": {"session_key": str(key), "limit": None, "offset": None,
                             "include_tools": None},
        "sessions_search": {"query": "hello", "session_key": str(key), "limit": None},
        "session_status": {"session_key": str(key)},
        "sessions_send": {"session_key": str(key), "message": "ping", "timeout_seconds": None},
    }[tool]


def outcome(tool: str, key: SessionKey, answer: dict[str, Any]) -> str | None:
    """None when the tool gave the target, else the rule of its refusal."""
    if "error" in answer:
        error = answer["error"]
        assert error["type"] == "forbidden", answer
        return str(error["rule"])
    if tool == "sessions_list":  # allowed to list the agent: is the target among the rows?
        keys = [row["session_key"] for row in answer["sessions"]]
        return None if str(key) in keys else "visibility"
    if tool == "sessions_search":
        assert answer["hits"] and {hit["session_key"] for hit in answer["hits"]} == {str(key)}
    elif tool == "sessions_send":
        assert answer["status"] == "accepted"
    else:
        assert answer["session_key"] == str(key)
    return None


Caller = Callable[[ToolPolicy, str, dict[str, Any]], dict[str, Any]]


@pytest.fixture(params=["local-sync", "local-async", "postgres-async", "remote-sync"])
def call_as_caller(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str,
                                                                                   Caller]]:
    kind = request.param
    db = str(tmp_path / "matrix.db")
    options: dict[str, Any] = {}
    if kind == "postgres-async":
        schema = request.getfixturevalue("pg_schema")
        db, options = PG_URL, {"schema": schema, "pool_size": 2}
    if kind == "remote-sync":
        from aisopod_session.service import ServiceConfig
        from tests.tools.conftest import TOKENS

        config = ServiceConfig.model_validate({"tokens": TOKENS})
        with BackgroundService.over(db, config) as service, \
                SessionStore.open(service.url, token=ADMIN_TOKEN) as store:
            seed(store)
            yield kind, lambda policy, tool, args: SessionTools(store, CALLER, policy).call(
                tool, args)
        return
    with SessionStore.open(db, **options) as store:
        seed(store)
    if kind == "local-sync":
        with SessionStore.open(db) as store:
            yield kind, lambda policy, tool, args: SessionTools(store, CALLER, policy).call(
                tool, args)
        return
    loop = asyncio.new_event_loop()
    astore = loop.run_until_complete(AsyncSessionStore.open(db, **options))

    def call(policy: ToolPolicy, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        return loop.run_until_complete(AsyncSessionTools(astore, CALLER, policy).call(tool,
                                                                                       args))

    yield kind, call
    loop.run_until_complete(astore.close())
    loop.close()


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_policy_matrix(call_as_caller: tuple[str, Caller], tool: str) -> None:
    _kind, call = call_as_caller
    wrong = []
    cells = 0
    for visibility in VISIBILITIES:
        for a2a_name, a2a in A2A.items():
            policy = ToolPolicy(visibility=visibility, agent_to_agent=a2a)  # type: ignore[arg-type]
            for target_name, key in TARGETS.items():
                want = expected(tool, visibility, a2a_name, target_name)
                got = outcome(tool, key, call(policy, tool, arguments(tool, key)))
                cells += 1
                if got != want:
                    wrong.append(f"{visibility}/{a2a_name}/{target_name}: expected "
                                 f"{want or 'allow'}, got {got or 'allow'}")
    assert cells == len(VISIBILITIES) * len(A2A) * len(TARGETS)
    assert wrong == []


def test_a_turned_off_tool_is_denied_by_its_rule(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "off.db")) as store:
        seed(store)
        tools = SessionTools(store, CALLER, ToolPolicy(tools={"session_status": False}))
        answer = tools.call("session_status", {"session_key": None})
        assert answer["error"]["rule"] == "tools.session_status"
        assert "session_status" not in [spec["name"] for spec in tools.definitions()]


def test_send_policy_rules_name_themselves(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "send.db")) as store:
        seed(store)
        deny_dms = ToolPolicy(visibility="agent", send={"deny": [{"peer_kind": "dm"}]})
        answer = SessionTools(store, CALLER, deny_dms).call("sessions_send", {
            "session_key": str(SIBLING), "message": "x", "timeout_seconds": None})
        assert answer["error"]["rule"] == "send.deny[0]"
        only_slack = ToolPolicy(visibility="agent", send={"allow": [{"channel": "slack"}]})
        answer = SessionTools(store, CALLER, only_slack).call("sessions_send", {
            "session_key": str(SIBLING), "message": "x", "timeout_seconds": None})
        assert answer["error"]["rule"] == "send.allow"
        by_prefix = ToolPolicy(visibility="agent", send={
            "allow": [{"key_prefix": "agent:bot:discord:acct:thread:"}]})
        answer = SessionTools(store, CALLER, by_prefix).call("sessions_send", {
            "session_key": str(THREAD), "message": "x", "timeout_seconds": None})
        assert answer["status"] == "accepted"


def test_an_agent_token_cannot_reach_another_agent_whatever_the_policy(
        served: BackgroundService) -> None:
    open_policy = ToolPolicy(visibility="all", agent_to_agent=A2A["on"])
    with SessionStore.open(served.url, token=BOT_TOKEN) as store:
        tools = SessionTools(store, CALLER, open_policy)
        answer = tools.call("sessions_history", {"session_key": str(FOREIGN), "limit": None,
                                                 "offset": None, "include_tools": None})
        assert answer["error"]["type"] == "forbidden"
        assert answer["error"]["rule"] == "store"
        listed = tools.call("sessions_list", {"kinds": None, "channel": None, "agent_id": None,
                                              "active_minutes": None, "limit": None,
                                              "include_preview": None})
        assert {row["agent_id"] for row in listed["sessions"]} == {"bot"}
