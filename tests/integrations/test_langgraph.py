"""The LangGraph checkpointer: LangGraph's own conformance suite (every base and extended
capability) on SQLite and PostgreSQL with both store flavours, an agent graph with a tool that
resumes in a new process and shows in the console, the transcript, and what deleting, resetting
and erasing a session does to its checkpoints."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from aisopod_session import (
    AccessDeniedError,
    AsyncSessionStore,
    InvalidInputError,
    Role,
    SessionKey,
    SessionStore,
    StoreClosedError,
)
from aisopod_session.integrations.langgraph import AisopodSaver, key_for_thread, thread_id_for_key
from aisopod_session.service import BackgroundService, ServiceConfig
from tests.conftest import (
    PG_URL,
    SERVICE_ADMIN_TOKEN,
    SERVICE_CONFIG_TOKENS,
    drop_pg_schema,
    pg_available,
)

from . import langgraph_agent as agent

AGENT_SCRIPT = Path(__file__).with_name("langgraph_agent.py")


# --- LangGraph's conformance suite ----------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_langgraph_conformance_suite(backend: str, flavour: str, tmp_path: Path) -> None:
    if backend == "postgres":
        pg_available()
    schemas: list[str] = []

    async def open_store() -> Any:
        if backend == "postgres":
            schemas.append(f"t_{uuid.uuid4().hex[:12]}")
            url, options = PG_URL, {"schema": schemas[-1], "pool_size": 2}
        else:
            url, options = str(tmp_path / f"{uuid.uuid4().hex}.db"), {}
        if flavour == "async":
            return await AsyncSessionStore.open(url, **options)
        return SessionStore.open(url, **options)

    @checkpointer_test(name=f"AisopodSaver-{backend}-{flavour}")
    async def saver() -> AsyncGenerator[AisopodSaver, None]:
        store = await open_store()  # a fresh database for each capability's suite
        yield AisopodSaver(store)
        await store.close() if flavour == "async" else store.close()

    try:
        report = asyncio.run(validate(saver))
    finally:
        for schema in schemas:
            drop_pg_schema(schema)
    failures = {name: [str(f)[:300] for f in result.failures]
                for name, result in report.results.items() if not result.passed}
    assert failures == {}
    assert {name for name, result in report.results.items()
            if result.detected and result.passed} == {c.value for c in ALL_CAPABILITIES}
    assert report.passed_all()


# --- an agent graph with a tool --------------------------------------------------------------


def _phase(url: str, options: dict[str, Any], phase: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(AGENT_SCRIPT), url, json.dumps(options), phase],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_an_agent_graph_resumes_in_a_new_process_and_shows_in_the_console(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    url, options = backend_url
    first = _phase(url, options, "first")  # stops before the tool runs; the process ends
    assert first == {"next": ["tools"], "messages": 2}
    second = _phase(url, options, "second")  # another process picks the thread up
    assert second == {"before": {"next": ["tools"], "messages": 2},
                      "answer": "It is sunny in Paris.", "types": ["human", "ai", "tool", "ai"]}

    key = key_for_thread(agent.THREAD)
    with SessionStore.open(url, **options) as store:
        history = store.for_agent("langgraph").get_history(key)
        session_id = store.for_agent("langgraph").get(key).id
    assert [m.role for m in history] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert [m.content["data"]["content"] for m in history] == [
        "What is the weather in Paris?", "", "Sunny in Paris.", "It is sunny in Paris."]
    assert history[1].content["data"]["tool_calls"][0]["id"] == "call-1"
    assert len({m.external_id for m in history}) == 4  # each message once, over 6 checkpoints

    config = ServiceConfig.model_validate({"tokens": SERVICE_CONFIG_TOKENS})
    with BackgroundService.over(url, config, **options) as service:
        with httpx.Client(base_url=service.url, follow_redirects=True) as client:
            assert client.post("/console/login", data={"token": SERVICE_ADMIN_TOKEN,
                                                       "next": ""}).status_code == 200
            page = client.get(f"/console/sessions/{session_id}")
            assert page.status_code == 200
            for text in ("What is the weather in Paris?", "get_weather", "Sunny in Paris.",
                         "It is sunny in Paris."):
                assert text in page.text
        with SessionStore.open(service.url, token=SERVICE_ADMIN_TOKEN) as remote:
            assert remote.for_agent("langgraph").get_history(key) == history
            with pytest.raises(InvalidInputError, match="store"):
                AisopodSaver(remote)  # a service's store holds no checkpoint tables


# --- the transcript and the session's life -----------------------------------------------


def _turn(saver: AisopodSaver, thread: str, text: str, reply: str) -> Any:
    graph = agent.build(saver, [AIMessage(reply, id=f"a-{uuid.uuid4().hex}")], interrupt=False)
    return graph.invoke({"messages": [HumanMessage(text, id=f"h-{uuid.uuid4().hex}")]},
                        {"configurable": {"thread_id": thread}})


def test_each_message_reaches_the_transcript_once(tmp_path: Path) -> None:
    path = tmp_path / "graph.db"
    with AisopodSaver.from_url(path) as saver:
        _turn(saver, "t", "one", "first answer")
        _turn(saver, "t", "two", "second answer")
    with AisopodSaver.from_url(path) as saver:  # a new saver remembers nothing: no repeats
        _turn(saver, "t", "three", "third answer")
        state = agent.build(saver, []).get_state({"configurable": {"thread_id": "t"}})
    with SessionStore.open(str(path)) as store:
        texts = [m.content["data"]["content"]
                 for m in store.for_agent("langgraph").get_history(key_for_thread("t"))]
    assert texts == ["one", "first answer", "two", "second answer", "three", "third answer"]
    assert [m.content for m in state.values["messages"]] == texts


def test_without_a_messages_channel_nothing_is_transcribed(tmp_path: Path) -> None:
    with AisopodSaver.from_url(tmp_path / "g.db", messages_channel=None) as saver:
        _turn(saver, "t", "one", "answer")
        with SessionStore.open(str(tmp_path / "g.db")) as store:
            assert store.for_agent("langgraph").get_history(key_for_thread("t")) == []
        assert saver.get_tuple({"configurable": {"thread_id": "t"}}) is not None


def _rows(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as db:
        return (db.execute("SELECT count(*) FROM checkpoints").fetchone()[0],
                db.execute("SELECT count(*) FROM checkpoint_writes").fetchone()[0])


def test_erasing_a_person_removes_their_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "people.db"

    def dm(thread: str) -> SessionKey:  # threads are people's Telegram DMs with the agent
        return SessionKey("support", "telegram", "default", "dm", thread)

    with AisopodSaver.from_url(path, agent_id="support", thread_key=dm) as saver:
        _turn(saver, "4242", "hello", "hi there")
        _turn(saver, "7777", "hello", "hi")
        assert _rows(path)[0] > 0
        with SessionStore.open(str(path)) as store:
            result = store.forget_peer("telegram", "4242")
            assert result.sessions == 1
        assert saver.get_tuple({"configurable": {"thread_id": "4242"}}) is None
        assert [t.config["configurable"]["thread_id"] for t in saver.list(None)][:1] == ["7777"]
        assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"7777"}
    with sqlite3.connect(path) as db:
        left = db.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()
        orphans = db.execute("SELECT count(*) FROM checkpoint_writes WHERE session_id NOT IN "
                             "(SELECT id FROM sessions)").fetchone()[0]
    assert left == [("7777",)] and orphans == 0

    with AisopodSaver.from_url(path) as saver:  # the default keys: the thread id is the peer
        _turn(saver, "ann@example.org", "hello", "hi")
        with SessionStore.open(str(path)) as store:
            store.forget_peer("langgraph", "ann@example.org")
        assert saver.get_tuple({"configurable": {"thread_id": "ann@example.org"}}) is None
    with pytest.raises(AccessDeniedError), AisopodSaver.from_url(path, thread_key=dm) as other:
        other.get_tuple({"configurable": {"thread_id": "1"}})  # keys of another agent


def _count(url: str, options: dict[str, Any], sql: str) -> int:
    """A count straight from the database (rows no API shows: archived generations')."""
    if not options:
        with sqlite3.connect(url) as db:
            return int(db.execute(sql).fetchone()[0])
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{options["schema"]}"')
        row = db.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_deleting_or_resetting_the_session_takes_its_checkpoints(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    url, options = backend_url
    config: Any = {"configurable": {"thread_id": "t"}}
    with (AisopodSaver.from_url(url, **options) as saver,
          SessionStore.open(url, **options) as store):
        handle = store.for_agent("langgraph")

        _turn(saver, "t", "one", "answer")
        _turn(saver, "other", "one", "answer")
        assert len(list(saver.list(config))) == 3
        handle.reset(key_for_thread("t"))  # archived: its graph state goes, the transcript stays
        assert saver.get_tuple(config) is None and list(saver.list(config)) == []
        # the archived generation's own rows: no checkpoint left, its transcript kept
        assert _count(url, options, "SELECT count(*) FROM checkpoints WHERE thread_id = 't'") == 0
        assert _count(url, options, "SELECT count(*) FROM messages JOIN sessions ON sessions.id "
                      "= messages.session_id WHERE status = 'archived'") == 2
        _turn(saver, "t", "two", "answer two")
        assert [m.content for m in saver.get_tuple(config).checkpoint["channel_values"][
            "messages"]] == ["two", "answer two"]
        handle.delete(key_for_thread("t"))  # every generation, checkpoints and all
        assert saver.get_tuple(config) is None
        assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {"other"}
        _turn(saver, "t", "three", "answer three")
        saver.delete_thread("t")  # the thread's deletion is the session's
        assert [s.key for s in handle.list()] == [key_for_thread("other")]
        saver.delete_thread("other")
        assert list(saver.list(None)) == []
    assert _count(url, options, "SELECT count(*) FROM checkpoints") == 0  # archived ones too
    assert _count(url, options, "SELECT count(*) FROM checkpoint_writes") == 0


def test_thread_ids_map_to_keys_reversibly() -> None:
    for thread in ("plain", "with space", "50%", "ünïcode"):
        assert thread_id_for_key(key_for_thread(thread)) == thread
        assert key_for_thread(thread).channel == "langgraph"


def test_asyncio_graphs_on_an_async_store(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url

    async def main() -> list[str]:
        store = await AsyncSessionStore.open(url, **options)
        async with AisopodSaver(store, agent_id="async-bot") as saver:
            graph = agent.build(saver, [agent.CALL, agent.ANSWER], interrupt=False)
            result = await graph.ainvoke({"messages": [agent.QUESTION]}, agent.CONFIG)
            listed = [t async for t in saver.alist(agent.CONFIG, limit=2)]
            newest = await saver.aget_tuple(agent.CONFIG)
            assert len(listed) == 2 and newest is not None
            assert listed[0].checkpoint["id"] == newest.checkpoint["id"]
            # blocking calls on the asyncio store, from inside the event loop, work too
            assert saver.get_tuple(agent.CONFIG) is not None
        assert not saver.owns_store
        history = await store.for_agent("async-bot").get_history(
            key_for_thread(agent.THREAD, "async-bot"))
        await store.close()
        assert len(history) == 4
        return [m.type for m in result["messages"]]

    assert asyncio.run(main()) == ["human", "ai", "tool", "ai"]


def test_closing_and_bad_input(tmp_path: Path) -> None:
    saver = AisopodSaver.from_url(tmp_path / "c.db")
    assert saver.owns_store
    saver.close()
    saver.close()
    with pytest.raises(StoreClosedError):
        saver.get_tuple({"configurable": {"thread_id": "t"}})
    with AisopodSaver.from_url(":memory:") as memory:
        with pytest.raises(InvalidInputError, match="config"):
            memory.get_tuple({"configurable": {}})
        with pytest.raises(InvalidInputError, match="strategy"):
            memory.prune(["t"], strategy="everything")
    with pytest.raises(InvalidInputError, match="store"):
        AisopodSaver("sqlite:///x.db")  # type: ignore[arg-type]


def test_a_thread_reset_elsewhere_gets_its_transcript_again(tmp_path: Path) -> None:
    """The saver remembers what it wrote to a thread's transcript only while the thread has
    checkpoints: the same messages put into the thread after a reset are written again."""
    path = tmp_path / "again.db"
    config: Any = {"configurable": {"thread_id": "t"}}
    messages = [HumanMessage("kept", id="h-1"), AIMessage("also kept", id="a-1")]
    with AisopodSaver.from_url(path) as saver, SessionStore.open(str(path)) as store:
        graph = agent.build(saver, [], interrupt=False)
        handle = store.for_agent("langgraph")
        graph.update_state(config, {"messages": messages}, as_node="agent")
        handle.reset(key_for_thread("t"))  # by an operator, not through the saver
        graph.update_state(config, {"messages": messages}, as_node="agent")
        history = handle.get_history(key_for_thread("t"))
    assert [m.external_id for m in history] == ["lg:h-1", "lg:a-1"]
