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

Deals (``crm`` scope): ``crm.deal.add`` (``fields``; result: the new id), ``crm.deal.update``
(``id``, ``fields``; result ``true``; an unknown id: 400 "Not found"), ``crm.deal.productrows.set``
(``id``, ``rows`` each with PRODUCT_ID or PRODUCT_NAME, PRICE, QUANTITY; the rows replace the deal's
and OPPORTUNITY becomes their sum, as the portal recomputes it), ``crm.deal.list`` (``filter`` on
ORIGINATOR_ID / ORIGIN_ID, ``select``), ``crm.duplicate.findbycomm`` (``type`` PHONE, ``values``;
result ``{"CONTACT": [ids]}`` or ``[]`` when none, as the portal answers an empty PHP array).

Methods: ``telephony.externalcall.register`` (result ``CALL_ID``, ``CRM_CREATED_LEAD``,
``CRM_ENTITY_TYPE``, ``CRM_ENTITY_ID``), ``telephony.externalcall.finish`` (result: the call's
statistics record), ``telephony.externalCall.attachRecord`` (with ``RECORD_URL``: one download
attempt, as the portal makes, and an error if it fails; result ``FILE_ID``),
``telephony.call.attachTranscription`` (CALL_ID, optional COST/COST_CURRENCY, MESSAGES: a list of
``{SIDE: User|Client, START_TIME, STOP_TIME: whole seconds from the call's start, MESSAGE}``, as
https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/telephony_call_attachtranscription.php
lists them; result ``true``). Names are case-insensitive, as on a real portal.

The read side (the pull, crm_bridge/sync): ``add_reads(fake, Portal())`` serves a seeded portal's
``crm.contact.list``, ``crm.product.list``, ``crm.deal.list``, ``crm.deal.productrows.get`` and
``batch`` (see the section below).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

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
    transcription: dict[str, Any] | None = None  # attachTranscription's parameters


@dataclass
class FakeDeal:
    id: int
    fields: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # each crm.deal.update's fields


@dataclass
class FakeBitrix24:
    rate: float = 2.0
    burst: int = 2
    user: str = USER
    token: str = TOKEN
    calls: dict[str, FakeCall] = field(default_factory=dict)
    deals: dict[int, FakeDeal] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)  # phone -> contact id (crm.duplicate.findbycomm)
    _lost_answers: dict[str, int] = field(default_factory=dict)  # method -> status (fail_once)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # executed: (method, params)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (method, error code or HTTP status)
    port: int = 0
    # The read side (crm.*.list, batch): methods added by tests.crm.fake_bitrix24 `add_reads` (name -> handler).
    reads: dict[str, Any] = field(default_factory=dict)
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
        self._runner = web.AppRunner(app, access_log=None)  # the portal's log, not ours: it holds the token
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
        handler = self.reads.get(method.lower()) or {
            "telephony.externalcall.register": self._register,
            "telephony.externalcall.finish": self._finish,
            "telephony.externalcall.attachrecord": self._attach_record,
            "telephony.call.attachtranscription": self._attach_transcription,
            **self._deal_methods(),
        }.get(method.lower())
        if handler is None:
            return self._error(method, 404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        start = time.time()
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        self.log.append((method, params))
        lost = self._lost_answers.pop(method.lower(), None)
        if lost is not None:  # done, but the caller never hears it
            return web.Response(status=lost, text="<html>Internal Server Error</html>")
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

    async def _attach_transcription(self, p: dict[str, Any]) -> Any:
        method = "telephony.call.attachTranscription"
        call = self.calls.get(str(p.get("CALL_ID", "")))
        if call is None:
            return self._error(method, 400, "ERROR_NOT_FOUND", "Call is not found")
        messages = p.get("MESSAGES")
        if not isinstance(messages, list) or not messages:
            return self._error(method, 400, "ERROR_ARGUMENT", "MESSAGES should be a non-empty array")
        for n, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("SIDE") not in ("User", "Client"):
                return self._error(method, 400, "ERROR_ARGUMENT", f"MESSAGES[{n}][SIDE] should be User or Client")
            times = [m.get("START_TIME"), m.get("STOP_TIME")]
            if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in times) \
                    or times[0] > times[1]:
                return self._error(method, 400, "ERROR_ARGUMENT",
                                   f"MESSAGES[{n}]: START_TIME and STOP_TIME should be seconds, start <= stop")
            if not isinstance(m.get("MESSAGE"), str) or not m["MESSAGE"].strip():
                return self._error(method, 400, "ERROR_ARGUMENT", f"MESSAGES[{n}][MESSAGE] is empty")
        cost = p.get("COST")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)):
            return self._error(method, 400, "ERROR_ARGUMENT", "COST should be a number")
        if cost is not None and not isinstance(p.get("COST_CURRENCY"), str):
            return self._error(method, 400, "ERROR_ARGUMENT", "COST_CURRENCY should be set with COST")
        call.transcription = dict(p)
        return True

    # --- deals (crm scope); kept apart from the telephony methods above -------------------------

    def _deal_methods(self) -> dict[str, Any]:
        return {
            "crm.deal.add": self._deal_add,
            "crm.deal.update": self._deal_update,
            "crm.deal.productrows.set": self._deal_rows,
            "crm.deal.list": self._deal_list,
            "crm.duplicate.findbycomm": self._find_by_comm,
        }

    def fail_once(self, method: str, status: int = 500) -> None:
        """The next call of ``method`` is executed, but its answer is lost: ``status`` instead."""
        self._lost_answers[method.lower()] = status

    def deal_methods(self) -> list[str]:
        return [m for m in self.methods() if m.startswith("crm.")]

    async def _deal_add(self, p: dict[str, Any]) -> Any:
        fields = p.get("fields")
        if not isinstance(fields, dict) or not fields:
            return self._error("crm.deal.add", 400, "", "Parameter 'fields' must be array.")
        deal = FakeDeal(len(self.deals) + 1, dict(fields))
        self.deals[deal.id] = deal
        return deal.id

    def _deal(self, method: str, p: dict[str, Any]) -> FakeDeal | web.Response:
        try:
            deal = self.deals.get(int(p.get("id") or 0))
        except (TypeError, ValueError):
            deal = None
        return deal if deal is not None else self._error(method, 400, "", "Not found")

    async def _deal_update(self, p: dict[str, Any]) -> Any:
        deal = self._deal("crm.deal.update", p)
        if isinstance(deal, web.Response):
            return deal
        fields = p.get("fields")
        if not isinstance(fields, dict):
            return self._error("crm.deal.update", 400, "", "Parameter 'fields' must be array.")
        deal.fields.update(fields)
        deal.updates.append(dict(fields))
        return True

    async def _deal_rows(self, p: dict[str, Any]) -> Any:
        deal = self._deal("crm.deal.productrows.set", p)
        if isinstance(deal, web.Response):
            return deal
        rows = p.get("rows")
        if not isinstance(rows, list) or any(
                not isinstance(r, dict) or not (r.get("PRODUCT_ID") or r.get("PRODUCT_NAME")) for r in rows):
            return self._error("crm.deal.productrows.set", 400, "", "Product rows are invalid.")
        deal.rows = [dict(r) for r in rows]
        total = sum(float(r.get("PRICE") or 0) * float(r.get("QUANTITY") or 0) for r in rows)
        deal.fields["OPPORTUNITY"] = f"{total:.2f}"
        return True

    async def _deal_list(self, p: dict[str, Any]) -> Any:
        wanted = p.get("filter") or {}
        found = [d for d in self.deals.values()
                 if all(str(d.fields.get(k)) == str(v) for k, v in wanted.items())]
        return [{"ID": str(d.id)} for d in found]

    async def _find_by_comm(self, p: dict[str, Any]) -> Any:
        if p.get("type") not in ("PHONE", "EMAIL") or not isinstance(p.get("values"), list):
            return self._error("crm.duplicate.findbycomm", 400, "", "Parameter 'type' is not defined")
        ids = [self.contacts[v] for v in p["values"] if v in self.contacts]
        return {"CONTACT": ids} if ids else []


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- the read side: crm.contact.list, crm.product.list, crm.deal.list, crm.deal.productrows.get, batch ----
#
# As documented (https://apidocs.bitrix24.ru/api-reference/crm/contacts/crm-contact-list.html and the
# "list methods" page): ``select``, ``filter`` with prefixed keys (``>=DATE_MODIFY``, ``>ID``, ``=X``),
# ``order``, ``start``; 50 records a page; the answer ``{"result": [...], "total": N, "next": start+50
# (only when more), "time": {"start", "finish", "duration", "date_start", "date_finish"}}``. Dates are
# the portal's local time with its offset (``2026-11-28T20:12:03+03:00``). ``batch`` runs up to 50
# ``method?query`` commands and answers ``{"result": {"result": {key: …}, "result_error": {key: {…}},
# "result_total": {…}, "result_next": {…}, "result_time": {…}}}``.

