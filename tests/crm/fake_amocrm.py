"""A local amoCRM account: the API v4 parts the CRM bridge calls, as documented
(crm_bridge/connectors/amocrm.py cites the pages).

- ``Authorization: Bearer <long-lived token>``; another or none: 401 problem+json
  (``{"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401, "detail": …}``);
  ``revoke()``: the token stops working (an admin replacing it), 401 until ``revoke(False)``;
- more than ``rate`` requests per second (7 per integration, burst ``burst``): 429, not executed;
- a request body that breaks a method's rules: 400 with ``validation-errors``
  (``[{"request_id": "0", "errors": [{"code": "NotBlank", "path": "…", "detail": "…"}]}]``);
- ``fail_with(503)``: every request answers that status; ``await stop()`` / ``await start()``: the
  account is unreachable and back on the same port.

Methods: ``POST /api/v4/calls`` (a batch; each call is filed in the card of the contact owning its
``phone``; without one it is not filed and the answer's ``errors`` says so; answer
``{"_total_items", "errors", "_embedded": {"calls": [{"id", "entity_id", "entity_type", "request_id"}]}}``),
``GET /api/v4/contacts?query=`` and ``GET /api/v4/leads?query=`` (200 with ``_embedded`` or 204 No
Content when nothing matches), ``POST /api/v4/leads`` (a batch; ``name`` required, ``price`` an
integer; ``_embedded.leads[].id``), ``PATCH /api/v4/leads/{id}`` (404 for an unknown lead),
``POST /api/v4/leads/{id}/notes`` and ``POST /api/v4/contacts/{id}/notes`` (``note_type`` ``common``
with ``params.text``; an unknown id: 404).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "amo-long-lived-token-0123456789abcdefABCDEF"


@dataclass
class FakeLead:
    id: int
    fields: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeAmoCrm:
    rate: float = 7.0
    burst: int = 7
    token: str = TOKEN
    contacts: dict[str, int] = field(default_factory=dict)  # phone -> contact id
    calls: list[dict[str, Any]] = field(default_factory=list)  # filed calls, in order
    unmatched: list[dict[str, Any]] = field(default_factory=list)  # calls with no card for their number
    leads: dict[int, FakeLead] = field(default_factory=dict)
    contact_notes: dict[int, list[str]] = field(default_factory=dict)  # contact id -> its notes' texts
    log: list[str] = field(default_factory=list)  # executed "METHOD /path"
    refused: list[tuple[str, int]] = field(default_factory=list)  # ("METHOD /path", status)
    port: int = 0
    leaky: bool = False  # errors quote the request's Authorization header (a careless proxy does)
    _status: int | None = None
    _revoked: bool = False
    _tokens: float = 0.0
    _at: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/v4/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]
        self._tokens, self._at = float(self.burst), time.monotonic()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_with(self, status: int | None) -> None:
        self._status = status

    def revoke(self, revoked: bool = True) -> None:
        self._revoked = revoked

    def add_contact(self, phone: str) -> int:
        self.contacts[phone] = len(self.contacts) + 1001
        return self.contacts[phone]

    # --- the account ----------------------------------------------------------------------------

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _problem(self, what: str, status: int, title: str, detail: str, **extra: Any) -> web.Response:
        self.refused.append((what, status))
        body = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail, **extra}
        return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json")

    def _invalid(self, what: str, errors: list[tuple[int, str, str, str]]) -> web.Response:
        if self.leaky:
            errors = [(i, code, path, f"{detail} (Authorization: Bearer {self.token})")
                      for i, code, path, detail in errors]
        by_request: dict[str, list[dict[str, str]]] = {}
        for index, code, path, detail in errors:
            by_request.setdefault(str(index), []).append({"code": code, "path": path, "detail": detail})
        return self._problem(what, 400, "Bad Request", "Request validation failed", **{
            "validation-errors": [{"request_id": k, "errors": v} for k, v in by_request.items()]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        what = f"{request.method} /api/v4{path}"
        if self._status is not None:
            self.refused.append((what, self._status))
            return web.Response(status=self._status, text="<html>503 Service Temporarily Unavailable</html>")
        if request.headers.get("Authorization") != f"Bearer {self.token}" or self._revoked:
            return self._problem(what, 401, "Unauthorized", "Unauthorized")
        if not self._take():
            return self._problem(what, 429, "Too Many Requests", "Too many requests")
        body: Any = None
        if request.method in ("POST", "PATCH"):
            try:
                body = await request.json()
            except ValueError:
                return self._problem(what, 400, "Bad Request", "Invalid JSON")
        parts = path.strip("/").split("/")
        answer: web.StreamResponse
        if request.method == "POST" and parts == ["calls"]:
            answer = self._add_calls(what, body)
        elif request.method == "GET" and parts == ["contacts"]:
            query = request.query.get("query", "")
            found = [{"id": cid} for phone, cid in self.contacts.items() if query and query == phone]
            answer = self._list("contacts", found)
        elif request.method == "GET" and parts == ["leads"]:
            query = request.query.get("query", "")
            found = [{"id": lead.id, "name": lead.fields.get("name")} for lead in self.leads.values()
                     if query and query in str(lead.fields.get("name"))]
            answer = self._list("leads", found)
        elif request.method == "POST" and parts == ["leads"]:
            answer = self._add_leads(what, body)
        elif len(parts) == 2 and parts[0] == "leads" and request.method == "PATCH":
            answer = self._patch_lead(what, parts[1], body)
        elif len(parts) == 3 and parts[0] == "leads" and parts[2] == "notes" and request.method == "POST":
            answer = self._add_notes(what, parts[1], body)
        elif len(parts) == 3 and parts[0] == "contacts" and parts[2] == "notes" and request.method == "POST":
            answer = self._add_contact_notes(what, parts[1], body)
        else:
            answer = self._problem(what, 404, "Not Found", "Not found")
        if answer.status < 300:
            self.log.append(what)
        return answer

    def _list(self, key: str, found: list[dict[str, Any]]) -> web.Response:
        if not found:
            return web.Response(status=204)
        return web.json_response({"_page": 1, "_embedded": {key: found}}, content_type="application/hal+json")

    def _add_calls(self, what: str, body: Any) -> web.Response:
        if not isinstance(body, list) or not body:
            return self._invalid(what, [(0, "NotBlank", "", "This value should not be blank.")])
        errors = []
        for i, call in enumerate(body):
            if call.get("direction") not in ("inbound", "outbound"):
                errors.append((i, "NotSupportedChoice", "direction", "The value you selected is not a valid choice."))
            if not isinstance(call.get("duration"), int) or call["duration"] < 0:
                errors.append((i, "InvalidType", "duration", "This value should be of type int."))
            for name in ("source", "phone"):
                if not call.get(name):
                    errors.append((i, "NotBlank", name, "This value should not be blank."))
            if "call_status" in call and call["call_status"] not in range(1, 8):
                errors.append((i, "NotSupportedChoice", "call_status", "The value you selected is not a valid choice."))
        if errors:
            return self._invalid(what, errors)
        filed, unfiled = [], []
        for i, call in enumerate(body):
            contact = self.contacts.get(call["phone"])
            if contact is None:
                self.unmatched.append(call)
                unfiled.append({"request_id": str(i), "status": 404, "title": "Not Found",
                                "detail": "Entity with this phone not found"})
                continue
            self.calls.append(call)
            filed.append({"id": len(self.calls), "entity_id": contact, "entity_type": "contacts",
                          "account_id": 1, "request_id": str(i)})
        return web.json_response({"_total_items": len(filed), "errors": unfiled, "_embedded": {"calls": filed}},
                                 content_type="application/hal+json")

    def _add_leads(self, what: str, body: Any) -> web.Response:
        if not isinstance(body, list) or not body:
            return self._invalid(what, [(0, "NotBlank", "", "This value should not be blank.")])
        errors = [(i, "InvalidType", "price", "This value should be of type int.")
                  for i, lead in enumerate(body) if "price" in lead and not isinstance(lead["price"], int)]
        errors += [(i, "NotBlank", "name", "This value should not be blank.")
                   for i, lead in enumerate(body) if not lead.get("name")]
        if errors:
            return self._invalid(what, errors)
        made = []
        for i, fields in enumerate(body):
            lead = FakeLead(len(self.leads) + 5001, dict(fields))
            self.leads[lead.id] = lead
            made.append({"id": lead.id, "request_id": str(i), "_links": {"self": {"href": f"/api/v4/leads/{lead.id}"}}})
        return web.json_response({"_embedded": {"leads": made}}, content_type="application/hal+json")

    def _lead(self, raw: str) -> FakeLead | None:
        return self.leads.get(int(raw)) if raw.isdigit() else None

    def _patch_lead(self, what: str, raw: str, body: Any) -> web.Response:
        lead = self._lead(raw)
        if lead is None:
            return self._problem(what, 404, "Not Found", "Lead not found")
        if not isinstance(body, dict):
            return self._invalid(what, [(0, "InvalidType", "", "This value should be of type object.")])
        if "price" in body and not isinstance(body["price"], int):
            return self._invalid(what, [(0, "InvalidType", "price", "This value should be of type int.")])
        lead.fields.update(body)
        lead.patches.append(dict(body))
        return web.json_response({"id": lead.id, "updated_at": int(time.time())}, content_type="application/hal+json")

    def _add_contact_notes(self, what: str, raw: str, body: Any) -> web.Response:
        if not raw.isdigit() or int(raw) not in self.contacts.values():
            return self._problem(what, 404, "Not Found", "Contact not found")
        if not isinstance(body, list) or any(n.get("note_type") != "common" or not (n.get("params") or {}).get("text")
                                             for n in body):
            return self._invalid(what, [(0, "NotBlank", "params.text", "This value should not be blank.")])
        notes = self.contact_notes.setdefault(int(raw), [])
        made = []
        for i, note in enumerate(body):
            notes.append(note["params"]["text"])
            made.append({"id": len(notes), "entity_id": int(raw), "request_id": str(i)})
        return web.json_response({"_embedded": {"notes": made}}, content_type="application/hal+json")

    def _add_notes(self, what: str, raw: str, body: Any) -> web.Response:
        lead = self._lead(raw)
        if lead is None:
            return self._problem(what, 404, "Not Found", "Lead not found")
        if not isinstance(body, list) or any(n.get("note_type") != "common" or not (n.get("params") or {}).get("text")
                                             for n in body):
            return self._invalid(what, [(0, "NotBlank", "params.text", "This value should not be blank.")])
        made = []
        for i, note in enumerate(body):
            lead.notes.append(note["params"]["text"])
            made.append({"id": len(lead.notes), "entity_id": lead.id, "request_id": str(i)})
        return web.json_response({"_embedded": {"notes": made}}, content_type="application/hal+json")
