"""/operator over real HTTP with sign-ins: the live card, products, call-back tasks, and the API calls
the page's script makes with the session (orders with an Idempotency-Key, task results, the feed)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from crm_bridge.models import Invoice
from ivr.web.console.auth import auth_state
from ivr.web.console.deps import DEPS_KEY
from ivr.web.console.labels import REASON_LABELS as IVR_REASONS
from ivr.web.console.labels import reason_text
from ivr.web.console.timeline_text import event_line
from tests.console.conftest import PASSWORD, login, start_client
from tests.feeds import next_card

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
XSS = "<script>alert(1)</script>"


@pytest.fixture
async def demo(store):
    report = await load_demo_data(store.sessions)
    assert report.ok
    return store


def board_of(app):
    return app[DEPS_KEY].board


async def ring(app, *, call_id="1.1", caller="+79161234567", customer="C001", reason="caller_request",
               lookup="found", candidates=(), interface="PJSIP/101", kind="operator.ringing"):
    """Feed the board the events of a call that reached operator ``interface``; wait for the card."""
    board = board_of(app)
    at = NOW
    for event_kind, cid, data in [
        ("call.started", None, {"caller": caller}),
        ("caller.identified", customer, {"status": lookup, "candidates": list(candidates)}),
        ("prompt.played", customer, {"step": "menu", "text": "Чтобы повторить заказ, нажмите 1."}),
        ("dtmf.received", customer, {"step": "menu", "digits": "0", "timed_out": False}),
        ("call.escalated", customer, {"reason": reason}),
        (kind, customer, {"operator_interface": interface}),
    ]:
        at += timedelta(seconds=1)
        board.on_event(TimelineEventIn(at=at, call_id=call_id, customer_id=cid, kind=event_kind, data=data))
    key = interface.split("/", 1)[1]
    for _ in range(200):
        card = board.current(key)
        if card is not None and card.get("call", {}).get("call_id") == call_id:
            return card
        await asyncio.sleep(0.01)
    raise AssertionError("the card was not built")


def page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="operator-data">(.*?)</script>', html, re.S)
    assert match, "the page embeds its data for operator.js"
    return json.loads(match.group(1))


async def invoices(store) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Invoice))


# --- the page ----------------------------------------------------------------------------------


async def test_operator_sees_own_free_screen_with_products_and_tasks(demo, console_client):
    await demo.open_callback_task(customer_id="C002", number="+79031112233", reason="abandoned_in_queue",
                                  due_at=NOW, call_id="9.9")
    await login(console_client, "op1", PASSWORD)
    response = await console_client.get("/operator")
    assert response.status == 200
    html = await response.text()
    assert 'data-operator="101"' in html
    assert "Свободен" in html and "Сейчас звонка нет" in html
    # the product list for a new order
    for sku in ("WATER-19", "WATER-5", "BOTTLE-19", "CUPS-100", "PUMP"):
        assert f'<option value="{sku}">' in html
    assert "350,00\u00a0₽" in html
    # call-back tasks, rendered on the server (the page works before JS)
    assert 'href="/customers/C002"' in html
    assert "не дождался ответа в очереди" in html
    assert "Готово" in html and "Не дозвонился" in html
    assert 'data-status="done"' in html and 'data-status="no_answer"' in html
    data = page_data(html)
    assert data["operator"] == "101" and data["live"] is True
    assert [p["sku"] for p in data["products"]][:2] == ["BOTTLE-19", "CUPS-100"]
    assert data["labels"]["states"]["ringing"] == "Звонит"
    assert '<script src="/static/operator.js"' in html


async def test_ringing_card_shows_caller_customer_reason_path_and_last_orders(demo, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app)
        await login(client, "op1", PASSWORD)
        html = await (await client.get("/operator")).text()
    finally:
        await client.close()
    assert 'class="state-ringing"' in html and "Звонит" in html
    assert "+79161234567" in html
    assert "Иванов Алексей Сергеевич" in html
    assert "Садовая-Кудринская" in html
    assert "клиент попросил оператора" in html
    path = html[html.index('class="ivr-path"'):]
    assert path.index("Чтобы повторить заказ, нажмите 1.") < path.index("«0»")
    assert "H-1013" in html and "H-0991" in html
    assert html.count("Повторить заказ") == 2  # one per last order (C001 has two)
    assert 'name="customer_id" readonly size="12" placeholder="из карточки звонка"\n      value="C001"' in html
    assert page_data(html)["card"]["call"]["call_id"] == "1.1"


async def test_shared_number_lists_the_candidates(demo, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app, customer=None, lookup="shared", reason="shared_number", candidates=("C002", "C004"))
        await login(client, "op1", PASSWORD)
        html = await (await client.get("/operator")).text()
    finally:
        await client.close()
    assert "номер принадлежит нескольким клиентам" in html
    assert 'href="/customers/C002"' in html and 'href="/customers/C004"' in html
    assert "Клиент не определён" in html


async def test_supervisor_chooses_an_operator_and_an_operator_cannot(demo, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app, interface="PJSIP/102", call_id="2.2")
        await login(client, "sup1", PASSWORD)
        html = await (await client.get("/operator")).text()
        assert 'id="no-interface"' in html  # no interface of their own
        assert 'name="operator"' in html
        html = await (await client.get("/operator", params={"operator": "102"})).text()
        assert 'data-operator="102"' in html and "Иванов Алексей Сергеевич" in html
        assert "вы смотрите экран другого оператора" in html
        bad = await client.get("/operator", params={"operator": "../x"})
        assert bad.status == 400
    finally:
        await client.close()
    operator = await start_client(console_app)
    try:
        await login(operator, "op1", PASSWORD)
        html = await (await operator.get("/operator", params={"operator": "102"})).text()
        assert 'data-operator="101"' in html  # an operator only ever sees their own screen
        assert "Иванов" not in html.split('id="new-order"')[0]
    finally:
        await operator.close()


@pytest.mark.parametrize("username", ["op1", "sup1", "adm1"])
async def test_every_console_role_may_open_the_page(demo, console_client, username):
    await login(console_client, username, PASSWORD)
    response = await console_client.get("/operator", params={"operator": "101"})
    assert response.status == 200
    assert 'id="order-form"' in await response.text()


async def test_operator_without_interface_gets_a_clear_message(demo, console_app):
    await auth_state(console_app).accounts.create_user("op2", PASSWORD, "operator", "Без Телефона", None)
    client = await start_client(console_app)
    try:
        await login(client, "op2", PASSWORD)
        response = await client.get("/operator")
        assert response.status == 200
        html = await response.text()
    finally:
        await client.close()
    assert 'id="no-interface"' in html
    assert "не настроен телефон оператора" in html
    assert page_data(html)["operator"] is None


async def test_page_needs_a_sign_in(demo, console_client):
    response = await console_client.get("/operator", allow_redirects=False)
    assert response.status in (302, 303)
    assert response.headers["Location"].startswith("/login")


async def test_customer_data_on_the_card_is_escaped(demo, console_app):
    client = await start_client(console_app)
    try:
        await ring(console_app, caller=XSS, customer=None, lookup="unknown", reason=XSS)
        await login(client, "op1", PASSWORD)
        html = await (await client.get("/operator")).text()
    finally:
        await client.close()
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the embedded JSON cannot close its script element
    assert page_data(html)["card"]["call"]["caller_number"] == XSS


# --- what the page's script does, with the session ---------------------------------------------


async def test_new_order_with_one_idempotency_key_is_placed_once(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    body = {"lines": [{"sku": "WATER-19", "quantity": 2}, {"sku": "PUMP", "quantity": 1}], "call_id": "1.1"}
    headers = {"X-CSRF-Token": csrf, "Idempotency-Key": "4b0d3c9e-0000-4000-8000-000000000001"}
    first, second = await asyncio.gather(
        console_client.post("/api/v1/customers/C001/orders", json=body, headers=headers),
        console_client.post("/api/v1/customers/C001/orders", json=body, headers=headers),
    )
    assert sorted([first.status, second.status]) == [200, 201]
    a, b = await first.json(), await second.json()
    assert a["order"]["order_id"] == b["order"]["order_id"]
    assert a["invoice"]["total"] == "1090.00"
    assert await invoices(demo) == 1
    # without the CSRF header the session may not order
    refused = await console_client.post("/api/v1/customers/C001/orders", json=body,
                                        headers={"Idempotency-Key": "other"})
    assert refused.status == 403
    assert await invoices(demo) == 1


async def test_task_actions_with_the_session(demo, console_client):
    task, _ = await demo.open_callback_task(customer_id="C002", number=None, reason="abandoned_in_queue",
                                            due_at=NOW, call_id=None)
    csrf = await login(console_client, "op1", PASSWORD)
    again = await console_client.post(f"/api/v1/tasks/{task.task_id}", json={"status": "no_answer"},
                                      headers={"X-CSRF-Token": csrf})
    assert again.status == 200
    assert (await again.json())["status"] == "open"
    done = await console_client.post(f"/api/v1/tasks/{task.task_id}", json={"status": "done"},
                                     headers={"X-CSRF-Token": csrf})
    assert (await done.json())["status"] == "done"
    html = await (await console_client.get("/operator")).text()
    assert "Открытых задач нет" in html


async def test_feed_is_session_authenticated_and_pushes_the_card(demo, console_app):
    client = await start_client(console_app)
    try:
        await login(client, "op1", PASSWORD)
        ws = await client.ws_connect("/api/v1/operators/101/feed")
        first = await next_card(ws)
        assert first["state"] == "free"
        await ring(console_app, kind="operator.answered")
        card = await next_card(ws)
        assert card["state"] == "talking"
        assert card["customer"]["customer_id"] == "C001"
        await ws.close()
        denied = await client.get("/api/v1/operators/102/current")
        assert denied.status == 403  # an operator sees only their own feed
    finally:
        await client.close()


# --- pure helpers ------------------------------------------------------------------------------


def test_reasons_and_path_steps_in_plain_russian():
    assert reason_text("caller_request") == "клиент попросил оператора"
    assert reason_text("unknown_number") == "номер не найден в базе"
    assert reason_text("shared_number") == "номер принадлежит нескольким клиентам"
    assert reason_text("database_timeout").startswith("сбой базы данных")
    assert reason_text("after_hours:no_input") == "звонок в нерабочее время; клиент не нажимал кнопки"
    assert reason_text("something_new") == "something_new"
    assert reason_text(None) == ""
    for reason in ("no_input", "invalid_input", "no_caller_id", "no_previous_order", "database_error"):
        assert IVR_REASONS[reason]
    assert event_line("dtmf.received", {"digits": "", "timed_out": True}, "Europe/Moscow") == (
        "Нажаты клавиши", "ничего не нажато")
    assert event_line("prompt.played", {"text": "Здравствуйте"}, "Europe/Moscow") == ("Робот сказал", "Здравствуйте")
