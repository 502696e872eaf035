"""The two halves of the resume test of test_openai_agents.py (never collected by pytest).

``first`` runs two turns with tool calls (``Runner.run_sync``, then ``Runner.run``), in the test's
own process; ``python openai_agents_resume.py URL OPTIONS_JSON second`` then runs a third turn with
``Runner.run_streamed`` in a new process, recording what the model was given. Each returns (or
prints as one JSON line) the model inputs, the final outputs and the stored items.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")

from agents import Agent, Runner, function_tool
from agents.testing import (
    ModelCall,
    ModelStep,
    ScriptedModel,
    assistant_message,
    function_call,
)
from openai.types.responses import ResponseReasoningItem
from openai.types.responses.response_reasoning_item import Summary

from aisopod_session import SessionStore
from aisopod_session.integrations.openai_agents import AisopodSession

CITIES = {"Paris": "sunny", "London": "rainy", "Rome": "hot"}


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"{CITIES[city]} in {city}"


def agent(model: ScriptedModel) -> Agent[Any]:
    return Agent(name="weather", instructions="Answer about the weather.", model=model,
                 tools=[get_weather])


def first(store: SessionStore) -> dict[str, Any]:
    model = ScriptedModel([
        [function_call("get_weather", {"city": "Paris"}, call_id="call-1")],
        [assistant_message("Sunny in Paris.", item_id="msg-1")],
        [
            ResponseReasoningItem(id="rs-1", type="reasoning",
                                  summary=[Summary(text="two cities: two calls",
                                                   type="summary_text")]),
            function_call("get_weather", {"city": "London"}, call_id="call-2"),
            function_call("get_weather", {"city": "Rome"}, call_id="call-3"),
        ],
        [assistant_message("Rainy in London, hot in Rome.", item_id="msg-2")],
    ])
    session = AisopodSession("traveller-1", store, agent_id="weather-bot")
    one = Runner.run_sync(agent(model), "Weather in Paris?", session=session)
    two = asyncio.run(Runner.run(agent(model), "And London and Rome?", session=session))
    model.assert_complete()
    return {
        "outputs": [one.final_output, two.final_output],
        "inputs": [call.input for call in model.calls],
        "items": asyncio.run(session.get_items()),
    }


def second(store: SessionStore) -> dict[str, Any]:
    seen: list[Any] = []

    def respond(call: ModelCall) -> Any:
        seen.append(call.input)
        return [assistant_message("You asked about Paris, London and Rome.", item_id="msg-3")]

    model = ScriptedModel([ModelStep.respond(respond)])
    session = AisopodSession("traveller-1", store, agent_id="weather-bot")

    async def streamed() -> str:
        result = Runner.run_streamed(agent(model), "What did I ask about?", session=session)
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    output = asyncio.run(streamed())
    model.assert_complete()
    return {"outputs": [output], "inputs": seen, "items": asyncio.run(session.get_items())}


def main() -> None:
    url, options, phase = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    with SessionStore.open(url, **options) as store:
        result = first(store) if phase == "first" else second(store)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
