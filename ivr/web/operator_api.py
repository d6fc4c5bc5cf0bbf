"""Operator-side API: the screen pop (JSON and WebSocket), callback tasks, orders placed by operators."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any, Protocol

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from crm_bridge.dto import CallbackTaskView, OrderView, PlacedOrder
from crm_bridge.errors import (
    CrmError,
    EmptyOrder,
    IdempotencyConflict,
    InactiveProduct,
    InvalidQuantity,
    UnknownCustomer,
    UnknownProduct,
)
from ivr.calls.screen_pop import OperatorBoard
from ivr.settings import default_settings
from ivr.web.common import MAX_DB_INT, STORE_KEY, api_error, to_json
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.timeline_text import with_lines
from ivr.web.order_input import FieldError, InvalidOrderInput, OrderLimits, parse_order

log = structlog.get_logger("ivr.web")

BOARD_KEY = web.AppKey("operator_board", OperatorBoard)
# The operator feeds open now, closed at shutdown (see _close_feeds).
FEEDS_KEY = web.AppKey("operator_feeds", set[web.WebSocketResponse])
# Set when the service stops: every feed handler returns at once (see _close_feeds).
STOPPING_KEY = web.AppKey("operator_feeds_stopping", asyncio.Event)
# Seconds of silence after which a feed repeats the link message (the page's liveness check).
FEED_HEARTBEAT_KEY = web.AppKey("operator_feed_heartbeat", float)
FEED_HEARTBEAT_SECONDS = 15.0
# How long a close waits for the browser's answer (aiohttp's default, 10 s, per dead laptop at stop).
FEED_CLOSE_SECONDS = 1.0
LIMITS_KEY = web.AppKey("order_limits", OrderLimits)
MAX_KEY_LENGTH = 200

# crm_bridge errors -> (HTTP status, stable error id)
_ORDER_ERRORS: list[tuple[type[CrmError], int, str]] = [
    (UnknownCustomer, 404, "customer_not_found"),
    (UnknownProduct, 422, "unknown_product"),
    (InactiveProduct, 422, "inactive_product"),
    (InvalidQuantity, 422, "invalid_quantity"),
    (EmptyOrder, 422, "empty_order"),
]


class OperatorStore(Protocol):
    async def place_order(self, **kwargs: Any) -> PlacedOrder: ...

    async def list_tasks(self, status: str | None = "open", limit: int = 100, offset: int = 0
                         ) -> list[CallbackTaskView]: ...

    async def close_task(self, task_id: int, status: str, note: str | None = None) -> CallbackTaskView | None: ...

    async def order_for_key(self, idempotency_key: str, customer_id: str) -> PlacedOrder | None: ...

    async def recent_same_order(self, customer_id: str, lines: list[tuple[str, int]], *, within: timedelta
                                ) -> OrderView | None: ...


async def current_card(request: web.Request) -> web.Response:
    card = request.app[BOARD_KEY].current(request.match_info["operator"])
    if card is None:
        return to_json({"operator": request.match_info["operator"], "state": "free", "call": None})
    return to_json(with_lines(card, business_zone(request.app)))


async def operator_feed(request: web.Request) -> web.StreamResponse:
    """WebSocket: the current card and the AMI link at once, then every change while the socket is
    open, and the link again every ``FEED_HEARTBEAT_KEY`` seconds of silence (the page treats a
    feed silent for a few heartbeats as dead and reconnects). Ends at once when the service stops."""
    operator = request.match_info["operator"]
    board = request.app[BOARD_KEY]
    stopping = request.app[STOPPING_KEY]
    heartbeat = request.app[FEED_HEARTBEAT_KEY]
    ws = web.WebSocketResponse(heartbeat=30, timeout=FEED_CLOSE_SECONDS)
    await ws.prepare(request)
    if stopping.is_set():  # opened while the service stops: the page retries against the next one
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        return ws
    feeds = request.app[FEEDS_KEY]
    feeds.add(ws)
    zone = business_zone(request.app)
    queue = board.subscribe(operator)
    receive: asyncio.Future[Any] | None = None
    card_wait: asyncio.Future[Any] | None = None
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        current = board.current(operator)
        await ws.send_str(_dumps(current or {"operator": operator, "state": "free", "call": None}, zone))
        await ws.send_str(_dumps({**board.link(), "heartbeat_seconds": heartbeat}, zone))
        while not ws.closed:
            # Wait for a new card, the browser (a close, or anything it sends) or the stop at once.
            receive = receive or asyncio.ensure_future(ws.receive())
            card_wait = card_wait or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({receive, card_wait, stop_wait}, timeout=heartbeat,
                                         return_when=asyncio.FIRST_COMPLETED)
            if stop_wait in done:
                break
            if not done:
                await ws.send_str(_dumps({**board.link(), "heartbeat_seconds": heartbeat}, zone))
            if card_wait in done:
                await ws.send_str(_dumps(card_wait.result(), zone))
                card_wait = None
            if receive in done:
                message = receive.result()
                receive = None
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
    finally:
        feeds.discard(ws)
        board.unsubscribe(operator, queue)
        for pending in (receive, card_wait, stop_wait):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
        if not stopping.is_set():  # at stop, _close_feeds is closing it ("going away")
            with contextlib.suppress(Exception):
                await ws.close()
    return ws


def _dumps(card: Any, zone: str) -> str:
    return json.dumps(with_lines(card, zone), ensure_ascii=False, default=str)


def business_zone(app: web.Application) -> str:
    """The console's business time zone (hours.timezone), for the words on a card."""
    deps = app.get(DEPS_KEY)
    return deps.timezone if deps is not None else ConsoleDeps.timezone


