"""crm_bridge.call_search on both backends: every filter narrows, paging, orders of today."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from crm_bridge.call_search import (
    CallFilters,
    call_with_customer,
    known_operators,
    known_outcomes,
    local_day_bounds,
    orders_today,
    parse_day,
    search_calls,
)
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data

TZ = "Europe/Moscow"
# 2026-11-20 10:00 Moscow = 07:00 UTC
BASE = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)


async def _call(store, call_id: str, *, caller: str | None, customer: str | None, at: datetime,
                outcome: str | None, reason: str | None = None, **fields) -> None:
    from crm_bridge.phones import normalize_phone

    await store.record_call_start(call_id=call_id, caller_number=caller, normalized_number=normalize_phone(caller),
                                  customer_id=customer, channel="PJSIP/trunk-0001", script="repeat-order",
                                  started_at=at)
    if outcome is not None:
        await store.record_call_end(call_id, facts=facts_implying(outcome), reason=reason,
                                    ended_at=at + timedelta(seconds=40),
                                    customer_id=customer, order_id=fields.pop("order_id", None))
    if fields:
        await store.update_call(call_id, **fields)


@pytest.fixture
async def seeded(store):
    report = await load_demo_data(store.sessions)
    assert report.ok
    await _call(store, "c1", caller="+79161234567", customer="C001", at=BASE, outcome="order_placed",
                reason="order_placed", order_id="A-1001")
    await _call(store, "c2", caller="8 (903) 111-22-33", customer="C002", at=BASE + timedelta(hours=1),
                outcome="operator_answered", reason="caller_request", queue="operators", wait_seconds=12.5,
                talk_seconds=95.0, operator_interface="PJSIP/101", operator_name="Анна")
    await _call(store, "c3", caller="+79990000000", customer=None, at=BASE + timedelta(days=1),
                outcome="abandoned_in_queue", reason="unknown_number", queue="operators", wait_seconds=30.0)
    await _call(store, "c4", caller="anonymous", customer=None, at=BASE + timedelta(days=2),
                outcome="operator_answered", reason="no_caller_id", operator_interface="PJSIP/102",
                operator_name="Борис", wait_seconds=3.0, talk_seconds=20.0)
    # 23:30 Moscow on 2026-11-22 = 20:30 UTC: still the 22nd locally.
    await _call(store, "c5", caller="+74951234567", customer="C004", at=datetime(2026, 11, 22, 20, 30, tzinfo=UTC),
                outcome="abandoned_in_ivr", reason="hangup_at_menu")
    return store


async def ids(store, **kw) -> list[str]:
    page = await search_calls(store.sessions, CallFilters(timezone=TZ, **kw))
    return [r.call.call_id for r in page.rows]


async def test_no_filter_lists_all_newest_first(seeded):
    page = await search_calls(seeded.sessions, CallFilters(timezone=TZ))
    assert [r.call.call_id for r in page.rows] == ["c5", "c4", "c3", "c2", "c1"]
    assert page.total == 5
    first = page.rows[-1]
    assert first.call.customer_id == "C001" and first.customer_name == "Иванов Алексей Сергеевич"
    assert first.call.order_id == "A-1001"


async def test_date_range_in_local_days(seeded):
    assert await ids(seeded, date_from=date(2026, 11, 20), date_to=date(2026, 11, 20)) == ["c2", "c1"]
    assert await ids(seeded, date_from=date(2026, 11, 21)) == ["c5", "c4", "c3"]
    assert await ids(seeded, date_to=date(2026, 11, 21)) == ["c3", "c2", "c1"]
    # c5 is 20:30 UTC on the 22nd but 23:30 in Moscow: the 22nd; c4 is the 22nd too.
    assert await ids(seeded, date_from=date(2026, 11, 22), date_to=date(2026, 11, 22)) == ["c5", "c4"]
    assert await ids(seeded, date_from=date(2026, 11, 23)) == []


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+79161234567", ["c1"]),
        ("8 916 123-45-67", ["c1"]),
        ("8(916)1234567", ["c1"]),
        ("79161234567", ["c1"]),
        ("9161234567", ["c1"]),
        ("+7 (903) 111-22-33", ["c2"]),  # stored raw as "8 (903) …": found through the E.164 column
        ("4567", ["c5", "c1"]),  # partial digits anywhere
        ("916 123", ["c1"]),
        ("8916", ["c1"]),  # a hand-typed national prefix
        ("anonym", ["c4"]),  # not a number: the raw caller id
        ("12", ["c5", "c2", "c1"]),
    ],
)
async def test_caller_filter(seeded, caller, expected):
    assert await ids(seeded, caller=caller) == expected


async def test_customer_filter_by_id_and_name(seeded):
    assert await ids(seeded, customer="C001") == ["c1"]
    # A word starts any of the three names: Петрова Мария Ивановна answers to "Иванов" too.
    assert await ids(seeded, customer="Иванов") == ["c2", "c1"]
    assert await ids(seeded, customer="алексей") == ["c1"]  # Cyrillic case folding, SQLite included
    assert await ids(seeded, customer="ИВАНОВ алексей") == ["c1"]
    assert await ids(seeded, customer="Петрова Мария") == ["c2"]
    assert await ids(seeded, customer="Мария Алексей") == []  # every word must match
    assert await ids(seeded, customer="кузн") == ["c5"]
    assert await ids(seeded, customer="C999") == []
    assert await ids(seeded, customer="100%") == []  # LIKE wildcards are literal


async def test_outcome_and_operator_filters(seeded):
    assert await ids(seeded, outcome="operator_answered") == ["c4", "c2"]
    assert await ids(seeded, outcome="abandoned_in_queue") == ["c3"]
    assert await ids(seeded, operator="PJSIP/101") == ["c2"]
    assert await ids(seeded, operator="102") == ["c4"]
    assert await ids(seeded, operator="10") == []
    assert await ids(seeded, outcome="operator_answered", operator="PJSIP/101") == ["c2"]
    assert await ids(seeded, outcome="operator_answered", date_from=date(2026, 11, 21)) == ["c4"]


async def test_paging(seeded):
    page = await search_calls(seeded.sessions, CallFilters(timezone=TZ), limit=2, offset=0)
    assert [r.call.call_id for r in page.rows] == ["c5", "c4"] and page.total == 5
    page = await search_calls(seeded.sessions, CallFilters(timezone=TZ), limit=2, offset=4)
    assert [r.call.call_id for r in page.rows] == ["c1"] and page.total == 5
    page = await search_calls(seeded.sessions, CallFilters(timezone=TZ, outcome="operator_answered"), limit=1)
    assert page.total == 2 and len(page.rows) == 1


async def test_call_with_customer_and_choices(seeded):
    row = await call_with_customer(seeded.sessions, "c2")
    assert row is not None and row.customer_name == "Петрова Мария Ивановна"
    assert row.call.wait_seconds == 12.5 and row.call.operator_interface == "PJSIP/101"
    assert await call_with_customer(seeded.sessions, "nope") is None
    assert await known_outcomes(seeded.sessions) == sorted(
        {"order_placed", "operator_answered", "abandoned_in_queue", "abandoned_in_ivr"})
    assert await known_operators(seeded.sessions) == [("PJSIP/101", "Анна"), ("PJSIP/102", "Борис")]


async def test_orders_today_by_source(store):
    report = await load_demo_data(store.sessions)
    assert report.ok
    now = datetime(2026, 11, 20, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    today = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    await store.place_order(idempotency_key="k1", customer_id="C001", lines=[("WATER-19", 2)], source="ivr", now=today)
    await store.place_order(idempotency_key="k2", customer_id="C002", lines=[("WATER-19", 1)], source="ivr",
                            now=today + timedelta(hours=1))
    await store.place_order(idempotency_key="k3", customer_id="C003", lines=[("WATER-19", 1)], source="operator",
                            now=today + timedelta(hours=2))
    # 21:30 UTC on the 20th is already the 21st in Moscow: not today.
    await store.place_order(idempotency_key="k4", customer_id="C004", lines=[("WATER-19", 1)], source="ivr",
                            now=datetime(2026, 11, 20, 21, 30, tzinfo=UTC))
    # 20:59 UTC on the 19th is 23:59 of the 19th in Moscow: not today.
    await store.place_order(idempotency_key="k5", customer_id="C005", lines=[("WATER-19", 1)], source="operator",
                            now=datetime(2026, 11, 19, 20, 59, tzinfo=UTC))
    counts = await orders_today(store.sessions, TZ, now=now)
    assert counts.day == date(2026, 11, 20)
    assert (counts.ivr, counts.operator, counts.other, counts.total) == (2, 1, 0, 3)
    assert counts.ivr_amount > 0 and counts.operator_amount > 0
    empty = await orders_today(store.sessions, TZ, now=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert (empty.ivr, empty.operator, empty.total) == (0, 0, 0)
    assert str(empty.ivr_amount) == "0.00"


def test_day_helpers():
    assert parse_day("2026-11-20") == date(2026, 11, 20)
    assert parse_day("20.11.2026") == date(2026, 11, 20)
    assert parse_day("") is None and parse_day("garbage") is None and parse_day(None) is None
    start, end = local_day_bounds(date(2026, 11, 20), TZ)
    assert start == datetime(2026, 11, 19, 21, 0, tzinfo=UTC) and end - start == timedelta(days=1)
