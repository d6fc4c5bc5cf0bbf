import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select, text

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.dto import TimelineEventIn
from crm_bridge.errors import (
    EmptyOrder,
    IdempotencyConflict,
    InactiveProduct,
    InvalidQuantity,
    UnknownCustomer,
    UnknownProduct,
)
from crm_bridge.models import Customer, Invoice, Order, OrderLine
from crm_bridge.money import money
from crm_bridge.services import CrmStore, StoreConfig
from tests.db.seed import IVANOV_PHONE, SHARED_PHONE, seed

# Thursday 2026-11-26 10:00 Moscow = 07:00 UTC: before the 14:00 cut-off.
MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
async def seeded(store: CrmStore) -> CrmStore:
    await seed(store)
    return store


async def count_rows(store: CrmStore, model) -> int:
    async with store.sessions() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


# --- lookup ------------------------------------------------------------------------------------


async def test_lookup_finds_the_single_owner_with_the_newest_order(seeded: CrmStore) -> None:
    found = await seeded.lookup_caller("8 (916) 123-45-67")
    assert found.status == "found"
    assert found.number == IVANOV_PHONE
    assert found.customer is not None
    assert (found.customer.first_name, found.customer.patronymic) == ("Алексей", "Сергеевич")
    assert found.customer.phones == (IVANOV_PHONE, "+79035550000")
    assert found.last_order is not None
    assert found.last_order.order_id == "H-2"
    assert found.last_order.ordered_at == datetime(2026, 3, 5, 9, tzinfo=UTC)
    assert found.last_order.ordered_at.tzinfo is not None
    (line,) = found.last_order.lines
    assert (line.sku, line.quantity, line.amount) == ("W19", 4, Decimal("1400.00"))
    # Wording comes from today's catalogue, quantities and prices as sold.
    assert (line.unit, line.name) == ("бутылка", "воды «Жемчужная роса» 19 л")


async def test_lookup_of_a_number_nobody_owns_is_unknown(seeded: CrmStore) -> None:
    result = await seeded.lookup_caller("+79990001122")
    assert (result.status, result.number, result.customer) == ("unknown", "+79990001122", None)


async def test_lookup_of_a_shared_number_lists_candidates(seeded: CrmStore) -> None:
    result = await seeded.lookup_caller("84951234567")
    assert result.status == "shared"
    assert result.number == SHARED_PHONE
    assert result.customer is None
    assert set(result.candidate_ids) == {"C2", "C3"}


@pytest.mark.parametrize("raw", [None, "", "anonymous", "Restricted", "12"])
async def test_lookup_of_a_withheld_or_garbage_number_is_invalid(seeded: CrmStore, raw) -> None:
    assert (await seeded.lookup_caller(raw)).status == "invalid"


async def test_lookup_of_a_customer_without_orders_has_no_last_order(seeded: CrmStore) -> None:
    await seeded.place_order(idempotency_key="k", customer_id="C2", lines=[("W5", 1)], source="operator")
    result = await seeded.lookup_caller("+79035550000")
    assert result.status == "found" and result.last_order is not None  # Ivanov's second phone
    async with seeded.sessions() as s:
        from crm_bridge.models import Customer, Phone

        lonely = Customer(customer_id="C9", last_name="Сидоров", first_name="Сидор", patronymic="")
        s.add(lonely)
        await s.flush()
        s.add(Phone(number="+79261112233", customer_id=lonely.id))
        await s.commit()
    result = await seeded.lookup_caller("+79261112233")
    assert result.status == "found" and result.last_order is None


async def test_lookup_is_one_statement(seeded: CrmStore) -> None:
    engine = seeded.sessions.kw["bind"]
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        result = await seeded.lookup_caller(IVANOV_PHONE)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert result.status == "found"
    assert len(statements) == 1, statements


# --- pricing and orders ------------------------------------------------------------------------


