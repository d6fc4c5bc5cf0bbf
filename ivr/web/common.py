"""What every JSON route shares: app keys, JSON responses, stable error ids, who may call the API.

Every error is JSON with a stable machine-readable id: ``{"error": {"id": "...", "message": "..."}}``;
a refused request body adds ``"fields": [{"field": "lines[0].quantity", "message": "..."}]``.

``/api/`` takes EITHER the bearer token (machine clients: full access, no CSRF) OR a console session
cookie (browsers). The session is loaded earlier by the console's session middleware
(``ivr.web.console.auth``), which puts the user under ``USER_KEY``; here a session request must
come from our own origin (Origin/Referer when sent), carry the session's CSRF token in
``X-CSRF-Token`` on unsafe methods, and pass ``SESSION_API_POLICY`` for the route.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from ivr.calls.screen_pop import operator_key

log = structlog.get_logger("ivr.web")

STORE_KEY = web.AppKey("store", Any)
TOKEN_KEY = web.AppKey("api_token", str)
# Largest id or offset a request may name: the database's 32-bit integer columns (PostgreSQL
# refuses a bigger parameter outright, which would otherwise be a 500).
MAX_DB_INT = 2**31 - 1


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


def api_error(status: int, error_id: str, message: str, fields: Iterable[Any] = ()) -> web.Response:
    """``fields``: per-field problems (objects with ``field`` and ``message``), listed under
    ``error.fields`` as ``[{"field": "lines[0].quantity", "message": "…"}]`` when there are any."""
    error: dict[str, Any] = {"id": error_id, "message": message}
    listed = [{"field": f.field, "message": f.message} for f in fields]
    if listed:
        error["fields"] = listed
    return to_json({"error": error}, status=status)


# --- who is calling: set per request --------------------------------------------------------------

USER_KEY = web.RequestKey("ivr_user", Any)  # the console user (auth.User), absent without a session
CSRF_KEY = web.RequestKey("ivr_csrf", str)  # that session's CSRF token
AUTH_KIND_KEY = web.RequestKey("ivr_auth", str)  # on /api/: "token" (bearer) or "session"
REQUIRED_ROLES_ATTR = "ivr_required_roles"  # set by auth.require() on the handlers it wraps

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ROLE_RANK = {"operator": 1, "supervisor": 2, "admin": 3}  # each role has every permission of those below


def role_allows(role: str, roles: Iterable[str]) -> bool:
    """True if ``role`` is at least the lowest of ``roles`` (admin ⊇ supervisor ⊇ operator)."""
    wanted = [ROLE_RANK[r] for r in roles]
    return bool(wanted) and ROLE_RANK.get(role, 0) >= min(wanted)


def own_operator_only(user: Any, request: web.Request) -> bool:
    """Supervisors and admins see every operator; an operator only the key of their own interface."""
    if role_allows(user.role, ("supervisor",)):
        return True
    interface = getattr(user, "operator_interface", None)
    wanted = request.match_info.get("operator", "")
    return bool(interface) and bool(wanted) and hmac.compare_digest(operator_key(interface), wanted)


Rule = tuple[str, ...] | Callable[[Any, web.Request], bool]
ANY_ROLE: Rule = ("operator",)  # operator, supervisor or admin
SUPERVISOR: Rule = ("supervisor",)  # supervisor or admin
ADMIN: Rule = ("admin",)

# Who may call an API route with a browser session; a valid bearer token may call every route.
# Key: (method, route pattern as registered); a pattern ending in "*" covers every route starting
# with the part before it. HEAD follows GET. A route listed nowhere is refused to sessions (403),
# unless its handler is wrapped by ivr.web.console.auth.require(...), which then decides.
SESSION_API_POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/api/v1/me"): ANY_ROLE,
    ("GET", "/api/v1/customers/{customer_id}"): ANY_ROLE,
    ("GET", "/api/v1/calls"): ANY_ROLE,
    ("GET", "/api/v1/calls/{call_id}/timeline"): ANY_ROLE,
    ("GET", "/api/v1/tasks"): ANY_ROLE,
    ("POST", "/api/v1/tasks/{task_id}"): ANY_ROLE,
    ("POST", "/api/v1/customers/{customer_id}/orders"): ANY_ROLE,
    ("GET", "/api/v1/deals"): ANY_ROLE,
    ("GET", "/api/v1/deals/{deal_id}"): ANY_ROLE,
    ("POST", "/api/v1/deals/{deal_id}/stage"): ANY_ROLE,  # operators move deals
    ("GET", "/api/v1/operators/{operator}/current"): own_operator_only,
    ("GET", "/api/v1/operators/{operator}/feed"): own_operator_only,
    ("GET", "/api/v1/stats*"): SUPERVISOR,
    ("GET", "/api/v1/wallboard*"): SUPERVISOR,
}


def session_rule(method: str, pattern: str) -> Rule | None:
    method = "GET" if method == "HEAD" else method
    rule = SESSION_API_POLICY.get((method, pattern))
    if rule is not None:
        return rule
    prefixes = [(p[:-1], r) for (m, p), r in SESSION_API_POLICY.items() if m == method and p.endswith("*")]
    for prefix, rule in sorted(prefixes, key=lambda item: -len(item[0])):
        if pattern.startswith(prefix):
            return rule
    return None


def rule_allows(rule: Rule, user: Any, request: web.Request) -> bool:
    if callable(rule):
        return bool(rule(user, request))
    return role_allows(user.role, rule)


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another site (Origin, else Referer).
    Neither header sent: True (the CSRF token still guards unsafe methods)."""
    origin = request.headers.get("Origin")
    source = origin if origin is not None else request.headers.get("Referer")
    if source is None:
        return True
    if source.strip() == "null":  # sandboxed frames, data: URLs, some redirects
        return False
    try:
        netloc = urlsplit(source.strip()).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == (request.host or "").lower()


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    # Compare bytes: hmac.compare_digest refuses non-ASCII str (a TypeError, i.e. a 500).
    return hmac.compare_digest(expected.encode("utf-8", "surrogateescape"), given.encode("utf-8", "surrogateescape"))


