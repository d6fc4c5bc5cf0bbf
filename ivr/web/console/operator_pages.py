"""The operator screen: the live card of the signed-in operator, new and repeated orders, call-backs.

- ``GET /operator`` (operator, supervisor, admin). The operator's key is
  ``operator_key(user.operator_interface)`` ('PJSIP/101' -> '101'); a supervisor or an admin may
  look at any operator's screen with ``?operator=101``. The page is rendered complete on the server
  (the current card, the open call-back tasks, the product list) and ``static/operator.js`` then
  keeps the card live from the WebSocket ``/api/v1/operators/{key}/feed`` and sends the actions:
  orders to ``POST /api/v1/customers/{id}/orders`` (one Idempotency-Key per form, so a double
  click never makes two orders) and task results to ``POST /api/v1/tasks/{id}``.

  The page says whether a card can reach it (``#link-state``): "на связи" (feed open, AMI
  connected), "переподключение…" (the feed dropped: the script retries with exponential backoff
  and jitter, resubscribes and gets the current card first), "AMI недоступен с …" (the feed is up
  but the service has lost Asterisk). A card that pops rings (WebAudio), is read out by screen
  readers (``aria-live``) and, when the page is hidden, shows a browser notification (permission
  asked on the operator's click on "Включить звук и уведомления"; browsers allow it only over HTTPS
  or on localhost).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ivr.calls.screen_pop import operator_key
from ivr.web.console.auth import current_user, require
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import API_ERROR_LABELS, LINK_LABELS, UNKNOWN_ERROR_TEXT, reason_text, task_reason_text
from ivr.web.console.render import render
from ivr.web.console.timeline_text import with_lines

STATES: dict[str, str] = {"ringing": "Звонит", "talking": "Разговор", "free": "Свободен"}


EMPTY_CARD: dict[str, Any] = {"state": "free", "call": None, "customer": None, "last_orders": [], "ivr_path": []}

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")



def _chosen_key(request: web.Request, user: Any) -> tuple[str | None, str | None]:
    """(operator key, error) for this request."""
    asked = request.query.get("operator", "").strip()
    if asked and user.role in ("supervisor", "admin"):
        if not _KEY.match(asked):
            return None, "Неверный номер оператора: только латинские буквы, цифры, точка, дефис, подчёркивание."
        return asked, None
    interface = getattr(user, "operator_interface", None)
    if interface:
        return operator_key(interface), None
    return None, None


@require("operator", "supervisor", "admin")
async def operator_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    user = current_user(request)
    key, error = _chosen_key(request, user)
    card: dict[str, Any] | None = None
    if key:
        current = deps.board.current(key) if deps.board is not None else None
        card = with_lines({**EMPTY_CARD, "operator": key, **(current or {})}, deps.timezone)
    products = await deps.store.list_products()
    tasks = await deps.store.list_tasks("open", limit=200)
    ivr_steps = [tuple(step["line"]) for step in card["ivr_path"]] if card else []
    return render(
        request,
        "operator.html",
        status=400 if error else 200,
        error=error,
        operator=key,
        own=bool(getattr(user, "operator_interface", None)) and key == operator_key(user.operator_interface),
        live=deps.board is not None,
        card=card,
        ivr_steps=ivr_steps,
        products=products,
        product_json=[{"sku": p.sku, "price": str(p.price), "unit": p.unit, "name": p.name} for p in products],
        tasks=tasks,
        states=STATES,
        link_key="connecting" if deps.board is not None else "ami_disabled",
        link_labels=LINK_LABELS,
        reason_text=reason_text,
        task_reason_text=task_reason_text,
        # operator.js: states, error sentences by API error id, the link's words, and the business zone for ivr.fmt.
        labels={"states": STATES, "errors": API_ERROR_LABELS, "unknown_error": UNKNOWN_ERROR_TEXT, "link": LINK_LABELS},
    )


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/operator", operator_page)
