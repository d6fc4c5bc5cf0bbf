"""Read API (JSON over aiohttp): customer cards, calls and call timelines.

Every error is JSON with a stable machine-readable id: ``{"error": {"id": "...", "message": "..."}}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import structlog
from aiohttp import web

from crm_bridge.dto import CallView, CustomerCard, TimelineEventView
from crm_bridge.transcripts import TranscriptView
from ivr.calls.screen_pop import OperatorBoard
from ivr.web.client_address import TRUSTED_PROXIES_KEY, parse_networks
from ivr.web.common import MAX_DB_INT, STORE_KEY, TOKEN_KEY, api_error, errors_and_auth, to_json
from ivr.web.console.app import add_console
from ivr.web.console.deps import ConsoleDeps
from ivr.web.deals_api import add_deal_routes
from ivr.web.hardening import security_headers
from ivr.web.operator_api import add_operator_routes
from ivr.web.order_input import OrderLimits

log = structlog.get_logger("ivr.web")

MAX_PAGE = 500


class ReadStore(Protocol):
    async def get_customer_card(self, customer_id: str) -> CustomerCard | None: ...

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[CallView]: ...

    async def get_call(self, call_id: str) -> CallView | None: ...

    async def call_timeline(self, call_id: str) -> list[TimelineEventView]: ...

    async def call_transcript(self, call_id: str) -> TranscriptView | None: ...


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise _BadRequest("limit and offset must be integers") from exc
    if not (1 <= limit <= MAX_PAGE) or not (0 <= offset <= MAX_DB_INT):
        raise _BadRequest(f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_DB_INT}")
    return limit, offset


class _BadRequest(Exception):
    pass


async def get_customer(request: web.Request) -> web.Response:
    card = await request.app[STORE_KEY].get_customer_card(request.match_info["customer_id"])
    if card is None:
        return api_error(404, "customer_not_found", "no customer with this id")
    return to_json(card)


async def list_calls(request: web.Request) -> web.Response:
    try:
        limit, offset = _page(request)
    except _BadRequest as exc:
        return api_error(400, "bad_query", str(exc))
    calls = await request.app[STORE_KEY].list_calls(limit=limit, offset=offset)
    return to_json({"calls": calls, "limit": limit, "offset": offset})


async def call_timeline(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    call_id = request.match_info["call_id"]
    call = await store.get_call(call_id)
    if call is None:
        return api_error(404, "call_not_found", "no call with this id")
    # The transcript: its state, text and words ({word, start, end, conf, channel, speaker}); null
    # before the recording was queued for transcription (or with speech.transcripts off).
    return to_json({"call": call, "events": await store.call_timeline(call_id),
                    "transcript": await store.call_transcript(call_id)})


def build_web_app(
    store: ReadStore,
    *,
    api_token: str,
    board: OperatorBoard | None = None,
    console: ConsoleDeps | None = None,
    order_limits: OrderLimits | None = None,
    trusted_proxies: Iterable[str] = (),
) -> web.Application:
    """``trusted_proxies``: web.trusted_proxies (ivr.web.client_address); a bad entry is a ValueError."""
    app = web.Application(middlewares=[errors_and_auth])
    app[STORE_KEY] = store
    app[TRUSTED_PROXIES_KEY] = parse_networks(trusted_proxies)
    app[TOKEN_KEY] = api_token
    app.router.add_get("/api/v1/customers/{customer_id}", get_customer)
    app.router.add_get("/api/v1/calls", list_calls)
    app.router.add_get("/api/v1/calls/{call_id}/timeline", call_timeline)
    add_operator_routes(app, board, order_limits)
    add_deal_routes(app)
    if console is not None:
        add_console(app, console)
    app.middlewares.insert(0, security_headers)  # outermost: it sees every response, the console's too
    return app
