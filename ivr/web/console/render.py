"""Server-rendered pages: one Jinja2 environment, autoescaped, with the user and CSRF token at hand."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,  # a typo in a template is an error in tests, not a blank
    trim_blocks=True,
    lstrip_blocks=True,
)


def _money(value: Any) -> str:
    if value is None:
        return ""
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    whole, _, cents = f"{amount:,.2f}".partition(".")
    return f"{whole.replace(',', ' ')},{cents} ₽"


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone().strftime("%d.%m.%Y %H:%M:%S")


def _seconds(value: Any) -> str:
    if value is None:
        return "—"
    total = int(round(float(value)))
    return f"{total // 60}:{total % 60:02d}"


_env.filters.update(money=_money, when=_when, seconds=_seconds)


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    from ivr.web.console.auth import csrf_token, current_user  # auth builds on render's neighbours

    body = _env.get_template(template).render(
        user=current_user(request), csrf_token=csrf_token(request), path=request.path, **context
    )
    response = web.Response(text=body, status=status, content_type="text/html")
    # Pages are per-user: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
