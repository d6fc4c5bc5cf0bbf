"""Serving callers the robot did not know (issue 10): customers made and corrected from the console.

Every route: operator, supervisor, admin; every POST is a form with the session's CSRF token.

- ``GET /customers/new?number=…&call=…`` — the new-customer form, the unknown caller's number
  prefilled (the operator card links here); ``POST /customers/new`` makes the customer and goes to
  their page (with ``call`` kept, so the order placed next is linked to the call).
- ``POST /customers/{id}/phones`` — attach a number to an existing customer (found with
  ``/customers?attach=<number>``); a number someone else owns becomes a shared number.
- ``POST /customers/{id}/address`` — edit the address.
- ``POST /tasks/{task_id}/note`` — a note on a callback task (it stays open), back to /operator.

Bad input re-renders the form with a Russian message (422) and changes nothing; who did it (the
signed-in user) and when go to the customer's timeline (crm_bridge.corrections).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web

from crm_bridge.errors import ChangeReasonRequired, InvalidCustomer, UnknownCustomer, UnknownTask
from ivr.web.console.auth import current_user, require
from ivr.web.console.deps import DEPS_KEY, ConsoleDeps
from ivr.web.console.render import render

log = structlog.get_logger("ivr.console")

ROLES = ("operator", "supervisor", "admin")
LANGUAGES = {"ru": "русский", "en": "английский"}
_CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def who(request: web.Request) -> str:
    """The signed-in user as the timeline names them: "Ольга Операторова (op1)"."""
    user = current_user(request)
    if user is None:  # pragma: no cover - every route here requires a user
        return "?"
    name = getattr(user, "display_name", "") or ""
    return f"{name} ({user.username})" if name and name != user.username else user.username


def call_param(value: Any) -> str:
    """A call id carried through the forms (the order placed next is linked to it); junk is dropped."""
    text = str(value or "").strip()
    return text if _CALL_ID.match(text) else ""


def customer_url(customer_id: str, **query: str) -> str:
    shown = {k: v for k, v in query.items() if v}
    return f"/customers/{quote(customer_id, safe='')}" + (f"?{urlencode(shown)}" if shown else "")


def _form_values(form: Any) -> dict[str, str]:
    names = ("last_name", "first_name", "patronymic", "address", "language", "number", "call")
    return {name: str(form.get(name, "") or "").strip() for name in names}


@require(*ROLES)
async def new_customer_page(request: web.Request) -> web.Response:
    values = {"last_name": "", "first_name": "", "patronymic": "", "address": "", "language": "ru",
              "number": request.query.get("number", "").strip()[:40], "call": call_param(request.query.get("call"))}
    return render(request, "customer_new.html", values=values, error=None, field=None, languages=LANGUAGES)


@require(*ROLES)
async def create_customer(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    values = _form_values(await request.post())
    values["call"] = call_param(values["call"])
    try:
        made = await deps.store.create_customer(
            last_name=values["last_name"], first_name=values["first_name"], patronymic=values["patronymic"],
            address=values["address"], language=values["language"] or "ru", number=values["number"] or None,
            call_id=values["call"] or None, by=who(request),
        )
    except InvalidCustomer as exc:
        log.info("customer_refused", field=exc.field, by=who(request))
        return render(request, "customer_new.html", status=422, values=values, error=exc.message, field=exc.field,
                      languages=LANGUAGES)
    raise web.HTTPSeeOther(customer_url(made.customer_id, done="created", call=values["call"]))


@require(*ROLES)
async def attach_phone(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    form = await request.post()
    number = str(form.get("number", "") or "").strip()[:40]
    call = call_param(form.get("call"))
    try:
        await deps.store.attach_phone(customer_id, number, by=who(request), call_id=call or None)
    except UnknownCustomer:
        return _missing(request, customer_id)
    except InvalidCustomer as exc:
        return render(request, "customers.html", status=422, query="", results=[], limit=0, missing=None,
                      full_name=lambda c: "", attach=number, call=call, error=exc.message)
    raise web.HTTPSeeOther(customer_url(customer_id, done="attached", call=call))


@require(*ROLES)
async def change_address(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    customer_id = request.match_info["customer_id"]
    form = await request.post()
    try:
        await deps.store.change_address(customer_id, str(form.get("address", "") or ""), by=who(request))
    except UnknownCustomer:
        return _missing(request, customer_id)
    except InvalidCustomer as exc:
        return render(request, "message.html", status=422, title="Адрес не изменён", message=exc.message,
                      back=customer_url(customer_id))
    raise web.HTTPSeeOther(customer_url(customer_id, done="address"))


@require(*ROLES)
async def task_note(request: web.Request) -> web.StreamResponse:
    deps: ConsoleDeps = request.app[DEPS_KEY]
    form = await request.post()
    try:
        task_id = int(request.match_info["task_id"])
    except ValueError:
        task_id = 0
    note = str(form.get("note", "") or "")
    if not 1 <= task_id <= 2**31 - 1:
        return render(request, "message.html", status=404, title="Задача не найдена",
                      message="Такой задачи нет.", back="/operator#tasks")
    try:
        await deps.store.add_task_note(task_id, note, by=who(request))
    except UnknownTask:
        return render(request, "message.html", status=404, title="Задача не найдена",
                      message=f"Задачи №{task_id} нет.", back="/operator#tasks")
    except ChangeReasonRequired:
        return render(request, "message.html", status=422, title="Заметка пуста",
                      message="Напишите текст заметки.", back="/operator#tasks")
    raise web.HTTPSeeOther("/operator#tasks")


def _missing(request: web.Request, customer_id: str) -> web.Response:
    return render(request, "customers.html", status=404, query="", results=[], limit=0, missing=customer_id,
                  full_name=lambda c: "", attach="", call="", error=None)


def setup(app: web.Application, deps: ConsoleDeps) -> None:
    # Before customer_pages' /customers/{customer_id}: "new" is not a customer id.
    app.router.add_get("/customers/new", new_customer_page)
    app.router.add_post("/customers/new", create_customer)
    app.router.add_post("/customers/{customer_id}/phones", attach_phone)
    app.router.add_post("/customers/{customer_id}/address", change_address)
    app.router.add_post("/tasks/{task_id}/note", task_note)
