"""OpenAI Agents SDK: ``agents.SQLiteSession`` (file-backed), through its public API.

Its defaults: WAL (it sets ``journal_mode=WAL``), ``synchronous`` left at SQLite's default,
one transaction per ``add_items`` call, calls run in a thread (``asyncio.to_thread``).
One ``SQLiteSession`` object per conversation, all on one file.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import SQLiteSession

from benchmarks import common

LOAD_CHUNK = 10_000


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"openai-agents": version("openai-agents")}


def item(i: int) -> dict[str, Any]:
    return {"role": common.role_of(i), "content": common.text(i)}


def _settings(path: str) -> dict[str, Any]:
    return {"backend": "sqlite", **common.sqlite_settings(path),
            "note": "SQLiteSession sets WAL and leaves synchronous at the default"}


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    async def main() -> None:
        session = SQLiteSession("user0", path)
        for start in range(0, messages, LOAD_CHUNK):
            await session.add_items([item(i) for i in range(start,
                                                            min(messages, start + LOAD_CHUNK))])
        session.close()

    asyncio.run(main())
    return {}


def w1(path: str, appends: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        session = SQLiteSession("user0", path)
        result = await common.async_timed_loop(appends, budget,
                                               lambda i: session.add_items([item(i)]))
        assert len(await session.get_items()) == result["ops"]
        session.close()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result


def w2(path: str, sessions: int, per_session: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        all_sessions = [SQLiteSession(f"user{i}", path) for i in range(sessions)]
        result = await common.async_timed_loop(
            sessions * per_session, budget,
            lambda i: all_sessions[i % sessions].add_items([item(i)]))
        for session in all_sessions:
            session.close()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        session = SQLiteSession("user0", path)
        assert len(await session.get_items(limit=20)) == 20
        result = await common.async_latency_loop(reads, budget,
                                                 lambda i: session.get_items(limit=20))
        session.close()
        return result

    return asyncio.run(main())


def w6(path: str, writers: int, per_writer: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        sessions = [SQLiteSession(f"user{w}", path) for w in range(writers)]
        result = await common.concurrent_writers(
            writers, per_writer, budget, lambda w, i: sessions[w].add_items([item(i)]))
        for session in sessions:
            session.close()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result