def _bearer_ok(token: str, expected: str) -> bool:
    given = token.strip().encode("utf-8", "surrogateescape")
    return bool(given) and hmac.compare_digest(given, expected.encode("utf-8"))


def _authorize_api(request: web.Request) -> web.Response | None:
    """None if the request may go on to its /api/ handler, else the error response."""
    expected = request.app[TOKEN_KEY]
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and _bearer_ok(token, expected):
            request[AUTH_KIND_KEY] = "token"
            return None
        return api_error(401, "unauthorized", "the bearer token is not valid")
    if request.path.endswith("/feed") and "token" in request.query:
        # Browsers cannot set headers on a WebSocket: the live feeds also take ?token=.
        if _bearer_ok(request.query.get("token", ""), expected):
            request[AUTH_KIND_KEY] = "token"
            return None
        return api_error(401, "unauthorized", "the token is not valid")
    user = request.get(USER_KEY)
    if user is None:
        return api_error(401, "unauthorized", "a valid bearer token or a signed-in session is required")
    request[AUTH_KIND_KEY] = "session"
    unsafe = request.method in UNSAFE_METHODS
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if (unsafe or websocket) and not same_origin(request):
        log.warning("cross_origin_refused", path=request.path, origin=request.headers.get("Origin"))
        return api_error(403, "cross_origin", "the request does not come from this site")
    if unsafe and not csrf_matches(request.get(CSRF_KEY), request.headers.get("X-CSRF-Token")):
        return api_error(403, "csrf_failed", "send the session's CSRF token in the X-CSRF-Token header")
    match = request.match_info
    if match.http_exception is not None:
        return None  # 404 / 405: the handler raises it
    resource = match.route.resource
    rule = session_rule(request.method, resource.canonical) if resource is not None else None
    if rule is None:
        if getattr(match.handler, REQUIRED_ROLES_ATTR, None) is not None:
            return None  # auth.require decides
        return api_error(403, "forbidden", "this route is not open to console sessions")
    if not rule_allows(rule, user, request):
        log.info("api_forbidden", path=request.path, user=getattr(user, "username", None), role=user.role)
        return api_error(403, "forbidden", "your role may not do this")
    return None


@web.middleware
async def errors_and_auth(request: web.Request, handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        refused = _authorize_api(request)
        if refused is not None:
            return refused
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
