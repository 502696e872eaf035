"""The session tools as LangChain tools (``pip install 'aisopod-session[langchain]'``):
``model.bind_tools(langchain_tools(tools))`` or an agent's ``tools=``.

Each is a ``StructuredTool`` whose argument schema is the tool's JSON Schema; it returns the
tool's JSON answer as text (an error answer too).
"""

from __future__ import annotations

import json
from typing import Any

try:
    from langchain_core.tools import StructuredTool
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("these tools need 'langchain-core': pip install "
                      "'aisopod-session[langchain]'") from exc

from aisopod_session.tools._adapt import AnyTools, call_async
from aisopod_session.tools._tools_async import AsyncSessionTools


def langchain_tools(tools: AnyTools) -> list[StructuredTool]:
    """The enabled session tools of ``tools`` (either flavour) as LangChain tools; a blocking
    ``SessionTools`` also runs them synchronously (``invoke``)."""

    def make(spec: dict[str, Any]) -> StructuredTool:
        name = spec["name"]

        async def coroutine(**arguments: Any) -> str:
            return json.dumps(await call_async(tools, name, arguments), ensure_ascii=False)

        def function(**arguments: Any) -> str:
            if isinstance(tools, AsyncSessionTools):
                raise NotImplementedError("asyncio tools: use ainvoke")
            return json.dumps(tools.call(name, arguments), ensure_ascii=False)

        return StructuredTool.from_function(
            func=None if isinstance(tools, AsyncSessionTools) else function,
            coroutine=coroutine, name=name, description=spec["description"],
            args_schema=spec["parameters"], infer_schema=False)

    return [make(spec) for spec in tools.definitions()]
