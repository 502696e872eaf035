from typing import Any

from aisopod_session import HistoryQuery, SessionKey, StoredMessage


def test_append_then_read_back(store: Any) -> None:
    agent = store.for_agent("bot")
    key = SessionKey("bot", "discord", "acct", "dm", "alice")
    agent.get_or_create(key)
    agent.append_messages(key, [StoredMessage.user("hi"), StoredMessage.assistant("hello")])
    history = agent.get_history(key, HistoryQuery(limit=1, tail=True))
    assert [m.content for m in history] == ["hello"]
    assert agent.get(key).message_count == 2
