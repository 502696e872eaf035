"""Google ADK: ``DatabaseSessionService`` on ``sqlite+aiosqlite``, through its public API.

Its defaults: SQLAlchemy's asyncio engine with a connection pool, SQLite's default rollback
journal (it sets no journal mode) and default ``synchronous``; every ``append_event`` is one
transaction that reads the session and its state rows, checks for a stale session, stores the
event and updates the session.

Sessions: app ``bench``, user ``user{i}``, session id ``s{i}``. Setup writes what would take
minutes through ``append_event`` (one event at a time) by cloning rows that the service itself
wrote, with SQL; the workloads only use the service.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from google.adk.events import Event
from google.adk.sessions import DatabaseSessionService
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from benchmarks import common

APP = "bench"


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"google-adk": version("google-adk"), "sqlalchemy": version("sqlalchemy"),
            "aiosqlite": version("aiosqlite")}


def _service(path: str) -> DatabaseSessionService:
    return DatabaseSessionService(f"sqlite+aiosqlite:///{path}")


def event(i: int) -> Event:
    role = common.role_of(i)
    return Event(author="user" if role == "user" else "bench", invocation_id=f"inv{i}",
                 content=types.Content(role="user" if role == "user" else "model",
                                       parts=[types.Part(text=common.text(i))]))


def _settings(path: str) -> dict[str, Any]:
    return {"backend": "sqlite", **common.sqlite_settings(path),
            "note": "DatabaseSessionService sets neither journal mode nor synchronous"}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- setup -----------------------------------------------------------------------------------


def prepare_sessions(path: str, sessions: int) -> dict[str, Any]:
    """``sessions`` empty sessions: the first created by the service, the others cloned."""

    async def main() -> None:
        service = _service(path)
        await service.create_session(app_name=APP, user_id="user0", session_id="s0")
        await service.close()

    asyncio.run(main())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        session = conn.execute("SELECT state, create_time, update_time FROM sessions").fetchone()
        user = conn.execute("SELECT state, update_time FROM user_states").fetchone()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO sessions (app_name, user_id, id, state, create_time, update_time) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ((APP, f"user{i}", f"s{i}", *session) for i in range(1, sessions)))
        conn.executemany(
            "INSERT INTO user_states (app_name, user_id, state, update_time) VALUES (?, ?, ?, ?)",
            ((APP, f"user{i}", *user) for i in range(1, sessions)))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {}


def prepare_history(path: str, messages: int) -> dict[str, Any]:
    """One session (user0/s0) with ``messages`` events: one appended by the service, the rest
    clones of it with their own id, text and a later timestamp."""

    async def main() -> None:
        service = _service(path)
        session = await service.create_session(app_name=APP, user_id="user0", session_id="s0")
        await service.append_event(session, event(0))
        await service.close()

    asyncio.run(main())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        template = conn.execute(
            "SELECT id, invocation_id, event_data FROM events").fetchone()
        data = json.loads(template[2])
        start = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=messages)

        def row(i: int) -> tuple[Any, ...]:
            moment = start + timedelta(milliseconds=i)
            data["id"] = f"e{i}"
            data["invocation_id"] = f"inv{i}"
            data["timestamp"] = moment.replace(tzinfo=UTC).timestamp()
            data["content"]["parts"][0]["text"] = common.text(i)
            data["content"]["role"] = "user" if i % 2 == 0 else "model"
            data["author"] = "user" if i % 2 == 0 else "bench"
            return (f"e{i}", APP, "user0", "s0", f"inv{i}", _stamp(moment), json.dumps(data))

        conn.execute("BEGIN")
        conn.execute("DELETE FROM events")
        conn.executemany(
            "INSERT INTO events (id, app_name, user_id, session_id, invocation_id, timestamp, "
            "event_data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row(i) for i in range(messages)))
        conn.execute("UPDATE sessions SET update_time = ?",
                     (_stamp(start + timedelta(milliseconds=messages)),))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return {}


# --- workloads -------------------------------------------------------------------------------


async def _sessions(service: DatabaseSessionService, count: int) -> list[Any]:
    found = []
    for i in range(count):
        session = await service.get_session(app_name=APP, user_id=f"user{i}",
                                            session_id=f"s{i}")
        assert session is not None
        found.append(session)
    return found


def w1(path: str, appends: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        service = _service(path)
        (session,) = await _sessions(service, 1)
        result = await common.async_timed_loop(
            appends, budget, lambda i: service.append_event(session, event(i)))
        await service.close()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result


def w2(path: str, sessions: int, per_session: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        service = _service(path)
        objects = await _sessions(service, sessions)
        result = await common.async_timed_loop(
            sessions * per_session, budget,
            lambda i: service.append_event(objects[i % sessions], event(i)))
        await service.close()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result


def w3(path: str, reads: int, budget: float) -> dict[str, Any]:
    config = GetSessionConfig(num_recent_events=20)

    async def read(i: int) -> Any:
        return await service.get_session(app_name=APP, user_id="user0", session_id="s0",
                                         config=config)

    async def main() -> dict[str, Any]:
        first = await read(0)
        assert first is not None and len(first.events) == 20
        result = await common.async_latency_loop(reads, budget, read)
        await service.close()
        return result

    service = _service(path)
    return asyncio.run(main())


def w4(path: str, lookups: int, sessions: int, budget: float) -> dict[str, Any]:
    def index(i: int) -> int:
        return (i * 7_919) % sessions

    async def lookup(i: int) -> Any:
        found = await service.get_session(app_name=APP, user_id=f"user{index(i)}",
                                          session_id=f"s{index(i)}")
        assert found is not None

    async def main() -> dict[str, Any]:
        result = await common.async_latency_loop(lookups, budget, lookup)
        await service.close()
        return result

    service = _service(path)
    return asyncio.run(main())


def list_all(path: str, repeats: int, budget: float) -> dict[str, Any]:
    """``list_sessions(app_name)``: every session of the app, no filter and no pages."""

    async def main() -> dict[str, Any]:
        service = _service(path)
        started = time.perf_counter()
        response = await service.list_sessions(app_name=APP)
        cold_ms = (time.perf_counter() - started) * 1000
        count = len(response.sessions)
        result = await common.async_latency_loop(
            repeats, budget, lambda i: service.list_sessions(app_name=APP), warmup=0)
        await service.close()
        result["first_call_ms"] = cold_ms
        result["sessions"] = count
        return result

    return asyncio.run(main())


def w6(path: str, writers: int, per_writer: int, budget: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        service = _service(path)
        objects = await _sessions(service, writers)
        result = await common.concurrent_writers(
            writers, per_writer, budget,
            lambda w, i: service.append_event(objects[w], event(i)))
        await service.close()
        return result

    result = asyncio.run(main())
    result["settings"] = _settings(path)
    return result
