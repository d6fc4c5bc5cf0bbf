"""Deals in the store (issue 11), on SQLite and PostgreSQL: migration 0010's backfill of existing
orders and calls, a deal made with every order in its own write (robot, operator, import), an
order's cancel and edit carried to its deal, stage changes with who and when, calls linked to their
deal by the call log, lead-like deals for unknown numbers, and the pipeline's settings checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from crm_bridge.call_log import CallEnd, CallStart, CallUpdate
from crm_bridge.contract.events import EventKind, unexpected_fields
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.db import create_engine, downgrade, session_factory, upgrade
from crm_bridge.deals import Pipeline
from crm_bridge.dto import TimelineEventIn
from crm_bridge.errors import InvalidStage, UnknownDeal
from crm_bridge.importers import import_file
from crm_bridge.models import Call, Deal
from crm_bridge.services import CrmStore, StoreConfig
from tests.db.seed import IVANOV_PHONE, SHARED_PHONE, seed

# Monday 23 Nov 2026, 10:00 in Moscow: delivered Tuesday, changeable until Monday 14:00 Moscow.
MONDAY_10 = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
UNKNOWN = "+79990001122"


async def _place(store, key="k1", customer="C1", lines=(("W19", 2),), source="ivr", call_id=None, owner=None,
                 at=MONDAY_10):
    return await store.place_order(idempotency_key=key, customer_id=customer, lines=list(lines), source=source,
                                   call_id=call_id, now=at, owner=owner)


async def _deal_events(store, deal_id):
    return [e for e in await store.deal_timeline(deal_id) if e.kind.startswith("deal.")]


# --- migration 0010 ----------------------------------------------------------------------------------


async def test_the_migration_gives_every_existing_order_its_deal_and_links_existing_calls(db_url):
    await downgrade(db_url, "0009")
    engine = create_engine(db_url)
    try:
        store = CrmStore(session_factory(engine))
        await seed(store)  # H-1 (Jan) and H-2 (Mar), imported history of C1: no invoice
        async with engine.begin() as conn:
            await conn.execute(text(
                "UPDATE orders SET status = 'cancelled', changed_at = :at WHERE order_id = 'H-1'"), {"at": MONDAY_10})
            await conn.execute(text("UPDATE orders SET call_id = 'c-order' WHERE order_id = 'H-1'"))
            pk = (await conn.execute(text("SELECT id FROM customers WHERE customer_id = 'C1'"))).scalar_one()
            for call_id, started in (("c-order", datetime(2026, 1, 10, 9, tzinfo=UTC)),
                                     ("c-later", datetime(2026, 4, 1, 9, tzinfo=UTC)),
                                     ("c-before", datetime(2025, 12, 1, 9, tzinfo=UTC))):
                await conn.execute(text("INSERT INTO calls (call_id, customer_id, started_at, transfers) "
                                        "VALUES (:c, :p, :s, 0)"), {"c": call_id, "p": pk, "s": started})
            await conn.execute(text("INSERT INTO calls (call_id, started_at, transfers) VALUES ('c-anon', :s, 0)"),
                               {"s": MONDAY_10})
    finally:
        await engine.dispose()
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        store = CrmStore(session_factory(engine))
        deals = {d.order_id: d for d in await store.list_deals(customer_id="C1")}
        assert set(deals) == {"H-1", "H-2"}
        assert (deals["H-1"].stage, deals["H-1"].closed, deals["H-1"].closed_at) == ("cancelled", True, MONDAY_10)
        h2 = deals["H-2"]
        assert (h2.stage, h2.closed, h2.amount) == ("confirmed", False, Decimal("1400.00"))
        assert deals["H-2"].title == "Заказ H-2" and deals["H-2"].created_at == datetime(2026, 3, 5, 9, tzinfo=UTC)
        async with engine.connect() as conn:
            links = dict((await conn.execute(select(Call.call_id, Call.deal_id))).all())
        assert links == {"c-order": deals["H-1"].deal_id,  # the call that placed the order
                         "c-later": deals["H-2"].deal_id,  # the customer's newest deal by then
                         "c-before": None, "c-anon": None}  # no deal yet / nobody's call
    finally:
        await engine.dispose()


# --- deals made with orders -------------------------------------------------------------------------


async def test_the_robots_order_makes_its_deal_in_the_same_write(store):
    await seed(store)
    placed = await _place(store, call_id="call-1")
    deal = await store.get_deal(placed.deal_id)
    assert deal is not None and deal == await store.deal_of_order(placed.order.order_id)
    assert (deal.stage, deal.stage_name, deal.closed, deal.owner) == ("new", "Новая", False, None)
    assert (deal.amount, deal.currency, deal.customer_id) == (placed.invoice.total, "RUB", "C1")
    assert deal.title == f"Заказ {placed.order.order_id}" and deal.created_at == MONDAY_10
    [created] = await _deal_events(store, deal.deal_id)
    # not on the call's own timeline (its writer's rows, in their order): the deal's shows the call
    assert (created.kind, created.call_id, created.customer_id, created.at) == ("deal.created", None, "C1",
                                                                                MONDAY_10)
    assert created.data == {"deal_id": deal.deal_id, "order_id": placed.order.order_id, "stage": "new",
                            "amount": "700.00", "source": "ivr", "by": None}
    assert unexpected_fields(created.kind, created.data) is None
    # a replay of the same key makes no second deal
    again = await _place(store, call_id="call-1")
    assert not again.created and len(await store.list_deals(customer_id="C1")) == 1


async def test_an_operators_order_is_theirs_and_a_missing_deal_or_stage_is_refused(store):
    await seed(store)
    placed = await _place(store, source="operator", owner="op1")
    assert (await store.get_deal(placed.deal_id)).owner == "op1"
    assert await store.get_deal(999_999) is None
    with pytest.raises(UnknownDeal):
        await store.change_stage(999_999, "paid", "op1")
    with pytest.raises(InvalidStage):
        await store.change_stage(placed.deal_id, "shipped", "op1")
    with pytest.raises(InvalidStage):
        await store.list_deals(stage="shipped")


async def test_stage_changes_say_who_and_when_and_closed_stages_close_the_deal(store):
    await seed(store)
    deal_id = (await _place(store)).deal_id
    later = MONDAY_10 + timedelta(hours=2)
    paid = await store.change_stage(deal_id, "paid", "Анна (op1)", now=later)
    assert (paid.stage, paid.stage_name, paid.closed, paid.closed_at, paid.updated_at) == (
        "paid", "Оплачена", True, later, later)
    assert (await store.change_stage(deal_id, "paid", "Олег", now=later + timedelta(hours=1))).closed_at == later
    reopened = await store.change_stage(deal_id, "in_delivery", "Олег (op2)", now=later + timedelta(hours=2))
    assert (reopened.closed, reopened.closed_at) == (False, None)
    events = await _deal_events(store, deal_id)  # newest first; the same stage again wrote nothing
    assert [(e.kind, e.data.get("by"), e.data.get("previous_stage"), e.data.get("stage")) for e in events] == [
        ("deal.stage_changed", "Олег (op2)", "paid", "in_delivery"),
        ("deal.stage_changed", "Анна (op1)", "new", "paid"),
        ("deal.created", None, None, "new"),
    ]
    assert all(unexpected_fields(e.kind, e.data) is None for e in events)
    assert [d.deal_id for d in await store.list_deals(stage="in_delivery")] == [deal_id]
    assert await store.list_deals(stage="new") == []
    assert (await store.count_deals_by_stage()) == {"in_delivery": 1}


async def test_an_orders_cancel_cancels_its_deal_and_an_edit_changes_its_amount(store):
    await seed(store)
    first = await _place(store, key="k1", source="operator")
    second = await _place(store, key="k2", source="operator", lines=(("W5", 1),))
    edited = await store.change_order(first.order.order_id, [("W19", 3)], reason="ещё одна", by="Ольга",
                                      now=MONDAY_10 + timedelta(minutes=5))
    assert (await store.get_deal(first.deal_id)).amount == edited.invoice.total == Decimal("1050.00")
    await store.cancel_order(second.order.order_id, reason="передумал", by="Ольга",
                             now=MONDAY_10 + timedelta(minutes=6))
    cancelled = await store.get_deal(second.deal_id)
    assert (cancelled.stage, cancelled.closed, cancelled.closed_at) == ("cancelled", True,
                                                                        MONDAY_10 + timedelta(minutes=6))
    moved = (await _deal_events(store, second.deal_id))[0]
    assert moved.data == {"deal_id": second.deal_id, "by": "Ольга", "stage": "cancelled", "previous_stage": "new",
                          "reason": "передумал", "order_id": second.order.order_id}


# --- calls and their deal ------------------------------------------------------------------------------


async def _call(store, call_id, *, number=IVANOV_PHONE, customer="C1", at=MONDAY_10, order_id=None, events=()):
    await store._call_log.write([  # the records the service's writer queues for a call
        CallStart(call_id=call_id, started_at=at, caller_number=number, normalized_number=number,
                  customer_id=customer),
        CallEnd(call_id=call_id, facts=facts_implying("order_placed" if order_id else "operator", order_id),
                reason=None, ended_at=at + timedelta(minutes=1), customer_id=customer, order_id=order_id),
    ])
    if events:
        await store.add_timeline_events(events)


async def _deal_of(store, call_id):
    async with store.sessions() as s:
        return (await s.execute(select(Call.deal_id).where(Call.call_id == call_id))).scalar()


async def test_a_call_lands_on_the_deal_it_made_else_the_open_one_else_the_last(store):
    await seed(store)
    made = await _place(store, key="call-1:repeat", call_id="call-1")
    prompt = TimelineEventIn(at=MONDAY_10, call_id="call-1", customer_id="C1", kind="prompt.played",
                             data={"step": "menu", "text": "Здравствуйте"})
    await _call(store, "call-1", order_id=made.order.order_id, events=[prompt])
    assert await _deal_of(store, "call-1") == made.deal_id
    # a later call of the customer is about their open deal
    await _call(store, "call-2", at=MONDAY_10 + timedelta(hours=1))
    assert await _deal_of(store, "call-2") == made.deal_id
    kinds = [(e.kind, e.call_id) for e in await store.deal_timeline(made.deal_id)]
    assert ("prompt.played", "call-1") in kinds and ("call.recorded", None) not in kinds
    assert ("deal.created", None) in kinds
    # the deal closed: the next call is still about it (the last one)...
    await store.change_stage(made.deal_id, "paid", "op1")
    await _call(store, "call-3", at=MONDAY_10 + timedelta(hours=2))
    assert await _deal_of(store, "call-3") == made.deal_id
    # ...until another deal is open, which an operator's order placed during a call makes: the call
    # ends on the robot's side first, the tracker's hang-up after the order links it to the new deal
    await _call(store, "call-4", at=MONDAY_10 + timedelta(hours=3))
    other = await _place(store, key="op:1", source="operator", call_id="call-4", lines=(("W5", 2),),
                         at=MONDAY_10 + timedelta(hours=3, minutes=2))
    assert await _deal_of(store, "call-4") == made.deal_id
    await store._call_log.write([CallUpdate(call_id="call-4", fields={"ended_at": MONDAY_10 + timedelta(hours=4)},
                                            started_at=MONDAY_10)])
    assert await _deal_of(store, "call-4") == other.deal_id
    await _call(store, "call-5", at=MONDAY_10 + timedelta(hours=5))
    assert await _deal_of(store, "call-5") == other.deal_id  # the open deal before the closed one
    # an unknown number's call reaches no deal (leads are off by default); a shared number's neither
    await _call(store, "call-6", number=UNKNOWN, customer=None)
    await _call(store, "call-7", number=SHARED_PHONE, customer=None)
    assert await _deal_of(store, "call-6") is None and await _deal_of(store, "call-7") is None
    async with store.sessions() as s:
        assert (await s.execute(select(Deal.id).where(Deal.customer_id.is_(None)))).all() == []


async def test_an_unknown_number_opens_one_lead_like_deal_when_configured(store):
    await seed(store)
    leads = CrmStore(store.sessions, StoreConfig(deals=Pipeline(create_for_unknown=True)))
    await _call(leads, "u-1", number=UNKNOWN, customer=None)
    deal_id = await _deal_of(leads, "u-1")
    lead = await leads.get_deal(deal_id)
    assert (lead.customer_id, lead.phone, lead.stage, lead.order_id, lead.amount) == (
        None, UNKNOWN, "new", None, Decimal("0.00"))
    assert lead.title == f"Звонок {UNKNOWN}"
    # the same batch replayed (a lost COMMIT reply) and the number calling again: still one lead
    await _call(leads, "u-1", number=UNKNOWN, customer=None)
    await _call(leads, "u-2", number=UNKNOWN, customer=None, at=MONDAY_10 + timedelta(hours=1))
    assert await _deal_of(leads, "u-2") == deal_id
    assert [d.deal_id for d in await leads.list_deals()] == [deal_id]
    # known, shared and hidden numbers open none
    await _call(leads, "k-1")
    await _call(leads, "s-1", number=SHARED_PHONE, customer=None)
    assert len(await leads.list_deals()) == 1
    # a closed lead: the next call opens a new one
    await leads.change_stage(deal_id, "cancelled", "op1")
    await _call(leads, "u-3", number=UNKNOWN, customer=None, at=MONDAY_10 + timedelta(hours=2))
    assert await _deal_of(leads, "u-3") not in (None, deal_id)


# --- imports ------------------------------------------------------------------------------------------


async def test_imported_orders_get_deals_at_the_files_stage_and_a_bad_stage_loses_nothing(store, tmp_path):
    await seed(store)
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,ordered_at,sku,quantity,стадия\n"
        "I-1,C1,2026-11-01 10:00,W19,2,Оплачена\n"
        "I-2,C1,2026-11-02 10:00,W19,1,\n"
        "I-3,C1,2026-11-03 10:00,W5,1,shipped\n",
        encoding="utf-8",
    )
    report = await import_file(store, "orders", path)
    assert report.created == 3
    assert [(e.line, "unknown deal stage 'shipped'" in e.reason) for e in report.errors] == [(4, True)]
    deals = {d.order_id: d for d in await store.list_deals(customer_id="C1")}
    assert {k: (d.stage, d.closed) for k, d in deals.items()} == {
        "I-1": ("paid", True), "I-2": ("new", False), "I-3": ("new", False)}
    assert deals["I-1"].amount == Decimal("700.00")
    # the same file again changes nothing; a file moving I-2 moves its deal, by "import"
    assert (await import_file(store, "orders", path)).unchanged == 3
    path.write_text("order_id,customer_id,ordered_at,sku,quantity,stage\nI-2,C1,2026-11-02 10:00,W19,1,in_delivery\n",
                    encoding="utf-8")
    assert (await import_file(store, "orders", path)).updated == 1
    moved = await store.get_deal(deals["I-2"].deal_id)
    assert moved.stage == "in_delivery"
    assert (await _deal_events(store, moved.deal_id))[0].data["by"] == "import"


# --- the pipeline's settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stages": (("new", "Новая"),)}, "deals.stages: at least two"),
        ({"stages": (("New", "Новая"), ("cancelled", "Отменена"))}, "'New' is not a stage code"),
        ({"stages": (("new", " "), ("cancelled", "Отменена"))}, "has no display name"),
        ({"stages": (("new", "a"), ("new", "b"), ("cancelled", "c"))}, "appears twice"),
        ({"closed": frozenset({"archived", "cancelled"})}, "deals.closed: 'archived' is not one of"),
        ({"cancelled": "void"}, "deals.cancelled: 'void' is not one of"),
        ({"closed": frozenset({"paid"})}, "deals.cancelled: 'cancelled' must be one of deals.closed"),
        ({"closed": frozenset({"new", "cancelled"})}, "the first stage 'new'"),
    ],
)
def test_a_bad_pipeline_is_refused_with_the_setting_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Pipeline(**kwargs)


def test_the_default_pipeline():
    pipeline = Pipeline()
    assert pipeline.codes == ("new", "confirmed", "in_delivery", "delivered", "paid", "cancelled")
    assert (pipeline.initial, pipeline.name("in_delivery"), pipeline.name("gone")) == ("new", "В доставке", "gone")
    assert pipeline.is_closed("paid") and pipeline.is_closed("cancelled") and not pipeline.is_closed("delivered")
    assert set(EventKind) >= {EventKind.DEAL_CREATED, EventKind.DEAL_STAGE_CHANGED}
