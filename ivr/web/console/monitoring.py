"""Live wallboard, health check and Prometheus metrics.

- ``GET /wallboard`` — supervisors and admins: the page; ``static/wallboard.js`` polls the JSON
  below every 2 s (no WebSocket, no library) and redraws.
- ``GET /api/v1/wallboard`` — a supervisor/admin session or the API bearer token: calls in the
  robot now, calls waiting in the queue (and the longest current wait), operators busy/free, orders
  placed today (robot vs operator). Operators are in the queue's own words (QueueMember /
  QueueMemberStatus: free, talking, ringing, unavailable, paused with its reason), "unknown" for a
  member AMI never reported; queue rows name the customer (read through the store, cached a while).
  The live part comes from the AMI call tracker; without it (no tracker, or AMI not connected)
  ``ami.live`` is false, the page says "AMI не подключен", and the robot's own count of calls
  (FastAGI connections) and today's orders are still shown. ``clock`` is the moment of the data in
  the business time zone (``hours.timezone``), "23:30:05": the board shows it, never the browser's
  clock nor UTC.
- ``GET /healthz`` — no authentication, JSON, one cheap query. 200 when the database answers within
  ``DB_TIMEOUT`` and takes writes, and the FastAGI listener is listening; ``"status": "degraded"``
  (still 200) when AMI is not connected (disabled, auth_failed, reconnecting…); 503 ``"status":
  "down"`` otherwise: ``database.state`` is ``unreachable`` (``since`` when; also while the start-up
  retry waits for it) or ``read_only`` (a hot standby, ``default_transaction_read_only``, a read-only
  SQLite file), in which no order could be placed. A readiness probe wants exactly that; see the
  README's "Health" section for why liveness must not use the status.
  With several processes on one PostgreSQL (ivr/cluster) only one owns AMI: the others say
  ``"standby"``, which is healthy. ``worker`` names the process that answered: ``pid`` and ``ami``
  (``owner`` | ``standby`` | ``local``, the last for a single process that needs no lock).
  ``crm`` (null without CRM targets): per target the outbox's ``pending`` and ``dead`` rows and the
  age of the oldest pending event. It never changes the status: a CRM that is down delays its
  events, it does not stop a call (the readiness probe must not take calls away for it); alert on
  ``oldest_pending_seconds`` and ``dead`` instead.
  ``speech`` (issue 12) does not change the status (without a model callers use keys): ``{"status":
  "disabled"}``, or the lines' default, the AudioSocket address and per language ``loaded`` /
  ``loading`` / ``not configured`` / ``missing: …`` / ``unreadable: …``.
- ``GET /metrics`` — Prometheus text format from ``deps.metrics`` (ivr.web.console.metrics, its
  own registry). Allowed with the API bearer token (``Authorization: Bearer …``) or from the
  loopback address (127.0.0.1 / ::1) — the local Prometheus agent needs no secret; anyone else
  gets 403. Behind a reverse proxy on the same host every request looks local: do not proxy
  ``/metrics`` (or have the proxy demand the token).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from crm_bridge.call_search import orders_today
from crm_bridge.db import read_only_reason
from ivr.web.client_address import client_address
from ivr.web.common import TOKEN_KEY, api_error, to_json
from ivr.web.console import formats
from ivr.web.console.auth import require
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import AMI_STATUS_LABELS, MEMBER_STATE_LABELS, member_state_text
from ivr.web.console.metrics import CONTENT_TYPE
from ivr.web.console.render import render

log = structlog.get_logger("ivr.web.monitoring")

DB_TIMEOUT = 2.0
POLL_SECONDS = 2
AMI_DOWN_TEXT = "AMI не подключен"


# --- wallboard ----------------------------------------------------------------------------------------


def _health(deps: ConsoleDeps) -> dict[str, Any]:
    if deps.health is None:
        return {}
    try:
        return dict(deps.health())
    except Exception:
        log.exception("health_failed")
        return {}


def _seconds_since(iso: str | None, now: datetime) -> float | None:
    if not iso:
        return None
    try:
        since = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max(0.0, round((now - since).total_seconds(), 1))


def _configured_names(deps: ConsoleDeps) -> dict[str, str]:
    """Operator names from the configuration ([operators] names), as the board was given them."""
    return deps.board.operator_names if deps.board is not None else {}


def _operators(deps: ConsoleDeps, live: bool, now: datetime) -> list[dict[str, Any]]:
    """Every operator the tracker or the configuration knows, in the queue's own words
    (ivr.calls.members): "unknown" unless AMI said otherwise, never "free" by default."""
    names = _configured_names(deps)
    state: dict[str, dict[str, Any]] = {}
    if live and deps.tracker is not None:
        state = dict(deps.tracker.operator_state())
    out = []
    for interface in sorted(set(state) | set(names)):
        current = state.get(interface) or {}
        status = current.get("state") if live and current.get("state") in MEMBER_STATE_LABELS else "unknown"
        out.append({
            "interface": interface,
            "name": current.get("name") or names.get(interface) or interface,
            "state": status,
            "state_text": member_state_text(status, current.get("paused_reason")),
            "paused_reason": current.get("paused_reason") if status == "paused" else None,
            "call_id": current.get("call_id"),
            "since": current.get("since"),
            "seconds": _seconds_since(current.get("since"), now) if status in _TIMED else None,
        })
    return out


_TIMED = ("ringing", "talking", "paused")  # states whose duration the board shows


class CustomerNames:
    """customer id -> "Фамилия Имя Отчество" for the queue rows, read once a while per id (a poll
    every 2 s must not read the same customers again and again)."""

    def __init__(self, ttl: float = 300.0, size: int = 1000, clock: Any = time.monotonic) -> None:
        self._ttl, self._size, self._clock = ttl, size, clock
        self._names: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def lookup(self, store: Any, ids: list[str]) -> dict[str, str | None]:
        now = self._clock()
        fresh = {i: hit[1] for i in ids if (hit := self._names.get(i)) and now - hit[0] < self._ttl}
        missing = sorted({i for i in ids if i not in fresh})
        if missing:
            found = await asyncio.wait_for(store.customers_by_ids(missing), DB_TIMEOUT)
            for customer_id in missing:
                c = found.get(customer_id)
                name = " ".join(p for p in (c.last_name, c.first_name, c.patronymic) if p) if c else None
                fresh[customer_id] = name
                self._names[customer_id] = (now, name)
                self._names.move_to_end(customer_id)
            while len(self._names) > self._size:
                self._names.popitem(last=False)
        return fresh


NAMES_KEY = web.AppKey("wallboard_customer_names", CustomerNames)


async def _name_queue(deps: ConsoleDeps, names: CustomerNames | None, calls: list[dict[str, Any]]) -> None:
    ids = [c["customer_id"] for c in calls if c.get("customer_id")]
    if not ids:
        return
    try:
        found = await (names or CustomerNames()).lookup(deps.store, ids)
    except Exception as exc:  # the ids stay on the board: a slow database must not blank it
        log.warning("wallboard_names_failed", error=repr(exc)[:300])
        return
    for call in calls:
        call["customer_name"] = found.get(call.get("customer_id") or "")


async def wallboard_data(deps: ConsoleDeps, *, now: datetime | None = None,
                         names: CustomerNames | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    health = _health(deps)
    ami = health.get("ami") if isinstance(health.get("ami"), dict) else {}
    ami_status = ami.get("status") if ami else None
    if deps.tracker is None:
        ami_status = ami_status if ami_status and ami_status != "connected" else "disabled"
    live = deps.tracker is not None and ami_status in (None, "connected")
    agi = health.get("agi") if isinstance(health.get("agi"), dict) else {}

    ivr_calls: list[dict[str, Any]] = []
    queue_calls: list[dict[str, Any]] = []
    operator_calls: list[dict[str, Any]] = []
    if live:
        for call in deps.tracker.live_calls():
            item = dict(call)
            item["seconds"] = _seconds_since(call.get("since"), now)
            {"queue": queue_calls, "operator": operator_calls}.get(call.get("state"), ivr_calls).append(item)
    queue_calls.sort(key=lambda c: -(c["seconds"] or 0))
    await _name_queue(deps, names, queue_calls + operator_calls)
    operators = _operators(deps, live, now)

    orders: dict[str, Any] | None
    try:
        counts = await asyncio.wait_for(orders_today(deps.store.sessions, deps.timezone, now=now), DB_TIMEOUT * 2)
        orders = {
            "day": counts.day.isoformat(), "ivr": counts.ivr, "operator": counts.operator, "other": counts.other,
            "total": counts.total, "ivr_amount": str(counts.ivr_amount),
            "operator_amount": str(counts.operator_amount),
        }
    except Exception as exc:
        log.warning("wallboard_orders_failed", error=repr(exc)[:300])
        orders = None

    return {
        "generated_at": now.isoformat(),
        # The board's clock in business time (hours.timezone), as the page and wallboard.js show it.
        "clock": formats.time_text(now, deps.timezone),
        "timezone": deps.timezone,
        "poll_seconds": POLL_SECONDS,
        "ami": {"live": live, "status": ami_status, "message": None if live else AMI_DOWN_TEXT,
                "status_text": AMI_STATUS_LABELS.get(ami_status or "", ami_status or "")},
        "agi": {"listening": agi.get("listening"), "active_calls": agi.get("active_calls")},
        "ivr": {"count": len(ivr_calls) if live else agi.get("active_calls"), "calls": ivr_calls},
        "queue": {
            "count": len(queue_calls) if live else None,
            "longest_wait_seconds": queue_calls[0]["seconds"] if queue_calls else (0 if live else None),
            "calls": queue_calls,
        },
        "operators": {
            "talking": sum(1 for o in operators if o["state"] == "talking") if live else None,
            "ringing": sum(1 for o in operators if o["state"] == "ringing") if live else None,
            "busy": sum(1 for o in operators if o["state"] in ("talking", "ringing")) if live else None,
            "free": sum(1 for o in operators if o["state"] == "free") if live else None,
            "paused": sum(1 for o in operators if o["state"] == "paused") if live else None,
            "unavailable": sum(1 for o in operators if o["state"] == "unavailable") if live else None,
            "unknown": sum(1 for o in operators if o["state"] == "unknown") if live else None,
            "list": operators,
            "calls": operator_calls,
        },
        "orders_today": orders,
    }


async def wallboard_page(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    board = await wallboard_data(deps, names=request.app[NAMES_KEY])
    return render(request, "wallboard.html", board=board, poll_seconds=POLL_SECONDS)


async def wallboard_json(request: web.Request) -> web.Response:
    response = to_json(await wallboard_data(request.app[DEPS_KEY], names=request.app[NAMES_KEY]))
    response.headers["Cache-Control"] = "no-store"
    return response


# --- health ---------------------------------------------------------------------------------------------


async def _database_state(deps: ConsoleDeps) -> dict[str, Any]:
    """``state``: ``up``, ``read_only`` (answers, takes no write: no order could be placed) or
    ``unreachable`` (with ``since``). While the service's start-up retry has not got through
    (ivr.database_gate) the check does not knock as well: the retry's last word is the answer."""
    gate = deps.database
    if gate is not None and not gate.ready:
        health = gate.health()
        return {"ok": False, "state": "unreachable", "since": health["unreachable_since"], "error": health["error"],
                "seconds": 0.0}
    started = time.perf_counter()

    async def probe() -> str | None:
        async with deps.store.sessions() as session:
            return await read_only_reason(session)

    error: str | None
    try:
        read_only = await asyncio.wait_for(probe(), DB_TIMEOUT)
    except TimeoutError:
        error = f"no answer within {DB_TIMEOUT:g} s"
    except Exception as exc:
        error = (str(exc).splitlines() or [repr(exc)])[0][:200]
    else:
        seconds = round(time.perf_counter() - started, 4)
        if gate is not None:
            gate.mark_reachable()
        if read_only is not None:
            return {"ok": False, "state": "read_only", "since": None, "error": read_only, "seconds": seconds}
        return {"ok": True, "state": "up", "since": None, "error": None, "seconds": seconds}
    since = None
    if gate is not None:
        gate.mark_unreachable(error)
        since = gate.health()["unreachable_since"]
    return {"ok": False, "state": "unreachable", "since": since, "error": error,
            "seconds": round(time.perf_counter() - started, 4)}


