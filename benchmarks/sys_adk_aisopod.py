"""Google ADK ``BaseSessionService`` backed by aisopod-session (``AisopodSessionService``), driven
through ADK's service API exactly as :mod:`benchmarks.sys_adk` drives
``DatabaseSessionService``: ``create_session`` / ``get_session`` (with
``GetSessionConfig(num_recent_events=20)`` for W3) / ``append_event``.

The store: one ``AsyncSessionStore`` on a SQLite file with durability ``full`` (WAL +
``synchronous=FULL``; ADK's own service leaves SQLite's default ``synchronous=FULL``). Every
``append_event`` is one transaction storing the event and the session's revision (the
stale-session check).

Sessions: app ``bench``, user ``user{i}``, session id ``s{i}``, created by the service itself in
setup. W3's long history is written in setup with the store's ``append_messages`` in large batches
of the very messages the service stores for those events (ADK's ``append_event`` takes one
event a call, which would take minutes for 100,000 events); the workloads only use the service.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.adk.sessions.base_session_service import GetSessionConfig

from aisopod_session import AsyncSessionStore
from aisopod_session.integrations import adk as integration
from aisopod_session.integrations.adk import AisopodSessionService
from benchmarks import common, sys_aisopod
from benchmarks.sys_adk import APP, event

LOAD_CHUNK = 5_000


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"google-adk": version("google-adk"), **sys_aisopod.versions()}


async def _store(path: str, durability: str = "full") -> AsyncSessionStore:
    return await AsyncSessionStore.open(f"sqlite:///{path}",
                                        durability=durability)  # type: ignore[arg-type]


def _settings(store: AsyncSessionStore) -> dict[str, Any]:
    return {**sys_aisopod._settings(store), "store": "AsyncSessionStore"}


# --- setup -----------------------------------------------------------------------------------


def prepare_sessions(path: str, sessions: int) -> dict[str, Any]:
    """``sessions`` empty sessions, each created by the service."""

    async def main() -> None:
        async with await _store(path, "normal") as store:
            service = AisopodSessionService(store)
            for i in range(sessions):
                await service.create_session(app_name=APP, user_id=f"user{i}",
                                             session_id=f"s{i}")

    asyncio.run(main())
    return {}


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    """One session (user0/s0) with ``messages`` events: created and first event appended by the
    service, the rest stored in batches as the service stores events."""

    async def main() -> None:
        async with await _store(path, "normal") as store:
            service = AisopodSessionService(store)
            session = await service.create_session(app_name=APP, user_id="user0",
                                                   session_id="s0")
            await service.append_event(session, event(0))
            agent = store.for_agent(integration.encode_name(APP, "app_name"))
            key = integration.session_key(APP, "user0", "s0")
            for start in range(1, messages, LOAD_CHUNK):
                batch = [integration._event_message(event(i))
                         for i in range(start, min(messages, start + LOAD_CHUNK))]
                await agent.append_messages(key, batch)

    asyncio.run(main())
    return {}


# --- workloads -------------------------------------------------------------------------------


async def _sessions(service: AisopodSessionService, count: int) -> list[Any]:
    found = []
    for i in range(count):
        session = await service.get_session(app_name=APP, user_id=f"user{i}",
                                            session_id=f"s{i}")
        assert session is not None
        found.append(session)
    return found


def w1(path: str, appends: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with await _store(path) as store:
            service = AisopodSessionService(store)
            (session,) = await _sessions(service, 1)
            result = await common.async_timed_loop(
                appends, budget, lambda i: service.append_event(session, event(i)))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())


def w2(path: str, sessions: int, per_session: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with await _store(path) as store:
            service = AisopodSessionService(store)
            objects = await _sessions(service, sessions)
            result = await common.async_timed_loop(
                sessions * per_session, budget,
                lambda i: service.append_event(objects[i % sessions], event(i)))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    config = GetSessionConfig(num_recent_events=20)

    async def main() -> dict[str, Any]:
        async with await _store(path) as store:
            service = AisopodSessionService(store)

            async def read(i: int) -> Any:
                return await service.get_session(app_name=APP, user_id="user0",
                                                 session_id="s0", config=config)

            first = await read(0)
            assert first is not None and len(first.events) == 20
            return await common.async_latency_loop(reads, budget, read)

    return asyncio.run(main())


def w6(path: str, writers: int, per_writer: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with await _store(path) as store:
            service = AisopodSessionService(store)
            objects = await _sessions(service, writers)
            result = await common.concurrent_writers(
                writers, per_writer, budget,
                lambda w, i: service.append_event(objects[w], event(i)))
            result["settings"] = _settings(store)
            return result

    return asyncio.run(main())