PAGE = 50
PORTAL_TZ = timezone(timedelta(hours=3))  # a Moscow portal


@dataclass
class Portal:
    """The CRM records of a fake portal, the portal's clock, and what was asked of it."""

    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    deals: dict[int, dict[str, Any]] = field(default_factory=dict)
    rows: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # deal id -> product rows
    now: datetime = field(default_factory=lambda: datetime.now(PORTAL_TZ).replace(microsecond=0))
    served: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)  # (method, params, records)
    # Called before a read is served: a test breaks the portal from here (fail_with, stop…).
    before_read: Callable[[str, dict[str, Any]], None] | None = None
    throttle_next: int = 0  # this many more reads answer QUERY_LIMIT_EXCEEDED

    def stamp(self) -> str:
        return self.now.isoformat()

    def tick(self, seconds: float = 60) -> None:
        self.now += timedelta(seconds=seconds)

    def contact(self, cid: int, name: str, last: str = "", second: str = "", phones: tuple[str, ...] = ()) -> None:
        self.contacts[cid] = {"ID": str(cid), "NAME": name, "SECOND_NAME": second, "LAST_NAME": last,
                              "PHONE": [{"ID": str(cid * 10 + n), "VALUE_TYPE": "WORK", "VALUE": p, "TYPE_ID": "PHONE"}
                                        for n, p in enumerate(phones)] or None,
                              "DATE_CREATE": self.stamp(), "DATE_MODIFY": self.stamp()}

    def product(self, pid: int, name: str, price: str, code: str | None = None, active: bool = True) -> None:
        self.products[pid] = {"ID": str(pid), "NAME": name, "CODE": code, "PRICE": price, "CURRENCY_ID": "RUB",
                              "ACTIVE": "Y" if active else "N", "MEASURE": 9, "TIMESTAMP_X": self.stamp(),
                              "DATE_CREATE": self.stamp()}

    def deal(self, did: int, contact: int | None, created: datetime, rows: list[tuple[int, str, str]],
             semantic: str = "P") -> None:
        """rows: (product id or 0, quantity, price); the row's name comes from the product."""
        self.deals[did] = {"ID": str(did), "TITLE": f"Заказ {did}", "CONTACT_ID": str(contact) if contact else None,
                           "DATE_CREATE": created.astimezone(PORTAL_TZ).isoformat(), "DATE_MODIFY": self.stamp(),
                           "STAGE_ID": "WON" if semantic == "S" else "LOSE" if semantic == "F" else "NEW",
                           "STAGE_SEMANTIC_ID": semantic}
        self.rows[did] = [{"ID": str(did * 100 + n), "OWNER_ID": str(did), "OWNER_TYPE": "D", "PRODUCT_ID": pid,
                           "PRODUCT_NAME": self.products.get(pid, {}).get("NAME", "Доставка"), "PRICE": price,
                           "QUANTITY": qty, "MEASURE_CODE": 796, "MEASURE_NAME": "шт"}
                          for n, (pid, qty, price) in enumerate(rows)]

    def touch(self, table: dict[int, dict[str, Any]], rid: int, **changes: Any) -> None:
        stamp = "TIMESTAMP_X" if table is self.products else "DATE_MODIFY"
        table[rid].update(changes, **{stamp: self.stamp()})

    def asked(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p, _ in self.served if m == method]

    def records_served(self, method: str) -> int:
        return sum(n for m, _, n in self.served if m == method)


