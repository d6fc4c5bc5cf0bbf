"""Deals (сделки) in the console (issue 11): the list by stage, one deal with its timeline.

Every route: operator, supervisor, admin; the POST is a form with the session's CSRF token.

- ``GET /deals?stage=<code>&offset=<n>`` — the deals of one stage (all without ``stage``), the last
  changed first, with a tab per stage of the configured pipeline and its count.
- ``GET /deals/{deal_id}`` — the deal (stage, amount, owner, customer, order), the stage form, its
  calls (a recording player per call for supervisors and admins, as on the call page) and its
  timeline: the deal's own events and every event of its calls, rendered as the customer's are.
- ``POST /deals/{deal_id}/stage`` — move the deal (who and when land on its timeline); an unknown
  stage re-renders the page with a Russian message (422) and changes nothing.
"""

from __future__ import annotations

from functools import partial

import structlog
from aiohttp import web

from crm_bridge.errors import InvalidStage, UnknownDeal
from ivr.web.console import formats
from ivr.web.console.auth import current_user, require
from ivr.web.console.calls_pages import can_listen
from ivr.web.console.customer_edit_pages import who
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import EVENT_LABELS
from ivr.web.console.render import render
from ivr.web.console.timeline_text import event_text

log = structlog.get_logger("ivr.console")

ROLES = ("operator", "supervisor", "admin")
PAGE = 100
TIMELINE_LIMIT = 500
MAX_OFFSET = 1_000_000


def _deal_id(request: web.Request) -> int | None:
    raw = request.match_info["deal_id"]
    return int(raw) if raw.isdigit() and len(raw) <= 9 else None


@require(*ROLES)
async def deals_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    pipeline = deps.store.pipeline
    stage = request.query.get("stage", "").strip() or None
    raw_offset = request.query.get("offset", "0")
    offset = min(int(raw_offset), MAX_OFFSET) if raw_offset.isdigit() else 0
    if stage is not None and stage not in pipeline.names:
        return render(request, "deals.html", status=404, deals=[], stages=pipeline.stages, stage=stage,
                      counts={}, offset=0, page=PAGE, unknown_stage=stage)
    deals = await deps.store.list_deals(stage=stage, limit=PAGE, offset=offset)
    counts = await deps.store.count_deals_by_stage()
    return render(request, "deals.html", deals=deals, stages=pipeline.stages, stage=stage, counts=counts,
                  offset=offset, page=PAGE, unknown_stage=None)


async def _deal_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    deal_id = _deal_id(request)
    deal = await deps.store.get_deal(deal_id) if deal_id is not None else None
    if deal is None:
        return render(request, "deal.html", status=404, deal=None, missing=request.match_info["deal_id"])
    timeline = await deps.store.deal_timeline(deal.deal_id, limit=TIMELINE_LIMIT)
    calls = await deps.store.deal_calls(deal.deal_id)
    return render(
        request, "deal.html", status=status, deal=deal, missing=None, error=error, stages=deps.store.pipeline.stages,
        timeline=timeline, timeline_limit=TIMELINE_LIMIT, calls=calls, listen=can_listen(current_user(request)),
        kinds=EVENT_LABELS,
        event_text=partial(event_text, zone=formats.zone_of(deps.timezone), stages=deps.store.pipeline.names),
        done=request.query.get("done") == "stage",
    )


@require(*ROLES)
async def deal_page(request: web.Request) -> web.Response:
    return await _deal_page(request)


@require(*ROLES)
async def change_stage(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    deal_id = _deal_id(request)
    form = await request.post()
    stage = str(form.get("stage", "") or "").strip()[:64]
    if deal_id is None:
        return await _deal_page(request)
    try:
        deal = await deps.store.change_stage(deal_id, stage, who(request))
    except UnknownDeal:
        return await _deal_page(request)
    except InvalidStage:
        return await _deal_page(request, status=422, error=f"Нет такой стадии сделки: «{stage}».")
    log.info("console_deal_stage", deal_id=deal.deal_id, stage=deal.stage, by=who(request))
    raise web.HTTPSeeOther(f"/deals/{deal.deal_id}?done=stage")


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/deals", deals_page)
    app.router.add_get("/deals/{deal_id}", deal_page)
    app.router.add_post("/deals/{deal_id}/stage", change_stage)
