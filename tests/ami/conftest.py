from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from ivr.ami.client import AmiClient
from ivr.settings import AmiSettings
from tests.fakeami import FakeAmi


def ami_settings(port: int, **overrides: Any) -> AmiSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "ivr",
        "secret": "ivrsecret",
        "ping_interval": 5.0,
        "action_timeout": 0.5,
        "reconnect_min": 0.05,
        "reconnect_max": 0.2,
        "max_queued_events": 10000,
    }
    values.update(overrides)
    return AmiSettings(**values)


class Collector:
    """on_event / on_resync that keep what they got, with waits."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []
        self.resyncs: list[list[dict[str, str]]] = []
        self._changed = asyncio.Event()

    def on_event(self, event: dict[str, str]) -> None:
        self.events.append(event)
        self._changed.set()

    def on_resync(self, items: list[dict[str, str]]) -> None:
        self.resyncs.append(items)
        self._changed.set()

    def names(self) -> list[str]:
        return [e["Event"] for e in self.events]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


class Logs:
    def __init__(self) -> None:
        self.capture = LogCapture()
        self.logger = structlog.wrap_logger(
            structlog.PrintLogger(),
            processors=[self.capture],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        )

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.capture.entries if e["event"] == event]

    def at_level(self, *levels: str) -> list[dict[str, Any]]:
        return [e for e in self.capture.entries if e["log_level"] in levels]


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, step: float = 0.01) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110  (polls client state that has no event to wait on)
            await asyncio.sleep(step)


@pytest.fixture
async def fake():
    server = await FakeAmi().start()
    yield server
    await server.stop()


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
async def make_client(logs: Logs):
    clients: list[AmiClient] = []

    def _make(settings: AmiSettings, collector: Collector | None = None, **kwargs: Any) -> AmiClient:
        collector = collector or Collector()
        kwargs.setdefault("on_resync", collector.on_resync)
        kwargs.setdefault("logger", logs.logger)
        client = AmiClient(settings, kwargs.pop("on_event", collector.on_event), **kwargs)
        clients.append(client)
        return client

    yield _make
    for client in clients:
        await client.stop()
