"""A webhook receiver as the README tells one to write it: it checks ``X-Ivr-Signature`` (HMAC-SHA256
of ``<timestamp>.<body>``) and the timestamp's freshness, refuses what fails (401), and keeps the
events it accepted in arrival order. ``fail_with(503)`` makes it answer that status instead."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SECRET = "webhook-secret-0123456789abcdef"


@dataclass
class FakeWebhook:
    secret: str = SECRET
    window: float = 300.0
    received: list[dict[str, Any]] = field(default_factory=list)  # accepted bodies, in arrival order
    refused: int = 0  # bad signatures
    failures: int = 0  # requests answered with fail_with's status
    port: int = 0
    _status: int | None = None
    admit: int | None = None  # answer this many requests, then hold the others until release()
    held: int = 0  # requests waiting to be released
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_with(self, status: int | None) -> None:
        self._status = status

    def release(self) -> None:
        self.admit = None
        self._release.set()

    def event_ids(self) -> list[str]:
        return [e["event_id"] for e in self.received]

    async def _handle(self, request: web.Request) -> web.Response:
        if self.admit is not None:
            if self.admit <= 0:
                self.held += 1
                await self._release.wait()
            self.admit -= 1
        if self._status is not None:
            self.failures += 1
            return web.Response(status=self._status)
        body = await request.read()
        timestamp = request.headers.get("X-Ivr-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body,
                                        hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= self.window
        if not fresh or not hmac.compare_digest(request.headers.get("X-Ivr-Signature", ""), expected):
            self.refused += 1
            return web.Response(status=401, text="bad signature")
        event = json.loads(body)
        assert event["event_id"] == request.headers["X-Ivr-Event-Id"]
        self.received.append(event)
        return web.Response(status=204)
