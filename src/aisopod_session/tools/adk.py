"""The session tools as Google ADK tools (``pip install 'aisopod-session[adk]'``):
``LlmAgent(tools=adk_tools(tools))``.

Each is a ``BaseTool`` declared with the tool's JSON Schema; it returns the tool's JSON answer
as a dict (an error answer too).
"""

from __future__ import annotations

from typing import Any

try:
    from google.adk.tools.base_tool import BaseTool
    from google.adk.tools.tool_context import ToolContext
    from google.genai import types
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("these tools need 'google-adk': pip install 'aisopod-session[adk]'"
                      ) from exc

from aisopod_session.tools._adapt import AnyTools, call_async


class SessionTool(BaseTool):
    """One session tool for an ADK agent."""

    def __init__(self, tools: AnyTools, spec: dict[str, Any]) -> None:
        super().__init__(name=spec["name"], description=spec["description"])
        self._tools = tools
        self._schema = spec["parameters"]

    def _get_declaration(self) -> types.FunctionDeclaration:
        return types.FunctionDeclaration(name=self.name, description=self.description,
                                         parameters_json_schema=self._schema)

    async def run_async(self, *, args: dict[str, Any], tool_context: ToolContext) -> Any:
        return await call_async(self._tools, self.name, args)


def adk_tools(tools: AnyTools) -> list[SessionTool]:
    """The enabled session tools of ``tools`` (either flavour) as ADK tools."""
    return [SessionTool(tools, spec) for spec in tools.definitions()]
