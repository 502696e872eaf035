"""LangChain ``BaseChatMessageHistory`` backed by aisopod-session
(``AisopodChatMessageHistory``), driven through LangChain's history API exactly as
:mod:`benchmarks.sys_langchain` drives ``SQLChatMessageHistory``: ``add_message`` per message,
``messages`` to read (with ``max_messages=20``: the integration's bounded tail read, where
``SQLChatMessageHistory`` must read the whole history and slice), and the asyncio methods for W6.

The store: a ``SessionStore`` on a SQLite file for the blocking workloads, an
``AsyncSessionStore`` for W6 (as the peer uses an asyncio engine there); durability ``full``
(WAL + ``synchronous=FULL``; LangChain's own history leaves SQLite's default ``FULL``). One
history object per conversation, all sharing the store. The first ``add_message`` of a
conversation creates its session.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aisopod_session import AsyncSessionStore, SessionStore
from aisopod_session.integrations.langchain import AisopodChatMessageHistory
from benchmarks import common, sys_aisopod
from benchmarks.sys_langchain import message

LOAD_CHUNK = 5_000
AGENT = "bench"


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"langchain-core": version("langchain-core"), **sys_aisopod.versions()}


def _store(path: str, durability: str = "full") -> SessionStore:
    return SessionStore.open(f"sqlite:///{path}", durability=durability)  # type: ignore[arg-type]


def _settings(store: SessionStore | AsyncSessionStore) -> dict[str, Any]:
    return {**sys_aisopod._settings(store),
            "store": "SessionStore (W6: AsyncSessionStore, with the asyncio methods)"}


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    with _store(path, "normal") as store:
        history = AisopodChatMessageHistory("user0", store, agent_id=AGENT)
        for start in range(0, messages, LOAD_CHUNK):
            history.add_messages([message(i) for i in
                                  range(start, min(messages, start + LOAD_CHUNK))])
    return {}


def w1(path: str, appends: int, budget: float) -> dict[str, Any]:
    with _store(path) as store:
        history = AisopodChatMessageHistory("user0", store, agent_id=AGENT)
        result = common.timed_loop(appends, budget, lambda i: history.add_message(message(i)))
        result["settings"] = _settings(store)
    return result


def w2(path: str, sessions: int, per_session: int, budget: float) -> dict[str, Any]:
    with _store(path) as store:
        histories = [AisopodChatMessageHistory(f"user{i}", store, agent_id=AGENT)
                     for i in range(sessions)]
        result = common.timed_loop(sessions * per_session, budget,
                                   lambda i: histories[i % sessions].add_message(message(i)))
        result["settings"] = _settings(store)
    return result


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    """The newest 20, read from the tail (``max_messages=20``)."""
    with _store(path) as store:
        history = AisopodChatMessageHistory("user0", store, agent_id=AGENT, max_messages=20)
        assert len(history.messages) == 20
        return common.latency_loop(reads, budget, lambda i: history.messages, warmup=1)


def w6(path: str, writers: int, per_writer: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        store = await AsyncSessionStore.open(f"sqlite:///{path}", durability="full")
        async with store:
            histories = [AisopodChatMessageHistory(f"user{w}", store, agent_id=AGENT)
                         for w in range(writers)]
            result = await common.concurrent_writers(
                writers, per_writer, budget,
                lambda w, i: histories[w].aadd_messages([message(i)]))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())