def add_reads(fake: FakeBitrix24, portal: Portal) -> None:
    """Serve ``portal`` through the fake's list methods and ``batch``."""
    tables = {"crm.contact.list": portal.contacts, "crm.product.list": portal.products, "crm.deal.list": portal.deals}
    for method, table in tables.items():
        fake.reads[method] = _list_handler(fake, portal, method, table)
    fake.reads["crm.deal.productrows.get"] = _rows_handler(fake, portal)
    fake.reads["batch"] = _batch_handler(fake, portal)


def _answer(fake: FakeBitrix24, portal: Portal, method: str, params: dict[str, Any], body: dict[str, Any],
            records: int) -> web.Response:
    portal.served.append((method, params, records))
    fake.log.append((method, params))
    stamp = portal.stamp()
    return web.json_response({**body, "time": {"start": time.time(), "finish": time.time(), "duration": 0.01,
                                               "processing": 0.005, "date_start": stamp, "date_finish": stamp}})


def _refuse_read(fake: FakeBitrix24, portal: Portal, method: str, params: dict[str, Any]) -> web.Response | None:
    if portal.before_read is not None:
        portal.before_read(method, params)
    if fake._status is not None:  # set by before_read
        fake.refused.append((method, f"HTTP {fake._status}"))
        return web.Response(status=fake._status, text="<html>Service Unavailable</html>")
    if portal.throttle_next > 0:
        portal.throttle_next -= 1
        return fake._error(method, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    return None


def _matches(record: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key, wanted in filters.items():
        op = next((o for o in (">=", "<=", ">", "<", "!=", "=") if key.startswith(o)), "=")
        name = key[len(op):] if key.startswith(op) else key
        value = record.get(name)
        if name.startswith("DATE") or name == "TIMESTAMP_X":
            value, wanted = datetime.fromisoformat(str(value)), datetime.fromisoformat(str(wanted))
        elif name == "ID":
            value, wanted = int(value), int(wanted)
        ok = {">=": value >= wanted, "<=": value <= wanted, ">": value > wanted, "<": value < wanted,
              "!=": value != wanted, "=": value == wanted}[op]
        if not ok:
            return False
    return True


def _list_handler(fake: FakeBitrix24, portal: Portal, method: str, table: dict[int, dict[str, Any]]) -> Any:
    async def handle(params: dict[str, Any]) -> Any:
        refused = _refuse_read(fake, portal, method, params)
        if refused is not None:
            return refused
        filters = params.get("filter") or {}
        try:
            found = [r for r in table.values() if _matches(r, filters)]
            start = int(params.get("start") or 0)
        except (TypeError, ValueError):
            return fake._error(method, 400, "INVALID_ARG_VALUE", "Invalid filter or start")
        order = params.get("order") or {"ID": "ASC"}
        for name, direction in reversed(list(order.items())):
            found.sort(key=lambda r, n=name: int(r[n]) if n == "ID" else str(r.get(n)),
                       reverse=str(direction).upper() == "DESC")
        select = params.get("select") or []
        page = found[start:start + PAGE]
        if select:
            page = [{k: v for k, v in r.items() if k in select or k == "ID"} for r in page]
        body: dict[str, Any] = {"result": page, "total": len(found)}
        if start + PAGE < len(found):
            body["next"] = start + PAGE
        return _answer(fake, portal, method, params, body, len(page))

    return handle


def _rows_of(portal: Portal, deal_id: Any) -> list[dict[str, Any]] | None:
    try:
        key = int(deal_id)
    except (TypeError, ValueError):
        return None
    return portal.rows.get(key) if key in portal.deals else None


def _rows_handler(fake: FakeBitrix24, portal: Portal) -> Any:
    async def handle(params: dict[str, Any]) -> Any:
        method = "crm.deal.productrows.get"
        refused = _refuse_read(fake, portal, method, params)
        if refused is not None:
            return refused
        rows = _rows_of(portal, params.get("id"))
        if rows is None:
            return fake._error(method, 400, "ERROR_CORE", "Not found")
        return _answer(fake, portal, method, params, {"result": rows}, len(rows))

    return handle


def _batch_handler(fake: FakeBitrix24, portal: Portal) -> Any:
    async def handle(params: dict[str, Any]) -> Any:
        refused = _refuse_read(fake, portal, "batch", params)
        if refused is not None:
            return refused
        cmd = params.get("cmd") or {}
        if len(cmd) > 50:
            return fake._error("batch", 400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        result: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        served = 0
        for key, line in cmd.items():
            name, _, query = str(line).partition("?")
            args = dict(parse_qsl(query))
            if name.lower() != "crm.deal.productrows.get":
                errors[key] = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
                continue
            rows = _rows_of(portal, args.get("id"))
            if rows is None:
                errors[key] = {"error": "ERROR_CORE", "error_description": "Not found"}
                continue
            result[key] = rows
            served += len(rows)
        return _answer(fake, portal, "batch", params, {"result": {
            "result": result, "result_error": errors or [], "result_total": [], "result_next": [],
            "result_time": {}}}, served)

    return handle
