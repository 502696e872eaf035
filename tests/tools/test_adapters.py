"""The framework adapters, driven by the frameworks themselves with scripted models (offline):
an Agents SDK agent calls sessions_history and sessions_send end to end; a LangChain tool and an
ADK agent's tool call run the same tools."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SessionKey, SessionStore, StoredMessage
from aisopod_session.tools import AsyncSessionTools, SessionTools, ToolPolicy

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")
os.environ.setdefault("ADK_DISABLE_TELEMETRY", "1")

CALLER = SessionKey("bot", "web", "main", "group", "team")
THREAD = SessionKey.for_thread("bot", "web", "main", "team", "design")
HELPER = SessionKey("bot", "web", "main", "dm", "helper")
SIBLING = SessionKey("bot", "web", "main", "dm", "someone")


def _seed(store: SessionStore) -> None:
    agent = store.for_agent("bot")
    agent.get_or_create(THREAD)
    agent.append_messages(THREAD, [StoredMessage.user("the logo should be blue"),
                                   StoredMessage.assistant("noted: blue logo")])
    agent.get_or_create(SIBLING)
    agent.append_messages(SIBLING, [StoredMessage.user("private")])


def test_agents_sdk_agent_reads_history_and_sends(tmp_path: Path) -> None:
    from agents import Agent, Runner
    from agents.testing import ScriptedModel, assistant_message, function_call

    from aisopod_session.tools.openai_agents import function_tools

    db = str(tmp_path / "sdk.db")
    with SessionStore.open(db) as store:
        _seed(store)
        tools = SessionTools(store, CALLER)
        model = ScriptedModel([
            [function_call("sessions_history", {"session_key": str(THREAD), "limit": 5,
                                                "offset": None, "include_tools": False},
                           call_id="h1")],
            [function_call("sessions_history", {"session_key": str(SIBLING), "limit": None,
                                                "offset": None, "include_tools": None},
                           call_id="h2")],
            [function_call("sessions_send", {"session_key": str(HELPER),
                                             "message": "draw a blue logo",
                                             "timeout_seconds": None}, call_id="s1")],
            [assistant_message("asked the helper for a blue logo", item_id="m1")],
        ])
        agent = Agent(name="lead", instructions="Use the session tools.", model=model,
                      tools=function_tools(tools))
        result = Runner.run_sync(agent, "what colour is the logo? ask the helper to draw it")
        assert result.final_output == "asked the helper for a blue logo"
        outputs = {item.raw_item["call_id"]: json.loads(item.output)
                   for item in result.new_items if item.type == "tool_call_output_item"}
        assert [m["text"] for m in outputs["h1"]["messages"]] == [
            "the logo should be blue", "noted: blue logo"]
        assert outputs["h2"]["error"]["rule"] == "visibility"  # the run went on
        assert outputs["s1"]["status"] == "accepted" and outputs["s1"]["started"] is True
        (queued,) = store.for_agent("bot").inbox(HELPER)
        assert queued.message.content["text"] == "draw a blue logo"
        assert queued.message.content["from_session"] == str(CALLER)
        # the model was given the strict schemas
        specs = {tool.name: tool for tool in agent.tools}
        assert specs["sessions_send"].strict_json_schema is True  # type: ignore[union-attr]


def test_langchain_tools_run_both_flavours(tmp_path: Path) -> None:
    from aisopod_session.tools.langchain import langchain_tools

    db = str(tmp_path / "lc.db")
    with SessionStore.open(db) as store:
        _seed(store)
        by_name = {tool.name: tool for tool in langchain_tools(SessionTools(store, CALLER))}
        answer = json.loads(by_name["sessions_history"].invoke(
            {"session_key": str(THREAD), "limit": 1, "offset": None, "include_tools": None}))
        assert [m["text"] for m in answer["messages"]] == ["noted: blue logo"]
        assert answer["next_offset"] == 1

    async def main() -> dict[str, Any]:
        async with await AsyncSessionStore.open(db) as astore:
            tools = langchain_tools(AsyncSessionTools(astore, CALLER, ToolPolicy(
                visibility="self")))
            status = next(tool for tool in tools if tool.name == "session_status")
            return json.loads(await status.ainvoke({"session_key": str(THREAD)}))

    assert asyncio.run(main())["error"]["rule"] == "visibility"


def test_adk_agent_calls_a_session_tool(tmp_path: Path) -> None:
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import Runner
    from google.adk.sessions import InMemorySessionService
    from google.genai import types
    from pydantic import Field

    from aisopod_session.tools.adk import adk_tools

    class Scripted(BaseLlm):
        model: str = "scripted"
        turns: list[list[types.Part]] = Field(default_factory=list)
        seen: list[Any] = Field(default_factory=list)

        async def generate_content_async(self, llm_request: LlmRequest, stream: bool = False
                                         ) -> AsyncGenerator[LlmResponse, None]:
            self.seen.append(llm_request)
            yield LlmResponse(content=types.Content(role="model", parts=self.turns.pop(0)))

    db = str(tmp_path / "adk.db")
    with SessionStore.open(db) as store:
        _seed(store)

    async def main() -> list[Any]:
        async with await AsyncSessionStore.open(db) as astore:
            llm = Scripted(turns=[
                [types.Part(function_call=types.FunctionCall(
                    id="c1", name="session_status", args={"session_key": str(THREAD)}))],
                [types.Part(text="the thread has 2 messages")]])
            agent = LlmAgent(name="lead", model=llm,
                             tools=adk_tools(AsyncSessionTools(astore, CALLER)))
            service = InMemorySessionService()
            runner = Runner(app_name="app", agent=agent, session_service=service)
            await service.create_session(app_name="app", user_id="u", session_id="s")
            events = [event async for event in runner.run_async(
                user_id="u", session_id="s",
                new_message=types.Content(role="user", parts=[types.Part(text="status?")]))]
            declared = llm.seen[0].config.tools[0].function_declarations
            assert {d.name for d in declared} >= {"session_status", "sessions_send"}
            return events

    events = asyncio.run(main())
    responses = [part.function_response.response for event in events
                 if event.content for part in event.content.parts or []
                 if part.function_response]
    assert responses[0]["message_count"] == 2 and responses[0]["session_key"] == str(THREAD)
    assert events[-1].content.parts[0].text == "the thread has 2 messages"


@pytest.mark.parametrize("module", ["openai_agents", "langchain", "adk", "mcp"])
def test_adapters_are_importable_modules_of_the_package(module: str) -> None:
    import importlib

    assert importlib.import_module(f"aisopod_session.tools.{module}").__doc__
