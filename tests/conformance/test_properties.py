"""Property test: whatever is appended, compacted and reset, the history read back is what a
simple model of the conversation says it should be.

The model is a list of the live messages of the current generation (as the store returned them
from ``append_messages``), the external ids seen in that generation, every message appended to it
(for the full transcript), and the archived generations with the history each one kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import (
    HistoryQuery,
    Role,
    SessionStatus,
    SlidingWindow,
    StoredMessage,
    Summarize,
    TruncateToolResults,
)

from ._support import EVERYTHING, fields, fresh_key

# --- what hypothesis draws --------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
)
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), _text,
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)
    ),
    max_leaves=6,
)
_created_at = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_external_id = st.one_of(st.none(), st.none(), st.sampled_from(["e0", "e1", "e2", "e3"]))
_long_tool_text = st.text(alphabet="abcdefghij \u00e9\U0001f600", min_size=0, max_size=240)


@st.composite
def messages(draw: st.DrawFn) -> StoredMessage:
    role = draw(st.sampled_from(Role))
    tool_calls = None
    if role is Role.TOOL:
        content = draw(st.one_of(
            _long_tool_text,
            st.builds(lambda out: {"tool_call_id": "c", "output": out}, _long_tool_text),
        ))
    else:
        content = draw(_json)
        if role is Role.ASSISTANT and draw(st.booleans()):
            tool_calls = [{"id": draw(st.sampled_from(["c1", "c2"])), "arguments": draw(_json)}]
    return StoredMessage(
        role=role,
        content=content,
        tool_calls=tool_calls,
        created_at=draw(_created_at),
        token_count=draw(st.one_of(st.none(), st.integers(0, 1000))),
        external_id=draw(_external_id),
    )


_strategies = st.one_of(
    st.builds(SlidingWindow, max_messages=st.integers(1, 8)),
    st.builds(Summarize, summary=_text.filter(lambda s: s != "" and "\x00" not in s),
              keep_recent=st.integers(0, 6)),
    st.builds(TruncateToolResults, max_chars=st.integers(64, 160)),
)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(messages(), max_size=5)),
        st.tuples(st.just("append"), st.lists(messages(), min_size=1, max_size=3)),
        st.tuples(st.just("compact"), _strategies),
        st.tuples(st.just("reset")),
    ),
    min_size=1,
    max_size=9,
)


# --- the model --------------------------------------------------------------------------------


@dataclass
class Generation:
    live: list[StoredMessage] = field(default_factory=list)
    appended: list[StoredMessage] = field(default_factory=list)
    by_external: dict[str, StoredMessage] = field(default_factory=dict)
    tokens: int = 0
    compactions: int = 0


def _kept_from(live: list[StoredMessage], keep: int) -> int:
    """Where the newest ``keep`` messages start, widened so no tool result loses its call."""
    start = max(0, len(live) - keep) if keep > 0 else len(live)
    while 0 < start < len(live) and live[start].role is Role.TOOL:
        start -= 1
    return start


def _json_length(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")))


def _check_truncated(before: list[StoredMessage], after: list[StoredMessage], limit: int) -> bool:
    """Only long tool results changed, each now within the limit; True if anything changed."""
    assert len(after) == len(before)
    changed = False
    for old, new in zip(before, after, strict=True):
        if old.role is Role.TOOL and _json_length(old.content) > limit:
            changed = True
            assert _json_length(new.content) <= limit
            assert new.content != old.content
            assert (new.role, new.tool_calls, new.created_at) == (
                old.role, old.tool_calls, old.created_at,
            )
        else:
            assert new == old
    return changed


def _check_generation(agent: Any, store: Any, key: Any, gen: Generation) -> None:
    live = agent.get_history(key)
    assert [fields(m) for m in live] == [fields(m) for m in gen.live]
    assert [m.id for m in live] == [m.id for m in gen.live]
    session = agent.get(key)
    assert session.message_count == len(gen.live)
    assert session.token_usage == gen.tokens
    assert session.compaction_count == gen.compactions
    # the full transcript keeps every appended message in order, flagged when compacted away
    full = agent.get_history(key, EVERYTHING)
    appended_ids = {m.id for m in gen.appended}
    assert [(m.id, fields(m)) for m in full if m.id in appended_ids] == [
        (m.id, fields(m)) for m in gen.appended
    ]
    live_ids = {m.id for m in live}
    assert all(m.compacted is (m.id not in live_ids) for m in full)
    assert [m for m in full if not m.compacted] == live
    # and the newest few, read as a tail, are the end of the live history
    assert agent.get_history(key, HistoryQuery(limit=2, tail=True)) == live[-2:]


@settings(
    max_examples=18,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=_operations)
def test_history_matches_the_model(store: Any, operations: list[tuple[Any, ...]]) -> None:
    agent = store.for_agent("bot")
    key = fresh_key()
    agent.get_or_create(key)
    gen = Generation()
    archived: list[tuple[int, list[StoredMessage]]] = []

    for operation in operations:
        kind = operation[0]
        if kind == "append":
            batch: list[StoredMessage] = operation[1]
            stored = agent.append_messages(key, batch)
            assert len(stored) == len(batch)
            for given_message, result in zip(batch, stored, strict=True):
                ext = given_message.external_id
                if ext is not None and ext in gen.by_external:
                    known = gen.by_external[ext]
                    assert result.id == known.id
                    assert fields(result) == fields(known)
                    continue
                assert fields(result) == fields(given_message)
                assert result.id is not None
                assert result.compacted is False
                gen.live.append(result)
                gen.appended.append(result)
                gen.tokens += given_message.token_count or 0
                if ext is not None:
                    gen.by_external[ext] = result
        elif kind == "compact":
            strategy = operation[1]
            before = agent.get(key)
            record = agent.compact(key, strategy)
            after = agent.get_history(key)
            if isinstance(strategy, SlidingWindow):
                start = _kept_from(gen.live, strategy.max_messages)
                changed = start > 0
                assert after == gen.live[start:]
                assert len(after) >= min(strategy.max_messages, len(gen.live))
            elif isinstance(strategy, Summarize):
                cut = _kept_from(gen.live, strategy.keep_recent)
                changed = cut > 0
                if changed:
                    assert (after[0].role, after[0].content) == (Role.SYSTEM, strategy.summary)
                    assert after[1:] == gen.live[cut:]
                else:
                    assert after == gen.live
            else:
                changed = _check_truncated(gen.live, after, strategy.max_chars)
            if after and changed:
                assert after[0].role is not Role.TOOL or gen.live[0].role is Role.TOOL
            if changed:
                gen.compactions += 1
                session = agent.get(key)
                assert session.status is SessionStatus.COMPACTED
                assert session.last_compacted_at == record.last_compacted_at
                assert record.compaction_count == gen.compactions
            else:
                assert agent.get(key) == before
            gen.live = after
        else:
            old_id = agent.get(key).id
            fresh = agent.reset(key)
            assert fresh.id != old_id
            assert agent.get_history(key) == []
            archived.append((old_id, gen.live))
            gen = Generation()
        _check_generation(agent, store, key, gen)

    for session_id, history in archived:
        assert store.get_session_by_id(session_id).status is SessionStatus.ARCHIVED
        assert store.get_history_by_id(session_id) == history
