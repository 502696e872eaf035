"""The session tools as an MCP server (the official ``mcp`` package: ``pip install
'aisopod-session[mcp]'``).

:func:`mcp_server` builds a low-level MCP ``Server`` whose tools are the session tools of the
caller ``tools_for`` finds for each request (one fixed caller over stdio; over HTTP, the caller
the request's bearer token and session header name, see ``service/_routes_tools.py``).
:func:`serve_stdio` runs it on stdin/stdout (``aisopod-session mcp``). Tool errors (refused,
bad arguments) are tool results with ``isError`` set and the error dict as their content, so
a model reads them; they never end the connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

try:
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("the MCP server needs 'mcp': pip install 'aisopod-session[mcp]'") from exc

from aisopod_session.tools._tools_async import AsyncSessionTools

ToolsFor = Callable[[Any], Awaitable[AsyncSessionTools]]
"""Given the request (a Starlette request over HTTP, None over stdio), the caller's tools;
raising refuses the request."""


def mcp_server(tools_for: ToolsFor, *, name: str = "aisopod-session") -> Server[Any]:
    """An MCP server listing and calling the session tools of the caller ``tools_for`` gives."""

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        tools = await tools_for(ctx.request)
        return types.ListToolsResult(tools=[
            types.Tool(name=spec["name"], description=spec["description"],
                       input_schema=spec["parameters"])
            for spec in tools.definitions()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tools = await tools_for(ctx.request)
        answer = await tools.call(params.name, dict(params.arguments or {}))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(answer, ensure_ascii=False))],
            structured_content=answer, is_error="error" in answer)

    from aisopod_session import __version__

    return Server(name, version=__version__, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve_stdio(tools: AsyncSessionTools) -> None:
    """Serve ``tools`` (one calling session) over stdin/stdout until the client leaves."""

    async def fixed(_: Any) -> AsyncSessionTools:
        return tools

    server = mcp_server(fixed)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
