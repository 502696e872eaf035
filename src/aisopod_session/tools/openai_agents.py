"""The session tools as OpenAI Agents SDK function tools (``pip install
'aisopod-session[openai-agents]'``): ``Agent(tools=function_tools(tools))``.

Each is a ``FunctionTool`` with the tool's strict JSON Schema; its output is the tool's JSON
answer (an error answer too: the model reads why, the run goes on).
"""

from __future__ import annotations

import json
from typing import Any

try:
    from agents import FunctionTool
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("these tools need 'openai-agents': pip install "
                      "'aisopod-session[openai-agents]'") from exc

from aisopod_session.tools._adapt import AnyTools, call_async


def function_tools(tools: AnyTools) -> list[FunctionTool]:
    """The enabled session tools of ``tools`` (either flavour) as Agents SDK tools."""

    def make(spec: dict[str, Any]) -> FunctionTool:
        name = spec["name"]

        async def invoke(_: Any, arguments: str) -> str:
            return json.dumps(await call_async(tools, name, arguments), ensure_ascii=False)

        return FunctionTool(name=name, description=spec["description"],
                            params_json_schema=spec["parameters"], on_invoke_tool=invoke,
                            strict_json_schema=True)

    return [make(spec) for spec in tools.definitions()]
