"""amoCRM / Kommo through a private integration's long-lived token (``Authorization: Bearer …``).

Per call, at its end (``finish_on``: ``call.hungup`` with AMI, else ``call.ended``)::

    POST /api/v4/calls   [{"direction": "inbound", "uniq": <linkedid>, "duration": s, "source": …,
                           "phone": …, "link": <our signed /r/<token> link>, "call_status": 4|3,
                           "call_result": "…", "created_by": user, "responsible_user_id": user,
                           "created_at": unix}]

amoCRM files the call in the card of the contact or company owning the number (and its one open
lead); with no card for the number it files nothing and says so in the answer's ``errors`` (logged as
``crm.amocrm_call_unmatched``, delivered: there is nothing to retry). ``link`` is played by amoCRM's
player from our server (the link stays valid ``crm.link_hours``); ``call_status`` 4 = the talk took
place, 3 = nobody served the caller; ``uniq`` makes the call the same one on amoCRM's side.

Orders as leads (deals), ``leads`` configured; an order's events share the outbox subject
``order:<id>``, so a change waits for the creation and finds the lead's id on its row:

- ``order.created``: on a retry ``GET /api/v4/leads?query=<order id>`` (a lead an unanswered attempt
  made is reused, never a second one; 204 = none), ``GET /api/v4/contacts?query=<the caller's number>``
  (204 = none), ``POST /api/v4/leads`` ``[{"name": "Заказ A-1001", "price", "pipeline_id",
  "status_id", "responsible_user_id", "_embedded": {"contacts": [{"id"}], "tags": [{"name": "ivr"}]}}]``
  → ``_embedded.leads[0].id``, then ``POST /api/v4/leads/{id}/notes``
  ``[{"note_type": "common", "params": {"text": <the lines, total, invoice, delivery date>}}]``;
- ``order.changed``: ``PATCH /api/v4/leads/{id}`` ``{"price"}`` + a note with the new lines and why;
- ``order.cancelled``: ``PATCH /api/v4/leads/{id}`` ``{"status_id": lost_status_id}`` + a note.

Transcripts (``transcript.ready``, state ``done``): a ``common`` note on the card the call was filed
in (the call's answer: ``entity_type``/``entity_id``, kept as its row's ``remote_ref``),
``POST /api/v4/{entity_type}/{entity_id}/notes``, one line per phrase (``[m:ss] side: words``; the
phrases of ``bitrix24.transcript_messages``; no side on a mono recording, which cannot tell). A
call filed nowhere (no card owns the number) has nowhere to put it: delivered without a request.

Errors (``application/problem+json``: ``{"title", "type", "status", "detail"}``): 401 (the token
expired or is being replaced by an admin) → ``Retry``; 429 (more than 7 requests/s per integration)
→ ``Throttled``; 400 with ``validation-errors`` (``[{"request_id", "errors": [{"code", "path",
"detail"}]}]``) or another 4xx → ``Refused``; 5xx, 403 (an account or IP blocked for a while), no
answer → ``Retry``. 204 No Content answers a list with nothing in it.

Docs: https://www.amocrm.ru/developers/content/crm_platform/calls-api ,
https://www.amocrm.ru/developers/content/crm_platform/leads-api ,
https://www.amocrm.ru/developers/content/crm_platform/events-and-notes ,
https://www.amocrm.ru/developers/content/crm_platform/contacts-api ,
https://www.amocrm.com/developers/content/api/errors (validation-errors, 401 codes),
https://www.amocrm.ru/developers/content/oauth/step-by-step (long-lived tokens of private integrations).

The token never leaves the process: every error text passes through ``Scrubber``; the target's
address is the base URL.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import structlog

from crm_bridge.connectors.base import DeliveryContext, Refused, Retry, Throttled
from crm_bridge.connectors.bitrix24 import ANSWERED, first_attempt, status_code, transcript_messages
from crm_bridge.connectors.http import Answer, HttpClient
from crm_bridge.connectors.recording_links import RecordingLinks
from crm_bridge.connectors.secrets import Scrubber, scrub_url
from crm_bridge.contract.events import EventKind
from crm_bridge.dto import CallView, OutboxItem
from crm_bridge.outbox.routing import ORDER_KINDS
from crm_bridge.transcripts import TranscriptState

log = structlog.get_logger("crm_bridge.connectors.amocrm")

CALLS = "/api/v4/calls"
LEADS = "/api/v4/leads"
CONTACTS = "/api/v4/contacts"
NOTE_ENTITIES = frozenset({"contacts", "companies", "leads", "customers"})  # /api/v4/{entity_type}/{id}/notes
SIDE_NAMES = {"Client": "Клиент", "User": "Робот/оператор"}
TALKED, NOT_SERVED = 4, 3  # amoCRM call_status: 4 "разговор состоялся", 3 "нет на месте"
TAG = "ivr"


@dataclass(frozen=True)
class LeadSettings:
    """Where orders land as leads: the pipeline (0: the main one), the stage of a new lead (0: the
    pipeline's first) and of a cancelled order's lead (143: closed, not realised)."""

    pipeline_id: int = 0
    status_id: int = 0
    lost_status_id: int = 143


class AmoCrmTarget:
    def __init__(self, name: str, base_url: str, token: str, *, source: str, default_user: int,
                 users: Mapping[str, str], finish_on: str, links: RecordingLinks | None,
                 leads: LeadSettings | None, rate: float, burst: int, timeout: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: base_url must look like https://<subdomain>.amocrm.ru, "
                             f"got {scrub_url(base_url)!r}")
        if len(token) < 16:
            raise ValueError(f"{name}: token must be the integration's long-lived token")
        self.name, self.rate, self.burst = name, rate, burst
        self.address = scrub_url(base_url)
        self._base = base_url.rstrip("/")
        self._token = token
        self._source = source or "ivr"
        self._default_user = default_user
        self._users = {k: int(v) for k, v in users.items()}
        self._finish_on, self._links, self._leads = finish_on, links, leads
        kinds = {finish_on, EventKind.TRANSCRIPT_READY.value}  # none is written with speech.transcripts off
        if leads is not None:
            kinds |= ORDER_KINDS
        self.kinds = frozenset(kinds)
        self._scrub = Scrubber([token])
        self._http = HttpClient(timeout, self._scrub)
        self._pace: Callable[[], Awaitable[None]] = DeliveryContext.pace

    async def deliver(self, item: OutboxItem, context: DeliveryContext) -> str | None:
        self._pace = context.pace  # the worker delivers one row at a time per target
        if item.kind in ORDER_KINDS and self._leads is not None:
            return await self._order(item, context, self._leads)
        if item.kind == self._finish_on and item.call_id is not None:
            return await self._log_call(item, await context.call(item.call_id))
        if item.kind == EventKind.TRANSCRIPT_READY and item.call_id is not None:
            await self._transcript_note(item, context)
            return None
        raise Refused(f"{item.kind} is not sent to amoCRM")

    # --- calls ------------------------------------------------------------------------------------

    async def _log_call(self, item: OutboxItem, call: CallView | None) -> str | None:
        assert item.call_id is not None
        body = self.call_entry(item, call)
        answer = await self._request("POST", CALLS, [body])
        calls = _embedded(answer, "calls")
        if calls:
            first = calls[0]
            return f"{first.get('entity_type', '')}:{first.get('entity_id', '')}"
        # No card owns the number: amoCRM files the call nowhere (nothing to retry).
        log.info("crm.amocrm_call_unmatched", call_id=item.call_id, target=self.name)
        return None

    async def _transcript_note(self, item: OutboxItem, context: DeliveryContext) -> None:
        assert item.call_id is not None
        data = item.payload.get("data") or {}
        transcript_id = data.get("transcript_id")
        if data.get("state") != TranscriptState.DONE or not isinstance(transcript_id, int):
            return
        card = await context.remote_ref(item.call_id, self._finish_on)  # "contacts:17", as the call was filed
        entity, _, entity_id = (card or "").partition(":")
        if entity not in NOTE_ENTITIES or not entity_id.isdigit():
            log.info("crm.amocrm_transcript_unfiled", call_id=item.call_id, target=self.name)
            return
        transcript = await context.transcript(transcript_id)
        if transcript is None:
            raise Refused(f"transcript {transcript_id} is not in the store")
        stereo = any(w.speaker for w in transcript.words)
        lines = [f"[{m['START_TIME'] // 60}:{m['START_TIME'] % 60:02d}] "
                 + (f"{SIDE_NAMES[m['SIDE']]}: " if stereo else "") + m["MESSAGE"]
                 for m in transcript_messages(transcript.words)]
        if lines:
            await self._request("POST", f"/api/v4/{entity}/{entity_id}/notes", [
                {"note_type": "common", "params": {"text": "Расшифровка звонка\n" + "\n".join(lines)}}])

    def call_entry(self, item: OutboxItem, call: CallView | None) -> dict[str, Any]:
        data = item.payload.get("data") or {}
        user = self._default_user
        duration = 0
        outcome = data.get("outcome")
        phone = data.get("caller") or ""
        started = item.occurred_at
        if call is not None:
            user = self._users.get(call.operator_interface or "", self._default_user)
            end: datetime = call.ended_at or item.occurred_at
            duration = max(0, round((end - call.started_at).total_seconds()))
            outcome = call.outcome or outcome
            phone = call.normalized_number or call.caller_number or phone
            started = call.started_at
        answered = status_code(outcome) == ANSWERED
        entry: dict[str, Any] = {
            "direction": "inbound", "uniq": item.call_id, "duration": duration, "source": self._source,
            "phone": phone, "call_status": TALKED if answered else NOT_SERVED,
            "call_result": _RESULTS.get(outcome or "", outcome or ""), "created_at": int(started.timestamp()),
        }
        if self._links is not None and item.call_id:
            entry["link"] = self._links.url(item.call_id)
        if user:
            entry["created_by"] = user
            entry["responsible_user_id"] = user
        return entry

    # --- orders as leads --------------------------------------------------------------------------

    async def _order(self, item: OutboxItem, context: DeliveryContext, leads: LeadSettings) -> str | None:
        data = item.payload.get("data") or {}
        order_id = str(data.get("order_id") or "")
        if not order_id:
            raise Refused(f"{item.kind} without order_id")
        title = f"Заказ {order_id}"
        if item.kind == EventKind.ORDER_CREATED:
            # Looked up on a retry: an attempt whose answer was lost may have made the lead already.
            lead = None if first_attempt(item) else await self._lead_named(title)
            if lead is None:
                entry: dict[str, Any] = {"name": title, "price": _whole(data.get("total")),
                                         "_embedded": {"tags": [{"name": TAG}]}}
                if leads.pipeline_id:
                    entry["pipeline_id"] = leads.pipeline_id
                if leads.status_id:
                    entry["status_id"] = leads.status_id
                if self._default_user:
                    entry["responsible_user_id"] = self._default_user
                contact = await self._contact(item, context)
                if contact is not None:
                    entry["_embedded"]["contacts"] = [{"id": contact}]
                made = _embedded(await self._request("POST", LEADS, [entry]), "leads")
                if not made or not made[0].get("id"):
                    raise Retry("POST /api/v4/leads answered without an id")
                lead = str(made[0]["id"])
            await self._note(lead, order_note(data, created=True))
            return lead
        lead = await context.subject_ref(item.subject) if item.subject else None
        lead = lead or await self._lead_named(title)
        if lead is None:
            raise Refused(f"order {order_id} has no lead in amoCRM")
        if item.kind == EventKind.ORDER_CHANGED:
            await self._request("PATCH", f"{LEADS}/{lead}", {"price": _whole(data.get("total"))})
            await self._note(lead, order_note(data, created=False))
        else:
            patch: dict[str, Any] = {"status_id": leads.lost_status_id}
            if leads.pipeline_id:
                patch["pipeline_id"] = leads.pipeline_id
            await self._request("PATCH", f"{LEADS}/{lead}", patch)
            await self._note(lead, f"Заказ {order_id} отменён ({data.get('by') or '—'}): {data.get('reason') or ''}")
        return None

    async def _note(self, lead: str, text: str) -> None:
        await self._request("POST", f"{LEADS}/{lead}/notes", [{"note_type": "common", "params": {"text": text}}])

    async def _lead_named(self, title: str) -> str | None:
        found = _embedded(await self._request("GET", f"{LEADS}?query={quote(title)}", None), "leads")
        for lead in found:
            if lead.get("name") == title and lead.get("id"):
                return str(lead["id"])
        return None

    async def _contact(self, item: OutboxItem, context: DeliveryContext) -> int | None:
        call = await context.call(item.call_id) if item.call_id else None
        phone = (call.normalized_number or call.caller_number) if call is not None else None
        if not phone:
            return None
        found = _embedded(await self._request("GET", f"{CONTACTS}?query={quote(phone)}", None), "contacts")
        return int(found[0]["id"]) if found and found[0].get("id") else None

    # --- the wire ---------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: Any) -> Answer:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        raw = None
        if body is not None:
            raw = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        await self._pace()
        answer = await self._http.request(method, f"{self._base}{path}", raw, headers)
        if 200 <= answer.status < 300:
            return answer
        said = self._scrub(f"{method} {path.split('?')[0]}: HTTP {answer.status} {_problem(answer)}").strip()[:300]
        if answer.status == 429:
            raise Throttled(said, 1.0)
        if answer.status in (401, 403, 408) or answer.status >= 500:
            raise Retry(said)
        raise Refused(said)

    async def close(self) -> None:
        await self._http.close()


_RESULTS = {
    "order_placed": "Робот принял заказ",
    "operator_answered": "Ответил оператор",
    "callback_requested": "Заказан обратный звонок",
    "after_hours": "Звонок в нерабочее время",
}


def _embedded(answer: Answer, key: str) -> list[Mapping[str, Any]]:
    """``_embedded.<key>`` of a HAL answer; [] for 204 No Content or anything else."""
    if answer.status == 204 or not answer.body:
        return []
    try:
        body = json.loads(answer.body)
    except ValueError:
        return []
    found = body.get("_embedded", {}).get(key) if isinstance(body, dict) else None
    return [x for x in found if isinstance(x, Mapping)] if isinstance(found, list) else []


def _problem(answer: Answer) -> str:
    """The problem+json's words: title, detail and each validation error's path and code."""
    try:
        body = json.loads(answer.body or b"{}")
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    words = [str(body.get("title") or ""), str(body.get("detail") or "")]
    for request in body.get("validation-errors") or []:
        for error in (request.get("errors") or []) if isinstance(request, dict) else []:
            if isinstance(error, dict):
                words.append(f"{error.get('path')}: {error.get('code')} ({error.get('detail') or ''})")
    return " ".join(w for w in words if w)


def _whole(total: Any) -> int:
    """amoCRM's budget is whole roubles."""
    try:
        return int(Decimal(str(total or "0")).quantize(Decimal(1)))
    except (InvalidOperation, ValueError):
        return 0


def order_note(data: Mapping[str, Any], *, created: bool) -> str:
    """The note a lead gets: the order's lines, total, invoice and delivery date (or why it changed)."""
    lines: Sequence[Any] = data.get("lines") or []
    text = [f"Заказ {data.get('order_id')}" + ("" if created else f", изменён ({data.get('by') or '—'}): "
                                                                    f"{data.get('reason') or ''}")]
    for line in lines:
        if isinstance(line, Mapping):
            name = " ".join(str(line.get(k) or "") for k in ("unit", "name")).strip() or line.get("sku")
            text.append(f"- {name}: {line.get('quantity')} × {line.get('price')} ₽")
    text.append(f"Итого: {data.get('total')} ₽")
    if data.get("invoice"):
        text.append(f"Счёт: {data['invoice']}")
    if data.get("delivery_date"):
        text.append(f"Доставка: {data['delivery_date']}")
    return "\n".join(text)
