"""What every JSON route shares: app keys, JSON responses, stable error ids, bearer-token auth.

Every error is JSON with a stable machine-readable id: ``{"error": {"id": "...", "message": "..."}}``.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("ivr.web")

STORE_KEY = web.AppKey("store", Any)
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
        if not header and request.path.endswith("/feed"):
            # Browsers cannot set headers on a WebSocket: the live feeds also take ?token=.
            scheme, token = "bearer", request.query.get("token", "")
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


