"""Import the sessions people already have: OpenClaw, the OpenAI Agents SDK, Google ADK and
LangChain (``aisopod-session import-from``; README, "Switching in").

Each source is read with ``sqlite3`` / psycopg or plain file reads, never with the framework
that wrote it (no framework is needed to import, and none is imported here). Each source
session is converted to the store's own export records and stored by ``store.import_jsonl``
(the same checks, all or nothing), in batches of whole sessions::

    from aisopod_session import SessionStore
    from aisopod_session.importers import KeyMapping, import_sessions, open_source

    with SessionStore.open("sqlite:///sessions.db") as store:
        source = open_source("openai-agents", "conversations.db", KeyMapping(agent_id="support"))
        try:
            report = import_sessions(store, source, on_conflict="skip")
        finally:
            source.close()
        print(report.count("imported"), report.messages_imported)
"""

from __future__ import annotations

from aisopod_session.importers._model import (
    MARKER,
    SOURCE_KINDS,
    ImportReport,
    KeyMapping,
    SessionReport,
    SourceError,
)
from aisopod_session.importers._run import Progress, Source, import_sessions
from aisopod_session.importers._sources import open_source

__all__ = [
    "MARKER",
    "SOURCE_KINDS",
    "ImportReport",
    "KeyMapping",
    "Progress",
    "SessionReport",
    "Source",
    "SourceError",
    "import_sessions",
    "open_source",
]
