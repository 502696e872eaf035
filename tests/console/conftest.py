"""Fixtures of the console tests: the service app on a fresh SQLite file, with tokens, driven
through its real HTTP routes (starlette's TestClient keeps the cookies, like a browser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisopod_session import SessionKey, SessionPatch, SessionStore, SlidingWindow, StoredMessage
from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig

ADMIN_TOKEN = "admin-token-0123456789abcdef"
BOT_TOKEN = "bot-token-0123456789abcdef"
OTHER_TOKEN = "other-token-0123456789abcdef"
TOKENS = [
    {"token": ADMIN_TOKEN, "role": "admin"},
    {"token": BOT_TOKEN, "role": "agent", "agent": "bot"},
    {"token": OTHER_TOKEN, "role": "agent", "agent": "other"},
]
HOSTILE = ('<script>window.__xss = 1; alert("xss")</script><b>bold?</b>'
           '<img src=x onerror="window.__xss = 2">')
UNBROKEN = "A" * 5000


def config_for(database: Path, tokens: list[dict[str, str]] | None = None) -> ServiceConfig:
    return ServiceConfig.model_validate(
        {"database": {"url": str(database)}, "tokens": TOKENS if tokens is None else tokens})


def key(peer: str = "alice", agent: str = "bot", channel: str = "discord") -> SessionKey:
    return SessionKey(agent, channel, "acct", "dm", peer)


def seed(store: SessionStore) -> dict[str, int]:
    """Sessions of two agents: a long one with hostile content, a compacted one, a person who
    talks to both agents, and a handful to list."""
    ids: dict[str, int] = {}
    bot, other = store.for_agent("bot"), store.for_agent("other")
    long_key = key("long-talker")
    bot.get_or_create(long_key)
    bot.append_messages(long_key, [StoredMessage.user(f"message number {n}", token_count=3)
                                   for n in range(1, 121)])
    ids["long"] = bot.get(long_key).id
    hostile_key = key("<i>mallory</i>")
    bot.get_or_create(hostile_key)
    bot.append_messages(hostile_key, [
        StoredMessage.user(HOSTILE),
        StoredMessage.assistant(UNBROKEN),
        StoredMessage.assistant("", tool_calls=[{"id": "call_1", "type": "function", "function": {
            "name": "lookup_order", "arguments": '{"order": "</pre><script>x()</script>"}'}}]),
        StoredMessage.tool({"tool_call_id": "call_1", "output": "shipped"}),
    ])
    bot.patch(hostile_key, SessionPatch(metadata={"note": "</pre><script>bad()</script>"}))
    ids["hostile"] = bot.get(hostile_key).id
    compacted_key = key("carol")
    bot.get_or_create(compacted_key)
    bot.append_messages(compacted_key, [StoredMessage.user(f"old {n}") for n in range(6)])
    bot.compact(compacted_key, SlidingWindow(max_messages=2))
    ids["compacted"] = bot.get(compacted_key).id
    for agent, store_of in (("bot", bot), ("other", other)):
        person = key("dana", agent=agent, channel="telegram")
        store_of.get_or_create(person)
        store_of.append_messages(person, [StoredMessage.user(f"dana talks to {agent}")])
        ids[f"dana-{agent}"] = store_of.get(person).id
    # Two weeks of earlier traffic, so that the usage chart has a shape (today is left alone).
    now = datetime.now(UTC)
    for agent, store_of, scale in (("bot", bot, 5), ("other", other, 2)):
        busy = key(f"regular-{agent}", agent=agent, channel="whatsapp")
        store_of.get_or_create(busy)
        store_of.append_messages(busy, [
            StoredMessage.user(f"day {days_ago} #{n}", token_count=40,
                               created_at=now - timedelta(days=days_ago))
            for days_ago in range(13, 0, -1) for n in range(scale * (1 + (days_ago * 7) % 5))])
    other_key = key("erin", agent="other")
    other.get_or_create(other_key)
    other.append_messages(other_key, [StoredMessage.user("secret of other")])
    ids["other"] = other.get(other_key).id
    return ids


TOOL_ROUNDS = 10  # x 5 messages: the 50 of one transcript page


def seed_tool_session(store: SessionStore, peer: str = "tool-user") -> int:
    """A session of 50 messages, 30 of them tool traffic: each round a question, an assistant
    message calling two tools, their two results and an answer (arguments and results of a few
    hundred characters of JSON, as real tools produce)."""
    bot = store.for_agent("bot")
    tool_key = key(peer)
    bot.get_or_create(tool_key)
    messages = []
    for n in range(TOOL_ROUNDS):
        calls = [{"id": f"call_{n}_{t}", "type": "function", "function": {
            "name": tool, "arguments": json.dumps({"query": f"round {n}", "filters": {
                "fields": [f"field_{f}" for f in range(12)], "limit": 20}})}}
            for t, tool in enumerate(("search_orders", "lookup_customer"))]
        messages += [
            StoredMessage.user(f"question {n}"),
            StoredMessage.assistant("", tool_calls=calls),
            *(StoredMessage.tool({"tool_call_id": call["id"], "output": {
                "rows": [{"id": r, "status": "shipped", "total": r * 10} for r in range(8)]}})
              for call in calls),
            StoredMessage.assistant(f"answer {n}"),
        ]
    bot.append_messages(tool_key, messages)
    return bot.get(tool_key).id


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "console.db"


@pytest.fixture
def seeded(database: Path) -> dict[str, int]:
    with SessionStore.open(str(database)) as store:
        return seed(store)


@pytest.fixture
def client(database: Path, seeded: dict[str, int]) -> Iterator[TestClient]:
    with TestClient(create_app(config_for(database)), follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, token: str) -> None:
    response = client.post("/console/login", data={"token": token, "next": "/console/"})
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def page(client: TestClient, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (response.status_code, response.text[:2000])
    return response.text


def store_at(database: Path) -> Any:
    return SessionStore.open(str(database))
