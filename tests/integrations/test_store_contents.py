"""``get_contents``: the lean history read the integrations build prompts from, on every backend
x flavour (the remote store included): the same contents, in the same order, as ``get_history``
with the same query, and the same errors."""

from __future__ import annotations

from typing import Any

import pytest

from aisopod_session import HistoryQuery, Role, SessionKey, StoredMessage
from aisopod_session.errors import AccessDeniedError, SessionNotFoundError

KEY = SessionKey("agent", "web", "default", "dm", "alice")
CONTENTS: list[Any] = [
    "plain text", 'text with "quotes" and \\ a backslash', {"type": "function_call", "id": 1},
    ["a", 2, None], 42, None, "ünïcode ✓",
]


def test_get_contents_reads_what_get_history_reads(store: Any) -> None:
    agent = store.for_agent("agent")
    agent.get_or_create(KEY)
    agent.append_messages(KEY, [StoredMessage(role=Role.USER, content=c) for c in CONTENTS])
    for query in (None, HistoryQuery(limit=3, tail=True), HistoryQuery(limit=2, offset=1),
                  HistoryQuery(limit=100, tail=True)):
        expected = [m.content for m in agent.get_history(KEY, query)]
        assert agent.get_contents(KEY, query) == expected
    assert agent.get_contents(KEY) == CONTENTS
    assert agent.get_contents(KEY, HistoryQuery(limit=2, tail=True)) == CONTENTS[-2:]


def test_get_contents_tells_an_empty_history_from_a_missing_session(store: Any) -> None:
    agent = store.for_agent("agent")
    with pytest.raises(SessionNotFoundError):
        agent.get_contents(KEY)
    agent.get_or_create(KEY)
    assert agent.get_contents(KEY, HistoryQuery(limit=5, tail=True)) == []
    with pytest.raises(AccessDeniedError):
        store.for_agent("other").get_contents(KEY)
