"""A local Bitrix24 portal: the incoming-webhook REST methods the CRM bridge calls, as documented.

``https://<portal>/rest/<user>/<token>/<method>.json`` with a JSON (or form) body; answers
``{"result": …, "time": {…}}`` or ``{"error": "CODE", "error_description": "…"}`` with Bitrix24's
HTTP statuses:

- a wrong user/token: 401 ``INVALID_CREDENTIALS``; ``expire_token()``: 401 ``expired_token``;
- more than ``rate`` requests per second (2, Bitrix24's limit per webhook, with a burst of ``burst``):
  503 ``QUERY_LIMIT_EXCEEDED``, and the request is not executed;
- a missing or wrong parameter: 400 with ``error`` (the method's own refusal);
- ``fail_with(500)``: every request answers that status; ``await stop()`` / ``await start()``: the
  portal is unreachable (connection refused) and back on the same port.

Methods: ``telephony.externalcall.register`` (result ``CALL_ID``, ``CRM_CREATED_LEAD``,
``CRM_ENTITY_TYPE``, ``CRM_ENTITY_ID``), ``telephony.externalcall.finish`` (result: the call's
statistics record), ``telephony.externalCall.attachRecord`` (with ``RECORD_URL``: one download
attempt, as the portal makes, and an error if it fails; result ``FILE_ID``). Names are
case-insensitive, as on a real portal.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

USER, TOKEN = "1", "s3cr3tw3bh00kt0k3n"


@dataclass
class FakeCall:
    call_id: str
    register: dict[str, Any]
    finish: dict[str, Any] | None = None
    record_name: str | None = None
    record: bytes | None = None


@dataclass
class FakeBitrix24:
    rate: float = 2.0
    burst: int = 2
    user: str = USER
    token: str = TOKEN
    calls: dict[str, FakeCall] = field(default_factory=dict)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # executed: (method, params)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (method, error code or HTTP status)
    port: int = 0
    _status: int | None = None
    _expired: bool = False
    _tokens: float = 0.0
    _at: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rest/{self.user}/{self.token}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/rest/{user}/{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tokens, self._at = float(self.burst), time.monotonic()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_with(self, status: int | None) -> None:
        self._status = status

    def expire_token(self, expired: bool = True) -> None:
        self._expired = expired

    def methods(self) -> list[str]:
        return [m for m, _ in self.log]

    # --- the portal ----------------------------------------------------------------------------

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].removesuffix(".json")
        if self._status is not None:
            self.refused.append((method, f"HTTP {self._status}"))
            return web.Response(status=self._status, text="<html>Service Unavailable</html>")
        if (request.match_info["user"], request.match_info["token"]) != (self.user, self.token):
            return self._error(method, 401, "INVALID_CREDENTIALS", "Invalid request credentials")
        if self._expired:
            return self._error(method, 401, "expired_token", "The access token provided has expired.")
        if not self._take():
            return self._error(method, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = dict(await request.post())
        handler = {
            "telephony.externalcall.register": self._register,
            "telephony.externalcall.finish": self._finish,
            "telephony.externalcall.attachrecord": self._attach_record,
        }.get(method.lower())
        if handler is None:
            return self._error(method, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        start = time.time()
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        self.log.append((method, params))
        finish = time.time()
        return web.json_response({"result": result, "time": {"start": start, "finish": finish,
                                                             "duration": finish - start}})

    def _error(self, method: str, status: int, code: str, description: str) -> web.Response:
        self.refused.append((method, code))
        return web.json_response({"error": code, "error_description": description}, status=status)

    async def _register(self, p: dict[str, Any]) -> Any:
        method = "telephony.externalcall.register"
        for name in ("PHONE_NUMBER", "TYPE"):
            if not p.get(name):
                return self._error(method, 400, "ERROR_ARGUMENT", f"Argument '{name}' is null or empty")
        if not p.get("USER_ID") and not p.get("USER_PHONE_INNER"):
            return self._error(method, 400, "ERROR_ARGUMENT", "USER_ID or USER_PHONE_INNER should be set")
        if str(p["TYPE"]) not in {"1", "2", "3", "4"}:
            return self._error(method, 400, "ERROR_ARGUMENT", "Unknown TYPE")
        call_id = f"externalCall.{uuid.uuid4().hex}.{int(time.time())}"
        self.calls[call_id] = FakeCall(call_id, dict(p))
        created = str(p.get("CRM_CREATE", "0")) in {"1", "true", "Y"}
        return {"CALL_ID": call_id, "CRM_CREATED_LEAD": len(self.calls) if created else None,
                "CRM_ENTITY_TYPE": "LEAD" if created else None, "CRM_ENTITY_ID": len(self.calls) if created else None}

    async def _finish(self, p: dict[str, Any]) -> Any:
        method = "telephony.externalcall.finish"
        call = self.calls.get(str(p.get("CALL_ID", "")))
        if call is None:
            return self._error(method, 400, "ERROR_NOT_FOUND", "Call is not found or finished")
        if p.get("USER_ID") in (None, "") or p.get("DURATION") in (None, ""):
            return self._error(method, 400, "ERROR_ARGUMENT", "USER_ID and DURATION are required")
        if call.finish is not None:
            return self._error(method, 400, "ERROR_NOT_FOUND", "Call is not found or finished")
        call.finish = dict(p)
        return {"CALL_ID": call.call_id, "PORTAL_USER_ID": p["USER_ID"], "CALL_DURATION": p["DURATION"],
                "CALL_FAILED_CODE": str(p.get("STATUS_CODE", "200")), "CALL_TYPE": call.register["TYPE"],
                "PHONE_NUMBER": call.register["PHONE_NUMBER"], "CRM_ACTIVITY_ID": len(self.calls)}

    async def _attach_record(self, p: dict[str, Any]) -> Any:
        method = "telephony.externalCall.attachRecord"
        call = self.calls.get(str(p.get("CALL_ID", "")))
        if call is None:
            return self._error(method, 400, "ERROR_NOT_FOUND", "Call is not found")
        name = str(p.get("FILENAME", ""))
        if not name.lower().endswith((".wav", ".mp3")):
            return self._error(method, 400, "ERROR_ARGUMENT", "FILENAME should end with wav or mp3")
        url = p.get("RECORD_URL")
        if url:  # one attempt, as the portal makes
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                        session.get(url) as resp:
                    if resp.status != 200:
                        return self._error(method, 400, "ERROR_RECORD_DOWNLOAD", f"HTTP {resp.status}")
                    record = await resp.read()
            except aiohttp.ClientError as exc:
                return self._error(method, 400, "ERROR_RECORD_DOWNLOAD", type(exc).__name__)
            call.record_name, call.record = name, record  # together: a test waits on either
            return {"FILE_ID": len(self.calls)}
        call.record_name = name
        return {"FILE_ID": len(self.calls), "uploadUrl": f"http://127.0.0.1:{self.port}/upload/{call.call_id}"}


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
