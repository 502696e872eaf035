"""``aisopod-session mcp``: the session tools of one calling session, served over MCP on
stdin/stdout (for an MCP client that starts the server itself: Claude Desktop, an IDE, an
agent framework's MCP client)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from aisopod_session.cli._app import settings
from aisopod_session.cli._output import CliError
from aisopod_session.cli._store import _local_database
from aisopod_session.errors import InvalidInputError
from aisopod_session.models import SessionKey, normalize_name_or_raise
from aisopod_session.store import AsyncSessionStore
from aisopod_session.tools import TOOL_NAMES, AgentToAgent, AsyncSessionTools, ToolPolicy


def _policy(policy_file: Path | None, config_file: Path | None, visibility: str | None,
            allow_agents: list[str], disabled: list[str]) -> ToolPolicy:
    data: dict[str, object] = {}
    if policy_file is None and config_file is not None:  # the service config's [tools]
        from aisopod_session.service.config import load_config

        data = load_config(config_file, env={}).tools.model_dump()
    if policy_file is not None:
        try:
            data = json.loads(policy_file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise CliError(f"{policy_file}: not a readable JSON policy ({exc})") from None
        if not isinstance(data, dict):
            raise CliError(f"{policy_file}: the policy must be a JSON object")
    if visibility is not None:
        data["visibility"] = visibility
    if allow_agents:
        data["agent_to_agent"] = AgentToAgent(enabled=True, allow=allow_agents)
    for name in disabled:
        if name not in TOOL_NAMES:
            raise CliError(f"--disable {name}: no such tool ({', '.join(TOOL_NAMES)})")
    if disabled:
        tools = dict(data.get("tools") or {})  # type: ignore[call-overload]
        tools.update(dict.fromkeys(disabled, False))
        data["tools"] = tools
    try:
        return ToolPolicy.model_validate(data)
    except InvalidInputError as exc:
        raise CliError(f"the tool policy: {exc}") from None


def mcp(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option("--agent", metavar="ID",
                                       help="The calling agent (its sessions are its own).")],
    session: Annotated[str, typer.Option(
        "--session", metavar="KEY",
        help="The calling session's canonical key (agent:<agent>:<channel>:…).")],
    visibility: Annotated[str | None, typer.Option(
        "--visibility", metavar="[self|tree|agent|all]",
        help="Which sessions the tools may see (default tree).", show_default=False)] = None,
    allow_agents: Annotated[list[str] | None, typer.Option(
        "--allow-agent", metavar="GLOB",
        help="Turn agent-to-agent access on for agents matching GLOB (both must match; "
             "needs --visibility all). Repeatable.", show_default=False)] = None,
    disabled: Annotated[list[str] | None, typer.Option(
        "--disable", metavar="TOOL", help="Turn a tool off. Repeatable.",
        show_default=False)] = None,
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", metavar="FILE",
        help="A ToolPolicy as JSON (the options above override it). Default: the \\[tools] "
             "section of the service config given with --config, if any.",
        show_default=False)] = None,
) -> None:
    """Serve the session tools (sessions_list, sessions_history, sessions_search,
    session_status, sessions_send) of one session over MCP on stdin/stdout."""
    agent_id = normalize_name_or_raise("agent", agent)
    key = SessionKey.parse(session)
    if key.agent_id != agent_id:
        raise CliError(f"--session {session} is agent {key.agent_id!r}'s, not {agent_id!r}'s")
    options = settings(ctx)
    policy = _policy(policy_file, options.config, visibility, allow_agents or [],
                     disabled or [])

    async def serve() -> None:
        from aisopod_session.tools.mcp import serve_stdio

        if options.server:
            store = await AsyncSessionStore.open(options.server, token=options.token)
        else:
            url, schema, policies = _local_database(options)
            store = await AsyncSessionStore.open(url, schema=schema, policies=policies)
        try:
            await serve_stdio(AsyncSessionTools(store, key, policy))
        finally:
            await store.close()

    asyncio.run(serve())
