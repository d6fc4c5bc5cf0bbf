"""amoCRM / Kommo API v4 with a long-lived token (``Authorization: Bearer <token>``): contacts,
the products catalogue and leads (deals) with their catalogue elements, read page by page.

Requests, as documented (https://www.amocrm.ru/developers/content/crm_platform/contacts-api,
https://www.amocrm.ru/developers/content/crm_platform/catalogs-api, .../leads-api):

- ``GET /api/v4/contacts?limit=250&page=N&order[id]=asc&filter[updated_at][from]=<unix>``: names in
  ``first_name`` / ``last_name`` / ``name``, phones in ``custom_fields_values`` (``field_code``
  ``PHONE``, ``values[].value``).
- ``GET /api/v4/catalogs`` (the list of ``type`` ``products``; at most one per account), then
  ``GET /api/v4/catalogs/{id}/elements?limit=250&page=N``: ``custom_fields_values`` ``SKU``,
  ``PRICE``, ``UNIT``. The elements list has no documented ``updated_at`` filter: the catalogue
  (small) is read whole each run and unchanged products stay unchanged.
- ``GET /api/v4/leads?with=catalog_elements,contacts&…&filter[updated_at][from]=<unix>``:
  ``_embedded.contacts`` (``is_main``) and ``_embedded.catalog_elements`` (``metadata.quantity``);
  ``status_id`` 143 is "closed, lost" (→ a cancelled order), 142 "won".

A list answers ``200`` with ``{"_page": N, "_links": {"self": …, "next": {"href": …}},
"_embedded": {"contacts": [...]}}`` (``next`` absent on the last page) and **``204`` with no body**
when a page is empty. Errors are ``application/problem+json`` (``title``, ``status``, ``detail``,
``validation-errors`` on 400): 401 → auth refused; 402 (account not paid) / 403 → auth refused;
429 (more than 7 requests per second) → throttled; 5xx → unreachable. The cursor is the ``Date``
header of the run's first answer (the CRM's clock, not ours) as a unix time; paging is by ``id``
under a fixed filter, for the reason given in bitrix24.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from crm_bridge.connectors.base import DeliveryError
from crm_bridge.connectors.http import HttpClient
from crm_bridge.connectors.secrets import Scrubber, scrub_url
from crm_bridge.importers.cells import split_full_name
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

NAME = "amocrm"
LIMIT = 250  # amoCRM's largest page
LOST = 143  # the status of every pipeline's "closed, lost" stage
DEFAULT_UNIT = "штука"


class AmoCrmSource:
    name = NAME
    prefix = "AMO-"

    def __init__(self, base_url: str, token: str, *, rate: float = 7.0, burst: int = 7, timeout: float = 10.0,
                 retrying: Retrying | None = None, sleep: Sleep | None = None, region: str = "RU",
                 limit: int = LIMIT) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"amocrm: base_url must look like https://<account>.amocrm.ru, "
                             f"got {scrub_url(base_url)!r}")
        if not token:
            raise ValueError("amocrm: token is empty (a long-lived token of an integration)")
        self._base = base_url.rstrip("/")
        self.address = scrub_url(base_url)
        self._token = token
        self._scrub = Scrubber([token])
        self._http = HttpClient(timeout, self._scrub)
        self._sleep = sleep or asyncio.sleep
        self._pace = Pace(rate, burst, sleep=self._sleep)
        self._retrying = retrying or Retrying()
        self._region = region
        self._limit = max(1, min(limit, LIMIT))
        self._catalog: str | None = None
        self.requests = 0

    async def page(self, entity: Entity, since: str | None, token: str | None) -> RawPage:
        number = int(token or 1)
        query: dict[str, Any] = {"limit": self._limit, "page": number, "order[id]": "asc"}
        if entity == Entity.PRODUCT:
            catalog = await self._products_catalog()
            if catalog is None:  # no products catalogue in the account: nothing to read
                return RawPage((), None, None)
            path, key = f"/api/v4/catalogs/{catalog}/elements", "elements"
            query.pop("order[id]")
        else:
            path, key = ("/api/v4/contacts", "contacts") if entity == Entity.CONTACT else ("/api/v4/leads", "leads")
            if entity == Entity.DEAL:
                query["with"] = "catalog_elements,contacts"
            if since:
                query["filter[updated_at][from]"] = since
        status, headers, body = await self._get(path, query)
        mark = _unix(headers.get("Date"))
        if status == 204 or body is None:
            return RawPage((), None, mark)
        records = (body.get("_embedded") or {}).get(key) if isinstance(body.get("_embedded"), Mapping) else None
        if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
            raise CrmBadAnswer(f"GET {path}: the answer has no _embedded.{key}")
        links = body.get("_links") if isinstance(body.get("_links"), Mapping) else {}
        following = str(number + 1) if isinstance(links.get("next"), Mapping) and records else None
        return RawPage(tuple(records), following, mark)

    async def _products_catalog(self) -> str | None:
        if self._catalog is None:
            status, _, body = await self._get("/api/v4/catalogs", {"limit": LIMIT})
            catalogs = ((body or {}).get("_embedded") or {}).get("catalogs") if status == 200 else []
            found = [c for c in catalogs or [] if isinstance(c, Mapping) and c.get("type") == "products"]
            self._catalog = text(found[0].get("id")) if found else ""
        return self._catalog or None

    async def _get(self, path: str, query: Mapping[str, Any]) -> tuple[int, Mapping[str, str], Any]:
        url = f"{self._base}{path}?{urlencode(query)}"

        async def attempt() -> tuple[int, Mapping[str, str], Any]:
            await self._pace.take()
            self.requests += 1
            try:
                answer = await self._http.get(url, {"Authorization": f"Bearer {self._token}",
                                                    "Accept": "application/hal+json"})
            except DeliveryError as exc:
                raise CrmUnreachable(f"GET {path}: {exc}") from None
            if answer.status == 204:
                return 204, answer.headers, None
            try:
                body = json.loads(answer.body or b"null")
            except ValueError:
                body = None
            if answer.status == 200 and isinstance(body, dict):
                return 200, answer.headers, body
            problem = body if isinstance(body, dict) else {}
            detail = text(problem.get("detail") or problem.get("title"))
            invalid = problem.get("validation-errors")
            if invalid:
                detail += f" {json.dumps(invalid, ensure_ascii=False)[:200]}"
            said = self._scrub(f"GET {path}: HTTP {answer.status} {detail}").strip()[:300]
            if answer.status == 429:
                raise CrmThrottled(said, _seconds(answer.headers.get("Retry-After")))
            if answer.status in (401, 402, 403):
                raise CrmAuthRefused(said)
            if answer.status >= 500 or answer.status == 408:
                raise CrmUnreachable(said)
            raise CrmBadAnswer(said)

        return await self._retrying.run(attempt, self._sleep)

    def map(self, entity: Entity, raw: Mapping[str, Any]) -> Mapped | Refusal:
        if entity == Entity.CONTACT:
            return map_contact(raw, self._region)
        if entity == Entity.PRODUCT:
            return map_product(raw)
        return map_lead(raw)

    async def close(self) -> None:
        await self._http.close()


def fields(raw: Mapping[str, Any], code: str) -> list[str]:
    """The values of the custom field with ``field_code`` ``code`` (PHONE, SKU, PRICE, UNIT)."""
    out: list[str] = []
    for field in raw.get("custom_fields_values") or []:
        if isinstance(field, Mapping) and text(field.get("field_code")).upper() == code:
            out.extend(text(v.get("value")) for v in field.get("values") or [] if isinstance(v, Mapping))
    return [v for v in out if v]


def map_contact(raw: Mapping[str, Any], region: str = "RU") -> MappedCustomer | Refusal:
    """amoCRM has no patronymic field: "Алексей Сергеевич" in ``first_name`` (as Russian accounts
    fill it) is split into the name and the patronymic; without first/last, ``name`` is read as
    "Фамилия Имя Отчество"."""
    external_id = text(raw.get("id"))
    last, first, patronymic = split_names(text(raw.get("last_name")), text(raw.get("first_name")),
                                          text(raw.get("name")))
    if not (first or last):
        return Refusal(external_id, "no name")
    values = fields(raw, "PHONE")
    phones = tuple(dict.fromkeys(n for n in (normalize_phone(v, region) for v in values) if n))
    if not phones:
        return Refusal(external_id, f"no usable phone number ({', '.join(values)})" if values else "no phone number")
    return MappedCustomer(external_id, last, first, patronymic, phones)


def map_product(raw: Mapping[str, Any]) -> MappedProduct | Refusal:
    external_id = text(raw.get("id"))
    name = text(raw.get("name"))
    if not name:
        return Refusal(external_id, "no name")
    prices = fields(raw, "PRICE")
    price = _decimal(prices[0]) if prices else None
    if price is None or price < 0:
        return Refusal(external_id, f"no usable PRICE ({', '.join(prices)})")
    sku = fields(raw, "SKU")
    unit = fields(raw, "UNIT")
    return MappedProduct(external_id, sku[0] if sku else "", name, unit[0] if unit else DEFAULT_UNIT, price,
                         not raw.get("is_deleted"))


def map_lead(raw: Mapping[str, Any]) -> MappedOrder | Refusal:
    external_id = text(raw.get("id"))
    embedded = raw.get("_embedded") if isinstance(raw.get("_embedded"), Mapping) else {}
    contacts = [c for c in embedded.get("contacts") or [] if isinstance(c, Mapping)]
    main = next((c for c in contacts if c.get("is_main")), contacts[0] if contacts else None)
    if main is None:
        return Refusal(external_id, "no contact")
    try:
        at = datetime.fromtimestamp(int(raw.get("created_at")), UTC)
    except (TypeError, ValueError, OverflowError):
        return Refusal(external_id, f"unreadable created_at {text(raw.get('created_at'))!r}")
    lines: list[MappedLine] = []
    for n, element in enumerate(embedded.get("catalog_elements") or [], start=1):
        if not isinstance(element, Mapping):
            return Refusal(external_id, f"element {n}: not a catalogue element")
        meta = element.get("metadata") if isinstance(element.get("metadata"), Mapping) else {}
        quantity = _decimal(meta.get("quantity", 1))
        if quantity is None or quantity <= 0 or quantity != quantity.to_integral_value():
            return Refusal(external_id, f"element {n}: quantity {text(meta.get('quantity'))!r} is not a whole number")
        lines.append(MappedLine(text(element.get("id")), int(quantity), None))
    if not lines:
        return Refusal(external_id, "no products attached")
    return MappedOrder(external_id, text(main.get("id")), at, _int(raw.get("status_id")) == LOST, tuple(lines))


_PATRONYMIC_ENDINGS = ("вич", "вна", "ична", "инична", "оглы", "кызы")


def split_names(last: str, first: str, name: str) -> tuple[str, str, str]:
    """(last, first, patronymic) from amoCRM's first_name / last_name / name."""
    if first or last:
        words = first.split()
        if len(words) == 2 and words[1].lower().endswith(_PATRONYMIC_ENDINGS):
            return last, words[0], words[1]
        return last, first, ""
    return split_full_name(name)


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(text(value).replace(",", "."))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _unix(date_header: str | None) -> str | None:
    if not date_header:
        return None
    try:
        return str(int(parsedate_to_datetime(date_header).timestamp()))
    except (TypeError, ValueError):
        return None


def _seconds(value: str | None) -> float:
    try:
        return max(1.0, float(value or 1))
    except ValueError:
        return 1.0
