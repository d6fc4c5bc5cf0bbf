"""Bitrix24 through an incoming webhook (``https://<portal>/rest/<user>/<token>/``): contacts,
products and deals with their product rows, read page by page.

Requests (POST ``<method>.json``, JSON body), as documented:

- ``crm.contact.list`` (https://apidocs.bitrix24.ru/api-reference/crm/contacts/crm-contact-list.html,
  https://dev.1c-bitrix.ru/rest_help/crm/contacts/crm_contact_list.php): ``select`` ID, NAME,
  SECOND_NAME, LAST_NAME, PHONE, DATE_MODIFY (PHONE is a multiple field: it must be named, no mask
  selects it), ``filter`` ``{">=DATE_MODIFY": since}``, ``order`` ``{"ID": "ASC"}``, ``start``.
- ``crm.product.list``: ID, NAME, CODE, PRICE, CURRENCY_ID, ACTIVE, MEASURE, TIMESTAMP_X
  (``>=TIMESTAMP_X``).
- ``crm.deal.list``: ID, CONTACT_ID, DATE_CREATE, DATE_MODIFY, STAGE_ID, STAGE_SEMANTIC_ID
  (``>=DATE_MODIFY``), then the product rows of the page's deals in ONE ``batch`` request
  (``cmd`` = ``{"d<ID>": "crm.deal.productrows.get?id=<ID>"}``, at most 50, ``halt`` 0:
  https://dev.1c-bitrix.ru/rest_help/crm/cdeals/crm_deal_productrows_get.php; rows carry
  PRODUCT_ID, PRODUCT_NAME, PRICE, QUANTITY, MEASURE_NAME). A deal per request would be 50 times
  the requests at 2 per second.

A list answers ``{"result": [...], "next": 50, "total": 120, "time": {..., "date_start": ISO}}``: 50
records a page, ``next`` (the next ``start``) absent on the last page. Errors are
``{"error": CODE, "error_description": ...}``: ``QUERY_LIMIT_EXCEEDED`` (HTTP 503) → throttled, back
off; 401 / ``expired_token`` / ``INVALID_CREDENTIALS`` / ``insufficient_scope`` → auth refused; 5xx
and no answer → unreachable.

Paging by ``start`` under a fixed filter and ``ID`` order: a record changed during the run still
matches the filter and keeps its place, a new one comes at the end, so no record is skipped (a
DATE_MODIFY order would move a changed record behind the offset and skip its neighbour). The filter
is ``>=`` the CRM's own time at the start of the last run (``time.date_start``): our clock never
enters it, and a record changed in that same second is read once more, harmlessly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from crm_bridge.connectors.base import DeliveryError
from crm_bridge.connectors.http import HttpClient
from crm_bridge.connectors.secrets import Scrubber, scrub_url
from crm_bridge.phones import normalize_phone
from crm_bridge.sync.client import (
    CrmAuthRefused,
    CrmBadAnswer,
    CrmThrottled,
    CrmUnreachable,
    Pace,
    Retrying,
    Sleep,
)
from crm_bridge.sync.records import (
    Entity,
    Mapped,
    MappedCustomer,
    MappedLine,
    MappedOrder,
    MappedProduct,
    Refusal,
)
from crm_bridge.sync.source import RawPage, text

NAME = "bitrix24"
PAGE = 50  # Bitrix24's fixed page size of list methods
BATCH = 50  # commands in one batch request at most
_AUTH = frozenset({"expired_token", "INVALID_CREDENTIALS", "insufficient_scope", "NO_AUTH_FOUND",
                   "invalid_token", "WRONG_AUTH_TYPE"})
LISTS: dict[Entity, tuple[str, tuple[str, ...], str]] = {
    Entity.CONTACT: ("crm.contact.list", ("ID", "NAME", "SECOND_NAME", "LAST_NAME", "PHONE", "DATE_MODIFY"),
                     "DATE_MODIFY"),
    Entity.PRODUCT: ("crm.product.list", ("ID", "NAME", "CODE", "PRICE", "CURRENCY_ID", "ACTIVE", "MEASURE",
                                          "TIMESTAMP_X"), "TIMESTAMP_X"),
    Entity.DEAL: ("crm.deal.list", ("ID", "CONTACT_ID", "DATE_CREATE", "DATE_MODIFY", "STAGE_ID",
                                    "STAGE_SEMANTIC_ID"), "DATE_MODIFY"),
}
DEFAULT_UNIT = "штука"  # a product made from the CRM: its MEASURE is a code, not a word to speak


class Bitrix24Source:
    name = NAME
    prefix = "B24-"

    def __init__(self, webhook_url: str, *, rate: float = 2.0, burst: int = 2, timeout: float = 10.0,
                 retrying: Retrying | None = None, sleep: Sleep | None = None, region: str = "RU") -> None:
        if not webhook_url.startswith(("http://", "https://")) or "/rest/" not in webhook_url:
            raise ValueError(f"bitrix24: webhook_url must look like https://<portal>/rest/<user>/<token>/, "
                             f"got {scrub_url(webhook_url)!r}")
        self._base = webhook_url.rstrip("/") + "/"
        self.address = scrub_url(webhook_url)
        self._scrub = Scrubber([webhook_url, self._base, webhook_url.rstrip("/").rsplit("/", 1)[-1]])
        self._http = HttpClient(timeout, self._scrub)
        self._sleep = sleep or asyncio.sleep
        self._pace = Pace(rate, burst, sleep=self._sleep)
        self._retrying = retrying or Retrying()
        self._region = region
        self.requests = 0  # sent, retries included (the tests count them)

    async def page(self, entity: Entity, since: str | None, token: str | None) -> RawPage:
        method, select, stamp = LISTS[entity]
        params: dict[str, Any] = {"select": list(select), "order": {"ID": "ASC"}, "start": int(token or 0)}
        if since:
            params["filter"] = {f">={stamp}": since}
        body = await self._call(method, params)
        records = body.get("result")
        if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
            raise CrmBadAnswer(f"{method}: the answer has no list of records")
        if entity == Entity.DEAL and records:
            records = await self._with_rows(records)
        following = body.get("next")
        mark = (body.get("time") or {}).get("date_start") if isinstance(body.get("time"), Mapping) else None
        return RawPage(tuple(records), str(following) if following not in (None, "", 0) else None,
                       str(mark) if mark else None)

    async def _with_rows(self, deals: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        for at in range(0, len(deals), BATCH):
            chunk = deals[at:at + BATCH]
            cmd = {f"d{text(d.get('ID'))}": f"crm.deal.productrows.get?id={text(d.get('ID'))}" for d in chunk}
            body = await self._call("batch", {"halt": 0, "cmd": cmd})
            result = body.get("result")
            if not isinstance(result, Mapping):
                raise CrmBadAnswer("batch: the answer has no result")
            rows = result.get("result") or {}
            errors = result.get("result_error") or {}
            rows = rows if isinstance(rows, Mapping) else {}
            errors = errors if isinstance(errors, Mapping) else {}
            for deal in chunk:
                key = f"d{text(deal.get('ID'))}"
                if key in errors or not isinstance(rows.get(key), list):
                    why = errors.get(key) if isinstance(errors.get(key), Mapping) else {}
                    out.append({**deal, "_ROWS_ERROR": text(why.get("error_description") or why.get("error"))
                                or "no product rows in the answer"})
                else:
                    out.append({**deal, "PRODUCT_ROWS": rows[key]})
        return out

    async def _call(self, method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        async def attempt() -> Mapping[str, Any]:
            await self._pace.take()
            self.requests += 1
            try:
                answer = await self._http.post(f"{self._base}{method}.json", json.dumps(params).encode(),
                                               {"Content-Type": "application/json"})
            except DeliveryError as exc:  # no answer (already scrubbed)
                raise CrmUnreachable(f"{method}: {exc}") from None
            try:
                body = json.loads(answer.body or b"{}")
            except ValueError:
                body = None
            error = body.get("error") if isinstance(body, dict) else None
            if answer.status == 200 and isinstance(body, dict) and error is None:
                return body
            described = body.get("error_description") if isinstance(body, dict) else None
            said = self._scrub(f"{method}: HTTP {answer.status} {error or ''} {described or ''}").strip()[:300]
            if error == "QUERY_LIMIT_EXCEEDED":
                raise CrmThrottled(said, 1.0)
            if answer.status == 401 or error in _AUTH:
                raise CrmAuthRefused(said)
            if answer.status >= 500 or answer.status in (408, 429):
                raise CrmUnreachable(said)
            raise CrmBadAnswer(said)

        return await self._retrying.run(attempt, self._sleep)

    def map(self, entity: Entity, raw: Mapping[str, Any]) -> Mapped | Refusal:
        if entity == Entity.CONTACT:
            return map_contact(raw, self._region)
        if entity == Entity.PRODUCT:
            return map_product(raw)
        return map_deal(raw)

    async def close(self) -> None:
        await self._http.close()


def map_contact(raw: Mapping[str, Any], region: str = "RU") -> MappedCustomer | Refusal:
    """NAME / SECOND_NAME (отчество) / LAST_NAME; PHONE is ``[{"VALUE": "+7…", "VALUE_TYPE": "WORK"}, …]``."""
    external_id = text(raw.get("ID"))
    first, patronymic, last = text(raw.get("NAME")), text(raw.get("SECOND_NAME")), text(raw.get("LAST_NAME"))
    if not (first or last):
        return Refusal(external_id, "no name (NAME and LAST_NAME are empty)")
    values = [text(p.get("VALUE")) for p in raw.get("PHONE") or [] if isinstance(p, Mapping)]
    phones = tuple(dict.fromkeys(n for n in (normalize_phone(v, region) for v in values) if n))
    if not phones:
        shown = ", ".join(v for v in values if v)
        return Refusal(external_id, f"no usable phone number ({shown})" if shown else "no phone number")
    return MappedCustomer(external_id, last, first, patronymic, phones)


def map_product(raw: Mapping[str, Any]) -> MappedProduct | Refusal:
    external_id = text(raw.get("ID"))
    name = text(raw.get("NAME"))
    if not name:
        return Refusal(external_id, "no NAME")
    price = _decimal(raw.get("PRICE"))
    if price is None or price < 0:
        return Refusal(external_id, f"no usable PRICE ({text(raw.get('PRICE'))!r})")
    return MappedProduct(external_id, text(raw.get("CODE")), name, DEFAULT_UNIT, price,
                         text(raw.get("ACTIVE") or "Y").upper() != "N")


def map_deal(raw: Mapping[str, Any]) -> MappedOrder | Refusal:
    """STAGE_SEMANTIC_ID: P in progress, S won, F lost (→ a cancelled order). Rows: PRODUCT_ID 0 is a
    free-text row with no catalogue product behind it."""
    external_id = text(raw.get("ID"))
    contact = text(raw.get("CONTACT_ID"))
    if contact in ("", "0"):
        return Refusal(external_id, "no contact")
    at = _moment(raw.get("DATE_CREATE"))
    if at is None:
        return Refusal(external_id, f"unreadable DATE_CREATE {text(raw.get('DATE_CREATE'))!r}")
    if "_ROWS_ERROR" in raw:
        return Refusal(external_id, f"product rows not read: {raw['_ROWS_ERROR']}")
    lines: list[MappedLine] = []
    for n, row in enumerate(raw.get("PRODUCT_ROWS") or [], start=1):
        if not isinstance(row, Mapping):
            return Refusal(external_id, f"row {n}: not a product row")
        product = text(row.get("PRODUCT_ID"))
        if product in ("", "0"):
            return Refusal(external_id, f"row {n}: {text(row.get('PRODUCT_NAME'))!r} is not a catalogue product")
        quantity = _decimal(row.get("QUANTITY"))
        if quantity is None or quantity <= 0 or quantity != quantity.to_integral_value():
            return Refusal(external_id, f"row {n}: quantity {text(row.get('QUANTITY'))!r} is not a whole number")
        price = _decimal(row.get("PRICE"))
        lines.append(MappedLine(product, int(quantity), price))
    if not lines:
        return Refusal(external_id, "no product rows")
    return MappedOrder(external_id, contact, at, text(raw.get("STAGE_SEMANTIC_ID")).upper() == "F", tuple(lines))


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(text(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _moment(value: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(text(value))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
