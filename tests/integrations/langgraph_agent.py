"""A LangGraph agent graph with a tool (a scripted LangChain fake chat model, no network) on the
AisopodSaver; also the halves of the restart test of test_langgraph.py (never collected by
pytest): ``python langgraph_agent.py URL OPTIONS_JSON first`` asks about the weather and stops
before the tool runs (an interrupt), ``… second`` resumes the thread in a new process; each prints
what it saw as one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository's tests package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from aisopod_session.integrations.langgraph import AisopodSaver

THREAD = "trip-1"
CONFIG: Any = {"configurable": {"thread_id": THREAD}}
QUESTION = HumanMessage("What is the weather in Paris?", id="h-1")
CALL = AIMessage("", id="a-1", tool_calls=[
    {"name": "get_weather", "args": {"city": "Paris"}, "id": "call-1", "type": "tool_call"}])
ANSWER = AIMessage("It is sunny in Paris.", id="a-2")


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def build(checkpointer: AisopodSaver, replies: list[BaseMessage],
          interrupt: bool = True) -> CompiledStateGraph[Any, Any, Any, Any]:
    """An agent: the model answers or calls the tool; the tool's result goes back to it."""
    model = GenericFakeChatModel(messages=iter(replies))

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer,
                         interrupt_before=["tools"] if interrupt else None)


def first(saver: AisopodSaver) -> dict[str, Any]:
    graph = build(saver, [CALL])
    graph.invoke({"messages": [QUESTION]}, CONFIG)
    state = graph.get_state(CONFIG)
    return {"next": list(state.next), "messages": len(state.values["messages"])}


def second(saver: AisopodSaver) -> dict[str, Any]:
    graph = build(saver, [ANSWER])
    state = graph.get_state(CONFIG)
    seen = {"next": list(state.next), "messages": len(state.values["messages"])}
    result = graph.invoke(None, CONFIG)  # resume: the tool runs, then the model answers
    return {"before": seen, "answer": result["messages"][-1].content,
            "types": [m.type for m in result["messages"]]}


def main() -> None:
    url, options, phase = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    with AisopodSaver.from_url(url, **options) as saver:
        result = first(saver) if phase == "first" else second(saver)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