async def _outbox_backlog(deps: ConsoleDeps) -> dict[str, Any] | None:
    """{target: OutboxBacklog}, None without targets or when the read failed (logged)."""
    if deps.outbox is None:
        return None
    try:
        return await asyncio.wait_for(deps.outbox.backlog(deps.outbox_targets, datetime.now(UTC)), DB_TIMEOUT)
    except Exception as exc:
        log.warning("outbox_backlog_failed", error=repr(exc)[:300])
        return None


async def _crm_backlog(deps: ConsoleDeps) -> dict[str, Any] | None:
    if deps.outbox is None:
        return None
    backlog = await _outbox_backlog(deps)
    if backlog is None:
        return {"ok": False, "targets": None}
    return {"ok": True, "targets": {name: {"pending": b.pending, "dead": b.dead,
                                           "oldest_pending_seconds": b.oldest_pending_seconds}
                                    for name, b in backlog.items()}}


async def healthz(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    database = await _database_state(deps)
    db_ok = database["ok"]
    health = _health(deps)
    agi = health.get("agi") if isinstance(health.get("agi"), dict) else None
    ami = health.get("ami") if isinstance(health.get("ami"), dict) else None
    agi_ok = bool(agi and agi.get("listening"))
    ami_status = (ami or {}).get("status") or "unknown"
    ami_ok = ami_status in ("connected", "standby")  # standby: another process owns AMI (ivr/cluster)
    status = "ok" if db_ok and agi_ok and ami_ok else "degraded" if db_ok and agi_ok else "down"
    body = {
        "status": status,
        "database": database,
        "fastagi": {
            "ok": agi_ok,
            "listening": bool(agi and agi.get("listening")),
            "active_calls": (agi or {}).get("active_calls"),
        },
        "ami": {"ok": ami_ok, "status": ami_status, "last_error": (ami or {}).get("last_error")},
        "worker": health.get("worker"),
        "crm": await _crm_backlog(deps) if db_ok else None,
        # The pull from a CRM: last run, its failure line, each entity's cursor (null: not configured).
        "sync": health.get("sync"),
        # Not part of "status": without a model the calls go on with keys (issue 12). "disabled", or
        # per language "loaded" / "loading" / "not configured" / "missing: …" / "unreadable: …".
        "speech": health.get("speech") or {"status": "disabled"},
    }
    response = to_json(body, status=200 if status in ("ok", "degraded") else 503)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- metrics --------------------------------------------------------------------------------------------


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def metrics_allowed(request: web.Request) -> bool:
    """The API bearer token, or a request from this host's loopback address."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        given = token.strip().encode("utf-8", "surrogateescape")
        expected = request.app[TOKEN_KEY].encode("utf-8")
        return scheme.lower() == "bearer" and bool(given) and hmac.compare_digest(given, expected)
    return _is_loopback(client_address(request))  # behind a trusted proxy: the client's, not the proxy's


async def metrics_endpoint(request: web.Request) -> web.Response:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    if not metrics_allowed(request):
        return api_error(403, "forbidden", "metrics need the API bearer token or a request from localhost")
    if deps.metrics is None:
        return api_error(404, "metrics_disabled", "metrics are not enabled in this process")
    if deps.outbox is not None:  # read now: the scrape shows the outbox as it is, not as it was
        deps.metrics.outbox_backlog = await _outbox_backlog(deps)
    body = deps.metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    response.headers["Cache-Control"] = "no-store"
    return response


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    app[NAMES_KEY] = CustomerNames()
    app.router.add_get("/wallboard", require("supervisor", "admin")(wallboard_page))
    app.router.add_get("/api/v1/wallboard", require("supervisor", "admin")(wallboard_json))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
