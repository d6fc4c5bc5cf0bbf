"""Customers in the console: search, the customer card, printable invoices (any signed-in role).

- ``GET /customers?q=…`` — search by name parts, phone (any Russian format) or customer id; with
  ``attach=<number>`` (from an unknown caller's card) each result offers "attach the number", else
  "order" (customer_edit_pages, order_pages).
- ``GET /customers/{customer_id}`` — phones, address, language, orders with lines, status, delivery
  date and invoices, and the timeline of the customer's calls and orders (newest first); the order
  button, the address and number forms; ``?done=…`` says what was just changed; 404 when unknown.
- ``GET /customers/{customer_id}/invoices/{number}.pdf`` — the invoice as PDF (inline); 404 when
  the invoice does not exist or belongs to another customer.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from ivr.web.console import formats
from ivr.web.console.auth import require
from ivr.web.console.customer_edit_pages import call_param
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.invoice_pdf import InvoiceFontMissing, build_invoice_pdf
from ivr.web.console.labels import EVENT_LABELS, ORDER_SOURCES
from ivr.web.console.render import render
from ivr.web.console.timeline_text import event_text

log = structlog.get_logger("ivr.console")

ROLES = ("operator", "supervisor", "admin")
SEARCH_LIMIT = 50
TIMELINE_LIMIT = 200
DEALS_LIMIT = 200

SOURCES = ORDER_SOURCES
LANGUAGES = {"ru": "русский", "en": "английский"}
def _full_name(customer: Any) -> str:
    return " ".join(p for p in (customer.last_name, customer.first_name, customer.patronymic) if p)


@require(*ROLES)
async def customers_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    query = request.query.get("q", "").strip()[:200]
    results = await deps.store.search_customers(query, limit=SEARCH_LIMIT) if query else []
    # ?attach=<number>: the operator looks for the customer an unknown caller's number belongs to.
    attach = request.query.get("attach", "").strip()[:40]
    return render(request, "customers.html", query=query, results=results, limit=SEARCH_LIMIT,
                  missing=None, full_name=_full_name, attach=attach, call=call_param(request.query.get("call")))


@require(*ROLES)
async def customer_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    card = await deps.store.get_customer_card(customer_id)
    if card is None:
        return render(request, "customers.html", status=404, query="", results=[], limit=SEARCH_LIMIT,
                      missing=customer_id, full_name=_full_name)
    timeline = await deps.store.customer_timeline(customer_id, limit=TIMELINE_LIMIT)
    deals = await deps.store.list_deals(customer_id=customer_id, limit=DEALS_LIMIT)
    return render(
        request,
        "customer.html",
        customer=card.customer,
        full_name=_full_name(card.customer),
        orders=card.orders,
        deals=deals,
        deal_of_order={d.order_id: d for d in deals if d.order_id},
        timeline=timeline,
        timeline_limit=TIMELINE_LIMIT,
        sources=SOURCES,
        languages=LANGUAGES,
        kinds=EVENT_LABELS,
        event_text=partial(event_text, zone=formats.zone_of(deps.timezone)),
        done=_done_text(request.query.get("done", ""), request.query.get("order", "")[:64]),
        call=call_param(request.query.get("call")),
        now=datetime.now(UTC),
    )


# What the page says after a change made from the console (?done=…&order=…).
_DONE = {
    "created": "Клиент создан.",
    "attached": "Номер привязан.",
    "address": "Адрес сохранён.",
    "placed": "Заказ {order} оформлен.",
    "cancelled": "Заказ {order} отменён.",
    "changed": "Заказ {order} изменён, счёт пересчитан.",
}


def _done_text(done: str, order: str) -> str:
    return _DONE[done].format(order=order) if done in _DONE else ""


def _disposition(number: str) -> str:
    ascii_name = re.sub(r"[^A-Za-z0-9.-]+", "", number).strip("-.") or "invoice"
    return f"inline; filename=\"invoice-{ascii_name}.pdf\"; filename*=UTF-8''{quote(number + '.pdf', safe='')}"


@require(*ROLES)
async def invoice_pdf(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    number = request.match_info["number"]
    found = await deps.store.get_invoice(number)
    if found is None or found[2].customer_id != customer_id:
        # Another customer's invoice is "not found" here: the URL names the customer it must belong to.
        return render(request, "customers.html", status=404, query="", results=[], limit=SEARCH_LIMIT,
                      missing=f"{customer_id}: счёт {number}", full_name=_full_name)
    invoice, order, customer = found
    try:
        body = await asyncio.to_thread(build_invoice_pdf, invoice, order, customer, seller=deps.seller,
                                          timezone=deps.timezone)
    except InvoiceFontMissing as exc:
        log.error("invoice_font_missing", error=str(exc))
        return web.Response(status=503, content_type="text/plain",
                            text="Счёт не может быть построен: на сервере нет шрифта для PDF. Сообщите администратору.")
    response = web.Response(body=body, content_type="application/pdf")
    response.headers["Content-Disposition"] = _disposition(invoice.number)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/customers", customers_page)
    app.router.add_get("/customers/{customer_id}", customer_page)
    app.router.add_get("/customers/{customer_id}/invoices/{number}.pdf", invoice_pdf)
