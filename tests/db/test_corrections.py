"""Console corrections in the store (issue 10), on SQLite and PostgreSQL: a customer made from an
unknown number, a number attached to a second customer (a shared number for the robot), an address
edit, orders cancelled or edited before their change deadline and refused after it (the clock is
passed in), and the "repeat order?" check."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from crm_bridge.contract.events import EventKind, unexpected_fields
from crm_bridge.delivery import DeliveryRules, change_deadline, changeable
from crm_bridge.errors import (
    ChangeReasonRequired,
    EmptyOrder,
    InvalidCustomer,
    OrderNotChangeable,
    UnknownOrder,
)
from crm_bridge.models import Product
from tests.db.seed import IVANOV_PHONE, SHARED_PHONE, seed

# Monday 23 Nov 2026, 10:00 in Moscow (07:00 UTC): delivered Tuesday 24th, changeable until Monday 14:00.
MONDAY_10 = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
MONDAY_1359 = datetime(2026, 11, 23, 10, 59, tzinfo=UTC)
MONDAY_14 = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


def test_the_change_deadline_is_the_cutoff_of_the_day_before_delivery():
    rules = DeliveryRules()
    assert change_deadline(date(2026, 11, 26), rules) == datetime(2026, 11, 25, 14, 0)  # Thu -> Wed 14:00
    assert change_deadline(date(2026, 11, 30), rules) == datetime(2026, 11, 29, 14, 0)  # Mon -> Sun 14:00
    assert changeable(datetime(2026, 11, 25, 13, 59), date(2026, 11, 26), rules)
    assert not changeable(datetime(2026, 11, 25, 14, 0), date(2026, 11, 26), rules)  # the deadline is too late
    assert not changeable(datetime(2026, 1, 1), None, rules)


async def _order(store, lines=(("W19", 2),), at=MONDAY_10, key="k1", customer="C1"):
    return (await store.place_order(idempotency_key=key, customer_id=customer, lines=list(lines),
                                    source="operator", now=at)).order


async def _events(store, customer_id):
    # The corrections' own events (a deal's are tests/db/test_deals.py's)
    return [e for e in await store.customer_timeline(customer_id) if e.seq and not e.kind.startswith("deal.")]


async def test_a_customer_made_from_an_unknown_number_is_found_by_it(store):
    await seed(store)
    assert (await store.lookup_caller("8 926 000-11-22")).status == "unknown"
    made = await store.create_customer(last_name=" Сидорова ", first_name="Мария", address="ул. Лесная, 5",
                                       number="8 (926) 000-11-22", by="Ольга", now=MONDAY_10)
    assert made.customer_id == "C-1" and made.phones == ("+79260001122",) and made.last_name == "Сидорова"
    found = await store.lookup_caller("+7 926 000 11 22")
    assert found.status == "found" and found.customer.customer_id == "C-1" and found.last_order is None
    second = await store.create_customer(last_name="Без", first_name="Номера", by="Ольга")
    assert second.customer_id == "C-2" and second.phones == ()
    events = await _events(store, "C-1")
    assert [e.kind for e in events] == [EventKind.CUSTOMER_CREATED]
    assert events[0].data == {"by": "Ольга", "number": "+79260001122", "name": "Сидорова Мария"}
    assert unexpected_fields(events[0].kind, events[0].data) is None


async def test_bad_customer_fields_are_refused_by_name(store):
    await seed(store)
    with pytest.raises(InvalidCustomer) as nameless:
        await store.create_customer(last_name=" ", first_name="", by="Ольга")
    assert nameless.value.field == "last_name"
    with pytest.raises(InvalidCustomer) as bad_number:
        await store.create_customer(last_name="Х", first_name="", number="12345", by="Ольга")
    assert bad_number.value.field == "number" and "не распознан" in bad_number.value.message
    assert await store.search_customers("Х") == []  # nothing half-made


async def test_attaching_a_number_to_a_second_customer_makes_it_shared(store):
    await seed(store)
    view = await store.attach_phone("C2", IVANOV_PHONE, by="Ольга", now=MONDAY_10)
    assert IVANOV_PHONE in view.phones
    lookup = await store.lookup_caller(IVANOV_PHONE)
    assert lookup.status == "shared" and set(lookup.candidate_ids) == {"C1", "C2"}
    again = await store.attach_phone("C2", "8 916 123-45-67", by="Ольга")  # twice: nothing new
    assert again.phones.count(IVANOV_PHONE) == 1
    events = await _events(store, "C2")
    assert [(e.kind, e.data["shared_with"]) for e in events] == [(EventKind.PHONE_ATTACHED, ["C1"])]
    # a new customer on an already shared number: made, and the number is noted as shared
    made = await store.create_customer(last_name="Петров", first_name="Младший", number=SHARED_PHONE, by="Ольга")
    assert set((await store.lookup_caller(SHARED_PHONE)).candidate_ids) == {"C2", "C3", made.customer_id}


async def test_the_address_is_edited_with_a_record(store):
    await seed(store)
    view = await store.change_address("C1", "  ул. Новая,   1 ", by="Ольга", now=MONDAY_10)
    assert view.address == "ул. Новая, 1"
    assert (await store.get_customer_card("C1")).customer.address == "ул. Новая, 1"
    [event] = await _events(store, "C1")
    assert event.kind == EventKind.CUSTOMER_CHANGED and event.data["address"] == "ул. Новая, 1"
    with pytest.raises(InvalidCustomer):
        await store.change_address("C1", " ", by="Ольга")


async def test_an_order_is_cancelled_before_the_cutoff_and_its_invoice_with_it(store):
    await seed(store)
    order = await _order(store)
    assert order.delivery_date == date(2026, 11, 24)
    with pytest.raises(ChangeReasonRequired):
        await store.cancel_order(order.order_id, reason="  ", by="Ольга", now=MONDAY_1359)
    cancelled = await store.cancel_order(order.order_id, reason="клиент передумал", by="Ольга", now=MONDAY_1359)
    assert cancelled.cancelled and cancelled.changed_by == "Ольга" and cancelled.change_reason == "клиент передумал"
    assert cancelled.invoice.status == "cancelled"
    card = await store.get_customer_card("C1")
    assert card.orders[0].status == "cancelled" and card.orders[0].invoice.status == "cancelled"
    # the robot no longer offers the cancelled order as "your last order"
    assert (await store.lookup_caller(IVANOV_PHONE)).last_order.order_id == "H-2"
    with pytest.raises(OrderNotChangeable) as twice:
        await store.cancel_order(order.order_id, reason="ещё раз", by="Ольга", now=MONDAY_1359)
    assert twice.value.why == "cancelled"
    [event] = await _events(store, "C1")
    assert event.kind == EventKind.ORDER_CANCELLED and event.data["reason"] == "клиент передумал"
    assert event.data["by"] == "Ольга" and event.at == MONDAY_1359
    assert unexpected_fields(event.kind, event.data) is None


async def test_after_the_cutoff_an_order_is_refused_in_russian(store):
    await seed(store)
    order = await _order(store)
    with pytest.raises(OrderNotChangeable) as late:
        await store.cancel_order(order.order_id, reason="поздно", by="Ольга", now=MONDAY_14)
    assert late.value.why == "cutoff"
    assert "24.11.2026" in late.value.message and "23.11.2026 в 14:00" in late.value.message
    with pytest.raises(OrderNotChangeable):
        await store.change_order(order.order_id, [("W19", 3)], reason="поздно", by="Ольга", now=MONDAY_14)
    assert (await store.get_order(order.order_id)).status == "placed"
    with pytest.raises(OrderNotChangeable) as imported:  # history from the accounting system
        await store.cancel_order("H-2", reason="x", by="Ольга", now=MONDAY_10)
    assert imported.value.why == "no_delivery_date"
    with pytest.raises(UnknownOrder):
        await store.cancel_order("NO-SUCH", reason="x", by="Ольга")


async def test_an_edited_order_keeps_sold_prices_and_recomputes_its_invoice(store):
    await seed(store)
    order = await _order(store, lines=[("W19", 2), ("CUPS", 1)])
    async with store.sessions() as s:  # the catalogue price moves after the sale
        await s.execute(update(Product).where(Product.sku == "W19").values(price=Decimal("400.00")))
        await s.commit()
    changed = await store.change_order(order.order_id, [("W19", 3), ("W5", 1)], reason="добавить 5 л",
                                       by="Ольга", now=MONDAY_1359)
    assert [(line.sku, line.quantity, line.unit_price) for line in changed.lines] == [
        ("W19", 3, Decimal("350.00")), ("W5", 1, Decimal("150.00"))]
    assert changed.total == Decimal("1200.00") and changed.revision == 2
    assert changed.invoice.number == order.invoice.number and changed.invoice.revision == 2
    assert changed.invoice.total == Decimal("1200.00") and changed.invoice.vat_amount == Decimal("216.39")
    assert changed.delivery_date == order.delivery_date
    _, stored, _ = await store.get_invoice(order.invoice.number)
    assert [(line.sku, line.quantity) for line in stored.lines] == [("W19", 3), ("W5", 1)]
    [event] = await _events(store, "C1")
    assert event.kind == EventKind.ORDER_CHANGED and event.data["revision"] == 2
    assert [(x["sku"], x["quantity"]) for x in event.data["previous_lines"]] == [("W19", 2), ("CUPS", 1)]
    # The lines as sold (the new 5 l at today's price, the 19 l at its old one): what a CRM's deal needs.
    assert [(x["sku"], x["quantity"], x["price"]) for x in event.data["lines"]] == [
        ("W19", 3, "350.00"), ("W5", 1, "150.00")]
    assert all(x["unit"] and x["name"] for x in event.data["lines"])
    assert event.data["previous_total"] == "799.99" and event.data["total"] == "1200.00"
    assert unexpected_fields(event.kind, event.data) is None
    with pytest.raises(OrderNotChangeable) as same:
        await store.change_order(order.order_id, [("W5", 1), ("W19", 3)], reason="то же", by="Ольга", now=MONDAY_1359)
    assert same.value.why == "unchanged"
    with pytest.raises(EmptyOrder):
        await store.change_order(order.order_id, [("W19", 0)], reason="всё убрать", by="Ольга", now=MONDAY_1359)


async def test_the_same_order_within_the_window_is_a_possible_repeat(store):
    await seed(store)
    order = await _order(store, lines=[("W19", 2), ("CUPS", 1)])
    window = timedelta(hours=4)
    later = MONDAY_10 + timedelta(hours=3, minutes=59)
    same = await store.recent_same_order("C1", [("CUPS", 1), ("W19", 2)], within=window, now=later)
    assert same is not None and same.order_id == order.order_id
    assert await store.recent_same_order("C1", [("W19", 2)], within=window, now=later) is None  # other lines
    assert await store.recent_same_order("C2", [("W19", 2), ("CUPS", 1)], within=window, now=later) is None
    assert await store.recent_same_order("C1", [("W19", 2), ("CUPS", 1)], within=window,
                                         now=MONDAY_10 + timedelta(hours=4, seconds=1)) is None
    await store.cancel_order(order.order_id, reason="ошибка", by="Ольга", now=later)
    assert await store.recent_same_order("C1", [("W19", 2), ("CUPS", 1)], within=window, now=later) is None


async def test_a_callback_task_takes_a_note_without_closing(store):
    await seed(store)
    task, _ = await store.open_callback_task(customer_id="C1", number=IVANOV_PHONE, reason="abandoned_in_queue",
                                             due_at=MONDAY_10, call_id="call-1")
    noted = await store.add_task_note(task.task_id, "перезвонить после 18:00", by="Ольга", now=MONDAY_10)
    assert noted.status == "open" and noted.note == "Ольга: перезвонить после 18:00"
    [event] = await _events(store, "C1")
    assert event.kind == EventKind.CALLBACK_NOTE and event.call_id == "call-1"
