"""Google ADK and LangChain sources, written by the frameworks themselves: ADK's
DatabaseSessionService (SQLite and PostgreSQL) and LangChain's SQLChatMessageHistory."""

from __future__ import annotations

import asyncio
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import DatabaseSessionService
from google.genai import types
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from aisopod_session import HistoryQuery, Role, SessionStore
from aisopod_session.importers import SourceError
from aisopod_session.integrations.adk import AisopodSessionService
from aisopod_session.integrations.langchain import AisopodChatMessageHistory
from tests.importers.conftest import contents, run_import

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from langchain_community.chat_message_histories import SQLChatMessageHistory

# --- ADK ---------------------------------------------------------------------------------------

USERS = {"alice": ["s1", "s2"], "Bob Smith": ["s3"]}


def _events(n: int) -> list[Event]:
    call = types.FunctionCall(id=f"fc-{n}", name="lookup", args={"n": n})
    answer = types.FunctionResponse(id=f"fc-{n}", name="lookup", response={"value": n * 2})
    return [
        Event(author="user", invocation_id=f"inv-{n}",
              content=types.Content(role="user", parts=[types.Part(text=f"question {n}")])),
        Event(author="helper", invocation_id=f"inv-{n}",
              content=types.Content(role="model", parts=[types.Part(function_call=call)])),
        Event(author="helper", invocation_id=f"inv-{n}",
              content=types.Content(role="user", parts=[types.Part(function_response=answer)])),
        Event(author="helper", invocation_id=f"inv-{n}",
              content=types.Content(role="model", parts=[types.Part(text=f"answer {n}")]),
              actions=EventActions(state_delta={"turns": n, "user:seen": True,
                                                "app:version": "2"})),
    ]


async def _write_adk(url: str) -> None:
    service = DatabaseSessionService(url)
    for n, (user, sessions) in enumerate(USERS.items()):
        for session_id in sessions:
            session = await service.create_session(
                app_name="HelpDesk", user_id=user, session_id=session_id,
                state={"topic": session_id, "app:region": "eu", "user:lang": "en"})
            for event in _events(n):
                await service.append_event(session, event)
    await service.close()


async def _adk_sessions(service: Any) -> dict[tuple[str, str], Any]:
    return {(user, sid): await service.get_session(app_name="HelpDesk", user_id=user,
                                                   session_id=sid)
            for user, sessions in USERS.items() for sid in sessions}


def _check_adk(url: str, target: SessionStore) -> None:
    asyncio.run(_write_adk(url))
    report = run_import(target, "adk", url)
    imported = {s.source_id: s for s in report.sessions}
    assert len(imported) == 3 + 1 + 2  # sessions, the app's state, each user's state
    assert all(s.outcome == "imported" for s in report.sessions)
    assert imported["HelpDesk/alice/s1"].read == imported["HelpDesk/alice/s1"].imported == 4

    async def compare() -> None:
        original = await _adk_sessions(DatabaseSessionService(url))
        ours = await _adk_sessions(AisopodSessionService(target))
        for where, session in original.items():
            mine = ours[where]
            assert mine is not None, where
            assert mine.state == session.state
            assert [e.model_dump(exclude_none=True) for e in mine.events] == \
                   [e.model_dump(exclude_none=True) for e in session.events]

    asyncio.run(compare())
    key = next(s.key for s in report.sessions if s.source_id == "HelpDesk/alice/s1")
    from aisopod_session import SessionKey

    parsed = SessionKey.parse(key)
    roles = [m.role for m in target.for_agent(parsed.agent_id).get_history(parsed)]
    assert roles == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    before = contents(target)
    assert run_import(target, "adk", url).count("already-imported") == len(imported)
    assert contents(target) == before


def test_adk_sqlite_round_trip(tmp_path: Path, target: SessionStore) -> None:
    _check_adk(f"sqlite+aiosqlite:///{tmp_path / 'adk.db'}", target)


@pytest.mark.postgres
def test_adk_postgres_round_trip(pg_source_db: str, target: SessionStore) -> None:
    _check_adk(pg_source_db.replace("postgresql://", "postgresql+psycopg://"), target)


def test_adk_schema_version_0_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "old-adk.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE sessions (app_name TEXT, user_id TEXT, id TEXT)")
        db.execute("CREATE TABLE events (id TEXT, actions BLOB)")
    with pytest.raises(SourceError, match="schema version 0"):
        run_import(None, "adk", str(source))  # type: ignore[arg-type]
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE adk_internal_metadata (key TEXT, value TEXT)")
        db.execute("INSERT INTO adk_internal_metadata VALUES ('schema_version', '7')")
    with pytest.raises(SourceError, match="schema version '7'"):
        run_import(None, "adk", str(source))  # type: ignore[arg-type]


# --- LangChain ---------------------------------------------------------------------------------


def _history(n: int) -> list[Any]:
    return [
        SystemMessage(content="you are terse"),
        HumanMessage(content=f"add {n} and 2"),
        AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": n, "b": 2},
                                           "id": f"call-{n}", "type": "tool_call"}]),
        ToolMessage(content=str(n + 2), tool_call_id=f"call-{n}"),
        AIMessage(content=f"{n + 2}"),
    ]


def test_langchain_round_trip_and_second_run(tmp_path: Path, target: SessionStore) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    written = {f"chat-{n}": _history(n) * (n + 1) for n in range(3)}
    for session_id, messages in written.items():
        history = SQLChatMessageHistory(session_id=session_id, connection=url)
        history.add_messages(messages)
    report = run_import(target, "langchain", url)
    assert [(s.source_id, s.read, s.imported) for s in report.sessions] == [
        (sid, len(m), len(m)) for sid, m in written.items()]
    for session_id, messages in written.items():
        ours = AisopodChatMessageHistory(session_id, target, agent_id="langchain").messages
        assert ours == SQLChatMessageHistory(session_id=session_id, connection=url).messages
        assert [type(m) for m in ours] == [type(m) for m in messages]
    before = contents(target)
    assert run_import(target, "langchain", url).count("already-imported") == 3
    assert contents(target) == before


def test_langchain_other_table_and_a_missing_column(tmp_path: Path,
                                                    target: SessionStore) -> None:
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    SQLChatMessageHistory(session_id="x", connection=url, table_name="chats").add_messages(
        _history(1))
    report = run_import(target, "langchain", url, table="chats")
    assert report.messages_imported == 5
    with pytest.raises(SourceError, match="no table 'message_store'"):
        run_import(target, "langchain", url)
    with sqlite3.connect(tmp_path / "chat.db") as db:
        db.execute("CREATE TABLE broken (id INTEGER, session_id TEXT)")
    with pytest.raises(SourceError, match="no column 'message'"):
        run_import(target, "langchain", url, table="broken")
    assert len(target.for_agent("langchain").get_history(
        target.list_all_sessions()[0].key, HistoryQuery())) == 5