async def test_price_lines_uses_todays_prices_and_drops_zero_lines(seeded: CrmStore) -> None:
    lines = await seeded.price_lines([("W19", 3), ("CUPS", 0), ("W5", 1)])
    assert [(x.sku, x.quantity, x.unit_price, x.amount) for x in lines] == [
        ("W19", 3, Decimal("350.00"), Decimal("1050.00")),
        ("W5", 1, Decimal("150.00"), Decimal("150.00")),
    ]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([("NOPE", 1)], UnknownProduct),
        ([("OLD", 1)], InactiveProduct),
        ([("W19", -1)], InvalidQuantity),
        ([("W19", 1.5)], InvalidQuantity),
        ([("W19", True)], InvalidQuantity),
    ],
)
async def test_price_lines_rejects_bad_lines(seeded: CrmStore, lines, error) -> None:
    with pytest.raises(error):
        await seeded.price_lines(lines)


async def test_place_order_creates_order_lines_and_invoice_with_vat_included(seeded: CrmStore) -> None:
    placed = await seeded.place_order(
        idempotency_key="call-1:repeat",
        customer_id="C1",
        lines=[("W19", 4), ("CUPS", 3), ("W5", 0)],
        source="ivr",
        call_id="call-1",
        now=MORNING,
    )
    assert placed.created
    order, invoice = placed.order, placed.invoice
    assert order.order_id == "A-1001"
    assert order.source == "ivr"
    assert [(x.sku, x.quantity, x.amount) for x in order.lines] == [
        ("W19", 4, Decimal("1400.00")),
        ("CUPS", 3, Decimal("299.97")),
    ]
    assert order.total == Decimal("1699.97")
    assert invoice.number == "СЧ-2026-1"
    assert invoice.total == Decimal("1699.97")
    # delivered in 2026: 22 %; 1699.97 * 22 / 122 = 306.551… → 306.55
    assert invoice.vat_amount == Decimal("306.55")
    assert invoice.subtotal == Decimal("1393.42")
    assert invoice.vat_rate == Decimal("22")
    assert order.delivery_date == date(2026, 11, 27)  # Friday, ordered before the cut-off
    card = await seeded.get_customer_card("C1")
    assert card is not None and card.orders[0].invoice == invoice
    assert card.orders[0].lines == order.lines


async def test_vat_is_added_on_top_when_prices_exclude_it(db_url: str) -> None:
    from crm_bridge.db import create_engine, session_factory

    engine = create_engine(db_url)
    try:
        store = CrmStore(session_factory(engine), StoreConfig(prices_include_vat=False, order_prefix="Z"))
        await seed(store)
        placed = await store.place_order(idempotency_key="k", customer_id="C1", lines=[("CUPS", 1)],
                                         source="operator", now=MORNING)
    finally:
        await engine.dispose()
    assert placed.order.order_id == "Z1001"
    assert (placed.invoice.subtotal, placed.invoice.vat_amount, placed.invoice.total) == (
        Decimal("99.99"), Decimal("22.00"), Decimal("121.99"))  # 22 % of 99.99 = 21.9978


@pytest.mark.parametrize(
    ("ordered_at", "delivered", "rate", "number"),
    [
        # Monday before the cut-off: delivered on Tuesday 2025-12-30, at the old 20 %.
        (datetime(2025, 12, 29, 7, 0, tzinfo=UTC), date(2025, 12, 30), Decimal("20"), "СЧ-2025-1"),
        # Tuesday 2025-12-30 after the cut-off (14:00 Moscow): shipped 2026-01-01, so 22 % on an
        # invoice still dated (and numbered) 2025.
        (datetime(2025, 12, 30, 12, 0, tzinfo=UTC), date(2026, 1, 1), Decimal("22"), "СЧ-2025-1"),
        # 2026-01-01 00:30 in Moscow is still 2025 in UTC: the year is the store's (Moscow) one.
        (datetime(2025, 12, 31, 21, 30, tzinfo=UTC), date(2026, 1, 2), Decimal("22"), "СЧ-2026-1"),
    ],
)
async def test_vat_rate_follows_the_delivery_date_and_the_number_carries_the_year(
    seeded: CrmStore, ordered_at, delivered, rate, number
) -> None:
    placed = await seeded.place_order(idempotency_key="k", customer_id="C1", lines=[("W19", 1)], source="ivr",
                                      now=ordered_at)
    assert placed.order.delivery_date == delivered
    assert placed.invoice.vat_rate == rate
    assert placed.invoice.number == number
    assert placed.invoice.vat_amount == money(Decimal("350.00") * rate / (100 + rate))
    card = await seeded.get_customer_card("C1")  # as stored, not only as returned
    assert card is not None
    assert [o.invoice for o in card.orders if o.order_id == placed.order.order_id] == [placed.invoice]


