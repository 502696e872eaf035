"""What the framework adapters share: calling either flavour of the tools from asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

from aisopod_session.tools._tools_async import AsyncSessionTools
from aisopod_session.tools._tools_sync import SessionTools

AnyTools = SessionTools | AsyncSessionTools


async def call_async(tools: AnyTools, name: str, arguments: Any) -> dict[str, Any]:
    """Run a tool from asyncio: an asyncio store's on this loop, a blocking store's on a
    worker thread (the event loop never waits on the database)."""
    if isinstance(tools, AsyncSessionTools):
        return await tools.call(name, arguments)
    return await asyncio.to_thread(tools.call, name, arguments)
