"""The Google ADK session service on aisopod-session, side by side with ADK's own services.

Every scenario runs against ADK's ``InMemorySessionService`` (the reference) and against
``AisopodSessionService`` on SQLite and PostgreSQL with both store flavours, and the results must
be equal: sessions, events, merged state, errors. Stale-session protection, which the in-memory
service does not have, is compared with ADK's persistent ``SqliteSessionService``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.adk.agents import LlmAgent
from google.adk.cli.service_registry import ServiceRegistry
from google.adk.errors import StaleSessionError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event, EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService, Session
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types
from pydantic import Field

from aisopod_session import (
    InvalidInputError,
    SessionFilter,
    SessionKey,
    SessionStore,
    StoreClosedError,
)
from aisopod_session.integrations import adk as adk_module
from aisopod_session.integrations.adk import (
    AisopodSessionService,
    adk_ids,
    app_state_key,
    register_adk_services,
    session_key,
    user_state_key,
)

APP = "weather_app"
T0 = 1_700_000_000.0

Scenario = Callable[[BaseSessionService], Awaitable[list[Any]]]


CLOCK = [T0]


def _deterministic() -> None:
    """Same clock and ids for both services: each run sees the same times and uuids. The clock
    moves only when a scenario says so (:func:`tick`)."""
    ids = itertools.count()
    CLOCK[0] = T0
    platform_time.set_time_provider(lambda: CLOCK[0])
    platform_uuid.set_id_provider(lambda: f"generated-{next(ids)}")


def tick() -> None:
    CLOCK[0] += 0.5


def _view(value: Any) -> Any:
    """A comparable form of what a service returned."""
    if isinstance(value, Session):
        return value.model_dump()
    if value is None or isinstance(value, dict | list | str | int | float):
        return value
    if hasattr(value, "sessions"):  # ListSessionsResponse
        return [_view(s) for s in value.sessions]
    if isinstance(value, Event):
        return value.model_dump()
    raise AssertionError(f"unexpected {value!r}")


async def _attempt(log: list[Any], step: Awaitable[Any]) -> Any:
    try:
        result = await step
    except Exception as exc:  # the error's type is part of the behaviour compared
        log.append(("raised", type(exc).__name__))
        return None
    log.append(_view(result))
    return result


def both(scenario: Scenario, store: Any) -> tuple[list[Any], list[Any]]:
    async def run(service: BaseSessionService) -> list[Any]:
        _deterministic()
        return await scenario(service)

    return asyncio.run(run(InMemorySessionService())), asyncio.run(
        run(AisopodSessionService(store)))


def event(author: str, text: str, at: float, *, delta: dict[str, Any] | None = None,
          event_id: str | None = None, partial: bool | None = None) -> Event:
    return Event(
        id=event_id or f"ev-{text}", invocation_id="inv-1", author=author, timestamp=at,
        partial=partial,
        content=types.Content(role="user" if author == "user" else "model",
                              parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
    )


def tool_events(at: float) -> list[Event]:
    call = types.FunctionCall(id="call-1", name="get_weather", args={"city": "Paris"})
    response = types.FunctionResponse(id="call-1", name="get_weather",
                                      response={"result": "sunny", "degrees": 21.5})
    return [
        Event(id="ev-call", invocation_id="inv-2", author="agent", timestamp=at,
              content=types.Content(role="model", parts=[types.Part(function_call=call)])),
        Event(id="ev-response", invocation_id="inv-2", author="agent", timestamp=at + 1,
              content=types.Content(role="user", parts=[types.Part(function_response=response)]),
              actions=EventActions(state_delta={"last_city": "Paris", "temp:scratch": [1]})),
        Event(id="ev-image", invocation_id="inv-2", author="agent", timestamp=at + 2,
              content=types.Content(role="model", parts=[
                  types.Part(inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG\0\xff")),
                  types.Part(text="here", thought=True, thought_signature=b"\x01\x02"),
              ])),
    ]


# --- scenarios ----------------------------------------------------------------------------------


async def create_and_get(service: BaseSessionService) -> list[Any]:
    log: list[Any] = []
    state = {"topic": "weather", "app:units": "metric", "user:name": "Ada", "temp:draft": 1,
             "nested": {"a": [1, 2.5, None, True]}, "none": None}
    tick()
    await _attempt(log, service.create_session(app_name=APP, user_id="u1", state=state,
                                               session_id="  s1  "))
    tick()
    await _attempt(log, service.create_session(app_name=APP, user_id="u1", session_id="s1"))
    tick()
    await _attempt(log, service.create_session(app_name=APP, user_id="u1"))  # generated id
    tick()
    await _attempt(log, service.create_session(app_name=APP, user_id="u1", session_id=""))
    tick()
    await _attempt(log, service.create_session(app_name=APP, user_id="U1", session_id="s1"))
    tick()
    await _attempt(log, service.create_session(app_name="Other App", user_id="u1",
                                               session_id="s1", state={"app:units": "imperial"}))
    for app, user, sid in ((APP, "u1", "s1"), (APP, "u1", " s1 "), (APP, "u1", "nope"),
                           (APP, "nobody", "s1"), ("no_app", "u1", "s1"), (APP, "U1", "s1"),
                           ("Other App", "u1", "s1")):
        await _attempt(log, service.get_session(app_name=app, user_id=user, session_id=sid))
    await _attempt(log, service.get_user_state(app_name=APP, user_id="u1"))
    await _attempt(log, service.get_user_state(app_name=APP, user_id="u2"))
    return log


async def events_and_state(service: BaseSessionService) -> list[Any]:
    log: list[Any] = []
    tick()
    s1 = await service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                      state={"count": 0, "user:lang": "en"})
    tick()
    s2 = await service.create_session(app_name=APP, user_id="u1", session_id="s2")
    tick()
    other = await service.create_session(app_name=APP, user_id="u2", session_id="s3")
    stream = [
        event("user", "hello", T0 + 10, delta={"count": 1}),
        event("agent", "partial", T0 + 11, partial=True, delta={"count": 99}),
        event("agent", "hi", T0 + 12, delta={"count": 2, "app:motd": "sun", "user:lang": "fr",
                                             "temp:t": "x", "gone": None}),
        *tool_events(T0 + 13),
    ]
    for one in stream:
        await _attempt(log, service.append_event(s1, one))
        log.append(_view(s1))  # the in-memory session after each append, temp state included
    await _attempt(log, service.append_event(s1, stream[0]))  # an equal event again
    twin = event("user", "hello", T0 + 30, delta={"count": 5})  # same id, different event
    await _attempt(log, service.append_event(s1, twin))
    await _attempt(log, service.append_event(s2, event("user", "second", T0 + 31,
                                                       delta={"user:seen": True})))
    await _attempt(log, service.append_event(other, event("user", "third", T0 + 32,
                                                          delta={"app:motd": "rain"})))
    for user, sid in (("u1", "s1"), ("u1", "s2"), ("u2", "s3")):
        await _attempt(log, service.get_session(app_name=APP, user_id=user, session_id=sid))
    await _attempt(log, service.get_user_state(app_name=APP, user_id="u1"))
    return log


async def get_session_config(service: BaseSessionService) -> list[Any]:
    log: list[Any] = []
    tick()
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    for index in range(8):
        await service.append_event(session, event("user", f"m{index}", T0 + 100 + index * 0.25))
    configs = [GetSessionConfig()] + [
        GetSessionConfig(num_recent_events=n) for n in (0, 1, 3, 8, 50)
    ] + [
        GetSessionConfig(after_timestamp=t)
        for t in (T0, T0 + 100, T0 + 100.5, T0 + 100.6, T0 + 101.75, T0 + 101.7500001, T0 + 500)
    ] + [
        GetSessionConfig(num_recent_events=n, after_timestamp=t)
        for n, t in ((2, T0 + 100.5), (5, T0 + 101), (1, T0 + 500), (0, T0))
    ]
    for config in configs:
        await _attempt(log, service.get_session(app_name=APP, user_id="u1", session_id="s1",
                                                config=config))
    with pytest.raises(ValueError, match="num_recent_events"):
        GetSessionConfig(num_recent_events=-1)
    return log


async def listing_and_deleting(service: BaseSessionService) -> list[Any]:
    log: list[Any] = []
    sessions = {}
    for user, sid in (("u1", "a"), ("u2", "b"), ("u1", "c"), ("User 3", "d")):
        tick()
        sessions[sid] = await service.create_session(
            app_name=APP, user_id=user, session_id=sid, state={f"user:{sid}": 1, "app:n": sid})
    tick()
    await service.create_session(app_name="other_app", user_id="u1", session_id="z")
    await service.append_event(sessions["a"], event("user", "bump", T0 + 1000))  # a: newest
    for user in ("u1", "u2", None, "nobody"):
        await _attempt(log, service.list_sessions(app_name=APP, user_id=user))
    await _attempt(log, service.list_sessions(app_name="no_app"))
    await _attempt(log, service.delete_session(app_name=APP, user_id="u1", session_id=" a "))
    await _attempt(log, service.delete_session(app_name=APP, user_id="u1", session_id="a"))
    await _attempt(log, service.delete_session(app_name=APP, user_id="u9", session_id="b"))
    await _attempt(log, service.get_session(app_name=APP, user_id="u1", session_id="a"))
    await _attempt(log, service.list_sessions(app_name=APP))
    await _attempt(log, service.append_event(sessions["a"], event("user", "late", T0 + 2000)))
    # user state outlives the user's sessions, as in ADK
    await _attempt(log, service.get_user_state(app_name=APP, user_id="u1"))
    tick()
    await _attempt(log, service.create_session(app_name=APP, user_id="u1", session_id="a"))
    return log


@pytest.mark.parametrize(
    "scenario", [create_and_get, events_and_state, get_session_config, listing_and_deleting],
    ids=lambda s: s.__name__,
)
def test_same_behaviour_as_adks_in_memory_service(scenario: Scenario, every_store: Any) -> None:
    reference, ours = both(scenario, every_store)
    assert ours == reference


def test_temp_state_is_never_stored(sync_store: SessionStore) -> None:
    async def scenario() -> None:
        service = AisopodSessionService(sync_store)
        tick()
        session = await service.create_session(app_name=APP, user_id="u", session_id="s",
                                               state={"temp:a": 1})
        await service.append_event(session, event("user", "x", T0, delta={"temp:b": 2, "k": 3}))
        assert session.state["temp:b"] == 2  # visible for the rest of the invocation
        assert "temp:b" not in session.events[-1].actions.state_delta
        again = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert again is not None and again.state == {"k": 3}
        assert again.events[-1].actions.state_delta == {"k": 3}

    asyncio.run(scenario())
    rows = sync_store.list_all_sessions(SessionFilter(limit=100))
    for row in rows:
        assert "temp:" not in str(sync_store.get_session_by_id(row.id).metadata)
        assert "temp:" not in str(sync_store.get_history_by_id(row.id))


# --- stale sessions -----------------------------------------------------------------------------


async def stale_copies(service: BaseSessionService) -> list[Any]:
    log: list[Any] = []
    tick()
    created = await service.create_session(app_name=APP, user_id="u", session_id="s")
    first = await service.get_session(app_name=APP, user_id="u", session_id="s")
    second = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert first is not None and second is not None
    await _attempt(log, service.append_event(first, event("user", "one", T0 + 10)))
    await _attempt(log, service.append_event(second, event("user", "two", T0 + 11)))
    await _attempt(log, service.append_event(created, event("user", "three", T0 + 12)))
    await _attempt(log, service.append_event(first, event("user", "four", T0 + 13)))
    fresh = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert fresh is not None
    await _attempt(log, service.append_event(fresh, event("user", "five", T0 + 14)))
    final = await service.get_session(app_name=APP, user_id="u", session_id="s")
    assert final is not None
    log.append([e.id for e in final.events])
    return log


def test_stale_sessions_raise_as_in_adks_persistent_service(
    real_store: Any, tmp_path: Path
) -> None:
    async def run(service: BaseSessionService) -> list[Any]:
        _deterministic()
        return await stale_copies(service)

    reference = asyncio.run(run(SqliteSessionService(str(tmp_path / "adk.db"))))
    ours = asyncio.run(run(AisopodSessionService(real_store)))
    assert ours == reference
    assert [entry for entry in ours if isinstance(entry, tuple)] == [
        ("raised", "StaleSessionError")] * 2


def test_stale_across_two_stores_on_one_database(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url

    async def scenario() -> None:
        with SessionStore.open(url, **options) as one, SessionStore.open(url, **options) as two:
            replica_a, replica_b = AisopodSessionService(one), AisopodSessionService(two)
            await replica_a.create_session(app_name=APP, user_id="u", session_id="s")
            seen_a = await replica_a.get_session(app_name=APP, user_id="u", session_id="s")
            seen_b = await replica_b.get_session(app_name=APP, user_id="u", session_id="s")
            assert seen_a is not None and seen_b is not None
            await replica_b.append_event(seen_b, event("user", "b", T0 + 1))
            with pytest.raises(StaleSessionError):
                await replica_a.append_event(seen_a, event("user", "a", T0 + 2))
            # nothing of the refused event was stored, and a fresh read can append
            fresh = await replica_a.get_session(app_name=APP, user_id="u", session_id="s")
            assert fresh is not None and [e.id for e in fresh.events] == ["ev-b"]
            await replica_a.append_event(fresh, event("user", "a", T0 + 2))

    asyncio.run(scenario())


def test_a_session_object_without_a_revision_marker(sync_store: SessionStore) -> None:
    """Hand-built sessions: stale only if storage moved on past the session's newest event
    (ADK's DatabaseSessionService rule)."""

    async def scenario() -> None:
        service = AisopodSessionService(sync_store)
        tick()
        await service.create_session(app_name=APP, user_id="u", session_id="s")
        stored = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert stored is not None
        await service.append_event(stored, event("user", "one", T0 + 10))
        behind = Session(app_name=APP, user_id="u", id="s", last_update_time=T0)
        with pytest.raises(StaleSessionError):
            await service.append_event(behind, event("user", "two", T0 + 11))
        caught_up = Session(app_name=APP, user_id="u", id="s", last_update_time=T0,
                            events=[event("user", "one", T0 + 10)])
        await service.append_event(caught_up, event("user", "two", T0 + 11))
        ahead = Session(app_name=APP, user_id="u", id="s", last_update_time=T0 + 50)
        await service.append_event(ahead, event("user", "three", T0 + 12))
        with pytest.raises(SessionNotFoundError):
            await service.append_event(
                Session(app_name=APP, user_id="u", id="missing"), event("user", "x", T0))
        final = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert final is not None and [e.id for e in final.events] == [
            "ev-one", "ev-two", "ev-three"]

    asyncio.run(scenario())


# --- keys, atomicity, listing underneath --------------------------------------------------------


@pytest.mark.parametrize(("app", "user", "sid"), [
    ("weather_app", "u1", "5f0c-uuid"), ("My App", "User@Example.com", "Session A"),
    ("app", "ユーザー", "e\u0301"), ("a%b", "%41", "%41"), ("x.y-z", "*", "tab\tid"),
])
def test_adk_ids_map_to_keys_reversibly(app: str, user: str, sid: str) -> None:
    key = session_key(app, user, sid)
    assert adk_ids(key) == (app, user, sid)
    assert SessionKey.parse(key.canonical()) == key
    assert key.channel == "adk"
    assert app_state_key(app).agent_id == user_state_key(app, user).agent_id == key.agent_id
    assert user_state_key(app, user) != app_state_key(app)
    assert session_key(app.upper() if app != app.upper() else app.lower(), user, sid) != key


def test_an_event_and_its_state_deltas_are_stored_together_or_not_at_all(
    sync_store: SessionStore,
) -> None:
    async def scenario() -> None:
        service = AisopodSessionService(sync_store)
        tick()
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        too_big = event("user", "big", T0 + 1,
                        delta={"app:a": 1, "user:b": 2, "huge": "x" * 70_000})
        with pytest.raises(InvalidInputError, match="metadata"):
            await service.append_event(session, too_big)
        again = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert again is not None and again.events == [] and again.state == {}
        assert await service.get_user_state(app_name=APP, user_id="u") == {}

    asyncio.run(scenario())


def test_list_sessions_pages_underneath(
    sync_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adk_module, "_PAGE", 10)  # pages of 10 instead of 1,000
    reads: list[SessionFilter] = []

    async def scenario() -> list[str]:
        service = AisopodSessionService(sync_store)
        for index in range(35):
            tick()
            await service.create_session(app_name=APP, user_id=f"u{index % 3}",
                                         session_id=f"s{index:04d}",
                                         state={f"user:n{index % 3}": index})
        calls = service._calls(APP)
        original = calls.call

        async def spy(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "list_detailed":
                reads.append(args[0])
            return await original(name, *args, **kwargs)

        calls.call = spy  # type: ignore[method-assign]
        listed = await service.list_sessions(app_name=APP, user_id="u1")
        assert len(reads) == 2  # 12 sessions: two pages of at most 10
        everyone = await service.list_sessions(app_name=APP)
        assert len(everyone.sessions) == 35
        assert {s.state[f"user:n{int(s.user_id[1])}"] for s in everyone.sessions} == {
            32, 33, 34}
        return [s.id for s in listed.sessions]

    _deterministic()
    ids = asyncio.run(scenario())
    assert ids == [f"s{i:04d}" for i in range(35) if i % 3 == 1]  # creation order = time order
    assert all(f.limit == 10 for f in reads)
    assert len(reads) == 2 + 4 + 1  # one user's 12; all 35; the 3 user-state sessions


# --- with ADK's Runner --------------------------------------------------------------------------


class ScriptedLlm(BaseLlm):
    """Canned model turns: a tool call, then a text answer, per user message."""

    model: str = "scripted"
    turns: list[list[types.Part]] = Field(default_factory=list)
    requests: list[list[types.Content]] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(list(llm_request.contents))
        parts = self.turns.pop(0)
        yield LlmResponse(content=types.Content(role="model", parts=parts))


def get_weather(city: str) -> dict[str, Any]:
    """The weather in a city."""
    return {"city": city, "weather": "sunny"}


def _runner_conversation(service: BaseSessionService) -> tuple[list[Any], list[Any]]:
    async def run() -> tuple[list[Any], list[Any]]:
        _deterministic()
        llm = ScriptedLlm(turns=[
            [types.Part(function_call=types.FunctionCall(id="c1", name="get_weather",
                                                         args={"city": "Paris"}))],
            [types.Part(text="Sunny in Paris.")],
            [types.Part(text="You asked about Paris.")],
        ], requests=[])
        agent = LlmAgent(name="weather", model=llm, tools=[get_weather],
                         output_key="last_answer")
        runner = Runner(app_name=APP, agent=agent, session_service=service)
        tick()
        await service.create_session(app_name=APP, user_id="u", session_id="s",
                                     state={"user:name": "Ada"})
        texts = []
        for message in ("Weather in Paris?", "What did I ask?"):
            async for produced in runner.run_async(
                user_id="u", session_id="s",
                new_message=types.Content(role="user", parts=[types.Part(text=message)]),
            ):
                if produced.content and produced.content.parts and produced.content.parts[0].text:
                    texts.append(produced.content.parts[0].text)
        session = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert session is not None
        requests = [[c.model_dump(exclude_none=True) for c in r] for r in llm.requests]
        return [texts, session.state, [(e.author, e.content.model_dump(exclude_none=True)
                                        if e.content else None) for e in session.events]], requests

    return asyncio.run(run())


def test_adk_runner_conversation_matches_the_in_memory_service(real_store: Any) -> None:
    reference = _runner_conversation(InMemorySessionService())
    ours = _runner_conversation(AisopodSessionService(real_store))
    assert ours == reference
    (texts, state, events), requests = ours
    assert texts[-1] == "You asked about Paris."
    assert state["last_answer"] == "You asked about Paris." and state["user:name"] == "Ada"
    assert len(events) == 6  # user, call, response, answer; user, answer
    assert len(requests[-1]) == 5  # the last model call saw the whole stored conversation


# --- built from a URL, owning its store; ADK's service registry ---------------------------------


def test_from_url_owns_its_store_and_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "adk.db"

    async def main() -> None:
        async with AisopodSessionService.from_url(f"sqlite:///{path}") as service:
            assert service.owns_store
            await service.create_session(app_name="app", user_id="u", session_id="s",
                                         state={"k": 1})
        with pytest.raises(StoreClosedError):
            await service.get_session(app_name="app", user_id="u", session_id="s")
        await service.close()  # twice is fine
        again = AisopodSessionService.from_url(path)
        found = await again.get_session(app_name="app", user_id="u", session_id="s")
        assert found is not None and found.state == {"k": 1}
        await again.close()

    asyncio.run(main())


def test_a_shared_store_stays_open(sync_store: SessionStore) -> None:
    async def main() -> None:
        async with AisopodSessionService(sync_store) as service:
            assert not service.owns_store
            await service.create_session(app_name="app", user_id="u", session_id="s")
        other = AisopodSessionService(sync_store)
        assert await other.get_session(app_name="app", user_id="u", session_id="s") is not None

    asyncio.run(main())
    with pytest.raises(InvalidInputError, match="store"):
        AisopodSessionService("sqlite:///x.db")  # type: ignore[arg-type]


def test_adks_registry_resolves_the_aisopod_schemes(
    backend_url: tuple[str, dict[str, Any]], tmp_path: Path,
) -> None:
    registry = ServiceRegistry()
    register_adk_services(registry)
    url, options = backend_url
    uri = url if "://" in url else f"sqlite:///{url}"
    service = registry.create_session_service(f"aisopod+{uri}", agents_dir=str(tmp_path),
                                              **options)
    assert isinstance(service, AisopodSessionService) and service.owns_store

    async def main() -> None:
        await service.create_session(app_name="app", user_id="u", session_id="via-registry")
        await service.close()

    asyncio.run(main())
    with SessionStore.open(url, **options) as store:
        assert store.for_agent("app").get(adk_module.session_key("app", "u", "via-registry"))
    with pytest.raises(InvalidInputError, match="session_db_kwargs"):
        registry.create_session_service(f"aisopod+{uri}", echo=True)
    with pytest.raises(InvalidInputError, match="session_service_uri"):
        adk_module.store_url("sqlite:///plain.db")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_adk_web_accepts_the_aisopod_session_service_uri(tmp_path: Path) -> None:
    """``adk web --session_service_uri aisopod+sqlite:///…`` (ADK's own command, offline), with
    the schemes registered by the agents folder's services.py: a session created through its
    HTTP API is in the store."""
    agents = tmp_path / "agents"
    (agents / "helper").mkdir(parents=True)
    (agents / "helper" / "__init__.py").write_text("from . import agent\n")
    (agents / "helper" / "agent.py").write_text(
        "from google.adk.agents import LlmAgent\n"
        "root_agent = LlmAgent(name='helper', model='gemini-2.0-flash')\n")
    (agents / "services.py").write_text(
        "from aisopod_session.integrations.adk import register_adk_services\n"
        "register_adk_services()\n")
    database = tmp_path / "web.db"
    port = _free_port()
    adk = Path(sys.executable).with_name("adk")
    server = subprocess.Popen(
        [str(adk), "web", "--port", str(port), "--session_service_uri",
         f"aisopod+sqlite:///{database}", str(agents)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/apps/helper/users/ann/sessions"
        answer = None
        for _ in range(600):  # until the server listens (a minute at most)
            if server.poll() is not None:
                break
            try:
                answer = httpx.post(url, json={"state": {"n": 1}}, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, (
            answer.text if answer is not None else "adk web did not start")
        session_id = answer.json()["id"]
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "DatabaseSessionService" not in output  # the registry resolved the scheme itself
    with SessionStore.open(str(database)) as store:
        stored = store.for_agent("helper").get(adk_module.session_key("helper", "ann", session_id))
        assert stored.metadata["state"] == {"n": 1}
