"""Reading the operator feed (/api/v1/operators/{key}/feed) as the page does: cards and link messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


async def next_message(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def next_card(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next card, skipping the link messages ({"type": "link", ...}) in between."""
    async with asyncio.timeout(timeout):
        while True:
            data = await next_message(ws, timeout)
            if data.get("type") is None:
                return data
