"""Orders from the console (issue 10): placed from the customer's page, corrected until the cut-off.

Every route: operator, supervisor, admin; every POST a form with the session's CSRF token.

- ``GET /customers/{id}/order?call=…`` — the order form of a customer found by search (never an id
  typed in): one row per product on sale, a quantity each. ``POST`` places it under the form's
  Idempotency-Key (``operator:<key>``, the API's namespace: a double submit is one order). The
  same lines as one of the customer's orders of the last ``orders.duplicate_window_hours`` ask
  "Повторный заказ?" first (409, a confirm button re-posts the form with ``confirm_duplicate``).
- ``GET /customers/{id}/orders/{order_id}`` — the order with its delivery date and change deadline,
  an edit form and a cancel form (each with a required reason).
- ``POST /customers/{id}/orders/{order_id}/edit`` and ``…/cancel`` — see crm_bridge.corrections;
  refused after the deadline with the store's Russian sentence (409).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web

from crm_bridge.dto import OrderView
from crm_bridge.errors import (
    ChangeReasonRequired,
    EmptyOrder,
    IdempotencyConflict,
    InactiveProduct,
    InvalidQuantity,
    OrderNotChangeable,
    UnknownCustomer,
    UnknownOrder,
    UnknownProduct,
)
from ivr.settings import default_settings
from ivr.web.console.auth import current_user, require
from ivr.web.console.customer_edit_pages import call_param, customer_url, who
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.render import render
from ivr.web.operator_api import LIMITS_KEY, possible_duplicate
from ivr.web.order_input import OrderLimits

log = structlog.get_logger("ivr.console")

ROLES = ("operator", "supervisor", "admin")
MAX_KEY_LENGTH = 200


def _limits(request: web.Request) -> OrderLimits:
    limits = request.app.get(LIMITS_KEY)
    return limits if limits is not None else OrderLimits.from_settings(default_settings())


def _full_name(customer: Any) -> str:
    return " ".join(p for p in (customer.last_name, customer.first_name, customer.patronymic) if p)


def _lines_from_form(form: Any, limits: OrderLimits) -> tuple[list[tuple[str, int]], str | None]:
    """(lines with a positive quantity, error) from the repeated ``sku`` / ``quantity`` fields."""
    skus = [str(s) for s in form.getall("sku", [])]
    quantities = [str(q).strip() for q in form.getall("quantity", [])]
    if len(skus) != len(quantities):
        return [], "Форма повреждена: обновите страницу."
    lines: list[tuple[str, int]] = []
    for sku, raw in zip(skus, quantities, strict=True):
        if not raw:
            continue
        if not raw.isdigit() or int(raw) > limits.max_quantity:
            return [], f"Количество — целое число от 0 до {limits.max_quantity} (строка {sku}: «{raw[:10]}»)."
        if int(raw) > 0:
            lines.append((sku, int(raw)))
    if not lines:
        return [], "Укажите количество хотя бы одного товара."
    if len(lines) > limits.max_lines or sum(q for _, q in lines) > limits.max_total_quantity:
        return [], f"Слишком большой заказ: не больше {limits.max_lines} строк и {limits.max_total_quantity} единиц."
    return lines, None


async def _order_form(request: web.Request, customer_id: str, *, status: int = 200, key: str | None = None,
                      quantities: dict[str, int] | None = None, call: str = "", error: str | None = None,
                      duplicate: OrderView | None = None) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    card = await deps.store.get_customer_card(customer_id)
    if card is None:
        return _missing(request, customer_id)
    products = await deps.store.list_products()
    return render(request, "order_form.html", status=status, customer=card.customer,
                  full_name=_full_name(card.customer),
                  products=products, rows=[(p.sku, f"{p.unit} {p.name}", p.price) for p in products],
                  quantities=quantities or {}, key=key or secrets.token_urlsafe(18), call=call,
                  error=error, duplicate=duplicate, max_quantity=_limits(request).max_quantity)


@require(*ROLES)
async def order_form(request: web.Request) -> web.Response:
    return await _order_form(request, request.match_info["customer_id"], call=call_param(request.query.get("call")))


def _owner(request: web.Request) -> str | None:
    """The deal's owner: the signed-in console account that placed the order."""
    user = current_user(request)
    return user.username if user is not None else None


