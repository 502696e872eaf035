"""OpenAI Agents SDK ``Session`` backed by aisopod-session (``AisopodSession``), driven through
the SDK's ``Session`` API exactly as :mod:`benchmarks.sys_openai` drives ``SQLiteSession``.

W1 and W3 use the drop-in form, as a user switching from ``SQLiteSession(id, path)`` writes it:
``AisopodSession(id, "sqlite:///path")``, which opens and owns a blocking ``SessionStore`` with
durability ``full`` (WAL + ``synchronous=FULL``: a committed item survives power loss, as with
the SDK's default); its writes run on a worker thread, its bounded tail reads on the caller's
thread. W2 and W6 (many conversations) share one ``AsyncSessionStore`` (durability ``full``)
between the sessions of the process, as the docs advise. The first ``add_items`` of a
conversation creates its session (as ``SQLiteSession`` does).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aisopod_session import AsyncSessionStore
from aisopod_session.integrations.openai_agents import AisopodSession
from benchmarks import common, sys_aisopod
from benchmarks.sys_openai import item

LOAD_CHUNK = 5_000
AGENT = "bench"


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"openai-agents": version("openai-agents"), **sys_aisopod.versions()}


async def _store(path: str, durability: str = "full") -> AsyncSessionStore:
    return await AsyncSessionStore.open(f"sqlite:///{path}",
                                        durability=durability)  # type: ignore[arg-type]


def _settings(store: AsyncSessionStore) -> dict[str, Any]:
    return {**sys_aisopod._settings(store), "store": "AsyncSessionStore"}


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    """One conversation (user0) with ``messages`` items, written through ``add_items`` in large
    batches (setup: not measured)."""

    async def main() -> None:
        async with await _store(path, "normal") as store:
            session = AisopodSession("user0", store, agent_id=AGENT)
            for start in range(0, messages, LOAD_CHUNK):
                await session.add_items([item(i) for i in
                                         range(start, min(messages, start + LOAD_CHUNK))])

    asyncio.run(main())
    return {}


def w1(path: str, appends: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        with AisopodSession("user0", f"sqlite:///{path}", agent_id=AGENT) as session:
            result = await common.async_timed_loop(appends, budget,
                                                   lambda i: session.add_items([item(i)]))
            assert len(await session.get_items()) == result["ops"]
        result["settings"] = {"backend": "sqlite", "durability": "full",
                              "store": "SessionStore (owned by the session)"}
        return result

    return asyncio.run(main())


def w2(path: str, sessions: int, per_session: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with await _store(path) as store:
            all_sessions = [AisopodSession(f"user{i}", store, agent_id=AGENT)
                            for i in range(sessions)]
            result = await common.async_timed_loop(
                sessions * per_session, budget,
                lambda i: all_sessions[i % sessions].add_items([item(i)]))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        with AisopodSession("user0", f"sqlite:///{path}", agent_id=AGENT) as session:
            assert len(await session.get_items(limit=20)) == 20
            return await common.async_latency_loop(reads, budget,
                                                   lambda i: session.get_items(limit=20))

    return asyncio.run(main())


def w6(path: str, writers: int, per_writer: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with await _store(path) as store:
            sessions = [AisopodSession(f"user{w}", store, agent_id=AGENT)
                        for w in range(writers)]
            result = await common.concurrent_writers(
                writers, per_writer, budget, lambda w, i: sessions[w].add_items([item(i)]))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())
