"""The read side of a local amoCRM account (API v4), as documented, built to be mounted on any
aiohttp app: ``add_read_routes(app, state)`` (the write-side fake mounts it beside its own routes;
``FakeAmoReads`` runs it alone).

- ``GET /api/v4/contacts``, ``GET /api/v4/leads`` (``with=catalog_elements,contacts``),
  ``GET /api/v4/catalogs``, ``GET /api/v4/catalogs/{id}/elements``: ``page`` (from 1), ``limit``
  (at most 250, default 50), ``order[id]``/``order[updated_at]``, ``filter[updated_at][from]``/``[to]``
  and ``filter[updated_at]`` (unix times).
- ``200`` ``application/hal+json``: ``{"_page": N, "_links": {"self": {"href"}, "next": {"href"}
  (when more)}, "_embedded": {"<entities>": [...]}}``; an empty page is ``204`` with no body.
- ``Authorization: Bearer <token>``: missing or wrong → ``401`` problem+json
  (``{"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401, "detail": …}``).
- More than ``rate`` requests per second (7, amoCRM's limit per account) → ``429``; a bad parameter
  (``limit`` over 250, a non-number page) → ``400`` with ``validation-errors``.
- ``state.fail_with(503)``: every request answers that status; ``state.throttle_next``: this many
  more requests answer 429; ``state.before_read(path, query)``: a test's hook before each.
The account's clock is ``state.now`` (unix seconds), sent as the ``Date`` header.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

TOKEN = "amo-long-lived-token-0123456789abcdefXYZ"
PRODUCTS_CATALOG = 5011
LOST = 143


@dataclass
class AmoReadState:
    token: str = TOKEN
    rate: float = 7.0
    burst: int = 7
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    elements: dict[int, dict[str, Any]] = field(default_factory=dict)  # of the products catalogue
    now: int = field(default_factory=lambda: int(time.time()))
    served: list[tuple[str, dict[str, str], int]] = field(default_factory=list)  # (path, query, records)
    refused: list[tuple[str, int]] = field(default_factory=list)
    before_read: Callable[[str, dict[str, str]], None] | None = None
    throttle_next: int = 0
    _status: int | None = None
    _tokens: float = 0.0
    _at: float = field(default_factory=time.monotonic)

    def fail_with(self, status: int | None) -> None:
        self._status = status

    def tick(self, seconds: int = 60) -> None:
        self.now += seconds

    def contact(self, cid: int, first: str, last: str = "", phones: tuple[str, ...] = (), name: str = "") -> None:
        fields = [{"field_id": 71, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
                   "values": [{"value": p, "enum_id": 101, "enum_code": "WORK"} for p in phones]}] if phones else None
        self.contacts[cid] = {"id": cid, "name": name or " ".join(x for x in (first, last) if x), "first_name": first,
                              "last_name": last, "responsible_user_id": 1, "group_id": 0, "created_by": 1,
                              "updated_by": 1, "created_at": self.now, "updated_at": self.now,
                              "closest_task_at": None, "is_deleted": False, "custom_fields_values": fields,
                              "account_id": 1, "_links": {"self": {"href": f"/api/v4/contacts/{cid}"}},
                              "_embedded": {"tags": [], "companies": []}}

    def element(self, eid: int, name: str, price: str, sku: str | None = None, unit: str | None = None) -> None:
        fields = [{"field_id": 81, "field_name": "Цена", "field_code": "PRICE", "field_type": "price",
                   "values": [{"value": price}]}]
        if sku:
            fields.append({"field_id": 82, "field_name": "Артикул", "field_code": "SKU", "field_type": "text",
                           "values": [{"value": sku}]})
        if unit:
            fields.append({"field_id": 83, "field_name": "Единица", "field_code": "UNIT", "field_type": "text",
                           "values": [{"value": unit}]})
        self.elements[eid] = {"id": eid, "name": name, "catalog_id": PRODUCTS_CATALOG, "created_by": 1,
                              "updated_by": 1, "created_at": self.now, "updated_at": self.now, "is_deleted": False,
                              "custom_fields_values": fields, "account_id": 1,
                              "_links": {"self": {"href": f"/api/v4/catalogs/{PRODUCTS_CATALOG}/elements/{eid}"}}}

    def lead(self, lid: int, contact: int | None, created: int, elements: list[tuple[int, float]],
             status_id: int = 142) -> None:
        self.leads[lid] = {"id": lid, "name": f"Сделка {lid}", "price": 0, "responsible_user_id": 1, "group_id": 0,
                           "status_id": status_id, "pipeline_id": 1, "loss_reason_id": None, "created_by": 1,
                           "updated_by": 1, "created_at": created, "updated_at": self.now, "closed_at": None,
                           "closest_task_at": None, "is_deleted": False, "custom_fields_values": None,
                           "score": None, "account_id": 1, "_links": {"self": {"href": f"/api/v4/leads/{lid}"}},
                           "_contacts": [contact] if contact else [],
                           "_elements": [{"id": eid, "metadata": {"quantity": qty, "catalog_id": PRODUCTS_CATALOG,
                                                                   "price_id": 81}} for eid, qty in elements]}

    def touch(self, table: dict[int, dict[str, Any]], rid: int, **changes: Any) -> None:
        table[rid].update(changes, updated_at=self.now)

    def records_served(self, path: str) -> int:
        return sum(n for p, _, n in self.served if p == path)

    def pages_asked(self, path: str) -> list[str]:
        return [q.get("page", "1") for p, q, _ in self.served if p == path]

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"title": title, "type": f"https://httpstatus.es/{status}", "status": status,
                              "detail": detail, **extra}, status=status, content_type="application/problem+json")


def add_read_routes(app: web.Application, state: AmoReadState) -> None:
    """Mount the documented read endpoints of ``state``'s account on ``app``."""

    def lead_view(lead: dict[str, Any], with_: set[str]) -> dict[str, Any]:
        out = {k: v for k, v in lead.items() if not k.startswith("_") or k == "_links"}
        embedded: dict[str, Any] = {"tags": [], "companies": []}
        if "contacts" in with_:
            embedded["contacts"] = [{"id": c, "is_main": n == 0, "_links": {"self": {"href": f"/api/v4/contacts/{c}"}}}
                                    for n, c in enumerate(lead["_contacts"])]
        if "catalog_elements" in with_:
            embedded["catalog_elements"] = lead["_elements"]
        out["_embedded"] = embedded
        return out

    def listing(path: str, key: str, records: Callable[[], list[dict[str, Any]]],
                view: Callable[[dict[str, Any], set[str]], dict[str, Any]] | None = None,
                filtered: bool = True) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            query = dict(request.query)
            if state.before_read is not None:
                state.before_read(path, query)
            if state._status is not None:
                state.refused.append((path, state._status))
                return web.Response(status=state._status, text="<html>502 Bad Gateway</html>")
            if request.headers.get("Authorization") != f"Bearer {state.token}":
                state.refused.append((path, 401))
                return _problem(401, "Unauthorized", "Invalid access token")
            if state.throttle_next > 0 or not state._take():
                state.throttle_next = max(0, state.throttle_next - 1)
                state.refused.append((path, 429))
                return _problem(429, "Too Many Requests", "Too many requests")
            try:
                page = int(query.get("page", "1"))
                limit = int(query.get("limit", "50"))
                since = query.get("filter[updated_at][from]") or query.get("filter[updated_at]")
                until = query.get("filter[updated_at][to]")
                since_at, until_at = int(since) if since else None, int(until) if until else None
            except ValueError:
                return _problem(400, "Bad Request", "Request validation failed",
                                **{"validation-errors": [{"request_id": "0", "errors": [
                                    {"code": "InvalidType", "path": "page", "detail": "This value is not valid."}]}]})
            if limit > 250 or limit < 1 or page < 1:
                return _problem(400, "Bad Request", "Request validation failed", **{"validation-errors": [
                    {"request_id": "0", "errors": [{"code": "OutOfRange", "path": "limit",
                                                    "detail": "This value should be between 1 and 250."}]}]})
            found = records()
            if filtered:
                found = [r for r in found if (since_at is None or r["updated_at"] >= since_at)
                         and (until_at is None or r["updated_at"] <= until_at)]
            if query.get("order[updated_at]"):
                found.sort(key=lambda r: (r["updated_at"], r["id"]), reverse=query["order[updated_at]"] == "desc")
            else:
                found.sort(key=lambda r: r["id"], reverse=query.get("order[id]") == "desc")
            chunk = found[(page - 1) * limit: page * limit]
            state.served.append((path, query, len(chunk)))
            headers = {"Date": formatdate(state.now, usegmt=True)}
            if not chunk:
                return web.Response(status=204, headers=headers)
            with_ = set(filter(None, query.get("with", "").split(",")))
            base = f"{request.scheme}://{request.host}{request.path}"
            links: dict[str, Any] = {"self": {"href": f"{base}?page={page}&limit={limit}"}}
            if page * limit < len(found):
                links["next"] = {"href": f"{base}?page={page + 1}&limit={limit}"}
            if page > 1:
                links["prev"] = {"href": f"{base}?page={page - 1}&limit={limit}"}
            items = [view(r, with_) if view else r for r in chunk]
            return web.json_response({"_page": page, "_links": links, "_embedded": {key: items}}, headers=headers,
                                     content_type="application/hal+json")

        return handle

    catalogs = [{"id": PRODUCTS_CATALOG, "name": "Товары", "created_by": 1, "updated_by": 1, "created_at": 0,
                 "updated_at": 0, "sort": 10, "type": "products", "can_add_elements": True,
                 "can_show_in_cards": True, "can_link_multiple": True, "can_be_deleted": False,
                 "sdk_widget_code": None, "account_id": 1}]
    app.router.add_get("/api/v4/contacts", listing("/api/v4/contacts", "contacts",
                                                   lambda: list(state.contacts.values())))
    app.router.add_get("/api/v4/leads", listing("/api/v4/leads", "leads", lambda: list(state.leads.values()),
                                                lead_view))
    app.router.add_get("/api/v4/catalogs", listing("/api/v4/catalogs", "catalogs",
                                                   lambda: [dict(c, updated_at=0) for c in catalogs], filtered=False))
    elements = f"/api/v4/catalogs/{PRODUCTS_CATALOG}/elements"
    app.router.add_get(elements, listing(elements, "elements", lambda: list(state.elements.values())))


@dataclass
class FakeAmoReads:
    """The read routes alone on an ephemeral port."""

    state: AmoReadState = field(default_factory=AmoReadState)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        add_read_routes(app, self.state)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
