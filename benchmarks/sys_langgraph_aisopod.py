"""LangGraph with aisopod-session's checkpointer (``AisopodSaver``), under the same graph as
:mod:`benchmarks.sys_langgraph`: opened from the database's URL (it owns its store), durability
``full`` (WAL + ``synchronous=FULL``). Each checkpoint also writes the turn's new messages to the
thread's session transcript, in the same transaction."""

from __future__ import annotations

from typing import Any

from aisopod_session.integrations.langgraph import AisopodSaver
from benchmarks import sys_aisopod
from benchmarks.sys_langgraph import graph, turns


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"langgraph": version("langgraph"), **sys_aisopod.versions()}


def w8(path: str, turns_count: int, budget: float) -> dict[str, Any]:
    with AisopodSaver.from_url(f"sqlite:///{path}", durability="full") as saver:
        result = turns(graph(saver), turns_count, budget)
    result["settings"] = {"backend": "sqlite", "durability": "full",
                          "store": "SessionStore (owned by the saver)"}
    return result