@require(*ROLES)
async def place_order(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    form = await request.post()
    limits = _limits(request)
    key = str(form.get("key", "") or "").strip()
    call = call_param(form.get("call"))
    lines, error = _lines_from_form(form, limits)
    quantities = dict(lines)
    if not key or len(key) > MAX_KEY_LENGTH:
        key, error = "", error or "Форма устарела: обновите страницу."
    if error:
        return await _order_form(request, customer_id, status=422, key=key or None, quantities=quantities,
                                 call=call, error=error)
    store_key = f"operator:{key}"
    if form.get("confirm_duplicate") != "1" and limits.duplicate_window_hours > 0:
        earlier = await possible_duplicate(deps.store, store_key, customer_id, lines,
                                           timedelta(hours=limits.duplicate_window_hours))
        if earlier is not None:
            log.info("console_order_possible_duplicate", order_id=earlier.order_id, customer_id=customer_id)
            return await _order_form(request, customer_id, status=409, key=key, quantities=quantities, call=call,
                                     duplicate=earlier)
    try:
        placed = await deps.store.place_order(idempotency_key=store_key, customer_id=customer_id, lines=lines,
                                              source="operator", call_id=call or None, owner=_owner(request))
    except UnknownCustomer:
        return _missing(request, customer_id)
    except IdempotencyConflict as exc:
        return await _order_form(request, customer_id, status=409, quantities=quantities, call=call,
                                 error=f"Эта форма уже оформила заказ {exc.order_id}; новый заказ — в новой форме.")
    except (UnknownProduct, InactiveProduct, InvalidQuantity, EmptyOrder) as exc:
        message = f"Товар {exc.sku} больше не продаётся." if isinstance(exc, UnknownProduct | InactiveProduct) else (
            "Укажите количество хотя бы одного товара.")
        return await _order_form(request, customer_id, status=422, key=key, quantities=quantities, call=call,
                                 error=message)
    log.info("console_order", order_id=placed.order.order_id, created=placed.created, by=who(request))
    raise web.HTTPSeeOther(customer_url(customer_id, done="placed", order=placed.order.order_id) + "#orders")


async def _order_page(request: web.Request, *, status: int = 200, error: str | None = None,
                      reason: str = "", quantities: dict[str, int] | None = None) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    order = await deps.store.get_order(request.match_info["order_id"])
    if order is None or order.customer_id != customer_id:
        # Another customer's order is "not found" here: the URL names the customer it must belong to.
        return _missing(request, f"{customer_id}: заказ {request.match_info['order_id']}")
    products = await deps.store.list_products()
    on_sale = {p.sku for p in products}
    # The edit form lists the products on sale and any line the order holds that is not (kept as sold).
    rows = [(p.sku, f"{p.unit} {p.name}", p.price) for p in products]
    rows += [(line.sku, f"{line.unit} {line.name}", line.unit_price) for line in order.lines if line.sku not in on_sale]
    shown = quantities if quantities is not None else {line.sku: line.quantity for line in order.lines}
    deadline = order.change_deadline
    changeable = not order.cancelled and deadline is not None and datetime.now(UTC) < deadline
    deal = await deps.store.deal_of_order(order.order_id)
    return render(request, "order.html", status=status, order=order, customer_id=customer_id, rows=rows,
                  quantities=shown, error=error, reason=reason, changeable=changeable,
                  max_quantity=_limits(request).max_quantity, deal=deal)


@require(*ROLES)
async def order_page(request: web.Request) -> web.Response:
    return await _order_page(request)


@require(*ROLES)
async def cancel_order(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id, order_id = request.match_info["customer_id"], request.match_info["order_id"]
    form = await request.post()
    reason = str(form.get("reason", "") or "")
    order = await deps.store.get_order(order_id)
    if order is None or order.customer_id != customer_id:
        return _missing(request, f"{customer_id}: заказ {order_id}")
    try:
        await deps.store.cancel_order(order_id, reason=reason, by=who(request))
    except ChangeReasonRequired:
        return await _order_page(request, status=422, error="Укажите причину отмены.")
    except OrderNotChangeable as exc:
        return await _order_page(request, status=409, error=exc.message)
    except UnknownOrder:
        return _missing(request, f"{customer_id}: заказ {order_id}")
    raise web.HTTPSeeOther(customer_url(customer_id, done="cancelled", order=order_id) + "#orders")


@require(*ROLES)
async def edit_order(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id, order_id = request.match_info["customer_id"], request.match_info["order_id"]
    form = await request.post()
    reason = str(form.get("reason", "") or "")
    order = await deps.store.get_order(order_id)
    if order is None or order.customer_id != customer_id:
        return _missing(request, f"{customer_id}: заказ {order_id}")
    lines, error = _lines_from_form(form, _limits(request))
    if error:
        return await _order_page(request, status=422, error=error, reason=reason)
    try:
        await deps.store.change_order(order_id, lines, reason=reason, by=who(request))
    except ChangeReasonRequired:
        return await _order_page(request, status=422, error="Укажите причину изменения.", quantities=dict(lines))
    except OrderNotChangeable as exc:
        return await _order_page(request, status=409, error=exc.message, reason=reason, quantities=dict(lines))
    except (UnknownProduct, InactiveProduct) as exc:
        return await _order_page(request, status=422, error=f"Товар {exc.sku} не продаётся.", reason=reason)
    except EmptyOrder:
        return await _order_page(request, status=422, error="В заказе не осталось товаров: отмените его.",
                                 reason=reason)
    except UnknownOrder:
        return _missing(request, f"{customer_id}: заказ {order_id}")
    raise web.HTTPSeeOther(customer_url(customer_id, done="changed", order=order_id) + "#orders")


def _missing(request: web.Request, what: str) -> web.Response:
    return render(request, "customers.html", status=404, query="", results=[], limit=0, missing=what,
                  full_name=_full_name, attach="", call="", error=None)


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/customers/{customer_id}/order", order_form)
    app.router.add_post("/customers/{customer_id}/order", place_order)
    app.router.add_get("/customers/{customer_id}/orders/{order_id}", order_page)
    app.router.add_post("/customers/{customer_id}/orders/{order_id}/edit", edit_order)
    app.router.add_post("/customers/{customer_id}/orders/{order_id}/cancel", cancel_order)