async def list_tasks(request: web.Request) -> web.Response:
    status = request.query.get("status", "open")
    if status not in ("open", "done", "no_answer", "cancelled", "all"):
        return api_error(400, "bad_query", "status must be open, done, no_answer, cancelled or all")
    tasks = await request.app[STORE_KEY].list_tasks(status=None if status == "all" else status)
    return to_json({"tasks": tasks})


async def update_task(request: web.Request) -> web.Response:
    try:
        task_id = int(request.match_info["task_id"])
        body = await request.json()
    except (ValueError, RecursionError):  # JSONDecodeError and undecodable bytes are ValueErrors
        return api_error(400, "bad_request", "expected a numeric task id and a JSON body")
    if not 1 <= task_id <= MAX_DB_INT:
        return api_error(404, "task_not_found", "no task with this id")
    status = body.get("status") if isinstance(body, dict) else None
    if status not in ("done", "no_answer", "cancelled"):
        return api_error(422, "invalid_status", "status must be done, no_answer or cancelled")
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        return api_error(422, "invalid_note", "note must be a string")
    task = await request.app[STORE_KEY].close_task(task_id, status, note)
    if task is None:
        return api_error(404, "task_not_found", "no task with this id")
    return to_json(task)


async def place_operator_order(request: web.Request) -> web.Response:
    """POST /api/v1/customers/{id}/orders, idempotent with an Idempotency-Key header."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        return api_error(400, "idempotency_key_required",
                         f"send an Idempotency-Key header (1..{MAX_KEY_LENGTH} characters)")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return api_error(400, "bad_json", "the body is not JSON")
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (Python's parsing limit)
        return api_error(422, "invalid_order", f"a number in the body is out of range ({exc})")
    try:
        order = parse_order(body, request.app[LIMITS_KEY])
    except InvalidOrderInput as exc:
        return api_error(422, "invalid_order", str(exc), exc.errors)
    call_id = order.call_id
    store = request.app[STORE_KEY]
    window = request.app[LIMITS_KEY].duplicate_window_hours
    if not order.confirm_duplicate and window > 0:
        earlier = await possible_duplicate(store, f"operator:{key}", request.match_info["customer_id"], order.lines,
                                           timedelta(hours=window))
        if earlier is not None:
            log.info("operator_order_possible_duplicate", order_id=earlier.order_id, idempotency_key=key)
            return to_json({"error": duplicate_error(earlier)}, status=409)
    try:
        placed = await store.place_order(
            idempotency_key=f"operator:{key}", customer_id=request.match_info["customer_id"], lines=order.lines,
            source="operator", call_id=call_id,
        )
    except IdempotencyConflict as exc:
        return _key_conflict(key, exc)
    except CrmError as exc:
        for error_type, status, error_id in _ORDER_ERRORS:
            if isinstance(exc, error_type):
                return api_error(status, error_id, str(exc), _sku_fields(exc, order.lines))
        raise
    log.info("operator_order", order_id=placed.order.order_id, created=placed.created, call_id=call_id)
    return to_json({"order": placed.order, "invoice": placed.invoice, "created": placed.created,
                    "deal_id": placed.deal_id}, status=201 if placed.created else 200)


async def possible_duplicate(store: Any, key: str, customer_id: str, lines: list[tuple[str, int]],
                             within: timedelta) -> OrderView | None:
    """The customer's order of the last ``within`` with the same lines, unless ``key`` already
    placed an order (a retry of this very request is the key's replay, never a "repeat order?")."""
    async def placed_by_key() -> bool:
        try:
            return await store.order_for_key(key, customer_id) is not None
        except IdempotencyConflict:
            return True  # the key holds another customer's order: place_order answers that conflict

    if await placed_by_key():
        return None
    earlier = await store.recent_same_order(customer_id, lines, within=within)
    # A concurrent duplicate of this very request (a double click) may have committed between the
    # two reads: the order found is then this key's own, which place_order replays.
    if earlier is not None and await placed_by_key():
        return None
    return earlier


def duplicate_error(earlier: OrderView) -> dict[str, Any]:
    """409 ``possible_duplicate``: the body names the earlier order; send ``confirm_duplicate: true``
    (with the same key) to place this one anyway."""
    when = earlier.ordered_at.strftime("%d.%m.%Y %H:%M UTC")
    message = (f"Повторный заказ? У клиента уже есть такой же заказ {earlier.order_id} от {when} "
               f"на {earlier.total} ₽. Чтобы оформить ещё один, подтвердите (confirm_duplicate: true).")
    return {"id": "possible_duplicate", "message": message, "order_id": earlier.order_id,
            "ordered_at": earlier.ordered_at.isoformat(), "total": str(earlier.total)}


def _key_conflict(key: str, exc: IdempotencyConflict) -> web.Response:
    """The key already placed another order (other lines, another customer): never 200 with that
    order as if it were this one. 409, not 422: in this API a 422 says "fix the body", while this
    body may be fine; what conflicts is the key, which holds an order that stands unchanged (send a
    new key for a new order). The IETF idempotency-key draft suggests 422 here, but also lets 409
    mean a key in use; our 409 had already meant "this key holds another customer's order", and one
    status for "the key holds another order" is what a client can act on."""
    log.warning("operator_order_key_conflict", idempotency_key=key, order_id=exc.order_id, differs=exc.differs)
    message = (f"Idempotency-Key {key!r} already placed order {exc.order_id} {exc.what}; "
               "that order stands unchanged, send a new key to place another order")
    body = {"id": "idempotency_conflict", "message": message, "idempotency_key": key,
            "order_id": exc.order_id, "differs": exc.differs}
    return to_json({"error": body}, status=409)


def _sku_fields(exc: CrmError, lines: list[tuple[str, int]]) -> list[FieldError]:
    """An unknown or withdrawn product points at every line that named it."""
    sku = getattr(exc, "sku", None)
    if not isinstance(exc, UnknownProduct | InactiveProduct) or sku is None:
        return []
    return [FieldError(f"lines[{i}].sku", str(exc)) for i, (line_sku, _) in enumerate(lines) if line_sku == sku]


def add_operator_routes(app: web.Application, board: OperatorBoard | None, limits: OrderLimits | None = None) -> None:
    """``limits``: from the running configuration; None takes the shipped defaults (tests, tools)."""
    app[LIMITS_KEY] = limits or OrderLimits.from_settings(default_settings())
    app.router.add_get("/api/v1/tasks", list_tasks)
    app.router.add_post("/api/v1/tasks/{task_id}", update_task)
    app.router.add_post("/api/v1/customers/{customer_id}/orders", place_operator_order)
    if board is not None:
        app[BOARD_KEY] = board
        app[FEEDS_KEY] = set()
        app[STOPPING_KEY] = asyncio.Event()
        app[FEED_HEARTBEAT_KEY] = FEED_HEARTBEAT_SECONDS
        app.on_shutdown.append(_close_feeds)
        app.router.add_get("/api/v1/operators/{operator}/current", current_card)
        app.router.add_get("/api/v1/operators/{operator}/feed", operator_feed)


async def _close_feeds(app: web.Application) -> None:
    """At stop: an operator's open page must not hold the process for aiohttp's shutdown timeout.
    "Going away" makes the page's script reconnect, to this process's successor. The handlers end
    on the stop event too, so none waits for a browser that does not answer the close."""
    app[STOPPING_KEY].set()
    closing = [asyncio.ensure_future(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping"))
               for ws in list(app[FEEDS_KEY])]
    if closing:
        # A browser that never answers the close must not hold the stop: its connection is cut
        # with the server's (aiohttp's cleanup), the page then reconnects to the next process.
        await asyncio.wait(closing, timeout=FEED_CLOSE_SECONDS)