async def test_order_and_invoice_numbers_follow_their_own_sequences(seeded: CrmStore) -> None:
    numbers = []
    for n in range(3):
        placed = await seeded.place_order(idempotency_key=f"k{n}", customer_id="C1", lines=[("W19", 1)],
                                          source="ivr", now=MORNING)
        numbers.append((placed.order.order_id, placed.invoice.number))
    assert numbers == [("A-1001", "СЧ-2026-1"), ("A-1002", "СЧ-2026-2"), ("A-1003", "СЧ-2026-3")]


async def test_generated_order_number_skips_one_taken_by_an_import(seeded: CrmStore) -> None:
    async with seeded.sessions() as s:
        s.add(Order(order_id="A-1001", customer_id=1, ordered_at=MORNING, source="import",
                    total=Decimal("0")))
        await s.commit()
    placed = await seeded.place_order(idempotency_key="k", customer_id="C1", lines=[("W19", 1)],
                                      source="ivr", now=MORNING)
    assert placed.order.order_id == "A-1002"


@pytest.mark.parametrize(
    ("utc_time", "expected"),
    [
        (datetime(2026, 11, 26, 10, 59, tzinfo=UTC), date(2026, 11, 27)),  # 13:59 MSK Thu → Fri
        (datetime(2026, 11, 26, 11, 0, tzinfo=UTC), date(2026, 11, 28)),  # 14:00 MSK Thu → Sat
        (datetime(2026, 11, 27, 11, 30, tzinfo=UTC), date(2026, 11, 30)),  # Fri after cut-off → Mon
        (datetime(2026, 11, 26, 22, 30, tzinfo=UTC), date(2026, 11, 28)),  # 01:30 MSK Fri → Sat
    ],
)
async def test_delivery_date_uses_the_depot_timezone(seeded: CrmStore, utc_time, expected) -> None:
    placed = await seeded.place_order(idempotency_key="k", customer_id="C1", lines=[("W19", 1)],
                                      source="ivr", now=utc_time)
    assert placed.order.delivery_date == expected


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"lines": [("W19", 0)]}, EmptyOrder),
        ({"lines": []}, EmptyOrder),
        ({"customer_id": "NOBODY"}, UnknownCustomer),
        ({"lines": [("NOPE", 1)]}, UnknownProduct),
        ({"lines": [("W19", -2)]}, InvalidQuantity),
    ],
)
async def test_place_order_rejects_bad_requests_and_writes_nothing(seeded: CrmStore, kwargs, error) -> None:
    args = {"idempotency_key": "k", "customer_id": "C1", "lines": [("W19", 1)], "source": "ivr"} | kwargs
    with pytest.raises(error):
        await seeded.place_order(**args)
    assert await count_rows(seeded, Invoice) == 0
    placed = await seeded.place_order(idempotency_key="k2", customer_id="C1", lines=[("W19", 1)], source="ivr",
                                      now=MORNING)
    assert (placed.order.order_id, placed.invoice.number) == ("A-1001", "СЧ-2026-1")  # no number was burnt


