"""LangGraph: ``langgraph.checkpoint.sqlite.SqliteSaver`` (file-backed) under a compiled graph.

Its defaults: WAL (it sets ``journal_mode=WAL``), ``synchronous`` left at SQLite's default (FULL),
one connection behind a lock, a commit per checkpoint and per batch of pending writes. The graph
(:func:`graph`) is the same for both checkpointers: a user message in, a reply out (no model:
what is measured is the checkpointer under LangGraph's own loop).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph

from benchmarks import common

TURNS_PER_THREAD = 10
"""A turn adds two messages to its thread's state; threads of 10 turns keep each checkpoint
the size of an ordinary conversation's."""


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"langgraph": version("langgraph"),
            "langgraph-checkpoint-sqlite": version("langgraph-checkpoint-sqlite")}


def _reply(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage(f"reply to: {state['messages'][-1].content}")]}


def graph(checkpointer: BaseCheckpointSaver[Any]) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("reply", _reply)
    builder.add_edge(START, "reply")
    return builder.compile(checkpointer=checkpointer)


def turns(compiled: Any, count: int, budget: float) -> dict[str, Any]:
    """``count`` turns, ``TURNS_PER_THREAD`` per thread; checks every turn was kept."""

    def turn(i: int) -> object:
        config = {"configurable": {"thread_id": f"user{i // TURNS_PER_THREAD}"}}
        return compiled.invoke({"messages": [HumanMessage(common.text(i))]}, config)

    result = common.timed_loop(count, budget, turn)
    last = {"configurable": {"thread_id": f"user{(result['ops'] - 1) // TURNS_PER_THREAD}"}}
    kept = len(compiled.get_state(last).values["messages"])
    assert kept == 2 * (((result["ops"] - 1) % TURNS_PER_THREAD) + 1), kept
    return result


def w8(path: str, turns_count: int, budget: float) -> dict[str, Any]:
    with SqliteSaver.from_conn_string(path) as saver:
        result = turns(graph(saver), turns_count, budget)
    result["settings"] = {"backend": "sqlite", **common.sqlite_settings(path),
                          "note": "SqliteSaver sets WAL and leaves synchronous at the default"}
    return result
