"""Console store reads: customer search, the customer timeline, invoices by number (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.dto import TimelineEventIn
from crm_bridge.models import Customer, Phone
from crm_bridge.services import CrmStore
from tests.db.seed import IVANOV_PHONE, SHARED_PHONE, seed

MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
async def seeded(store: CrmStore) -> CrmStore:
    await seed(store)
    async with store.sessions() as s:
        shouty = Customer(customer_id="C4", last_name="СЁМИНА", first_name="ольга", patronymic="")
        latin = Customer(customer_id="EN-7", last_name="Smith", first_name="John", patronymic="")
        pct = Customer(customer_id="C5", last_name="100%_Вода", first_name="ООО", patronymic="")
        s.add_all([shouty, latin, pct])
        await s.flush()
        s.add(Phone(number="+79267770011", customer_id=shouty.id))
        await s.commit()
    return store


async def ids(store: CrmStore, query: str, limit: int = 50) -> list[str]:
    return [c.customer_id for c in await store.search_customers(query, limit)]


# --- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["иванов алексей", "ИВАНОВ АЛЕКСЕЙ", "иВаНоВ аЛЕКСЕЙ", "алексей", "сергеевич",
                                   "Алексей Сергеевич Иванов", "  иванов,   сергеевич "])
async def test_search_by_name_parts_is_case_insensitive_in_cyrillic(seeded: CrmStore, query: str) -> None:
    assert await ids(seeded, query) == ["C1"]


@pytest.mark.parametrize("query", ["Иванов", "иванов", "ИВАНОВ", "иВаНоВ"])
async def test_a_name_part_matches_anywhere_in_any_name_field(seeded: CrmStore, query: str) -> None:
    # Иванов (last name) and Петрова Анна Ивановна (patronymic), ordered by last name
    assert await ids(seeded, query) == ["C1", "C3"]


async def test_search_finds_every_customer_with_a_common_part(seeded: CrmStore) -> None:
    # "петров" is in Петров, Петрова and in the patronymic Петрович
    assert sorted(await ids(seeded, "петров")) == ["C2", "C3"]
    assert await ids(seeded, "петров анна") == ["C3"]
    assert await ids(seeded, "ивановна") == ["C3"]


async def test_search_matches_names_stored_in_odd_case_and_with_yo(seeded: CrmStore) -> None:
    assert await ids(seeded, "сёмина") == ["C4"]
    assert await ids(seeded, "Сёмина Ольга") == ["C4"]
    assert await ids(seeded, "ОЛЬГА") == ["C4"]
    assert await ids(seeded, "smith") == ["EN-7"]


async def test_search_treats_like_wildcards_literally(seeded: CrmStore) -> None:
    assert await ids(seeded, "100%_вода") == ["C5"]
    # only the name that really contains them, not every name (as a bare LIKE wildcard would)
    assert await ids(seeded, "%") == ["C5"]
    assert await ids(seeded, "_") == ["C5"]


@pytest.mark.parametrize("query", ["+79161234567", "8 (916) 123-45-67", "89161234567", "79161234567",
                                   "9161234567", "+7 916 123 45 67", "916-123", "555 00 00"])
async def test_search_by_phone_in_any_russian_format(seeded: CrmStore, query: str) -> None:
    assert await ids(seeded, query) == ["C1"]


async def test_search_by_shared_phone_returns_every_owner(seeded: CrmStore) -> None:
    assert sorted(await ids(seeded, "8 495 123-45-67")) == ["C2", "C3"]
    assert sorted(await ids(seeded, SHARED_PHONE)) == ["C2", "C3"]


async def test_search_by_customer_id_puts_the_exact_id_first(seeded: CrmStore) -> None:
    assert (await ids(seeded, "C1"))[0] == "C1"
    assert await ids(seeded, "EN-7") == ["EN-7"]
    assert await ids(seeded, "en-7") == ["EN-7"]


async def test_search_returns_full_views_and_honours_the_limit(seeded: CrmStore) -> None:
    (ivanov,) = await seeded.search_customers("иванов алексей")
    assert ivanov.phones == (IVANOV_PHONE, "+79035550000")
    assert (ivanov.last_name, ivanov.first_name) == ("Иванов", "Алексей")
    assert len(await seeded.search_customers("петров", limit=1)) == 1


@pytest.mark.parametrize("query", ["", "   ", "нетакого", "0101", "+79990000000", "иванов ольга"])
async def test_search_without_a_match_is_empty(seeded: CrmStore, query: str) -> None:
    assert await ids(seeded, query) == []


# --- customer timeline -------------------------------------------------------------------------


async def test_customer_timeline_has_calls_events_and_orders_newest_first(seeded: CrmStore) -> None:
    start = MORNING
    await seeded.record_call_start(call_id="call-1", caller_number="+79161234567", normalized_number=IVANOV_PHONE,
                                   customer_id="C1", channel="PJSIP/x", script="repeat-order", started_at=start)
    await seeded.add_timeline_events([
        # before identification the events carry no customer id: still the customer's call
        TimelineEventIn(at=start, call_id="call-1", customer_id=None, kind="call.started", data={"caller": "x"}),
        TimelineEventIn(at=start + timedelta(seconds=1), call_id="call-1", customer_id="C1",
                        kind="caller.identified", data={"status": "found"}),
        TimelineEventIn(at=start + timedelta(seconds=2), call_id="call-1", customer_id="C1",
                        kind="prompt.played", data={"step": "menu", "text": "Здравствуйте"}),
        # somebody else's call is not in the timeline
        TimelineEventIn(at=start, call_id="call-other", customer_id="C2", kind="call.started", data={}),
    ])
    placed = await seeded.place_order(idempotency_key="k-1", customer_id="C1", lines=[("W19", 2)], source="ivr",
                                      call_id="call-1", now=start + timedelta(seconds=3))
    # a call the AMI tracker saw without any stored event
    await seeded.update_call("ami-only", started_at=start - timedelta(days=1), customer_id="C1",
                             facts=facts_implying("operator_answered"), operator_interface="PJSIP/101")

    timeline = await seeded.customer_timeline("C1")
    kinds = [(e.kind, e.call_id) for e in timeline]
    # the order's deal was made with it, in the same write (a stored event: seq > 0, listed first)
    assert kinds[:5] == [("deal.created", None), ("order.placed", "call-1"), ("prompt.played", "call-1"),
                         ("caller.identified", "call-1"), ("call.started", "call-1")]
    timeline = [e for e in timeline if e.kind != "deal.created"]
    assert ("call.recorded", "ami-only") in kinds
    assert all(e.call_id != "call-other" for e in timeline)
    ats = [e.at for e in timeline]
    assert ats == sorted(ats, reverse=True)
    order = timeline[0]
    assert order.seq == 0
    assert order.data["order_id"] == placed.order.order_id
    assert order.data["invoice"] == placed.invoice.number
    assert order.data["source"] == "ivr"
    # the imported history orders are there too, the oldest last
    assert [e.data["order_id"] for e in timeline if e.kind == "order.placed"][-2:] == ["H-2", "H-1"]
    assert timeline[-1].data == {"order_id": "H-1", "total": "700.00", "source": "import", "invoice": None,
                                 "delivery_date": None, "lines": 1}


async def test_customer_timeline_limit_and_unknown_customer(seeded: CrmStore) -> None:
    await seeded.add_timeline_events([
        TimelineEventIn(at=MORNING + timedelta(seconds=i), call_id="c", customer_id="C1", kind="dtmf.received",
                        data={"digits": str(i)})
        for i in range(10)
    ])
    newest = await seeded.customer_timeline("C1", limit=3)
    assert [e.data.get("digits") for e in newest] == ["9", "8", "7"]
    assert await seeded.customer_timeline("nobody") == []


# --- invoices ----------------------------------------------------------------------------------


async def test_get_invoice_returns_invoice_order_and_customer(seeded: CrmStore) -> None:
    placed = await seeded.place_order(idempotency_key="k-2", customer_id="C1", lines=[("W19", 3), ("CUPS", 1)],
                                      source="operator", now=MORNING)
    found = await seeded.get_invoice(placed.invoice.number)
    assert found is not None
    invoice, order, customer = found
    assert invoice == placed.invoice
    assert invoice.total == Decimal("1149.99")
    assert order.order_id == placed.order.order_id
    assert [(line.sku, line.quantity) for line in order.lines] == [("W19", 3), ("CUPS", 1)]
    assert customer.customer_id == "C1"
    assert customer.phones == (IVANOV_PHONE, "+79035550000")
    assert await seeded.get_invoice("СЧ-404") is None
