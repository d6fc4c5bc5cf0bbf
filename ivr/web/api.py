"""Read API (JSON over aiohttp): customer cards, calls and call timelines.

Every error is JSON with a stable machine-readable id: ``{"error": {"id": "...", "message": "..."}}``.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

import structlog
from aiohttp import web

from crm_bridge.dto import CallView, CustomerCard, TimelineEventView

log = structlog.get_logger("ivr.web")

MAX_PAGE = 500


class ReadStore(Protocol):
    async def get_customer_card(self, customer_id: str) -> CustomerCard | None: ...

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[CallView]: ...

    async def get_call(self, call_id: str) -> CallView | None: ...

    async def call_timeline(self, call_id: str) -> list[TimelineEventView]: ...


STORE_KEY = web.AppKey("store", ReadStore)
TOKEN_KEY = web.AppKey("api_token", str)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(data: Any, status: int = 200) -> web.Response:
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    body = json.dumps(data, default=_default, ensure_ascii=False)
    return web.Response(text=body, status=status, content_type="application/json")


def api_error(status: int, error_id: str, message: str) -> web.Response:
    return to_json({"error": {"id": error_id, "message": message}}, status=status)


@web.middleware
async def errors_and_auth(request: web.Request, handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        expected = request.app[TOKEN_KEY]
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        # Compare bytes: hmac.compare_digest refuses non-ASCII str (a TypeError, i.e. a 500).
        given = token.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not given or not hmac.compare_digest(given, expected.encode("utf-8")):
            return api_error(401, "unauthorized", "a valid bearer token is required")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            error_id = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            return api_error(exc.status, error_id, exc.reason)
        raise
    except Exception:
        log.exception("api_failed", path=request.path)
        return api_error(500, "internal_error", "the server failed; the log has the details")


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise _BadRequest("limit and offset must be integers") from exc
    if not (1 <= limit <= MAX_PAGE) or offset < 0:
        raise _BadRequest(f"limit must be 1..{MAX_PAGE} and offset >= 0")
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
    return to_json({"call": call, "events": await store.call_timeline(call_id)})


def build_web_app(store: ReadStore, *, api_token: str) -> web.Application:
    app = web.Application(middlewares=[errors_and_auth])
    app[STORE_KEY] = store
    app[TOKEN_KEY] = api_token
    app.router.add_get("/api/v1/customers/{customer_id}", get_customer)
    app.router.add_get("/api/v1/calls", list_calls)
    app.router.add_get("/api/v1/calls/{call_id}/timeline", call_timeline)
    return app
