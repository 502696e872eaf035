"""Fixtures of the session tools' tests: a served database with agent tokens (bot, other) and
an admin token, and sessions of two agents to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import SessionKey, SessionStore, StoredMessage
from aisopod_session.service import BackgroundService, ServiceConfig

ADMIN_TOKEN = "tools-admin-token-0123456789"
BOT_TOKEN = "tools-bot-token-0123456789"
OTHER_TOKEN = "tools-other-token-0123456789"
TOKENS = [{"token": ADMIN_TOKEN, "role": "admin"},
          {"token": BOT_TOKEN, "role": "agent", "agent": "bot"},
          {"token": OTHER_TOKEN, "role": "agent", "agent": "other"}]

CALLER = SessionKey("bot", "discord", "acct", "group", "g1")
THREAD = SessionKey.for_thread("bot", "discord", "acct", "g1", "t1")
SIBLING = SessionKey("bot", "discord", "acct", "dm", "alice")
FOREIGN = SessionKey("other", "discord", "acct", "dm", "carol")


def seed(store: Any) -> None:
    """The caller's group, its thread, another session of its agent, one of another agent."""
    for key in (CALLER, THREAD, SIBLING, FOREIGN):
        agent = store.for_agent(key.agent_id)
        agent.get_or_create(key)
        agent.append_messages(key, [StoredMessage.user(f"hello from {key.peer_id}"),
                                    StoredMessage.assistant(f"reply in {key.peer_id}")])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[BackgroundService]:
    config = ServiceConfig.model_validate({"tokens": TOKENS})
    with BackgroundService.over(str(tmp_path / "served.db"), config) as service:
        with SessionStore.open(service.url, token=ADMIN_TOKEN) as admin:
            seed(admin)
        yield service
