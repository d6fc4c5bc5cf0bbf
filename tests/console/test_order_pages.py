"""Issue 10 in the console, over real HTTP with a signed-in operator on both databases: a customer
made from an unknown number (or the number attached to one found by search), an address edit, an
order placed from the customer's page ("Повторный заказ?" before a repeat), an order edited and
cancelled with a reason (on the timeline, by whom) and refused after its cut-off, a task note."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.contract.events import EventKind, unexpected_fields
from crm_bridge.demo import load_demo_data
from ivr.web.console.formats import date_text
from ivr.web.console.invoice_pdf import build_invoice_pdf
from ivr.web.console.labels import EVENT_LABELS
from ivr.web.console.timeline_text import event_text
from tests.console.conftest import PASSWORD, login, start_client
from tests.console.test_operator_pages import ring
from tests.pdftext import pdf_text

FORM_KEY = re.compile(r'name="key" value="([^"]+)"')


@pytest.fixture
async def demo(store):
    assert (await load_demo_data(store.sessions)).ok
    return store


def order_form(csrf: str, key: str, lines: dict[str, int], **extra: str) -> list[tuple[str, str]]:
    """The order form as the browser posts it: one sku / quantity pair per product row."""
    data = [("csrf_token", csrf), ("key", key)]
    for sku, quantity in lines.items():
        data += [("sku", sku), ("quantity", str(quantity))]
    return data + list(extra.items())


async def test_an_unknown_callers_number_becomes_a_customer_who_orders(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    form = await console_client.get("/customers/new", params={"number": "8 926 000-11-22", "call": "1700000000.42"})
    html = await form.text()
    assert form.status == 200 and 'value="8 926 000-11-22"' in html and 'value="1700000000.42"' in html
    refused = await console_client.post("/customers/new", data={"csrf_token": csrf, "number": "8 926 000-11-22"})
    assert refused.status == 422 and "Укажите фамилию или имя" in await refused.text()
    made = await console_client.post("/customers/new", allow_redirects=False, data={
        "csrf_token": csrf, "last_name": "Сидорова", "first_name": "Мария", "address": "ул. Лесная, 5",
        "number": "8 926 000-11-22", "language": "ru", "call": "1700000000.42"})
    assert made.status == 303
    location = made.headers["Location"]
    assert location.startswith("/customers/C-1?") and "call=1700000000.42" in location
    page = await (await console_client.get(location)).text()
    assert "Клиент создан." in page and "+79260001122" in page and "ул. Лесная, 5" in page
    assert 'href="/customers/C-1/order?call=1700000000.42"' in page  # the order goes with the call
    assert "Ольга Операторова (op1) завёл(а) клиента по звонку с номера +79260001122" in page
    order = await console_client.get("/customers/C-1/order", params={"call": "1700000000.42"})
    key = FORM_KEY.search(await order.text()).group(1)
    placed = await console_client.post("/customers/C-1/order", allow_redirects=False,
                                       data=order_form(csrf, key, {"WATER-19": 2, "CUPS-100": 0},
                                                       call="1700000000.42"))
    assert placed.status == 303
    card = await demo.get_customer_card("C-1")
    [stored] = card.orders
    assert [(line.sku, line.quantity) for line in stored.lines] == [("WATER-19", 2)]
    assert (await demo.lookup_caller("+79260001122")).last_order.order_id == stored.order_id
    again = await console_client.post("/customers/C-1/order", allow_redirects=False,
                                      data=order_form(csrf, key, {"WATER-19": 2}))
    assert again.status == 303 and len((await demo.get_customer_card("C-1")).orders) == 1  # double submit


async def test_a_number_is_attached_to_a_customer_found_by_search(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    found = await console_client.get("/customers", params={"q": "Иванов", "attach": "+79260001122", "call": "c-1"})
    html = await found.text()
    assert "Привязать номер <strong>+79260001122</strong>" in html
    assert 'action="/customers/C001/phones"' in html and "Привязать номер</button>" in html
    attached = await console_client.post("/customers/C001/phones", allow_redirects=False,
                                         data={"csrf_token": csrf, "number": "+79260001122", "call": "c-1"})
    assert attached.status == 303
    # one phone, two customers: the robot now hands the caller to an operator who picks
    await console_client.post("/customers/C002/phones", data={"csrf_token": csrf, "number": "8 926 000 11 22"})
    lookup = await demo.lookup_caller("+79260001122")
    assert lookup.status == "shared" and set(lookup.candidate_ids) == {"C001", "C002"}
    page = await (await console_client.get("/customers/C002")).text()
    assert "номер общий с клиентом C001" in page
    bad = await console_client.post("/customers/C001/phones", data={"csrf_token": csrf, "number": "12"})
    assert bad.status == 422 and "не распознан" in await bad.text()


async def test_the_address_is_edited(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    saved = await console_client.post("/customers/C001/address", data={"csrf_token": csrf, "address": "ул. Новая, 1"})
    html = await saved.text()
    assert saved.status == 200 and "Адрес сохранён." in html and "ул. Новая, 1" in html
    assert "изменил(а) адрес: ул. Новая, 1" in html


async def test_the_same_order_again_asks_repeat_order_with_a_confirm_button(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    lines = {"WATER-19": 1, "CUPS-100": 2}
    before = len((await demo.get_customer_card("C002")).orders)
    first = await console_client.post("/customers/C002/order", allow_redirects=False,
                                      data=order_form(csrf, "form-1", lines))
    assert first.status == 303
    asked = await console_client.post("/customers/C002/order", data=order_form(csrf, "form-2", lines))
    html = await asked.text()
    assert asked.status == 409 and "Повторный заказ?" in html and 'id="confirm-duplicate"' in html
    assert 'name="key" value="form-2"' in html  # the confirm re-posts the same form (same key)
    assert len((await demo.get_customer_card("C002")).orders) == before + 1
    confirmed = await console_client.post("/customers/C002/order", allow_redirects=False,
                                          data=order_form(csrf, "form-2", lines, confirm_duplicate="1"))
    assert confirmed.status == 303
    assert len((await demo.get_customer_card("C002")).orders) == before + 2


async def test_an_order_is_edited_then_cancelled_with_reasons_on_the_timeline(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    placed = await demo.place_order(idempotency_key="k-edit", customer_id="C001", lines=[("WATER-19", 2)],
                                    source="operator")
    order_id = placed.order.order_id
    card = await (await console_client.get("/customers/C001")).text()
    assert f'href="/customers/C001/orders/{order_id}"' in card and "изменить / отменить" in card
    assert date_text(placed.order.delivery_date) in card
    page = await console_client.get(f"/customers/C001/orders/{order_id}")
    html = await page.text()
    assert page.status == 200 and 'id="edit-order"' in html and 'id="cancel-order"' in html
    assert date_text(placed.order.delivery_date) in html
    no_reason = await console_client.post(f"/customers/C001/orders/{order_id}/cancel",
                                          data={"csrf_token": csrf, "reason": " "})
    assert no_reason.status == 422 and "Укажите причину отмены." in await no_reason.text()
    edited = await console_client.post(f"/customers/C001/orders/{order_id}/edit",
                                       data=order_form(csrf, "", {"WATER-19": 3, "CUPS-100": 1}, reason="добавить"))
    html = await edited.text()
    assert edited.status == 200 and f"Заказ {order_id} изменён, счёт пересчитан." in html
    assert "было WATER-19 × 2, стало WATER-19 × 3, CUPS-100 × 1" in html
    cancelled = await console_client.post(f"/customers/C001/orders/{order_id}/cancel",
                                          data={"csrf_token": csrf, "reason": "клиент уезжает"})
    html = await cancelled.text()
    assert cancelled.status == 200 and f"Заказ {order_id} отменён." in html
    assert f"Ольга Операторова (op1) отменил(а) заказ {order_id}" in html and "Причина: клиент уезжает" in html
    assert "аннулирован" in html
    view = await demo.get_order(order_id)
    assert view.cancelled and view.invoice.status == "cancelled" and view.revision == 2
    again = await console_client.post(f"/customers/C001/orders/{order_id}/cancel",
                                      data={"csrf_token": csrf, "reason": "ещё раз"})
    assert again.status == 409 and "уже отменён" in await again.text()


async def test_an_order_past_its_cutoff_is_refused_in_russian(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    old = datetime.now(UTC) - timedelta(days=10)
    placed = await demo.place_order(idempotency_key="k-old", customer_id="C001", lines=[("WATER-19", 1)],
                                    source="operator", now=old)
    order_id = placed.order.order_id
    html = await (await console_client.get(f"/customers/C001/orders/{order_id}")).text()
    assert 'id="not-changeable"' in html and 'id="cancel-order"' not in html
    refused = await console_client.post(f"/customers/C001/orders/{order_id}/cancel",
                                        data={"csrf_token": csrf, "reason": "поздно"})
    html = await refused.text()
    assert refused.status == 409 and "уже нельзя изменить или отменить" in html and "Свяжитесь со складом" in html
    assert not (await demo.get_order(order_id)).cancelled
    other = await console_client.get(f"/customers/C002/orders/{order_id}")  # another customer's URL
    assert other.status == 404


async def test_a_task_note_is_written_from_the_operator_page(demo, console_client):
    csrf = await login(console_client, "op1", PASSWORD)
    task, _ = await demo.open_callback_task(customer_id="C002", number="+79031112233", reason="abandoned_in_queue",
                                            due_at=datetime.now(UTC), call_id="call-9")
    page = await (await console_client.get("/operator")).text()
    assert f'action="/tasks/{task.task_id}/note"' in page
    noted = await console_client.post(f"/tasks/{task.task_id}/note", data={"csrf_token": csrf, "note": "после 18"})
    html = await noted.text()
    assert noted.status == 200 and "Ольга Операторова (op1): после 18" in html
    [open_task] = await demo.list_tasks("open")
    assert open_task.status == "open" and open_task.note == "Ольга Операторова (op1): после 18"


async def test_the_invoice_pdf_says_cancelled_or_recomputed(demo):
    edited = await demo.place_order(idempotency_key="k-pdf-1", customer_id="C001", lines=[("WATER-19", 1)],
                                    source="operator")
    await demo.change_order(edited.order.order_id, [("WATER-19", 2)], reason="ещё одна", by="op1")
    cancelled = await demo.place_order(idempotency_key="k-pdf-2", customer_id="C002", lines=[("WATER-19", 1)],
                                       source="operator")
    await demo.cancel_order(cancelled.order.order_id, reason="отказ", by="op1")
    texts = {}
    for name, placed in (("edited", edited), ("cancelled", cancelled)):
        invoice, order, customer = await demo.get_invoice(placed.invoice.number)
        texts[name] = pdf_text(build_invoice_pdf(invoice, order, customer))
    assert "Редакция 2: заказ изменён, счёт пересчитан" in texts["edited"] and "АННУЛИРОВАН" not in texts["edited"]
    assert "АННУЛИРОВАН: заказ отменён" in texts["cancelled"]


async def test_the_operator_card_shows_delivery_dates_and_unknown_caller_actions(demo, console_app):
    placed = await demo.place_order(idempotency_key="k-card", customer_id="C001", lines=[("WATER-19", 1)],
                                    source="operator")
    await demo.cancel_order(placed.order.order_id, reason="отказ", by="op1")
    again = await demo.place_order(idempotency_key="k-card-2", customer_id="C001", lines=[("WATER-5", 1)],
                                   source="operator")
    client = await start_client(console_app)
    try:
        card = await ring(console_app)
        await login(client, "op1", PASSWORD)
        html = await (await client.get("/operator")).text()
        await ring(console_app, call_id="2.2", caller="+79260001122", customer=None, reason="unknown_number",
                   lookup="unknown")
        unknown = await (await client.get("/operator")).text()
    finally:
        await client.close()
    by_id = {o["order_id"]: o for o in card["last_orders"]}
    assert by_id[again.order.order_id]["delivery_date"] == again.order.delivery_date.isoformat()
    assert by_id[placed.order.order_id]["status"] == "cancelled"
    assert f'<td class="delivery">{date_text(again.order.delivery_date)}</td>' in html
    assert "отменён" in html
    assert "Клиент не определён." in unknown
    assert 'href="/customers/new?number=%2B79260001122&amp;call=2.2"' in unknown
    assert 'href="/customers?attach=%2B79260001122&amp;call=2.2"' in unknown


def test_every_correction_event_reads_as_a_russian_sentence():
    by = {"by": "Ольга Операторова (op1)"}
    texts = {
        EventKind.ORDER_CANCELLED: {**by, "order_id": "A-1", "reason": "отказ", "invoice": "СЧ-1"},
        EventKind.ORDER_CHANGED: {**by, "order_id": "A-1", "reason": "больше", "revision": 2, "invoice": "СЧ-1",
                                  "previous_total": "350.00", "total": "700.00",
                                  "lines": [{"sku": "W", "quantity": 2}],
                                  "previous_lines": [{"sku": "W", "quantity": 1}]},
        EventKind.CUSTOMER_CREATED: {**by, "number": "+79260001122", "name": "Сидорова Мария"},
        EventKind.CUSTOMER_CHANGED: {**by, "address": "ул. Новая, 1", "previous_address": "ул. Старая, 2"},
        EventKind.PHONE_ATTACHED: {**by, "number": "+79260001122", "shared_with": ["C001"]},
        EventKind.CALLBACK_NOTE: {**by, "task_id": 7, "note": "после 18"},
    }
    expected = {
        EventKind.ORDER_CANCELLED: "Сотрудник Ольга Операторова (op1) отменил(а) заказ A-1, счёт СЧ-1 аннулирован. "
                                   "Причина: отказ",
        EventKind.ORDER_CHANGED: "Сотрудник Ольга Операторова (op1) изменил(а) заказ A-1: было W × 1, стало W × 2; "
                                 "сумма 350,00\xa0₽ → 700,00\xa0₽, счёт СЧ-1 пересчитан (редакция 2). Причина: больше",
        EventKind.CUSTOMER_CREATED: "Сотрудник Ольга Операторова (op1) завёл(а) клиента по звонку с номера "
                                    "+79260001122.",
        EventKind.CUSTOMER_CHANGED: "Сотрудник Ольга Операторова (op1) изменил(а) адрес: ул. Новая, 1 "
                                    "(был: ул. Старая, 2).",
        EventKind.PHONE_ATTACHED: "Сотрудник Ольга Операторова (op1) привязал(а) номер +79260001122; "
                                  "номер общий с клиентом C001.",
        EventKind.CALLBACK_NOTE: "Сотрудник Ольга Операторова (op1) к задаче перезвонить №7: «после 18»",
    }
    for kind, data in texts.items():
        assert unexpected_fields(kind, data) is None, kind
        assert event_text(kind, data, "Europe/Moscow") == expected[kind]
        assert EVENT_LABELS[kind] and EVENT_LABELS[kind] != kind
