"""CRM receivers for bench/agi_load.py ``--crm``: a webhook that takes everything (204), a Bitrix24
portal that answers register/finish/attachRecord and the deal methods (orders as deals) at once, and
a port where nothing listens: the amoCRM account that is down (the real amoCRM connector, calls and
leads). They run on a thread of their own, with their own event loop, so the load
generator's loop measures the server and nothing else.

The server under test builds its targets from ``IVR_BENCH_CRM_TARGETS`` (JSON, ``targets_json``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from typing import Any

from aiohttp import web

SECRET = "bench-webhook-secret-0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: connection refused from now on


class Receivers:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {"webhook": 0, "bitrix24": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="crm-receivers", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.down_port = _closed_port()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._webhook)
        app.router.add_post("/rest/1/benchtoken/{method}", self._bitrix)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _webhook(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits["webhook"] += 1
        return web.Response(status=204)

    async def _bitrix(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits["bitrix24"] += 1
        method = request.match_info["method"].removesuffix(".json").lower()
        result: Any = {"CALL_ID": f"externalCall.{uuid.uuid4().hex}"}
        if method == "crm.deal.add":
            result = self.hits["bitrix24"]
        elif method in ("crm.deal.list", "crm.duplicate.findbycomm"):
            result = []
        elif method.startswith("crm."):
            result = True
        return web.json_response({"result": result, "time": {}})

    def targets_json(self) -> str:
        """Three targets: the webhook and Bitrix24 (calls and deals) up, amoCRM down (connection refused)."""
        base = f"http://127.0.0.1:{self.port}"
        return json.dumps([
            {"kind": "webhook", "name": "webhook", "url": f"{base}/hook"},
            {"kind": "bitrix24", "name": "bitrix24", "url": f"{base}/rest/1/benchtoken/"},
            {"kind": "amocrm", "name": "amocrm", "url": f"http://127.0.0.1:{self.down_port}"},
        ])


def build_targets(spec: str) -> tuple[Any, ...]:
    """The server side: the targets ``targets_json`` describes (the real connector classes)."""
    from crm_bridge.connectors.amocrm import AmoCrmTarget, LeadSettings
    from crm_bridge.connectors.bitrix24 import Bitrix24Target, DealSettings
    from crm_bridge.connectors.webhook import WebhookTarget
    from crm_bridge.contract.crm import EXPORTED

    every = frozenset(k.value for k in EXPORTED)
    out: list[Any] = []
    for t in json.loads(spec):
        if t["kind"] == "webhook":
            out.append(WebhookTarget(t["name"], t["url"], SECRET, kinds=every, rate=1000, burst=100, timeout=5))
        elif t["kind"] == "amocrm":
            out.append(AmoCrmTarget(t["name"], t["url"], SECRET, source="bench", default_user=0, users={},
                                    finish_on="call.ended", links=None, leads=LeadSettings(), rate=1000, burst=100,
                                    timeout=5))
        else:
            out.append(Bitrix24Target(t["name"], t["url"], default_user=1, users={}, crm_create=True,
                                      line_number="", finish_on="call.ended", links=None, rate=1000, burst=100,
                                      timeout=5, deals=DealSettings()))
    return tuple(out)
