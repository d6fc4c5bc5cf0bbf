"""The CRM bridge in the console, and the one public door it needs.

- ``GET /admin/crm`` — admins: the outbox per target and state, and the dead letters (events a
  target refused, or that failed ``crm.max_attempts`` times) with their scrubbed last error;
- ``POST /admin/crm/{item_id}/retry`` — admins: a dead letter back in line (attempts start again);
- ``GET /r/{token}`` — no session, no bearer token: the recording of the one call a signed,
  unexpired token names (crm_bridge.connectors.recording_links), for the CRM to fetch; with
  ``?format=mp3`` as MP3 (the link's ``url(call_id, fmt="mp3")``). Anything else is a bare 404 that
  says nothing about why.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from aiohttp import web

from crm_bridge.contract.crm import OutboxState
from ivr.calls.recordings import RecordingLocator
from ivr.web.console.auth import current_user, require
from ivr.web.console.calls_pages import AUDIO_TYPES, served_file
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.render import render

log = structlog.get_logger(__name__)


@require("admin")
async def crm_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    counts = await deps.outbox.counts() if deps.outbox is not None else {}
    dead = await deps.outbox.dead_letters() if deps.outbox is not None else []
    done = {"retried": "Событие снова в очереди."}.get(request.query.get("done", ""))
    return render(request, "crm.html", counts=counts, dead=dead, states=list(OutboxState), message=done,
                  configured=deps.outbox is not None)


@require("admin")
async def crm_retry(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    raw = request.match_info["item_id"]
    if deps.outbox is None or not raw.isdigit() or not await deps.outbox.retry(int(raw), datetime.now(UTC)):
        raise web.HTTPNotFound(reason="no such dead letter")
    log.info("crm.dead_letter_retried", item_id=int(raw), by=current_user(request).username)
    raise web.HTTPSeeOther("/admin/crm?done=retried")


async def signed_recording(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    links = deps.recording_links
    call_id = links.call_id(request.match_info["token"]) if links is not None else None
    call = await deps.store.get_call(call_id) if call_id else None
    local = RecordingLocator(deps.recordings_dir).local_path(call.recording_path) \
        if call is not None and call.recording_path else None
    if local is None or not local.is_file():
        raise web.HTTPNotFound()
    local = await served_file(request, local)
    # Never the token: it is the key to the file.
    log.info("recording_link_served", call_id=call_id, format=local.suffix.lower().lstrip("."))
    return web.FileResponse(local, headers={
        "Content-Type": AUDIO_TYPES.get(local.suffix.lower(), "application/octet-stream"),
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
    })


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app.router.add_get("/admin/crm", crm_page)
    app.router.add_post("/admin/crm/{item_id}/retry", crm_retry)
    app.router.add_get("/r/{token}", signed_recording)