async def test_same_key_twice_returns_the_first_order(seeded: CrmStore) -> None:
    first = await seeded.place_order(idempotency_key="call-7:repeat", customer_id="C1",
                                     lines=[("W19", 4), ("CUPS", 1)], source="ivr", now=MORNING)
    # The same request, its lines in another order and with a zero line: the same order again.
    again = await seeded.place_order(idempotency_key="call-7:repeat", customer_id="C1",
                                     lines=[("CUPS", 1), ("W5", 0), ("W19", 4)], source="ivr",
                                     now=MORNING + timedelta(minutes=1))
    assert first.created and not again.created
    assert again.order == first.order
    assert again.invoice == first.invoice
    assert await count_rows(seeded, Order) == 3  # two history orders + one
    assert await count_rows(seeded, Invoice) == 1


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"lines": [("W19", 9)]}, "lines"),  # issue 9: 3 bottles changed to 9 on a second visit
        ({"lines": [("W19", 3), ("CUPS", 1)]}, "lines"),
        ({"lines": [("W19", 1), ("W19", 2)]}, "lines"),  # a multiset: 1 + 2 is not one line of 3
        ({"source": "operator"}, "source"),
        ({"customer_id": "C2"}, "customer"),
    ],
)
async def test_same_key_with_another_request_is_a_conflict_naming_the_order_that_stands(
    seeded: CrmStore, change, differs
) -> None:
    request = {"idempotency_key": "call-8:repeat", "customer_id": "C1", "lines": [("W19", 3)], "source": "ivr"}
    first = await seeded.place_order(**request, now=MORNING)
    with pytest.raises(IdempotencyConflict) as caught:
        await seeded.place_order(**(request | change), now=MORNING + timedelta(minutes=1))
    conflict = caught.value
    assert (conflict.idempotency_key, conflict.differs) == ("call-8:repeat", differs)
    assert conflict.order == first.order and conflict.order_id == first.order.order_id
    assert first.order.order_id in str(conflict)
    # Nothing was written, the first order stands as it was, and the key still replays it.
    assert await count_rows(seeded, Order) == 3
    assert await count_rows(seeded, Invoice) == 1
    replay = await seeded.place_order(**request)
    assert replay.order == first.order and not replay.created


async def test_concurrent_duplicates_with_other_content_get_the_winner_or_a_conflict(seeded: CrmStore) -> None:
    quantities = [3, 9, 3, 9, 5, 3]
    results = await asyncio.gather(
        *(
            seeded.place_order(idempotency_key="call-10:repeat", customer_id="C1", lines=[("W19", q)],
                               source="ivr", now=MORNING)
            for q in quantities
        ),
        return_exceptions=True,
    )
    placed = [r for r in results if not isinstance(r, BaseException)]
    (winner,) = [r for r in placed if r.created]
    won = winner.order.lines[0].quantity
    for quantity, result in zip(quantities, results, strict=True):
        if quantity == won:  # the same request: the winner's order, replayed
            assert not isinstance(result, BaseException) and result.order == winner.order
        else:  # another request: refused, naming the order that stands
            assert isinstance(result, IdempotencyConflict), result
            assert result.order == winner.order and result.differs == "lines"
    assert await count_rows(seeded, Order) == 3
    assert await count_rows(seeded, Invoice) == 1


async def test_a_duplicate_that_loses_the_insert_race_with_other_lines_is_a_conflict(
    seeded: CrmStore, db_url: str
) -> None:
    """The race path itself (PostgreSQL): the key is free when the request reads it, so its insert
    waits on the unique index for a concurrent first insert, inserts nothing, and reads the winner.
    SQLite has no such path: its writers queue before they read the key (the test above)."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serializes writers before they read the key")
    async with seeded.sessions() as holder:  # the first insert, not committed yet
        customer_pk = (await holder.execute(select(Customer.id).where(Customer.customer_id == "C1"))).scalar_one()
        order = Order(order_id="A-9001", customer_id=customer_pk, ordered_at=MORNING, source="ivr",
                      idempotency_key="call-11:repeat", total=Decimal("1050.00"))
        holder.add(order)
        await holder.flush()
        holder.add(OrderLine(order_id=order.id, line_no=1, sku="W19", quantity=3, unit_price=Decimal("350.00"),
                             amount=Decimal("1050.00"), unit="бутылка", name="воды 19 л"))
        holder.add(Invoice(number="СЧ-9001", order_id=order.id, issued_at=MORNING, subtotal=Decimal("875.00"),
                           vat_rate=Decimal("20"), vat_amount=Decimal("175.00"), total=Decimal("1050.00")))
        await holder.flush()
        second = asyncio.ensure_future(seeded.place_order(
            idempotency_key="call-11:repeat", customer_id="C1", lines=[("W19", 9)], source="ivr", now=MORNING))
        await _until_an_insert_waits_for_a_lock(seeded)
        await holder.commit()
    with pytest.raises(IdempotencyConflict) as caught:
        await second
    assert caught.value.order_id == "A-9001" and caught.value.differs == "lines"
    assert [(line.sku, line.quantity) for line in caught.value.order.lines] == [("W19", 3)]
    assert await count_rows(seeded, Order) == 3


async def _until_an_insert_waits_for_a_lock(store: CrmStore) -> None:
    """Poll PostgreSQL's own view of its backends until an INSERT INTO orders waits for a lock."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query LIKE '%INSERT INTO orders%'")
    async with asyncio.timeout(10):
        while True:
            async with store.sessions() as s:
                if (await s.execute(query)).scalar_one():
                    return
            await asyncio.sleep(0.01)


