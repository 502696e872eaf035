"""Bounded, redacted answers: a 5,000-message session with huge tool results gives history
pages within the byte budget that page through every message; planted credentials are
redacted and flagged; the other tools' texts too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aisopod_session import SessionKey, SessionStore, StoredMessage
from aisopod_session.tools import SessionTools, ToolPolicy, redact

SECRETS = {
    "openai": "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "slack": "xoxb-123456789012-abcdefghijkl",
    "bearer": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----",
    "url": "postgresql://admin:hunter2secret@db.internal:5432/prod",
}
LEAKS = ["sk-proj-abcdefghijkl", "AKIAIOSFODNN7EXAMPLE", "ghp_0123456789", "xoxb-123456789012",
         "eyJhbGciOiJIUzI1NiJ9", "MIIEpAIBAAKCAQEA", "hunter2secret"]


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_kind_of_credential_is_redacted(name: str) -> None:
    text, count = redact(f"before {SECRETS[name]} after")
    assert count == 1
    assert ("[REDACTED" in text and text.startswith("before ") and text.endswith(" after")) \
        or name == "pem"  # an unterminated key would run to the end; this one is terminated
    assert not any(leak in text for leak in LEAKS)


def test_plain_text_is_left_alone() -> None:
    text = "ask-me about skills, the AKIA tribe, https://example.com/a:b@c and a bearer bond"
    assert redact(text) == (text, 0)


KEY = SessionKey("bot", "web", "main", "dm", "big")
CALLER = SessionKey("bot", "web", "main", "dm", "reader")
HUGE = "x" * 50_000


def _fill(store: SessionStore) -> None:
    agent = store.for_agent("bot")
    agent.get_or_create(KEY)
    for start in range(0, 5_000, 500):
        batch = []
        for index in range(start, start + 500):
            if index % 3 == 0:
                batch.append(StoredMessage.tool(f"result {index}: {HUGE}"))
            elif index % 3 == 1:
                batch.append(StoredMessage.assistant(
                    f"answer {index} " + SECRETS["openai"] if index == 4_999 - 2 else
                    f"answer {index}", tool_calls=[{"id": f"c{index}", "args": HUGE[:5_000]}]))
            else:
                batch.append(StoredMessage.user(f"question {index} with {SECRETS['url']}"))
        agent.append_messages(KEY, batch)


@pytest.mark.slow
def test_a_huge_session_pages_within_the_byte_budget(tmp_path: Path) -> None:
    policy = ToolPolicy(visibility="agent", max_answer_bytes=16_384, max_message_chars=1_000,
                        max_history_messages=200)
    with SessionStore.open(str(tmp_path / "big.db")) as store:
        _fill(store)
        tools = SessionTools(store, CALLER, policy)
        seen: list[int] = []
        offset: int | None = 0
        pages = 0
        while offset is not None:
            answer = tools.call("sessions_history", {"session_key": str(KEY), "limit": 200,
                                                     "offset": offset, "include_tools": True})
            text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
            assert len(text.encode()) <= policy.max_answer_bytes
            assert answer["messages"], answer  # always progress
            assert not any(leak in text for leak in LEAKS)
            if answer["dropped_messages"]:
                assert answer["truncated"] is True
            seen += [message["id"] for message in answer["messages"]][::-1]
            offset = answer["next_offset"]
            pages += 1
        # every message, newest first, each once: dropped ones came on the next page
        assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 5_000
        assert pages > 25  # the budget, not the limit, decided the pages
        # a page of the defaults stays within the default budget, tool messages left out
        default = SessionTools(store, CALLER, ToolPolicy(visibility="agent"))
        answer = default.call("sessions_history", {"session_key": str(KEY), "limit": 100,
                                                   "offset": 0, "include_tools": False})
        assert len(json.dumps(answer).encode()) <= ToolPolicy().max_answer_bytes
        assert {message["role"] for message in answer["messages"]} == {"user", "assistant"}
        assert all("tool_calls" not in message for message in answer["messages"])
        assert answer["content_redacted"] is True and answer["redactions"] >= 1
        flagged = [m for m in answer["messages"] if m.get("redacted")]
        assert flagged and all("[REDACTED]" in m["text"] for m in flagged)


def test_long_texts_are_cut_and_say_so(tmp_path: Path) -> None:
    with SessionStore.open(str(tmp_path / "cut.db")) as store:
        agent = store.for_agent("bot")
        agent.get_or_create(CALLER)
        # a key across the cut: redacted before cutting, no prefix of it is left
        agent.append_messages(CALLER, [StoredMessage.user(
            "y" * 90 + SECRETS["aws"] + "y" * 10_000)])
        answer = SessionTools(store, CALLER, ToolPolicy(max_message_chars=100)).call(
            "sessions_history", {})
        (message,) = answer["messages"]
        assert message["truncated"] is True and answer["truncated"] is True
        assert message["text"] == "y" * 90 + "[REDACTED]… [cut: 10000 more characters]"
        assert message["redacted"] is True
        status_and_list = SessionTools(store, CALLER).call("sessions_list", {
            "include_preview": True})
        assert SECRETS["aws"] not in json.dumps(status_and_list)
