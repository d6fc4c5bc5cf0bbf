"""Server-rendered pages: one Jinja2 environment, autoescaped, with the user and CSRF token at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ivr.web.console import formats
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.labels import ROLE_LABELS

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
DEFAULT_TIMEZONE = ConsoleDeps.timezone  # pages of an app without console deps (tests of bare routes)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,  # a typo in a template is an error in tests, not a blank
    trim_blocks=True,
    lstrip_blocks=True,
)


@jinja2.pass_context
def _when(context: Any, value: Any, seconds: bool = False) -> str:
    """A moment, in the business zone the page was rendered for: "28 ноября 2026, 23:30"."""
    return formats.datetime_text(value, context["business_tz"], seconds=seconds)


@jinja2.pass_context
def _day(context: Any, value: Any) -> str:
    return formats.date_text(value, context["business_tz"])


@jinja2.pass_context
def _clock(context: Any, value: Any, seconds: bool = True) -> str:
    return formats.time_text(value, context["business_tz"], seconds=seconds)


# Every date, time and amount on a page goes through these filters (ivr.web.console.formats).
_env.filters.update(
    money=formats.money_text,
    when=_when,
    clock=_clock,
    day=_day,
    seconds=formats.duration_text,
    role=lambda role: ROLE_LABELS.get(role, "—"),
)


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    from ivr.web.console.auth import csrf_token, current_user  # auth builds on render's neighbours

    deps = request.app.get(DEPS_KEY)
    timezone = deps.timezone if deps is not None else DEFAULT_TIMEZONE
    context.setdefault("business_tz", formats.zone_of(timezone))
    body = _env.get_template(template).render(
        user=current_user(request), csrf_token=csrf_token(request), path=request.path, timezone_name=timezone,
        **context,
    )
    response = web.Response(text=body, status=status, content_type="text/html")
    # Pages are per-user: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
