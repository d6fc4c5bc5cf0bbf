"""What every response and every access-log line of the web app gets, whatever route served it.

* **Content-Security-Policy** on every HTML page: scripts, styles, images, media, fetch/WebSocket
  only from our own origin, no inline script or style (the templates carry none: their scripts
  are files under /static, page data travels in ``<script type="application/json">`` blocks, which
  are never executed), no plugins, no ``<base>``, forms only to us, never framed. An injected
  ``<script>`` or ``onclick=`` that slipped past escaping does not run.
* **The access log** (aiohttp's ``aiohttp.access`` logger): one line per request with the client's
  address (``ivr.web.client_address``), method, path, status, size, seconds and User-Agent. The
  query string keeps its keys but not its values, except a few harmless ones (page numbers,
  dates): the bearer token of a WebSocket URL (``?token=``) and customers' names and phone numbers
  typed into a search never reach the log. The Referer is not logged (it carries the previous
  page's query).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ivr.web.client_address import client_address

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self'",
    "connect-src 'self'",  # CSP 3: 'self' covers ws:/wss: to the same host and port
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

# Query values that say nothing about a person or a secret: kept in the access log.
LOGGED_QUERY_VALUES = frozenset({"page", "limit", "offset", "from", "to", "done", "outcome", "lang"})
REDACTED = "…"


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared and (response.content_type or "").startswith("text/html"):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


def loggable_target(request: web.BaseRequest) -> str:
    """The path and the query with every value outside ``LOGGED_QUERY_VALUES`` replaced by "…"."""
    path = request.rel_url.raw_path
    query = request.rel_url.raw_query_string
    if not query:
        return path
    parts = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        shown = quote(value, safe=":-.") if key in LOGGED_QUERY_VALUES else (REDACTED if value else "")
        parts.append(f"{quote(key, safe='')}={shown}")
    return f"{path}?{'&'.join(parts)}"


class RedactingAccessLogger(AbstractAccessLogger):
    """``web.AppRunner(app, access_log_class=RedactingAccessLogger)``: see the module docstring."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        address = client_address(request) if isinstance(request, web.Request) else (request.remote or "-")
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.3fs "%s"', address, request.method, loggable_target(request),
            request.version.major, request.version.minor, response.status, response.body_length, time,
            request.headers.get("User-Agent", "-"),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
