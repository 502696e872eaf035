"""LangChain: a ``SQLChatMessageHistory`` table (langchain-community; ``message_store`` by
default: id, session_id, message).

Each row is one stored message whose ``content`` is the row's JSON (``message_to_dict``, exactly
what :mod:`aisopod_session.integrations.langchain` stores), under the integration's key
(``agent:<agent>:langchain:default:dm:<session id>``), read in the table's order (``id``). The
table keeps no times: sessions and messages get the time of the import. The external id is
``langchain:<row id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aisopod_session.importers._db import Database
from aisopod_session.importers._model import KeyMapping, Skip, SourceMessage, SourceSession
from aisopod_session.integrations._common import LANGCHAIN_CHAT_ROLES, LANGCHAIN_ROLES, plain_key
from aisopod_session.models import Role

DEFAULT_AGENT = "langchain"
CHANNEL = "langchain"
_ROLES = LANGCHAIN_ROLES
_CHAT_ROLES = LANGCHAIN_CHAT_ROLES


def message_role(stored: dict[str, Any]) -> Role:
    """The integration's rule for a ``message_to_dict`` record."""
    kind = stored.get("type")
    data = stored["data"] if isinstance(stored.get("data"), dict) else {}
    if kind in ("chat", "ChatMessageChunk"):
        return _CHAT_ROLES.get(str(data.get("role", "")).lower(), Role.USER)
    return _ROLES.get(str(kind), Role.ASSISTANT)


class LangChainSource:
    kind = "langchain"

    def __init__(self, source: str, mapping: KeyMapping | None = None, *,
                 table: str = "message_store") -> None:
        self.mapping = mapping or KeyMapping()
        self.db = Database(source)
        try:
            self.db.require(table, ("id", "session_id", "message"),
                            "a LangChain SQLChatMessageHistory table")
        except BaseException:
            self.db.close()
            raise
        self.table = table
        self.now = datetime.now(UTC)

    def close(self) -> None:
        self.db.close()

    def sessions(self) -> Iterator[SourceSession]:
        agent = self.mapping.agent_id or DEFAULT_AGENT
        channel = self.mapping.channel or CHANNEL
        for session_id, count in self.db.rows(
                f"SELECT session_id, count(*) FROM {self.table} WHERE session_id IS NOT NULL "
                "GROUP BY session_id ORDER BY session_id"):
            sid = str(session_id)
            yield SourceSession(source_id=sid, key=plain_key(agent, channel, sid),
                                created_at=self.now, updated_at=self.now, size_hint=int(count),
                                read=partial(self._messages, sid))

    def _messages(self, session_id: str) -> Iterator[SourceMessage | Skip]:
        for row_id, text in self.db.rows(
                f"SELECT id, message FROM {self.table} WHERE session_id = ? ORDER BY id",
                (session_id,)):
            try:
                stored = json.loads(text)
            except (TypeError, ValueError):
                yield Skip("message is not JSON")
                continue
            if not isinstance(stored, dict) or "type" not in stored:
                yield Skip("message is not a LangChain message record ({type, data})")
                continue
            yield SourceMessage(source_id=str(row_id), role=message_role(stored),
                                content=stored, created_at=self.now)
