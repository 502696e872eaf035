"""Compaction: the three strategies, tool-call pairs, no-op compactions and retention purge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aisopod_session import (
    CompactionRecord,
    HistoryQuery,
    InvalidInputError,
    Role,
    SessionNotFoundError,
    SessionStatus,
    SlidingWindow,
    StoredMessage,
    Summarize,
    TruncateToolResults,
)

from ._support import EVERYTHING, key, snapshot, texts

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


def tool_conversation() -> list[StoredMessage]:
    """u0, a1 (calls c1, c2), t2, t3, a4, u5, a6 (calls c3), t7."""
    return [
        StoredMessage.user("u0"),
        StoredMessage.assistant("a1", tool_calls=[_call("c1"), _call("c2")]),
        StoredMessage.tool({"tool_call_id": "c1", "output": "t2"}),
        StoredMessage.tool({"tool_call_id": "c2", "output": "t3"}),
        StoredMessage.assistant("a4"),
        StoredMessage.user("u5"),
        StoredMessage.assistant("a6", tool_calls=[_call("c3")]),
        StoredMessage.tool({"tool_call_id": "c3", "output": "t7"}),
    ]


def _label(message: StoredMessage) -> Any:
    content = message.content
    return content["output"] if isinstance(content, dict) else content


def _started(bot: Any, peer: str, messages: list[StoredMessage]) -> Any:
    k = key(peer)
    bot.get_or_create(k)
    bot.append_messages(k, messages)
    return k


def _check_compacted_session(bot: Any, k: Any, record: CompactionRecord, count: int) -> None:
    session = bot.get(k)
    assert record == bot.get_compaction_record(k)
    assert record.compaction_count == session.compaction_count == count
    assert record.last_compacted_at == session.last_compacted_at
    assert record.last_compacted_at is not None
    assert session.status is SessionStatus.COMPACTED
    assert session.message_count == len(bot.get_history(k))


def test_sliding_window_keeps_the_newest_messages(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(bot, "alice", [StoredMessage.user(f"m{i}", token_count=1) for i in range(10)])
    before = bot.get(k)
    record = bot.compact(k, SlidingWindow(max_messages=4))
    assert texts(bot.get_history(k)) == ["m6", "m7", "m8", "m9"]
    _check_compacted_session(bot, k, record, 1)
    after = bot.get(k)
    assert after.message_count == 4
    assert after.token_usage == before.token_usage  # usage is history, not live size
    assert after.last_compaction_summary is None
    assert record.summary is None
    assert after.updated_at > before.updated_at

    record = bot.compact(k, SlidingWindow(max_messages=1))
    assert texts(bot.get_history(k)) == ["m9"]
    _check_compacted_session(bot, k, record, 2)

    full = bot.get_history(k, EVERYTHING)
    assert texts(full) == [f"m{i}" for i in range(10)]
    assert [m.compacted for m in full] == [True] * 9 + [False]


def test_sliding_window_needs_at_least_one_message(store: Any) -> None:
    with pytest.raises(InvalidInputError):
        SlidingWindow(max_messages=0)
    with pytest.raises(InvalidInputError):
        SlidingWindow(max_messages=-3)
    bot = store.for_agent("bot")
    k = _started(bot, "alice", [StoredMessage.user("m")])
    before = snapshot(store)
    with pytest.raises(InvalidInputError):
        bot.compact(k, {"kind": "sliding_window", "max_messages": 0})
    assert snapshot(store) == before


WINDOWS = {
    1: ["a6", "t7"],
    2: ["a6", "t7"],
    3: ["u5", "a6", "t7"],
    4: ["a4", "u5", "a6", "t7"],
    5: ["a1", "t2", "t3", "a4", "u5", "a6", "t7"],
    6: ["a1", "t2", "t3", "a4", "u5", "a6", "t7"],
    7: ["a1", "t2", "t3", "a4", "u5", "a6", "t7"],
    8: ["u0", "a1", "t2", "t3", "a4", "u5", "a6", "t7"],
}


def test_sliding_window_never_splits_a_tool_call_from_its_results(store: Any) -> None:
    bot = store.for_agent("bot")
    for max_messages, kept in WINDOWS.items():
        k = _started(bot, f"w{max_messages}", tool_conversation())
        bot.compact(k, SlidingWindow(max_messages=max_messages))
        live = bot.get_history(k)
        assert [_label(m) for m in live] == kept, max_messages
        assert live[0].role is not Role.TOOL
        assert bot.get(k).message_count == len(kept)


def test_no_window_starts_with_an_orphan_tool_result(store: Any) -> None:
    bot = store.for_agent("bot")
    # several results per call, and calls back to back
    roles = ["u", "a", "t", "t", "t", "a", "t", "a", "t", "t", "u", "a", "t"]
    messages = []
    for index, role in enumerate(roles):
        if role == "u":
            messages.append(StoredMessage.user(f"u{index}"))
        elif role == "a":
            messages.append(StoredMessage.assistant(f"a{index}", tool_calls=[_call(f"c{index}")]))
        else:
            messages.append(StoredMessage.tool(f"t{index}"))
    for window in range(1, len(roles) + 1):
        k = _started(bot, f"w{window}", messages)
        bot.compact(k, SlidingWindow(max_messages=window))
        live = bot.get_history(k)
        assert live[0].role is not Role.TOOL, window
        assert len(live) >= window
        assert texts(live) == texts(messages)[-len(live):]


def test_summarize_replaces_older_messages_with_one_system_message(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(bot, "alice", [StoredMessage.user(f"m{i}") for i in range(6)])
    record = bot.compact(k, Summarize(summary="they said hello six times", keep_recent=2))
    live = bot.get_history(k)
    assert [(m.role, m.content) for m in live] == [
        (Role.SYSTEM, "they said hello six times"),
        (Role.USER, "m4"),
        (Role.USER, "m5"),
    ]
    assert record.summary == "they said hello six times"
    _check_compacted_session(bot, k, record, 1)
    assert bot.get(k).last_compaction_summary == "they said hello six times"
    assert bot.get(k).message_count == 3

    full = bot.get_history(k, EVERYTHING)
    originals = [m for m in full if m.role is Role.USER]
    assert texts(originals) == [f"m{i}" for i in range(6)]
    assert [m.compacted for m in originals] == [True] * 4 + [False] * 2
    assert [m for m in full if not m.compacted] == live
    # the summary reads after what it replaced and before what was kept
    assert texts(full) == ["m0", "m1", "m2", "m3", "they said hello six times", "m4", "m5"]

    record = bot.compact(k, Summarize(summary="everything so far"))
    assert texts(bot.get_history(k)) == ["everything so far"]
    assert record.summary == "everything so far"
    _check_compacted_session(bot, k, record, 2)

    # a strategy may also be given as plain data
    bot.append_messages(k, [StoredMessage.user("m6")])
    record = bot.compact(k, {"kind": "summarize", "summary": "plain", "keep_recent": 1})
    assert texts(bot.get_history(k)) == ["plain", "m6"]
    _check_compacted_session(bot, k, record, 3)


def test_summarize_keeps_tool_pairs_together(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(bot, "alice", tool_conversation())
    bot.compact(k, Summarize(summary="S", keep_recent=1))
    assert [_label(m) for m in bot.get_history(k)] == ["S", "a6", "t7"]
    k2 = _started(bot, "bob", tool_conversation())
    bot.compact(k2, Summarize(summary="S", keep_recent=5))
    assert [_label(m) for m in bot.get_history(k2)] == [
        "S", "a1", "t2", "t3", "a4", "u5", "a6", "t7",
    ]


def test_truncate_tool_results_shortens_only_long_tool_content(store: Any) -> None:
    bot = store.for_agent("bot")
    long_text = "".join(chr(ord("a") + i % 26) for i in range(500))
    astral = "\U0001d11e" * 300
    structured = {"tool_call_id": "c9", "output": "z" * 400, "ok": True}
    messages = [
        StoredMessage.user("u" * 500),
        StoredMessage.assistant("a" * 500, tool_calls=[_call("c1")]),
        StoredMessage.tool(long_text),
        StoredMessage.tool("short result"),
        StoredMessage.tool(astral),
        StoredMessage.tool(structured, external_id="tool-ext"),
    ]
    k = _started(bot, "alice", messages)
    before = bot.get(k)
    record = bot.compact(k, TruncateToolResults(max_chars=100))
    live = bot.get_history(k)
    assert len(live) == len(messages)
    assert [m.role for m in live] == [m.role for m in messages]
    assert texts(live)[:2] == ["u" * 500, "a" * 500]
    assert live[3].content == "short result"
    for original, shortened in ((long_text, live[2].content), (astral, live[4].content)):
        assert isinstance(shortened, str)
        assert len(shortened) <= 100
        assert "truncated" in shortened
        visible = shortened.split("\n")[0]
        assert original.startswith(visible)
        assert len(visible) > 0
    compact_json = json.dumps(live[5].content, ensure_ascii=False, separators=(",", ":"))
    assert len(compact_json) <= 100
    assert live[5].content["tool_call_id"] == "c9"
    assert "truncated" in live[5].content["output"]

    session = bot.get(k)
    _check_compacted_session(bot, k, record, 1)
    assert session.message_count == before.message_count
    assert session.last_compaction_summary is None

    full = bot.get_history(k, EVERYTHING)
    assert [m.content for m in full if m.compacted] == [long_text, astral, structured]
    assert [m for m in full if not m.compacted] == live

    # a second run finds nothing left to do
    state = snapshot(store)
    again = bot.compact(k, TruncateToolResults(max_chars=100))
    assert again == record
    assert snapshot(store) == state
    # a tighter limit shortens the shortened copies again
    bot.compact(k, TruncateToolResults(max_chars=64))
    assert all(len(m.content) <= 64 for m in bot.get_history(k)[2:5])


NO_OPS = [
    SlidingWindow(max_messages=8),
    SlidingWindow(max_messages=1000),
    Summarize(summary="S", keep_recent=8),
    Summarize(summary="S", keep_recent=50),
    TruncateToolResults(max_chars=1000),
]


def test_a_compaction_that_changes_nothing_changes_nothing(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(bot, "alice", tool_conversation())
    empty = key("empty")
    bot.get_or_create(empty)
    before = snapshot(store)
    session = bot.get(k)
    for strategy in NO_OPS:
        assert bot.compact(k, strategy) == CompactionRecord(), strategy
        assert bot.compact(empty, strategy) == CompactionRecord(), strategy
        assert bot.get(k) == session
    assert bot.compact(empty, Summarize(summary="S")) == CompactionRecord()
    assert snapshot(store) == before


def test_no_op_after_a_real_compaction_keeps_the_record(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(bot, "alice", [StoredMessage.user(f"m{i}") for i in range(5)])
    record = bot.compact(k, Summarize(summary="S", keep_recent=1))
    session = bot.get(k)
    assert bot.compact(k, SlidingWindow(max_messages=2)) == record
    assert bot.get(k) == session


def test_compaction_of_a_missing_session(store: Any) -> None:
    bot = store.for_agent("bot")
    with pytest.raises(SessionNotFoundError):
        bot.compact(key("nobody"), SlidingWindow(max_messages=1))
    with pytest.raises(SessionNotFoundError):
        bot.get_compaction_record(key("nobody"))
    assert snapshot(store) == []


def test_purge_removes_only_compacted_originals(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(
        bot, "alice", [StoredMessage.user(f"m{i}", created_at=_at(i)) for i in range(6)]
    )
    untouched = _started(bot, "bob", [StoredMessage.user("bob")])
    before_first = datetime.now(UTC)
    bot.compact(k, SlidingWindow(max_messages=4))  # m0, m1 leave the live history
    between = datetime.now(UTC)
    bot.compact(k, SlidingWindow(max_messages=2))  # then m2, m3
    live = bot.get_history(k)
    session = bot.get(k)
    bob_state = (bot.get(untouched), bot.get_history(untouched, EVERYTHING))

    # retention counts from when a message was compacted, not from when it was written
    assert store.purge_compacted(older_than=before_first) == 0
    assert store.purge_compacted(older_than=between) == 2  # compacted strictly before: m0, m1
    assert texts(bot.get_history(k, EVERYTHING)) == ["m2", "m3", "m4", "m5"]
    assert store.purge_compacted(older_than=between) == 0
    assert store.purge_compacted() == 2
    assert bot.get_history(k, EVERYTHING) == live
    assert bot.get_history(k) == live
    assert bot.get(k) == session
    assert (bot.get(untouched), bot.get_history(untouched, EVERYTHING)) == bob_state
    assert store.purge_compacted() == 0


def test_purge_reaches_archived_generations_and_keeps_their_live_history(store: Any) -> None:
    bot = store.for_agent("bot")
    k = _started(bot, "alice", [StoredMessage.user(f"m{i}") for i in range(4)])
    bot.compact(k, Summarize(summary="S", keep_recent=1))
    old = bot.get(k)
    bot.reset(k)
    assert store.purge_compacted() == 3
    assert texts(store.get_history_by_id(old.id, EVERYTHING)) == ["S", "m3"]
    archived = store.get_session_by_id(old.id)
    assert archived.status is SessionStatus.ARCHIVED
    assert archived.model_dump(exclude={"status", "updated_at"}) == old.model_dump(
        exclude={"status", "updated_at"}
    )


def test_summary_message_fields(store: Any) -> None:
    bot = store.for_agent("bot")
    batch = [StoredMessage.user("m0", external_id="e0", token_count=2), StoredMessage.user("m1")]
    k = _started(bot, "alice", batch)
    originals = bot.get_history(k)
    bot.compact(k, Summarize(summary="S", keep_recent=1))
    summary, kept = bot.get_history(k)
    assert (summary.role, summary.content) == (Role.SYSTEM, "S")
    assert summary.external_id is None
    assert summary.tool_calls is None
    assert summary.compacted is False
    assert summary.id not in {m.id for m in originals}
    assert kept == originals[1]
    replaced = bot.get_history(k, HistoryQuery(include_compacted=True, limit=1))[0]
    assert replaced == originals[0].model_copy(update={"compacted": True})
    assert bot.get(k).token_usage == 2
