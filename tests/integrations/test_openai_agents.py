"""The OpenAI Agents SDK ``Session`` on aisopod-session, driven by the real SDK (a scripted model,
no network), on SQLite and PostgreSQL with both store flavours."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
from agents.memory import Session, SessionSettings
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from aisopod_session import (
    AccessDeniedError,
    HistoryQuery,
    InvalidInputError,
    SessionFilter,
    SessionKey,
    SessionStatus,
    SessionStore,
    StoreClosedError,
)
from aisopod_session.integrations.openai_agents import (
    PAIRING,
    AisopodSession,
    key_for_session_id,
    session_id_for_key,
)

from . import openai_agents_resume as resume

RESUME_SCRIPT = Path(__file__).with_name("openai_agents_resume.py")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def call(call_id: str, name: str = "lookup", kind: str = "function_call") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "name": name, "arguments": "{}",
            "id": f"fc-{call_id}"}


def output(call_id: str, kind: str = "function_call_output") -> dict[str, Any]:
    return {"type": kind, "call_id": call_id, "output": f"result of {call_id}"}


def reasoning(item_id: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": "t"}]}


def said(text: str, item_id: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "id": item_id, "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


EVERY_KIND = [
    {"role": "system", "content": "be brief"},
    {"role": "developer", "content": "tools first"},
    user("héllo ✓ 𝄞 \u2028 \x00 nul"),
    {"role": "user", "type": "message", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=",
         "detail": "auto"},
        {"type": "input_file", "file_data": "JVBERi0=", "filename": "a.pdf"},
    ]},
    {**reasoning("rs-1"), "encrypted_content": "gAAAA-opaque", "content": None},
    call("c1"),
    {"type": "function_call_output", "call_id": "c1", "output": [
        {"type": "input_text", "text": "structured"}, {"type": "input_image", "image_url": "x"},
    ]},
    {"type": "computer_call", "id": "cu-1", "call_id": "c2", "status": "completed",
     "action": {"type": "click", "x": 1, "y": 2, "button": "left"}, "pending_safety_checks": []},
    {"type": "computer_call_output", "call_id": "c2",
     "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AA=="}},
    {"type": "mcp_approval_request", "id": "ap-1", "server_label": "s", "name": "n",
     "arguments": "{\"a\": 1.5, \"b\": [true, null]}"},
    {"type": "mcp_approval_response", "approval_request_id": "ap-1", "approve": True},
    said("done", "msg-1"),
    {"type": "item_reference", "id": "ref-1"},
]


def test_the_session_satisfies_the_sdk_protocol(real_store: Any) -> None:
    session = AisopodSession("s", real_store)
    assert isinstance(session, Session)
    assert session.session_settings == SessionSettings()


def test_items_of_every_kind_round_trip_exactly(every_store: Any) -> None:
    session = AisopodSession("conversation-1", every_store, agent_id="bot")
    assert run(session.get_items()) == []
    run(session.add_items(EVERY_KIND[:5]))
    run(session.add_items(EVERY_KIND[5:]))
    back = run(session.get_items())
    assert back == EVERY_KIND
    assert [list(item) for item in back] == [list(item) for item in EVERY_KIND]  # key order too
    # ... and it is the store's own history: one message per item, roles as a gateway sees them
    handle = every_store.for_agent("bot")
    history = handle.get_history(session.key)
    if asyncio.iscoroutine(history):
        history = run(history)
    assert [m.content for m in history] == EVERY_KIND
    assert [m.role.value for m in history] == [
        "system", "system", "user", "user", "assistant", "assistant", "tool", "assistant",
        "tool", "assistant", "tool", "assistant", "assistant",
    ]


def _history() -> list[dict[str, Any]]:
    """A conversation with single, parallel and nested tool calls and reasoning items."""
    return [
        user("q1"), reasoning("r1"), call("a"), output("a"), said("a1", "m1"),
        user("q2"), reasoning("r2"), call("b"), call("c"), reasoning("r3"), call("d"),
        output("b"), output("c"), output("d"), said("a2", "m2"),
        user("q3"), call("e"), output("e"), call("f", kind="shell_call"),
        output("f", kind="shell_call_output"), said("a3", "m3"),
        user("q4"), call("g"), said("interleaved", "m4"), output("g"),
    ]


def _check_tail(tail: list[Any], history: list[Any], limit: int) -> None:
    assert tail == history[len(history) - len(tail):]  # a suffix, in order
    assert len(tail) >= min(limit, len(history))
    made = {i for item in tail for i in PAIRING.calls(item)}
    assert all(PAIRING.answers(item) in made for item in tail if PAIRING.answers(item))
    first = len(history) - len(tail)
    if first > 0:
        assert not PAIRING.leads(history[first - 1])  # a reasoning item stays with what follows
    plain = history[len(history) - limit:] if limit < len(history) else history
    plain_made = {i for item in plain for i in PAIRING.calls(item)}
    if all(PAIRING.answers(item) in plain_made for item in plain if PAIRING.answers(item)) and (
        len(plain) == len(history) or not PAIRING.leads(history[len(history) - len(plain) - 1])
    ):
        assert tail == plain  # widened only when it had to be


def test_a_limit_gives_exactly_the_newest_items_as_the_protocol_says(real_store: Any) -> None:
    history = _history()
    session = AisopodSession("exact", real_store)
    run(session.add_items(history))
    for limit in range(1, len(history) + 3):
        assert run(session.get_items(limit=limit)) == history[-limit:]
    assert run(session.get_items(limit=1)) == [output("g")]  # an orphan, as SQLiteSession gives
    assert run(session.get_items(limit=0)) == []
    assert run(session.get_items(limit=-1)) == history  # as SQLiteSession: negative = all


def test_pair_safe_widens_a_limit_so_no_call_loses_its_output(real_store: Any) -> None:
    history = _history()
    session = AisopodSession("long", real_store, pair_safe=True)
    run(session.add_items(history))
    for limit in range(1, len(history) + 3):
        _check_tail(run(session.get_items(limit=limit)), history, limit)
    assert run(session.get_items(limit=0)) == []
    assert run(session.get_items(limit=-1)) == history


def test_a_limit_reads_only_the_tail_of_a_long_history(real_store: Any) -> None:
    turn = [user("q"), call("x"), output("x"), said("a", "m")]
    items = []
    for index in range(300):
        items.extend({**item, "n": index} if "role" in item else
                     {**item, "call_id": f"{item['call_id']}{index}"} if "call_id" in item
                     else item for item in turn)
    for pair_safe, expected, windows in ((True, items[-3:], [10]), (False, items[-2:], [2])):
        session = AisopodSession(f"very-long-{pair_safe}", real_store, pair_safe=pair_safe)
        run(session.add_items(items))
        reads: list[int] = []
        handle = session._calls.handle
        original = handle.get_contents

        def counting(key: Any, query: Any, original: Any = original,
                     reads: list[int] = reads) -> Any:
            reads.append(query.limit if isinstance(query, HistoryQuery) else -1)
            return original(key, query)

        handle.get_contents = counting  # type: ignore[method-assign]
        try:
            assert run(session.get_items(limit=2)) == expected
        finally:
            del handle.get_contents
        assert reads == windows  # one read of the tail, not the 1,200-item history


def test_session_settings_limit_is_the_default(real_store: Any) -> None:
    history = _history()
    session = AisopodSession("settings", real_store, session_settings={"limit": 4})
    run(session.add_items(history))
    assert run(session.get_items()) == history[-4:] == run(session.get_items(limit=4))
    assert len(run(session.get_items(limit=100))) == len(history)


def test_pop_item_and_clear_session(real_store: Any) -> None:
    session = AisopodSession("pop", real_store)
    assert run(session.pop_item()) is None  # no session yet
    run(session.add_items([user("a"), call("c"), output("c")]))
    assert run(session.pop_item()) == output("c")
    assert run(session.get_items()) == [user("a"), call("c")]
    run(session.add_items([output("c")]))
    assert run(session.get_items(limit=1)) == [output("c")]
    run(session.clear_session())
    assert run(session.get_items()) == []
    assert run(session.pop_item()) is None
    run(session.clear_session())  # clearing nothing is fine
    run(session.add_items([user("again")]))
    assert run(session.get_items()) == [user("again")]


def test_clear_can_archive_instead(sync_store: SessionStore) -> None:
    session = AisopodSession("keep", sync_store, on_clear="archive")
    run(session.add_items([user("kept for operators")]))
    run(session.clear_session())
    assert run(session.get_items()) == []
    archived = list(sync_store.list_all_sessions(SessionFilter(status=SessionStatus.ARCHIVED)))
    assert len(archived) == 1
    assert [m.content for m in sync_store.get_history_by_id(archived[0].id)] == [
        user("kept for operators")]


def test_sessions_are_isolated(real_store: Any) -> None:
    alice = AisopodSession("alice", real_store, agent_id="bot")
    bob = AisopodSession("bob", real_store, agent_id="bot")
    other_bot = AisopodSession("alice", real_store, agent_id="other-bot")
    run(alice.add_items([user("alice's")]))
    run(bob.add_items([user("bob's")]))
    run(other_bot.add_items([user("other bot's alice")]))
    assert run(alice.get_items()) == [user("alice's")]
    assert run(bob.get_items()) == [user("bob's")]
    assert run(other_bot.get_items()) == [user("other bot's alice")]
    with pytest.raises(AccessDeniedError):
        AisopodSession(alice.key, real_store.for_agent("other-bot"))


def test_add_items_is_all_or_nothing(real_store: Any) -> None:
    session = AisopodSession("atomic", real_store)
    run(session.add_items([user("first")]))
    with pytest.raises(InvalidInputError):
        run(session.add_items([user("ok"), {"role": "user", "content": float("nan")}]))
    with pytest.raises(InvalidInputError):
        run(session.add_items([user("ok"), object()]))  # type: ignore[list-item]
    assert run(session.get_items()) == [user("first")]


def test_item_ids_deduplicate_only_when_asked(real_store: Any) -> None:
    plain = AisopodSession("plain", real_store)
    deduped = AisopodSession("deduped", real_store, dedupe_item_ids=True)
    batch = [user("q"), reasoning("rs-9"), call("c9"), output("c9"), said("a", "msg-9"),
             said("placeholder id", "__fake_id__")]
    for session in (plain, deduped):
        run(session.add_items(batch))
        run(session.add_items(batch))  # a retried write
    assert run(plain.get_items()) == batch + batch
    # items with a provider id are stored once; user input, outputs and placeholder ids twice
    assert run(deduped.get_items()) == [*batch, user("q"), output("c9"),
                                        said("placeholder id", "__fake_id__")]


@pytest.mark.parametrize("session_id", [
    "user-123", "User-123", "  spaced  ", "a%b", "with:colon/and slash", "Ünïcödé",
    "e\u0301", "tab\there", "💬",
])
def test_session_ids_map_to_keys_reversibly(session_id: str) -> None:
    key = key_for_session_id(session_id, "Support")
    assert key.agent_id == "support" and key.channel == "openai-agents"
    assert session_id_for_key(key) == session_id
    assert SessionKey.parse(key.canonical()) == key
    others = {"user-123", "User-123", "  spaced  ", "spaced", "a%25b", "e\u00e9", "é"} - {
        session_id}
    assert all(key_for_session_id(other, "support") != key for other in others)
    gateway = SessionKey("support", "discord", "bot-1", "dm", "1234")
    assert session_id_for_key(gateway) == gateway.canonical()


def test_a_gateway_key_can_be_used_directly(real_store: Any) -> None:
    gateway = SessionKey("support", "discord", "bot-1", "dm", "1234")
    session = AisopodSession(gateway, real_store)
    assert session.session_id == gateway.canonical() and session.key == gateway
    run(session.add_items([user("from discord")]))
    assert run(AisopodSession(gateway, real_store).get_items()) == [user("from discord")]


# --- with the SDK's Runner ----------------------------------------------------------------------


@function_tool
def add(a: int, b: int) -> str:
    """Add two numbers."""
    return str(a + b)


def _agent(model: ScriptedModel) -> Agent[Any]:
    return Agent(name="calc", instructions="Use the tool.", model=model, tools=[add])


def _tool_turn(call_id: str, a: int, b: int, text: str, msg_id: str) -> list[Any]:
    return [[function_call("add", {"a": a, "b": b}, call_id=call_id)],
            [assistant_message(text, item_id=msg_id)]]


def test_runner_run_run_sync_and_run_streamed_share_the_stored_conversation(
    every_store: Any,
) -> None:
    model = ScriptedModel([
        *_tool_turn("c1", 1, 2, "3", "m1"),
        *_tool_turn("c2", 3, 4, "7", "m2"),
        *_tool_turn("c3", 7, 1, "8", "m3"),
    ])
    session = AisopodSession("calc-1", every_store, agent_id="calc")
    reference = SQLiteSession("calc-1")  # the SDK's own store, fed the same turns
    ref_model = ScriptedModel([
        *_tool_turn("c1", 1, 2, "3", "m1"),
        *_tool_turn("c2", 3, 4, "7", "m2"),
        *_tool_turn("c3", 7, 1, "8", "m3"),
    ])

    assert Runner.run_sync(_agent(model), "1+2?", session=session).final_output == "3"
    Runner.run_sync(_agent(ref_model), "1+2?", session=reference)
    assert run(Runner.run(_agent(model), "3+4?", session=session)).final_output == "7"
    run(Runner.run(_agent(ref_model), "3+4?", session=reference))

    async def streamed(agent: Agent[Any], text: str, store_session: Any) -> Any:
        result = Runner.run_streamed(agent, text, session=store_session)
        async for _ in result.stream_events():
            pass
        return result.final_output

    assert run(streamed(_agent(model), "7+1?", session)) == "8"
    run(streamed(_agent(ref_model), "7+1?", reference))
    model.assert_complete()

    items = run(session.get_items())
    assert items == run(reference.get_items())  # exactly what the SDK's SQLiteSession holds
    assert len(items) == 12  # per turn: user, call, output, answer
    # every model call saw the whole conversation so far, exactly as the reference's did
    assert [c.input for c in model.calls] == [c.input for c in ref_model.calls]
    third_turn = model.calls[-2].input  # the third turn's first model call
    assert third_turn == [*items[:8], {"content": "7+1?", "role": "user"}]
    reference.close()


def test_runner_with_a_session_limit_sends_no_orphan_output(real_store: Any) -> None:
    model = ScriptedModel([*_tool_turn("c1", 1, 1, "2", "m1"), *_tool_turn("c2", 2, 2, "4", "m2")])
    session = AisopodSession("limited", real_store)
    config = RunConfig(session_settings=SessionSettings(limit=2))
    Runner.run_sync(_agent(model), "1+1?", session=session, run_config=config)
    Runner.run_sync(_agent(model), "2+2?", session=session, run_config=config)
    second_turn = model.calls[2].input  # history (limit 2: widened to call + output) + "2+2?"
    made = {i for item in second_turn for i in PAIRING.calls(item)}
    assert all(PAIRING.answers(item) in made for item in second_turn if PAIRING.answers(item))


def _phase(url: str, options: dict[str, Any], phase: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(RESUME_SCRIPT), url, json.dumps(options), phase],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_conversation_with_tool_calls_resumes_in_a_new_process(
    backend_url: tuple[str, dict[str, Any]],
) -> None:
    url, options = backend_url
    with SessionStore.open(url, **options) as store:  # this process: two turns
        first = json.loads(json.dumps(resume.first(store)))
    assert first["outputs"] == ["Sunny in Paris.", "Rainy in London, hot in Rome."]
    stored = first["items"]
    kinds = [item.get("type", "message") for item in stored]
    assert kinds == ["message", "function_call", "function_call_output", "message", "message",
                     "reasoning", "function_call", "function_call", "function_call_output",
                     "function_call_output", "message"]

    second = _phase(url, options, "second")  # a new process, a new store, the same database
    assert second["outputs"] == ["You asked about Paris, London and Rome."]
    assert second["inputs"] == [[*stored, {"content": "What did I ask about?", "role": "user"}]]
    assert second["items"] == [*stored, {"content": "What did I ask about?", "role": "user"},
                               second["items"][-1]]
    assert second["items"][-1]["id"] == "msg-3"

    with SessionStore.open(url, **options) as store:  # and the store's own view agrees
        session = AisopodSession("traveller-1", store, agent_id="weather-bot")
        assert run(session.get_items()) == second["items"]
        assert store.for_agent("weather-bot").get(session.key).message_count == 13
        # exactly the newest 4; pair_safe starts at the calls (and their reasoning) instead
        assert run(session.get_items(limit=4)) == second["items"][-4:]
        paired = AisopodSession("traveller-1", store, agent_id="weather-bot", pair_safe=True)
        assert run(paired.get_items(limit=4)) == second["items"][5:]


def test_model_step_helpers_are_the_sdks(real_store: Any) -> None:
    seen: list[Any] = []

    def respond(model_call: ModelCall) -> Any:
        seen.append(model_call.input)
        return [assistant_message("ok", item_id="m")]

    session = AisopodSession("responder", real_store)
    run(session.add_items([user("earlier"), said("before", "m0")]))
    Runner.run_sync(_agent(ScriptedModel([ModelStep.respond(respond)])), "now", session=session)
    assert seen == [[user("earlier"), said("before", "m0"), {"content": "now", "role": "user"}]]


# --- built from a URL, owning its store ---------------------------------------------------------


def test_built_from_a_url_it_owns_and_closes_its_store(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    session = AisopodSession("user-123", f"sqlite:///{path}")  # as SQLiteSession(id, path)
    assert session.owns_store
    run(session.add_items([user("hi")]))
    session.close()
    session.close()  # twice is fine
    with pytest.raises(StoreClosedError):
        run(session.get_items())
    with pytest.raises(StoreClosedError):
        run(session.add_items([user("lost")]))
    with AisopodSession("user-123", path) as again:  # a plain path, a with block
        assert run(again.get_items()) == [user("hi")]
        assert again.key == key_for_session_id("user-123")
    with pytest.raises(StoreClosedError):
        run(again.get_items())
    with SessionStore.open(str(path)) as store:  # what the store itself holds
        stored = store.for_agent("openai-agents").get_history(key_for_session_id("user-123"))
        assert [m.content for m in stored] == [user("hi")]


def test_from_url_takes_the_store_s_options(backend_url: tuple[str, dict[str, Any]]) -> None:
    url, options = backend_url

    async def main() -> list[Any]:  # built and closed in asyncio code
        async with AisopodSession.from_url(url, "u-1", agent_id="bot", session_settings=
                                           SessionSettings(limit=1), **options) as session:
            await session.add_items([user("a"), user("b")])
            return await session.get_items()

    assert run(main()) == [user("b")]
    with SessionStore.open(url, **options) as store:
        assert [m.content for m in store.for_agent("bot").get_history(
            key_for_session_id("u-1", "bot"))] == [user("a"), user("b")]
    with pytest.raises(InvalidInputError):
        AisopodSession.from_url(url, "u-1", durability="sometimes", **options)  # type: ignore[arg-type]


def test_a_shared_store_stays_open(sync_store: SessionStore) -> None:
    session = AisopodSession("shared", sync_store)
    assert not session.owns_store
    run(session.add_items([user("x")]))
    session.close()
    other = AisopodSession("shared", sync_store)
    assert run(other.get_items()) == [user("x")]


def test_in_memory_sessions_are_private_to_each_object() -> None:
    first, second, third = AisopodSession("s"), AisopodSession("s"), AisopodSession("s", ":memory:")
    run(first.add_items([user("only in the first")]))
    assert run(first.get_items()) == [user("only in the first")]
    assert run(second.get_items()) == [] == run(third.get_items())
    for session in (first, second, third):
        session.close()


def test_runner_run_sync_with_a_session_built_in_blocking_code(tmp_path: Path) -> None:
    model = ScriptedModel([*_tool_turn("c1", 1, 2, "3", "m1"), *_tool_turn("c2", 3, 4, "7", "m2")])
    with AisopodSession("calc", tmp_path / "calc.db") as session:
        assert Runner.run_sync(_agent(model), "1+2?", session=session).final_output == "3"
        assert Runner.run_sync(_agent(model), "3+4?", session=session).final_output == "7"
        assert len(run(session.get_items())) == 8
        assert model.calls[-2].input[:4] == run(session.get_items(limit=8))[:4]


def test_bad_arguments_are_refused_with_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="store"):
        AisopodSession("s", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="pair_safe"):
        AisopodSession("s", pair_safe="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        AisopodSession("s", tmp_path / "missing-folder" / "x.db")
