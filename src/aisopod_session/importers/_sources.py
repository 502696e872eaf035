"""Opening a source by its kind (the CLI's ``SOURCE_KIND SOURCE``)."""

from __future__ import annotations

from aisopod_session.importers._model import SOURCE_KINDS, KeyMapping, SourceError
from aisopod_session.importers._run import Source


def open_source(kind: str, source: str, mapping: KeyMapping | None = None, *,
                table: str | None = None) -> Source:
    """The source of ``kind`` at ``source`` (a directory, a file or a database URL).

    ``table``: LangChain's table (default ``message_store``); for the Agents SDK, the messages
    table, ``agent_messages`` by default (its sessions table is then ``<prefix>sessions`` where
    the messages table is ``<prefix>messages``).
    """
    mapping = mapping or KeyMapping()
    if kind == "openai-agents":
        from aisopod_session.importers._agents_sdk import AgentsSdkSource

        if table is None:
            return AgentsSdkSource(source, mapping)
        sessions = table[: -len("messages")] + "sessions" if table.endswith("messages") else ""
        if not sessions:
            raise SourceError.for_field("table", "the Agents SDK's messages table name ends "
                                        "with 'messages' (its sessions table is named alike)")
        return AgentsSdkSource(source, mapping, sessions_table=sessions, messages_table=table)
    if kind == "adk":
        from aisopod_session.importers._adk import AdkSource

        return AdkSource(source, mapping)
    if kind == "langchain":
        from aisopod_session.importers._langchain import LangChainSource

        return LangChainSource(source, mapping, table=table or "message_store")
    if kind == "openclaw":
        from aisopod_session.importers._openclaw import OpenClawSource

        return OpenClawSource(source, mapping)
    raise SourceError.for_field("source_kind",
                                f"expected one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
