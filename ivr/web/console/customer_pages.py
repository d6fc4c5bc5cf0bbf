"""Customers in the console: search, the customer card, printable invoices (any signed-in role).

- ``GET /customers?q=…`` — search by name parts, phone (any Russian format) or customer id.
- ``GET /customers/{customer_id}`` — phones, address, language, orders with lines and invoices,
  and the timeline of the customer's calls and orders (newest first); 404 page when unknown.
- ``GET /customers/{customer_id}/invoices/{number}.pdf`` — the invoice as PDF (inline); 404 when
  the invoice does not exist or belongs to another customer.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from ivr.web.console.auth import require
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.invoice_pdf import InvoiceFontMissing, build_invoice_pdf
from ivr.web.console.labels import reason_text
from ivr.web.console.operator_pages import LOOKUP_STATUSES
from ivr.web.console.render import render

log = structlog.get_logger("ivr.console")

ROLES = ("operator", "supervisor", "admin")
SEARCH_LIMIT = 50
TIMELINE_LIMIT = 200

SOURCES = {"import": "из учётной системы", "ivr": "робот", "operator": "оператор"}
LANGUAGES = {"ru": "русский", "en": "английский"}
OUTCOMES = {
    "order_placed": "заказ оформлен роботом",
    "done": "завершён роботом",
    "operator": "передан оператору",
    "operator_answered": "ответил оператор",
    "abandoned_in_queue": "сбросил в очереди",
    "abandoned_in_ivr": "сбросил в меню робота",
    "abandoned": "сбросил",
    "queue_timeout": "очередь не дождалась",
    "callback_requested": "просил перезвонить",
    "after_hours": "нерабочее время",
    "error": "ошибка",
}
EVENT_KINDS = {
    "order.placed": "Заказ",
    "call.recorded": "Звонок",
    "call.started": "Звонок начат",
    "call.ended": "Звонок закончен",
    "call.after_hours": "Нерабочее время",
    "call.error": "Ошибка робота",
    "caller.identified": "Поиск по номеру",
    "prompt.played": "Робот сказал",
    "dtmf.received": "Клиент нажал",
    "order.created": "Заказ оформлен в звонке",
    "step.failed": "Сбой шага",
    "call.escalated": "Передан оператору",
    "callback.created": "Задача на перезвон",
    "callback.impossible": "Перезвон невозможен",
    "queue.entered": "Вошёл в очередь",
    "queue.abandoned": "Сбросил в очереди",
    "operator.ringing": "Звонит оператору",
    "operator.answered": "Оператор ответил",
    "operator.no_answer": "Оператор не ответил",
    "operator.completed": "Разговор окончен",
    "call.hungup": "Положил трубку",
    "call.transferred": "Переведён",
    "recording.ready": "Запись готова",
    "recording.missing": "Записи нет",
    "recording.refused": "Запись отклонена",
}


def event_text(kind: str, data: dict[str, Any]) -> str:
    """The interesting part of a timeline event's data, in words."""
    if kind == "order.placed":
        source = SOURCES.get(data.get("source") or "", data.get("source"))
        text = f"{data.get('order_id')} на {data.get('total')} ₽, {source}"
        if data.get("delivery_date"):
            text += f", доставка {data['delivery_date']}"
        return text
    if kind == "call.recorded":
        bits = [OUTCOMES.get(data.get("outcome") or "", data.get("outcome") or "не завершён")]
        if data.get("reason"):
            bits.append(reason_text(data["reason"]))
        if data.get("operator"):
            bits.append(f"оператор {data['operator']}")
        return "; ".join(bits)
    if kind == "prompt.played":
        return str(data.get("text") or data.get("step") or "")
    if kind == "dtmf.received":
        if data.get("timed_out") and not data.get("digits"):
            return "ничего (время вышло)"
        return str(data.get("digits") or "")
    if kind == "caller.identified":
        return LOOKUP_STATUSES.get(str(data.get("status")), str(data.get("status") or ""))
    if kind in ("call.escalated", "call.ended", "step.failed"):
        outcome = OUTCOMES.get(data.get("outcome") or "", data.get("outcome") or "")
        return "; ".join(b for b in (outcome, reason_text(data.get("reason")), data.get("step")) if b)
    if kind == "order.created":
        return " ".join(str(data[k]) for k in ("order_id", "invoice") if data.get(k))
    if kind.startswith("operator."):
        return str(data.get("operator_name") or data.get("operator_interface") or "")
    if kind == "queue.entered":
        return str(data.get("queue") or "")
    return ", ".join(f"{k}: {v}" for k, v in data.items() if isinstance(v, str | int | float) and v != "")[:300]


def _full_name(customer: Any) -> str:
    return " ".join(p for p in (customer.last_name, customer.first_name, customer.patronymic) if p)


@require(*ROLES)
async def customers_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    query = request.query.get("q", "").strip()[:200]
    results = await deps.store.search_customers(query, limit=SEARCH_LIMIT) if query else []
    return render(request, "customers.html", query=query, results=results, limit=SEARCH_LIMIT,
                  missing=None, full_name=_full_name)


@require(*ROLES)
async def customer_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    card = await deps.store.get_customer_card(customer_id)
    if card is None:
        return render(request, "customers.html", status=404, query="", results=[], limit=SEARCH_LIMIT,
                      missing=customer_id, full_name=_full_name)
    timeline = await deps.store.customer_timeline(customer_id, limit=TIMELINE_LIMIT)
    return render(
        request,
        "customer.html",
        customer=card.customer,
        full_name=_full_name(card.customer),
        orders=card.orders,
        timeline=timeline,
        timeline_limit=TIMELINE_LIMIT,
        sources=SOURCES,
        languages=LANGUAGES,
        kinds=EVENT_KINDS,
        event_text=event_text,
    )


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
        body = await asyncio.to_thread(build_invoice_pdf, invoice, order, customer, timezone=deps.timezone)
    except InvoiceFontMissing as exc:
        log.error("invoice_font_missing", error=str(exc))
        return web.Response(status=503, text=f"Счёт не может быть построен: {exc}", content_type="text/plain")
    response = web.Response(body=body, content_type="application/pdf")
    response.headers["Content-Disposition"] = _disposition(invoice.number)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/customers", customers_page)
    app.router.add_get("/customers/{customer_id}", customer_page)
    app.router.add_get("/customers/{customer_id}/invoices/{number}.pdf", invoice_pdf)
