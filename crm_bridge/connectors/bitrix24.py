"""Bitrix24 telephony through an incoming webhook (``https://<portal>/rest/<user>/<token>/``).

Per call, in order (the outbox holds a call's later events until the earlier ones are delivered):

==================  ==========================================  =========================================
event               method                                      parameters
==================  ==========================================  =========================================
call.started        ``telephony.externalcall.register``         USER_ID (``default_user``), PHONE_NUMBER,
                                                                TYPE=2 (inbound), CALL_START_DATE,
                                                                CRM_CREATE (config), SHOW=0, LINE_NUMBER
call end            ``telephony.externalcall.finish``           CALL_ID (register's), USER_ID (the
(``finish_on``)                                                 operator's through ``users``, else the
                                                                default), DURATION, STATUS_CODE, ADD_TO_CHAT=0
recording.ready     ``telephony.externalCall.attachRecord``     CALL_ID, FILENAME, RECORD_URL (a signed,
                                                                expiring ``/r/<token>`` link of ours)
transcript.ready    ``telephony.call.attachTranscription``      CALL_ID, COST=0, COST_CURRENCY=RUB (vosk
(state ``done``)                                                runs here: it costs nothing), MESSAGES
==================  ==========================================  =========================================

Orders as deals (``deals`` configured; each order's events share the outbox subject
``order:<id>``, so a change waits for the creation and finds its deal):

==================  =====================================================================================
order.created       ``crm.deal.list`` on a retry (filter ORIGINATOR_ID=ivr, ORIGIN_ID=<order>: a deal an
                    earlier, unanswered attempt made is reused, never a second one), ``crm.duplicate.findbycomm``
                    (the call's number → CONTACT_ID), ``crm.deal.add`` (TITLE, STAGE_ID, CATEGORY_ID,
                    OPPORTUNITY, CURRENCY_ID=RUB, CONTACT_ID, ASSIGNED_BY_ID, ORIGINATOR_ID, ORIGIN_ID;
                    ``params.REGISTER_SONET_EVENT=N``; result: the deal's id), then
                    ``crm.deal.productrows.set`` (``id``, ``rows``: PRODUCT_NAME, PRICE, QUANTITY; the
                    rows replace the deal's, and the portal recomputes OPPORTUNITY from them)
order.changed       ``crm.deal.update`` (``id``, ``fields``: OPPORTUNITY, CURRENCY_ID) + productrows.set
order.cancelled     ``crm.deal.update`` (``id``, ``fields``: STAGE_ID = the lost stage)
==================  =====================================================================================

Docs: https://dev.1c-bitrix.ru/rest_help/crm/cdeals/crm_deal_add.php, …/crm_deal_update.php,
…/crm_deal_productrows_set.php, …/crm/auxiliary/duplicates/crm_duplicate_findbycomm.php (the incoming
webhook needs the ``crm`` scope besides ``telephony``). The deal's id is the order.created row's
``remote_ref``; a change of an order whose creation never reached the portal (placed before the
target was configured) finds the deal by ORIGIN_ID, or is refused (dead letter) when there is none.

The register's ``result.CALL_ID`` is kept on its outbox row (``remote_ref``) for the later two.
The call end is ``call.hungup`` (the AMI tracker saw the last channel go: operator and talk time
known) when AMI is on, else ``call.ended`` (the robot's part is over).

Errors, as Bitrix24 answers them (``{"error": "...", "error_description": "..."}``):
``QUERY_LIMIT_EXCEEDED`` (HTTP 503, about 2 requests/s per webhook) → ``Throttled``; HTTP 5xx, no
answer, ``expired_token``/``INVALID_CREDENTIALS``/``insufficient_scope``/401 (a webhook being fixed
by an admin) → ``Retry``; any other error (a refused parameter) → ``Refused``.

Transcripts (https://dev.1c-bitrix.ru/rest_help/scope_telephony/telephony/telephony_call_attachtranscription.php):
MESSAGES is a list of phrases ``{SIDE, START_TIME, STOP_TIME, MESSAGE}``, SIDE ``User`` (the portal's
user) or ``Client`` (the outside party), times in whole seconds from the call's start. The event
carries only the text cut short; the words with their timings and speaker are read from our store
(``DeliveryContext.transcript``, one read per batch). A phrase is the run of one speaker's words
without a pause over ``PHRASE_GAP``. Stereo: the caller's track is ``Client``, the robot's or
operator's ``User``. Mono (one mixed track, our dialplan's default): every phrase is ``Client``:
the robot's own prompts are on the timeline already, and ``User`` would put the caller's words in
the mouth of the portal user the finish named. An ``empty``/``failed`` transcript sends nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_bridge.connectors.base import DeliveryContext, Refused, Retry, Throttled
from crm_bridge.connectors.http import HttpClient
from crm_bridge.connectors.recording_links import RecordingLinks
from crm_bridge.connectors.secrets import Scrubber, scrub_url
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import Outcome
from crm_bridge.dto import CallView, OutboxItem
from crm_bridge.outbox.routing import ORDER_KINDS
from crm_bridge.transcripts import TranscriptState, TranscriptWord

REGISTER = "telephony.externalcall.register"
FINISH = "telephony.externalcall.finish"
ATTACH_RECORD = "telephony.externalCall.attachRecord"
ATTACH_TRANSCRIPTION = "telephony.call.attachTranscription"
DEAL_ADD = "crm.deal.add"
DEAL_UPDATE = "crm.deal.update"
DEAL_LIST = "crm.deal.list"
DEAL_ROWS = "crm.deal.productrows.set"
FIND_BY_COMM = "crm.duplicate.findbycomm"
ORIGINATOR = "ivr"  # ORIGINATOR_ID of our deals: with ORIGIN_ID = the order's id, the deal's key
INBOUND = 2
PHRASE_GAP = 1.5  # seconds of silence that end a phrase of one speaker (a mono track has only pauses)
SIDES = {"caller": "Client", "robot": "User"}  # crm_bridge.transcripts speakers -> the portal's SIDE
# Bitrix24's call status codes (SIP-like): 200 answered, 304 missed, 486 busy, 603 declined.
ANSWERED, MISSED = "200", "304"
_ANSWERED = frozenset({Outcome.ORDER_PLACED, Outcome.OPERATOR_ANSWERED, Outcome.CALLBACK_REQUESTED,
                       Outcome.AFTER_HOURS})
_RETRY_ERRORS = frozenset({"QUERY_LIMIT_EXCEEDED", "expired_token", "INVALID_CREDENTIALS", "insufficient_scope",
                           "NO_AUTH_FOUND", "INTERNAL_SERVER_ERROR", "OVERLOAD_LIMIT"})


@dataclass(frozen=True)
class DealSettings:
    """Where orders land as deals: the stage a new deal takes, the stage of a cancelled one, the
    pipeline (CATEGORY_ID; 0 = the main one, whose stages are NEW, WON, LOSE…; another pipeline's
    are ``C<id>:NEW``…)."""

    stage: str = "NEW"
    lost_stage: str = "LOSE"
    category_id: int = 0


def status_code(outcome: str | None) -> str:
    """Answered when a human or the robot served the caller; missed otherwise."""
    return ANSWERED if outcome in _ANSWERED else MISSED


class Bitrix24Target:
    def __init__(self, name: str, webhook_url: str, *, default_user: int, users: Mapping[str, str],
                 crm_create: bool, line_number: str, finish_on: str, links: RecordingLinks | None,
                 rate: float, burst: int, timeout: float, deals: DealSettings | None = None) -> None:
        if not webhook_url.startswith(("http://", "https://")) or "/rest/" not in webhook_url:
            raise ValueError(f"{name}: webhook_url must look like https://<portal>/rest/<user>/<token>/, "
                             f"got {scrub_url(webhook_url)!r}")
        self.name, self.rate, self.burst = name, rate, burst
        self.address = scrub_url(webhook_url)
        self._base = webhook_url.rstrip("/") + "/"
        self._default_user = default_user
        self._users = {k: int(v) for k, v in users.items()}
        self._crm_create, self._line = crm_create, line_number
        self._finish_on, self._links = finish_on, links
        kinds = {EventKind.CALL_STARTED.value, finish_on}
        if links is not None:  # without a public link there is no way for the portal to fetch a file
            kinds.add(EventKind.RECORDING_READY.value)
        # Wanted always: with speech.transcripts off none is written; an empty or failed one is
        # delivered without a request (there is nothing to attach).
        kinds.add(EventKind.TRANSCRIPT_READY.value)
        self._deals = deals
        if deals is not None:
            kinds |= ORDER_KINDS
        self.kinds = frozenset(kinds)
        self._scrub = Scrubber([webhook_url, self._base, webhook_url.rstrip("/").rsplit("/", 1)[-1]])
        self._http = HttpClient(timeout, self._scrub)
        self._pace: Callable[[], Awaitable[None]] = DeliveryContext.pace

    async def deliver(self, item: OutboxItem, context: DeliveryContext) -> str | None:
        self._pace = context.pace  # the worker delivers one row at a time per target
        if item.kind in ORDER_KINDS and self._deals is not None:
            return await self._order(item, context, self._deals)
        if item.call_id is None:
            raise Refused("an event without a call")
        call = await context.call(item.call_id)
        if item.kind == EventKind.CALL_STARTED:
            result = await self._call(REGISTER, self._register(item, call))
            call_id = result.get("CALL_ID") if isinstance(result, Mapping) else None
            if not call_id:
                raise Retry("register answered without CALL_ID")
            return str(call_id)
        remote = await context.remote_ref(item.call_id, EventKind.CALL_STARTED.value)
        if remote is None:  # its register is dead or was never enqueued: an admin retries it first
            raise Retry("the call is not registered in Bitrix24")
        if item.kind == self._finish_on:
            await self._call(FINISH, self._finish(remote, item, call))
        elif item.kind == EventKind.RECORDING_READY and self._links is not None:
            await self._call(ATTACH_RECORD, {
                "CALL_ID": remote, "FILENAME": _filename(item.call_id, item.payload),
                "RECORD_URL": self._links.url(item.call_id),
            })
        elif item.kind == EventKind.TRANSCRIPT_READY:
            messages = await self._messages(item, context)
            if messages:
                await self._call(ATTACH_TRANSCRIPTION, {"CALL_ID": remote, "COST": 0, "COST_CURRENCY": "RUB",
                                                        "MESSAGES": messages})
        else:
            raise Refused(f"{item.kind} is not sent to Bitrix24")
        return None

    def _register(self, item: OutboxItem, call: CallView | None) -> dict[str, Any]:
        data = item.payload.get("data") or {}
        phone = (call.normalized_number or call.caller_number) if call is not None else None
        params: dict[str, Any] = {
            "USER_ID": self._default_user, "PHONE_NUMBER": phone or data.get("caller") or "",
            "TYPE": INBOUND, "CALL_START_DATE": item.occurred_at.isoformat(timespec="seconds"),
            "CRM_CREATE": 1 if self._crm_create else 0, "SHOW": 0,
        }
        if self._line:
            params["LINE_NUMBER"] = self._line
        return params

    async def _messages(self, item: OutboxItem, context: DeliveryContext) -> list[dict[str, Any]]:
        """The transcript's phrases; [] when there is nothing to send (not ``done``, no words)."""
        data = item.payload.get("data") or {}
        transcript_id = data.get("transcript_id")
        if data.get("state") != TranscriptState.DONE or not isinstance(transcript_id, int):
            return []
        transcript = await context.transcript(transcript_id)
        if transcript is None:
            raise Refused(f"transcript {transcript_id} is not in the store")
        if transcript.state != TranscriptState.DONE:
            return []
        return transcript_messages(transcript.words)

    def _finish(self, remote: str, item: OutboxItem, call: CallView | None) -> dict[str, Any]:
        user = self._default_user
        duration = 0
        outcome = None
        if call is not None:
            user = self._users.get(call.operator_interface or "", self._default_user)
            end: datetime = call.ended_at or item.occurred_at
            duration = max(0, round((end - call.started_at).total_seconds()))
            outcome = call.outcome
        outcome = outcome or (item.payload.get("data") or {}).get("outcome")
        return {"CALL_ID": remote, "USER_ID": user, "DURATION": duration, "STATUS_CODE": status_code(outcome),
                "ADD_TO_CHAT": 0}

    # --- orders as deals ---------------------------------------------------------------------------

    async def _order(self, item: OutboxItem, context: DeliveryContext, deals: DealSettings) -> str | None:
        data = item.payload.get("data") or {}
        order_id = str(data.get("order_id") or "")
        if not order_id:
            raise Refused(f"{item.kind} without order_id")
        if item.kind == EventKind.ORDER_CREATED:
            # Looked up on a retry: an attempt whose answer was lost (or whose product rows failed)
            # may have made the deal already, and a second deal for one order is worse than a request.
            deal = None if first_attempt(item) else await self._deal_of(order_id)
            if deal is None:
                fields: dict[str, Any] = {
                    "TITLE": f"Заказ {order_id}", "STAGE_ID": deals.stage, "OPPORTUNITY": str(data.get("total") or "0"),
                    "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": self._default_user, "ORIGINATOR_ID": ORIGINATOR,
                    "ORIGIN_ID": order_id,
                }
                if deals.category_id:
                    fields["CATEGORY_ID"] = deals.category_id
                contact = await self._contact(item, context)
                if contact is not None:
                    fields["CONTACT_ID"] = contact
                result = await self._call(DEAL_ADD, {"fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}})
                if not result:
                    raise Retry("crm.deal.add answered without an id")
                deal = str(result)
            await self._call(DEAL_ROWS, {"id": deal, "rows": product_rows(data.get("lines") or [])})
            return deal
        deal = await context.subject_ref(item.subject) if item.subject else None
        deal = deal or await self._deal_of(order_id)
        if deal is None:
            raise Refused(f"order {order_id} has no deal in Bitrix24")
        if item.kind == EventKind.ORDER_CHANGED:
            await self._call(DEAL_UPDATE, {"id": deal, "fields": {
                "OPPORTUNITY": str(data.get("total") or "0"), "CURRENCY_ID": "RUB"}})
            await self._call(DEAL_ROWS, {"id": deal, "rows": product_rows(data.get("lines") or [])})
        else:
            await self._call(DEAL_UPDATE, {"id": deal, "fields": {"STAGE_ID": deals.lost_stage}})
        return None

    async def _deal_of(self, order_id: str) -> str | None:
        found = await self._call(DEAL_LIST, {"filter": {"ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": order_id},
                                             "select": ["ID"]})
        if isinstance(found, list) and found and isinstance(found[0], Mapping) and found[0].get("ID"):
            return str(found[0]["ID"])
        return None

    async def _contact(self, item: OutboxItem, context: DeliveryContext) -> int | None:
        """The portal's contact with the caller's number (an order from a call), if there is one."""
        call = await context.call(item.call_id) if item.call_id else None
        phone = (call.normalized_number or call.caller_number) if call is not None else None
        if not phone:
            return None
        found = await self._call(FIND_BY_COMM, {"entity_type": "CONTACT", "type": "PHONE", "values": [phone]})
        ids = found.get("CONTACT") if isinstance(found, Mapping) else None  # [] when none: a list, not a dict
        return int(ids[0]) if ids else None

    async def _call(self, method: str, params: Mapping[str, Any]) -> Any:
        await self._pace()
        answer = await self._http.post(f"{self._base}{method}.json", json.dumps(params).encode(),
                                       {"Content-Type": "application/json"})
        try:
            body = json.loads(answer.body or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = body.get("error")
        if answer.status == 200 and error is None:
            return body.get("result")
        said = self._scrub(f"{method}: HTTP {answer.status} {error or ''} {body.get('error_description') or ''}")
        said = said.strip()[:300]
        if error == "QUERY_LIMIT_EXCEEDED":
            raise Throttled(said, 1.0)
        if answer.status >= 500 or answer.status in (401, 408, 429) or error in _RETRY_ERRORS:
            raise Retry(said)
        raise Refused(said)

    async def close(self) -> None:
        await self._http.close()


def first_attempt(item: OutboxItem) -> bool:
    """No request was ever sent for this row: claimed once, never failed, throttled or leased out by
    a worker that died (a re-claim counts a second attempt; a failure leaves its error)."""
    return item.attempts <= 1 and item.last_error is None


def product_rows(lines: Sequence[Any]) -> list[dict[str, Any]]:
    """The order's lines as a deal's product rows (names, not catalogue ids: the portal's products
    need not match ours). Prices as decimal text, exact, as the portal takes form values."""
    rows = []
    for line in lines:
        if not isinstance(line, Mapping):
            continue
        name = " ".join(str(line.get(k) or "") for k in ("unit", "name")).strip() or str(line.get("sku") or "")
        rows.append({"PRODUCT_NAME": name, "PRICE": str(line.get("price") or "0"),
                     "QUANTITY": int(line.get("quantity") or 0)})
    return rows


def transcript_messages(words: Sequence[TranscriptWord], gap: float = PHRASE_GAP) -> list[dict[str, Any]]:
    """Words (any order, both tracks) as Bitrix24's TranscriptMessage list: phrases in time order,
    each one speaker's words with no pause over ``gap``; START_TIME floored, STOP_TIME rounded up
    (whole seconds, as the method takes them, so a phrase never looks shorter than it was)."""
    phrases: list[tuple[str, float, float, list[str]]] = []
    for word in sorted(words, key=lambda w: (w.start, w.channel)):
        if not word.word.strip():
            continue
        side = SIDES.get(word.speaker, "Client")
        last = phrases[-1] if phrases else None
        if last is not None and last[0] == side and word.start - last[2] <= gap:
            phrases[-1] = (side, last[1], max(last[2], word.end), [*last[3], word.word])
        else:
            phrases.append((side, word.start, word.end, [word.word]))
    return [{"SIDE": side, "START_TIME": max(0, math.floor(start)),
             "STOP_TIME": max(math.floor(start), math.ceil(end)), "MESSAGE": " ".join(text)}
            for side, start, end, text in phrases]


def _filename(call_id: str, payload: Mapping[str, Any]) -> str:
    path = str((payload.get("data") or {}).get("path") or "")
    suffix = ".mp3" if path.lower().endswith(".mp3") else ".wav"  # Bitrix24 takes wav or mp3 only
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in call_id).strip(".")
    return (safe[:80] or "call") + suffix
