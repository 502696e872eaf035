"""LangChain: ``langchain_community`` ``SQLChatMessageHistory`` on SQLite, public API.

Its defaults: a SQLAlchemy engine (pysqlite), SQLite's default rollback journal and
``synchronous``, one transaction per ``add_message``; ``messages`` reads the whole history (there
is no limit) and the table has no index on ``session_id``. One history object per conversation,
all sharing one engine (passing an engine is part of its API). W6 uses its asyncio methods,
which need an asyncio engine (``sqlite+aiosqlite``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_community.chat_message_histories import SQLChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks import common

LOAD_CHUNK = 10_000


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"langchain-community": version("langchain-community"),
            "langchain-core": version("langchain-core"), "sqlalchemy": version("sqlalchemy")}


def message(i: int) -> BaseMessage:
    if i % 2 == 0:
        return HumanMessage(common.text(i))
    return AIMessage(common.text(i))


def _settings(path: str) -> dict[str, Any]:
    return {"backend": "sqlite", **common.sqlite_settings(path),
            "note": "SQLChatMessageHistory sets neither journal mode nor synchronous"}


def _histories(path: str, count: int) -> list[SQLChatMessageHistory]:
    engine = create_engine(f"sqlite:///{path}")
    return [SQLChatMessageHistory(f"user{i}", connection=engine) for i in range(count)]


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    (history,) = _histories(path, 1)
    for start in range(0, messages, LOAD_CHUNK):
        history.add_messages([message(i) for i in range(start, min(messages, start + LOAD_CHUNK))])
    return {}


def w1(path: str, appends: int, budget: float) -> dict[str, Any]:
    (history,) = _histories(path, 1)
    result = common.timed_loop(appends, budget, lambda i: history.add_message(message(i)))
    result["settings"] = _settings(path)
    return result


def w2(path: str, sessions: int, per_session: int, budget: float) -> dict[str, Any]:
    histories = _histories(path, sessions)
    result = common.timed_loop(sessions * per_session, budget,
                               lambda i: histories[i % sessions].add_message(message(i)))
    result["settings"] = _settings(path)
    return result


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    """No limit exists: the newest 20 are the last 20 of the whole history."""
    (history,) = _histories(path, 1)
    assert len(history.messages[-20:]) == 20
    return common.latency_loop(reads, budget, lambda i: history.messages[-20:], warmup=1)


def w6(path: str, writers: int, per_writer: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        histories = [SQLChatMessageHistory(f"user{w}", connection=engine)
                     for w in range(writers)]
        await histories[0].aget_messages()  # creates the table before the writers race
        result = await common.concurrent_writers(
            writers, per_writer, budget, lambda w, i: histories[w].aadd_messages([message(i)]))
        await engine.dispose()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result
