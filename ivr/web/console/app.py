"""Mounts the console on the web application: one `setup(app, deps)` per page module."""

from __future__ import annotations

from aiohttp import web

from ivr.web.console import (
    auth,
    calls_pages,
    crm_pages,
    customer_edit_pages,
    customer_pages,
    deal_pages,
    monitoring,
    operator_pages,
    order_pages,
    stats_pages,
)
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.render import STATIC


def add_console(app: web.Application, deps: ConsoleDeps) -> None:
    app[DEPS_KEY] = deps
    app.router.add_static("/static/", STATIC, append_version=False)
    # customer_edit_pages before customer_pages: /customers/new is not /customers/{customer_id}.
    for module in (auth, operator_pages, customer_edit_pages, order_pages, customer_pages, calls_pages, stats_pages,
                   monitoring, crm_pages, deal_pages):
        module.setup(app, deps)
