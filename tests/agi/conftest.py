from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from ivr.agi.channel import AgiChannel
from ivr.agi.server import FastAgiServer


class Recorder:
    """Wraps a test body ``async (channel) -> result`` as a FastAGI handler and keeps what happened."""

    def __init__(self, body: Callable[[AgiChannel], Awaitable[Any]]) -> None:
        self.body = body
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self.channels: list[AgiChannel] = []
        self.done = asyncio.Event()
        self.calls = 0

    async def __call__(self, channel: AgiChannel) -> None:
        self.calls += 1
        self.channels.append(channel)
        try:
            self.results.append(await self.body(channel))
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()

    async def wait(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await asyncio.wait_for(self.done.wait(), timeout)


@pytest.fixture
async def serve():
    servers: list[FastAgiServer] = []

    async def _serve(
        routes: Mapping[str, Any] | Callable[[AgiChannel], Awaitable[None]],
        **kwargs: Any,
    ) -> FastAgiServer:
        if not isinstance(routes, Mapping):
            routes = {"repeat-order": routes}
        kwargs.setdefault("env_timeout", 2.0)
        kwargs.setdefault("command_timeout", 2.0)
        server = FastAgiServer(routes, host="127.0.0.1", port=0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        await server.stop(1.0)