async def test_concurrent_duplicates_create_exactly_one_order_and_invoice(seeded: CrmStore) -> None:
    results = await asyncio.gather(
        *(
            seeded.place_order(idempotency_key="call-9:repeat", customer_id="C1", lines=[("W19", 2)],
                               source="ivr", now=MORNING)
            for _ in range(5)
        )
    )
    assert sum(r.created for r in results) == 1
    assert len({r.order.order_id for r in results}) == 1
    assert len({r.invoice.number for r in results}) == 1
    assert await count_rows(seeded, Order) == 3
    assert await count_rows(seeded, Invoice) == 1
    nxt = await seeded.place_order(idempotency_key="other", customer_id="C1", lines=[("W19", 1)], source="ivr",
                                   now=MORNING)
    # Invoice numbers stay gapless: the invoice's number is only taken for an inserted order. An order
    # number may be skipped on PostgreSQL by a duplicate in flight (crm_bridge/README.md, "Numbers").
    assert nxt.invoice.number == "СЧ-2026-2"
    assert nxt.order.order_id > results[0].order.order_id


async def test_concurrent_different_orders_get_distinct_numbers(seeded: CrmStore) -> None:
    results = await asyncio.gather(
        *(
            seeded.place_order(idempotency_key=f"k{n}", customer_id="C1", lines=[("W19", 1)], source="ivr",
                               now=MORNING)
            for n in range(6)
        )
    )
    assert sorted(r.invoice.number for r in results) == sorted(f"СЧ-2026-{n}" for n in range(1, 7))
    assert len({r.order.order_id for r in results}) == 6


# --- customer card -----------------------------------------------------------------------------


async def test_customer_card_lists_orders_newest_first_as_sold(seeded: CrmStore) -> None:
    placed = await seeded.place_order(idempotency_key="k", customer_id="C1", lines=[("W5", 2)],
                                      source="ivr", now=MORNING)
    card = await seeded.get_customer_card("C1")
    assert card is not None
    assert card.customer.customer_id == "C1"
    assert [o.order_id for o in card.orders] == [placed.order.order_id, "H-2", "H-1"]
    assert card.orders[0].invoice is not None
    assert card.orders[1].invoice is None  # history orders come without invoices
    assert card.orders[1].lines[0].unit == "бутыль"  # snapshot, not today's catalogue
    assert all(o.ordered_at.tzinfo is not None for o in card.orders)
    assert await seeded.get_customer_card("NOBODY") is None


# --- calls and timeline ------------------------------------------------------------------------


async def test_call_start_is_an_upsert_and_end_closes_it(seeded: CrmStore) -> None:
    start = datetime(2026, 11, 26, 7, 0, 1, tzinfo=UTC)
    args = dict(call_id="1764140401.17", caller_number="89161234567", normalized_number=IVANOV_PHONE,
                customer_id="C1", channel="PJSIP/trunk-00000011", script="repeat-order", started_at=start)
    assert await seeded.record_call_start(**args) is True
    assert await seeded.record_call_start(**args) is False  # AGI reconnect, same linkedid
    placed = await seeded.place_order(idempotency_key="1764140401.17:repeat", customer_id="C1",
                                      lines=[("W19", 4)], source="ivr", call_id="1764140401.17")
    await seeded.record_call_end("1764140401.17", facts=facts_implying("order_placed"), reason=None,
                                 ended_at=start + timedelta(seconds=42), order_id=placed.order.order_id)
    call = await seeded.get_call("1764140401.17")
    assert call is not None
    assert call.customer_id == "C1"
    assert call.started_at == start
    assert call.ended_at == start + timedelta(seconds=42)
    assert (call.outcome, call.order_id) == ("order_placed", placed.order.order_id)
    assert await seeded.get_call("nope") is None


