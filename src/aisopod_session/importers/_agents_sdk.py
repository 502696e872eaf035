"""OpenAI Agents SDK: a ``SQLiteSession`` database file or a ``SQLAlchemySession`` URL.

Both write the same two tables (``agent_sessions``: session_id, created_at, updated_at;
``agent_messages``: id, session_id, message_data (one input item as JSON), created_at); the
table names can be given as they were to the SDK. Items are read in the SDK's own order:
``SQLiteSession`` by ``id``, ``SQLAlchemySession`` by ``(created_at, id)``.

Each item is one stored message whose ``content`` is the item exactly as the SDK wrote it, with
the role the integration (:mod:`aisopod_session.integrations.openai_agents`) gives it, under the
key it uses (``agent:<agent>:openai-agents:default:dm:<session id>``), so ``AisopodSession``
continues the conversation where the SDK left it, function calls and their outputs paired as
before. The external id is ``openai-agents:<row id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

from aisopod_session.importers._db import Database
from aisopod_session.importers._model import (
    KeyMapping,
    Skip,
    SourceMessage,
    SourceSession,
    utc,
)
from aisopod_session.integrations._common import plain_key
from aisopod_session.models import Role

DEFAULT_AGENT = "openai-agents"
CHANNEL = "openai-agents"
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM,
          "developer": Role.SYSTEM}


def item_role(item: dict[str, Any]) -> Role:
    """The integration's rule: a message item's role; a tool's output is ``tool``; anything
    else the model produced (function calls, reasoning) is ``assistant``."""
    role = item.get("role")
    if isinstance(role, str) and role in _ROLES:
        return _ROLES[role]
    kind = item.get("type")
    if kind == "mcp_approval_response" or (isinstance(kind, str) and kind.endswith("_output")):
        return Role.TOOL
    return Role.ASSISTANT


class AgentsSdkSource:
    kind = "openai-agents"

    def __init__(self, source: str, mapping: KeyMapping | None = None, *,
                 sessions_table: str = "agent_sessions",
                 messages_table: str = "agent_messages") -> None:
        self.mapping = mapping or KeyMapping()
        self.db = Database(source)
        try:
            what = "an OpenAI Agents SDK session database"
            self.db.require(sessions_table, ("session_id", "created_at", "updated_at"), what)
            self.db.require(messages_table, ("id", "session_id", "message_data", "created_at"),
                            what)
        except BaseException:
            self.db.close()
            raise
        self.sessions_table = sessions_table
        self.messages_table = messages_table
        # SQLiteSession reads by id; SQLAlchemySession by (created_at, id)
        self.order = "created_at, id" if "://" in source else "id"

    def close(self) -> None:
        self.db.close()

    def sessions(self) -> Iterator[SourceSession]:
        agent = self.mapping.agent_id or DEFAULT_AGENT
        channel = self.mapping.channel or CHANNEL
        for session_id, created, updated, count in self.db.rows(
                f"SELECT s.session_id, s.created_at, s.updated_at, (SELECT count(*) FROM "
                f"{self.messages_table} m WHERE m.session_id = s.session_id) "
                f"FROM {self.sessions_table} s ORDER BY s.session_id"):
            sid = str(session_id)
            created_at = utc(created)
            yield SourceSession(
                source_id=sid, key=plain_key(agent, channel, sid), created_at=created_at,
                updated_at=utc(updated, created_at), size_hint=int(count),
                read=partial(self._items, sid, created_at))

    def _items(self, session_id: str, created_at: datetime) -> Iterator[SourceMessage | Skip]:
        for row_id, data, created in self.db.rows(
                f"SELECT id, message_data, created_at FROM {self.messages_table} "
                f"WHERE session_id = ? ORDER BY {self.order}", (session_id,)):
            try:
                item = json.loads(data)
            except (TypeError, ValueError):
                yield Skip("message_data is not JSON (the SDK skips such rows too)")
                continue
            if not isinstance(item, dict):
                yield Skip("message_data is not an input item (a JSON object)")
                continue
            yield SourceMessage(source_id=str(row_id), role=item_role(item), content=item,
                                created_at=utc(created, created_at))
