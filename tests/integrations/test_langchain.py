"""The LangChain chat message history on aisopod-session, driven by LangChain itself (a fake chat
model, no network), on SQLite and PostgreSQL with both store flavours."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from aisopod_session import AccessDeniedError, InvalidInputError, SessionKey, StoreClosedError
from aisopod_session.integrations.langchain import (
    PAIRING,
    AisopodChatMessageHistory,
    key_for_session_id,
    session_id_for_key,
)

# BaseChatMessageHistory, InMemoryChatMessageHistory (the reference) and
# RunnableWithMessageHistory are deprecated in langchain-core 1.x, to be removed in 2.0.
pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainDeprecationWarning")


def every_kind() -> list[BaseMessage]:
    return [
        SystemMessage("You are terse.", id="sys-1"),
        HumanMessage("héllo ✓ 𝄞 \x00", name="ada", additional_kwargs={"channel": "discord"}),
        HumanMessage(content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        ]),
        AIMessage(
            content="",
            tool_calls=[{"name": "lookup", "args": {"q": "x", "n": 2.5}, "id": "call-1"},
                        {"name": "other", "args": {}, "id": "call-2"}],
            invalid_tool_calls=[{"name": "bad", "args": "{oops", "id": "call-3", "error": "json"}],
            additional_kwargs={"refusal": None, "nested": {"a": [1, True, None]}},
            response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
            usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            id="ai-1",
        ),
        ToolMessage("result 1", tool_call_id="call-1", name="lookup", artifact={"raw": [1, 2]}),
        ToolMessage(content=[{"type": "text", "text": "result 2"}], tool_call_id="call-2",
                    status="error"),
        ToolMessage("bad args", tool_call_id="call-3", status="error"),
        FunctionMessage("legacy", name="legacy_fn"),
        ChatMessage("custom role", role="critic"),
        ChatMessage("assistant role", role="assistant"),
        AIMessageChunk(content="streamed", id="chunk-1"),
        AIMessage("final answer", id="ai-2", response_metadata={"logprobs": None}),
    ]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_every_message_type_round_trips_exactly(every_store: Any) -> None:
    history = AisopodChatMessageHistory("s1", every_store)
    assert isinstance(history, BaseChatMessageHistory)
    assert history.messages == []
    messages = every_kind()
    history.add_messages(messages[:4])
    run(history.aadd_messages(messages[4:]))
    for back in (history.messages, run(history.aget_messages()),
                 AisopodChatMessageHistory("s1", every_store).messages):
        assert back == messages
        assert [type(m) for m in back] == [type(m) for m in messages]
        assert [m.model_dump() for m in back] == [m.model_dump() for m in messages]
    # the store sees roles a gateway understands
    handle = every_store.for_agent("langchain")
    stored = handle.get_history(history.key)
    if asyncio.iscoroutine(stored):
        stored = run(stored)
    assert [m.role.value for m in stored] == [
        "system", "user", "user", "assistant", "tool", "tool", "tool", "tool", "user",
        "assistant", "assistant", "assistant",
    ]


def test_convenience_methods_and_clear(real_store: Any) -> None:
    history = AisopodChatMessageHistory("s2", real_store)
    history.add_user_message("hi")
    history.add_ai_message("hello")
    history.add_message(HumanMessage("again"))
    assert [m.content for m in history.messages] == ["hi", "hello", "again"]
    assert str(history) == "Human: hi\nAI: hello\nHuman: again"
    history.clear()
    assert history.messages == []
    run(history.aadd_messages([HumanMessage("after clear")]))
    run(history.aclear())
    assert run(history.aget_messages()) == []
    history.clear()  # nothing to clear is fine
    history.add_messages([])


def test_archive_on_clear_keeps_the_transcript_for_operators(real_store: Any) -> None:
    history = AisopodChatMessageHistory("s3", real_store, on_clear="archive")
    history.add_messages([HumanMessage("kept")])
    history.clear()
    assert history.messages == []
    run(history.aclear())


def _long_history() -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for turn in range(40):
        out.append(HumanMessage(f"q{turn}"))
        if turn % 3 == 0:
            out.append(AIMessage("", tool_calls=[
                {"name": "t", "args": {}, "id": f"a{turn}"},
                {"name": "t", "args": {}, "id": f"b{turn}"}]))
            out.append(ToolMessage("ra", tool_call_id=f"a{turn}"))
            out.append(ToolMessage("rb", tool_call_id=f"b{turn}"))
        out.append(AIMessage(f"answer {turn}"))
    return out


def test_bounded_tail_reads_never_orphan_a_tool_message(real_store: Any) -> None:
    messages = _long_history()
    history = AisopodChatMessageHistory("long", real_store)
    history.add_messages(messages)
    as_dicts = [m.model_dump() for m in messages]
    for limit in range(1, 30):
        for tail in (history.get_messages(limit), run(history.aget_recent(limit))):
            assert len(tail) >= limit
            assert [m.model_dump() for m in tail] == as_dicts[len(messages) - len(tail):]
            called = {c["id"] for m in tail if isinstance(m, AIMessage) for c in m.tool_calls}
            assert all(m.tool_call_id in called for m in tail if isinstance(m, ToolMessage))
            plain = messages[len(messages) - limit:]
            if not isinstance(plain[0], ToolMessage):
                assert len(tail) == limit  # widened only when it had to be
    bounded = AisopodChatMessageHistory("long", real_store, max_messages=3)
    assert bounded.messages == messages[-4:] == run(bounded.aget_messages())  # + the call
    assert PAIRING.answers({"type": "human", "data": {}}) is None
    with pytest.raises(InvalidInputError):
        history.get_messages(0)
    with pytest.raises(InvalidInputError):
        AisopodChatMessageHistory("x", real_store, max_messages=0)


def test_add_messages_is_all_or_nothing_and_refuses_what_it_cannot_keep(real_store: Any) -> None:
    history = AisopodChatMessageHistory("atomic", real_store)
    history.add_messages([HumanMessage("first")])
    with pytest.raises(InvalidInputError):
        history.add_messages([HumanMessage("ok"),
                              AIMessage("x", additional_kwargs={"n": float("nan")})])
    with pytest.raises(InvalidInputError):
        history.add_messages([HumanMessage("ok"), "not a message"])  # type: ignore[list-item]
    assert [m.content for m in history.messages] == ["first"]


def test_message_ids_deduplicate_only_when_asked(real_store: Any) -> None:
    plain = AisopodChatMessageHistory("plain", real_store)
    deduped = AisopodChatMessageHistory("deduped", real_store, dedupe_message_ids=True)
    batch = [HumanMessage("no id"), AIMessage("with id", id="run-1")]
    for history in (plain, deduped):
        history.add_messages(batch)
        history.add_messages(batch)
    assert plain.messages == batch + batch
    assert deduped.messages == [*batch, HumanMessage("no id")]


def test_histories_are_isolated_and_keys_reversible(real_store: Any) -> None:
    a = AisopodChatMessageHistory("same", real_store, agent_id="bot-a")
    b = AisopodChatMessageHistory("same", real_store, agent_id="bot-b")
    c = AisopodChatMessageHistory("Same", real_store, agent_id="bot-a")
    a.add_messages([HumanMessage("a")])
    b.add_messages([HumanMessage("b")])
    c.add_messages([HumanMessage("c")])
    assert [m.content for m in a.messages] == ["a"]
    assert [m.content for m in b.messages] == ["b"]
    assert [m.content for m in c.messages] == ["c"]
    with pytest.raises(AccessDeniedError):
        AisopodChatMessageHistory(a.key, real_store.for_agent("bot-b"))
    for session_id in ("same", "Same", " padded ", "a%b", "ü", "u\u0308"):
        key = key_for_session_id(session_id, "bot")
        assert session_id_for_key(key) == session_id
        assert SessionKey.parse(key.canonical()) == key
    gateway = SessionKey("bot", "slack", "acct", "group", "C1")
    assert session_id_for_key(gateway) == gateway.canonical()
    assert AisopodChatMessageHistory(gateway, real_store).session_id == gateway.canonical()


def test_sync_methods_work_inside_a_running_event_loop(real_store: Any) -> None:
    async def inside() -> list[BaseMessage]:
        history = AisopodChatMessageHistory("in-loop", real_store)
        history.add_messages([HumanMessage("from a coroutine")])  # blocking call in a loop
        return history.messages

    assert [m.content for m in run(inside())] == ["from a coroutine"]


# --- with RunnableWithMessageHistory ------------------------------------------------------------


def _chain(prompts: list[Any], replies: list[BaseMessage]) -> Any:
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are a weather bot."),
        MessagesPlaceholder("history"),
        ("human", "{question}"),
    ])

    def record(value: Any) -> Any:
        prompts.append(value.to_messages())
        return value

    return prompt | RunnableLambda(record) | FakeMessagesListChatModel(responses=replies)


def _conversation(get_history: Any, *, use_async: bool) -> tuple[list[Any], list[Any]]:
    prompts: list[Any] = []
    replies: list[BaseMessage] = [AIMessage("Sunny.", id="r1"), AIMessage("Rainy.", id="r2"),
                                  AIMessage("You asked twice.", id="r3")]
    chain = RunnableWithMessageHistory(
        _chain(prompts, replies), get_history,
        input_messages_key="question", history_messages_key="history",
    )
    config = {"configurable": {"session_id": "chat-1"}}
    answers = []
    for question in ("Paris?", "London?", "What did I ask?"):
        if use_async:
            answers.append(run(chain.ainvoke({"question": question}, config=config)).content)
        else:
            answers.append(chain.invoke({"question": question}, config=config).content)
    return answers, prompts


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_runnable_with_message_history(real_store: Any, use_async: bool) -> None:
    reference: dict[str, InMemoryChatMessageHistory] = {}

    def in_memory(session_id: str) -> InMemoryChatMessageHistory:
        return reference.setdefault(session_id, InMemoryChatMessageHistory())

    expected = _conversation(in_memory, use_async=use_async)
    got = _conversation(lambda session_id: AisopodChatMessageHistory(session_id, real_store),
                        use_async=use_async)
    assert got == expected  # same answers, and the model saw the same prompts every turn
    assert [m.content for m in got[1][-1]] == [
        "You are a weather bot.", "Paris?", "Sunny.", "London?", "Rainy.", "What did I ask?"]
    stored = AisopodChatMessageHistory("chat-1", real_store).messages
    assert stored == reference["chat-1"].messages
    assert len(stored) == 6


def test_messages_is_a_read_only_read_of_the_history(real_store: Any) -> None:
    history = AisopodChatMessageHistory("read-only", real_store)
    history.add_messages([HumanMessage("hi"), AIMessage("hello")])
    read = history.messages
    assert list(read) == [HumanMessage("hi"), AIMessage("hello")] and read == list(read)
    for change in (lambda: read.append(HumanMessage("lost")), lambda: read.extend([]),
                   read.pop, read.clear, lambda: read.__setitem__(0, read[1]),
                   lambda: read.__delitem__(0), lambda: read.insert(0, read[0])):
        with pytest.raises(TypeError, match="add_messages"):
            change()
    with pytest.raises(TypeError, match="add_messages"):
        read += [HumanMessage("lost")]
    copy = list(history.messages)  # a copy of it is an ordinary list, as LangChain's code does
    copy.append(HumanMessage("local only"))
    assert len(history.messages) == 2


def test_built_from_a_url_it_owns_and_closes_its_store(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with AisopodChatMessageHistory("s-1", f"sqlite:///{path}") as history:
        assert history.owns_store
        history.add_messages([HumanMessage("kept")])
    with pytest.raises(StoreClosedError):
        history.add_messages([HumanMessage("lost")])
    again = AisopodChatMessageHistory.from_url(path, "s-1", durability="normal")
    assert again.messages == [HumanMessage("kept")]
    again.close()
    first, second = AisopodChatMessageHistory("s"), AisopodChatMessageHistory("s")  # in memory
    first.add_messages([HumanMessage("private")])
    assert second.messages == [] and first.messages == [HumanMessage("private")]
    with pytest.raises(InvalidInputError, match="store"):
        AisopodChatMessageHistory("s", 3.5)  # type: ignore[arg-type]