async def test_call_with_unknown_customer_and_end_without_start_are_recorded(seeded: CrmStore) -> None:
    at = datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert await seeded.record_call_start(call_id="a", caller_number="anonymous", normalized_number=None,
                                          customer_id="NOBODY", channel=None, script=None, started_at=at)
    await seeded.record_call_end("b", facts=facts_implying("error"), reason="agi_lost", ended_at=at, customer_id="C2")
    a, b = await seeded.get_call("a"), await seeded.get_call("b")
    assert a is not None and a.customer_id is None
    assert b is not None and (b.started_at, b.customer_id, b.reason) == (at, "C2", "agi_lost")


async def test_list_calls_is_newest_first_and_paged(seeded: CrmStore) -> None:
    base = datetime(2026, 11, 26, 8, tzinfo=UTC)
    for n in range(5):
        await seeded.record_call_start(call_id=f"c{n}", caller_number=None, normalized_number=None,
                                       customer_id=None, channel=None, script=None,
                                       started_at=base + timedelta(minutes=n))
    assert [c.call_id for c in await seeded.list_calls()] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.call_id for c in await seeded.list_calls(limit=2, offset=1)] == ["c3", "c2"]


async def test_timeline_reads_back_in_insertion_order(seeded: CrmStore) -> None:
    at = datetime(2026, 11, 26, 8, tzinfo=UTC)
    kinds = ["call_started", "prompt_played", "digits", "order_created", "call_ended"]
    await seeded.add_timeline_events(
        [TimelineEventIn(at=at, call_id="c1", customer_id="C1", kind=k, data={"n": i, "text": "Здравствуйте"})
         for i, k in enumerate(kinds)]
    )
    await seeded.add_timeline_events([TimelineEventIn(at=at, call_id="c2", customer_id=None, kind="x", data={})])
    await seeded.add_timeline_events(
        [TimelineEventIn(at=at + timedelta(seconds=1), call_id="c1", customer_id="C1", kind="recording_ready",
                         data={"total": Decimal("1400.00")})]
    )
    events = await seeded.call_timeline("c1")
    assert [e.kind for e in events] == [*kinds, "recording_ready"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[0].data == {"n": 0, "text": "Здравствуйте"}
    assert events[-1].data == {"total": "1400.00"}  # Decimal stored as its exact string
    assert events[0].at == at and events[0].at.tzinfo is not None
    assert await seeded.call_timeline("none") == []


async def test_call_end_with_an_unknown_customer_keeps_the_known_one(seeded: CrmStore) -> None:
    at = datetime(2026, 11, 26, 8, tzinfo=UTC)
    await seeded.record_call_start(call_id="c", caller_number="89161234567", normalized_number=IVANOV_PHONE,
                                   customer_id="C1", channel=None, script=None, started_at=at)
    await seeded.record_call_end("c", facts=facts_implying("operator"), reason="shared",
                                 ended_at=at, customer_id="NOBODY")
    call = await seeded.get_call("c")
    assert call is not None and (call.customer_id, call.outcome) == ("C1", "operator")


async def test_an_unreachable_database_raises_our_own_error() -> None:
    from crm_bridge.db import create_engine, session_factory
    from crm_bridge.errors import CrmError, StoreUnavailable

    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    try:
        store = CrmStore(session_factory(engine))
        with pytest.raises(StoreUnavailable) as caught:
            await store.lookup_caller(IVANOV_PHONE)
        assert isinstance(caught.value, CrmError)
    finally:
        await engine.dispose()
