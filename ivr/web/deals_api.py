"""Deals over the JSON API (issue 11); errors in the API's form ``{"error": {"id", "message", "fields"?}}``.

- ``GET /api/v1/deals?stage=&customer=&limit=&offset=`` — deals, the last changed first; ``stage``
  a code of ``[deals] stages`` (422 ``invalid_stage`` otherwise), ``customer`` an external customer id.
- ``GET /api/v1/deals/{deal_id}`` — ``{"deal": …, "events": […]}``: the deal and its timeline (its
  own events and every event of its calls, newest first).
- ``POST /api/v1/deals/{deal_id}/stage`` with ``{"stage": "<code>", "by"?: "<who>"}`` — move the
  deal; ``by`` is the signed-in console user when there is one, else the body's (default "api").
  200 with the deal; 404 ``deal_not_found``; 422 ``invalid_stage`` (with ``fields``) or ``invalid_by``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from crm_bridge.errors import InvalidStage, UnknownDeal
from ivr.web.common import MAX_DB_INT, STORE_KEY, USER_KEY, api_error, to_json

MAX_PAGE = 500
MAX_BY = 200


@dataclass(frozen=True)
class _Field:
    field: str
    message: str


def _deal_id(request: web.Request) -> int | None:
    raw = request.match_info["deal_id"]
    if not raw.isdigit() or len(raw) > 10 or not 1 <= int(raw) <= MAX_DB_INT:
        return None
    return int(raw)


async def list_deals(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    try:
        limit = int(request.query.get("limit", "50"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return api_error(400, "bad_query", "limit and offset must be integers")
    if not (1 <= limit <= MAX_PAGE) or not (0 <= offset <= MAX_DB_INT):
        return api_error(400, "bad_query", f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_DB_INT}")
    stage = request.query.get("stage") or None
    customer = request.query.get("customer") or None
    try:
        deals = await store.list_deals(stage=stage, customer_id=customer, limit=limit, offset=offset)
    except InvalidStage as exc:
        return api_error(422, "invalid_stage", str(exc), [_Field("stage", str(exc))])
    return to_json({"deals": deals, "limit": limit, "offset": offset})


async def get_deal(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    deal_id = _deal_id(request)
    deal = await store.get_deal(deal_id) if deal_id is not None else None
    if deal is None:
        return api_error(404, "deal_not_found", "no deal with this id")
    return to_json({"deal": deal, "events": await store.deal_timeline(deal.deal_id)})


async def change_stage(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    deal_id = _deal_id(request)
    if deal_id is None:
        return api_error(404, "deal_not_found", "no deal with this id")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return api_error(400, "bad_json", "the body is not JSON")
    if not isinstance(body, dict):
        return api_error(400, "bad_json", 'expected a JSON object: {"stage": "<code>"}')
    stage = body.get("stage")
    if not isinstance(stage, str) or not stage:
        return api_error(422, "invalid_stage", "stage must be a stage code",
                         [_Field("stage", "a code of [deals] stages")])
    user = request.get(USER_KEY)
    by = body.get("by", "api")
    if user is not None:
        by = user.username  # a signed-in console user is who did it, whatever the body says
    elif not isinstance(by, str) or not by.strip() or len(by) > MAX_BY:
        return api_error(422, "invalid_by", f"by must be a non-empty string of at most {MAX_BY} characters",
                         [_Field("by", "who moved the deal")])
    try:
        deal = await store.change_stage(deal_id, stage, by.strip())
    except UnknownDeal:
        return api_error(404, "deal_not_found", "no deal with this id")
    except InvalidStage as exc:
        return api_error(422, "invalid_stage", str(exc), [_Field("stage", str(exc))])
    return to_json({"deal": deal})


def add_deal_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/deals", list_deals)
    app.router.add_get("/api/v1/deals/{deal_id}", get_deal)
    app.router.add_post("/api/v1/deals/{deal_id}/stage", change_stage)
