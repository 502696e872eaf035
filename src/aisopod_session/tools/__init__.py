"""Session tools for agents: an agent looks at and sends into sessions itself, under a policy.

``SessionTools(store, session_key, policy)`` (blocking) and ``AsyncSessionTools`` (asyncio) are
built for one calling session on a store (local or remote). ``definitions()`` gives the tools'
JSON Schema specifications (OpenAI strict mode; an MCP tool's ``inputSchema``), ``call(name,
arguments)`` runs one and answers a JSON-ready dict, an ``{"error": {...}}`` one when refused or
wrong. The tools: ``sessions_list``, ``sessions_history``, ``sessions_search``,
``session_status``, ``sessions_send`` (see the README's "Session tools and MCP").

Framework adapters (optional extras): :mod:`aisopod_session.tools.openai_agents`,
:mod:`aisopod_session.tools.langchain`, :mod:`aisopod_session.tools.adk`; the MCP server:
:mod:`aisopod_session.tools.mcp`.
"""

from aisopod_session.tools._bounds import redact
from aisopod_session.tools._policy import (
    PROVENANCE,
    TOOL_NAMES,
    AgentToAgent,
    SendPolicy,
    SendRule,
    ToolPolicy,
    Visibility,
)
from aisopod_session.tools._spec import definitions
from aisopod_session.tools._tools_async import AsyncSessionTools
from aisopod_session.tools._tools_sync import SessionTools

__all__ = [
    "PROVENANCE",
    "TOOL_NAMES",
    "AgentToAgent",
    "AsyncSessionTools",
    "SendPolicy",
    "SendRule",
    "SessionTools",
    "ToolPolicy",
    "Visibility",
    "definitions",
    "redact",
]
