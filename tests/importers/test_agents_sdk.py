"""OpenAI Agents SDK sources: databases written by the SDK's own SQLiteSession and
SQLAlchemySession, imported, and read back through the integration item for item."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from agents import SQLiteSession
from agents.extensions.memory import SQLAlchemySession

from aisopod_session import HistoryQuery, Role, SessionKey, SessionStore
from aisopod_session.importers import KeyMapping, SourceError
from aisopod_session.integrations.openai_agents import AisopodSession
from tests.importers.conftest import contents, run_import


def conversation(n: int) -> list[dict[str, Any]]:
    """A turn with a function call and its output, then an answer."""
    return [
        {"role": "user", "content": f"what is the weather in city {n}?"},
        {"type": "function_call", "call_id": f"call-{n}", "name": "weather",
         "arguments": f'{{"city": {n}}}', "id": f"fc_{n}"},
        {"type": "function_call_output", "call_id": f"call-{n}", "output": f"sunny {n}"},
        {"id": f"msg_{n}", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": f"It is sunny in {n}.",
                      "annotations": []}]},
        {"role": "developer", "content": "be brief"},
    ]


SESSIONS = {f"user-{n}": conversation(n) * (n + 1) for n in range(3)}


def write_sqlite_session(path: Path) -> None:
    async def write() -> None:
        for session_id, items in SESSIONS.items():
            session = SQLiteSession(session_id, str(path))
            await session.add_items(items[:2])  # in several calls, as an app adds them
            await session.add_items(items[2:])
            session.close()

    asyncio.run(write())


def write_sqlalchemy_session(url: str) -> None:
    async def write() -> None:
        for session_id, items in SESSIONS.items():
            session = SQLAlchemySession.from_url(session_id, url=url, create_tables=True)
            await session.add_items(items)
            await session._engine.dispose()

    asyncio.run(write())


def items_through_integration(store: SessionStore, session_id: str,
                              agent_id: str = "openai-agents") -> list[Any]:
    return asyncio.run(AisopodSession(session_id, store, agent_id=agent_id).get_items())


def check_round_trip(target: SessionStore, report: Any, agent_id: str = "openai-agents") -> None:
    assert report.count("imported") == len(SESSIONS)
    for session in report.sessions:
        expected = SESSIONS[session.source_id]
        assert (session.read, session.imported, session.skipped) == (len(expected),
                                                                     len(expected), {})
        assert items_through_integration(target, session.source_id, agent_id) == expected
        key = SessionKey(agent_id, "openai-agents", "default", "dm", session.source_id)
        history = target.for_agent(agent_id).get_history(key)
        assert [m.role for m in history][:5] == [Role.USER, Role.ASSISTANT, Role.TOOL,
                                                 Role.ASSISTANT, Role.SYSTEM]
        assert all(m.external_id and m.external_id.startswith("openai-agents:")
                   for m in history)


def test_sqlite_session_round_trip_and_a_second_run_adds_nothing(
        tmp_path: Path, target: SessionStore) -> None:
    source = tmp_path / "conversations.db"
    write_sqlite_session(source)
    report = run_import(target, "openai-agents", str(source))
    check_round_trip(target, report)
    before, cursor = contents(target), target.latest_cursor()
    again = run_import(target, "openai-agents", str(source))
    assert again.count("already-imported") == len(SESSIONS)
    assert again.messages_imported == 0
    assert contents(target) == before
    assert target.latest_cursor() == cursor


def test_sqlalchemy_session_on_sqlite_round_trip(tmp_path: Path, target: SessionStore) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sdk.db'}"
    write_sqlalchemy_session(url)
    check_round_trip(target, run_import(target, "openai-agents", url))


@pytest.mark.postgres
def test_sqlalchemy_session_on_postgres_round_trip(pg_source_db: str,
                                                   target: SessionStore) -> None:
    url = pg_source_db.replace("postgresql://", "postgresql+psycopg://")
    write_sqlalchemy_session(url)
    report = run_import(target, "openai-agents", url, mapping=KeyMapping(agent_id="support"))
    check_round_trip(target, report, agent_id="support")


def test_dry_run_counts_and_writes_nothing(tmp_path: Path, target: SessionStore) -> None:
    source = tmp_path / "conversations.db"
    write_sqlite_session(source)
    report = run_import(target, "openai-agents", str(source), dry_run=True)
    assert report.count("would-import") == len(SESSIONS)
    assert report.messages_imported == sum(map(len, SESSIONS.values()))
    assert target.list_all_sessions() == []


def test_a_row_that_is_not_json_is_skipped_with_its_reason(tmp_path: Path,
                                                          target: SessionStore) -> None:
    source = tmp_path / "conversations.db"
    write_sqlite_session(source)
    with sqlite3.connect(source) as db:
        db.execute("INSERT INTO agent_messages (session_id, message_data) "
                   "VALUES ('user-0', '{\"role\": \"us')")
    report = run_import(target, "openai-agents", str(source))
    first = next(s for s in report.sessions if s.source_id == "user-0")
    assert first.outcome == "imported"
    assert first.skipped == {"message_data is not JSON (the SDK skips such rows too)": 1}
    assert first.read == len(SESSIONS["user-0"]) + 1
    assert first.imported == len(SESSIONS["user-0"])


def test_a_table_missing_a_column_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "old.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE agent_sessions (session_id TEXT, created_at TEXT, updated_at "
                   "TEXT)")
        db.execute("CREATE TABLE agent_messages (id INTEGER, session_id TEXT, created_at TEXT)")
    with pytest.raises(SourceError, match="no column 'message_data'"):
        run_import(None, "openai-agents", str(source))  # type: ignore[arg-type]


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("not a database at all, just some text" * 100)
    with pytest.raises(SourceError, match="not a SQLite database"):
        run_import(None, "openai-agents", str(source))  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="no such file"):
        run_import(None, "openai-agents", str(tmp_path / "missing.db"))  # type: ignore[arg-type]


def test_on_conflict_with_a_session_not_imported_from_the_source(
        tmp_path: Path, target: SessionStore) -> None:
    source = tmp_path / "conversations.db"
    write_sqlite_session(source)
    key = SessionKey("openai-agents", "openai-agents", "default", "dm", "user-1")
    agent = target.for_agent("openai-agents")
    agent.get_or_create(key)
    from aisopod_session import ConflictError

    with pytest.raises(ConflictError, match="user-1"):
        run_import(target, "openai-agents", str(source))
    assert len(target.list_all_sessions()) == 1  # nothing was imported
    skipped = run_import(target, "openai-agents", str(source), on_conflict="skip")
    assert [s.outcome for s in skipped.sessions] == ["imported", "skipped", "imported"]
    assert agent.get_history(key) == []
    archived = run_import(target, "openai-agents", str(source), on_conflict="archive-existing")
    assert [s.outcome for s in archived.sessions] == ["already-imported", "imported",
                                                      "already-imported"]
    assert len(agent.get_history(key, HistoryQuery())) == len(SESSIONS["user-1"])
