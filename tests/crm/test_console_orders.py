"""Orders made and corrected by operators in the console (no robot, often no call) reach both CRMs:
placed → a Bitrix24 deal with product rows and an amoCRM lead with a note; edited → the deal's rows
and amount, the lead's price and a note; cancelled → the lost stage on both. Each change enqueues its
event in its own transaction, and an order's events go in order whatever the CRM was doing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from crm_bridge.connectors.amocrm import AmoCrmTarget, LeadSettings
from crm_bridge.connectors.bitrix24 import Bitrix24Target, DealSettings
from crm_bridge.contract.crm import OutboxState
from crm_bridge.demo import load_demo_data
from crm_bridge.errors import OrderNotChangeable
from crm_bridge.models import OutboxRow
from tests.console.conftest import PASSWORD, add_role_users, login, make_console_app, start_client
from tests.crm.fake_amocrm import FakeAmoCrm
from tests.crm.fake_bitrix24 import FakeBitrix24
from tests.crm.rig import Clock, drain, make_worker, routing


def targets(bitrix: FakeBitrix24, amocrm: FakeAmoCrm) -> list:
    return [
        Bitrix24Target("bitrix24", bitrix.webhook_url, default_user=3, users={}, crm_create=True, line_number="",
                       finish_on="call.ended", links=None, rate=2.0, burst=2, timeout=2.0,
                       deals=DealSettings(stage="C2:NEW", lost_stage="C2:LOSE", category_id=2)),
        AmoCrmTarget("amocrm", amocrm.base_url, amocrm.token, source="ivr", default_user=0, users={},
                     finish_on="call.ended", links=None, leads=LeadSettings(lost_status_id=143), rate=7.0,
                     burst=7, timeout=2.0),
    ]


def collapsed(seq: list[Any]) -> list[Any]:
    """``seq`` with repeats in a row taken once."""
    return [x for i, x in enumerate(seq) if i == 0 or x != seq[i - 1]]


async def outbox_rows(store) -> int:
    async with store.sessions() as session:
        return (await session.execute(select(func.count()).select_from(OutboxRow))).scalar_one()


async def test_an_operators_order_its_edit_and_its_cancellation_reach_both_crms(store, bitrix, amocrm) -> None:
    await load_demo_data(store.sessions)
    crms = targets(bitrix, amocrm)
    store.route_outbox(routing(*crms))
    app = make_console_app(store)
    await add_role_users(app)
    client = await start_client(app)
    clock = Clock()
    worker = make_worker(store, crms, clock)
    try:
        csrf = await login(client, "op1", PASSWORD)
        placed = await client.post("/customers/C002/order", allow_redirects=False, data={
            "csrf_token": csrf, "key": "form-key-1", "sku": ["WATER-19", "CUPS-100"], "quantity": ["2", "1"]})
        assert placed.status == 303
        order_id = placed.headers["Location"].split("order=")[1].split("#")[0]
        assert await outbox_rows(store) == 2  # order.created for each CRM, with the order

        # Edited and cancelled before either CRM saw anything: they wait behind the creation.
        edited = await client.post(f"/customers/C002/orders/{order_id}/edit", allow_redirects=False, data={
            "csrf_token": csrf, "sku": ["WATER-19", "CUPS-100"], "quantity": ["5", "0"], "reason": "звонок клиента"})
        assert edited.status == 303
        cancelled = await client.post(f"/customers/C002/orders/{order_id}/cancel", allow_redirects=False,
                                      data={"csrf_token": csrf, "reason": "клиент уехал"})
        assert cancelled.status == 303
        items = await worker.store.items()
        assert [(i.kind, i.subject) for i in items if i.target == "amocrm"] == [
            ("order.created", f"order:{order_id}"), ("order.changed", f"order:{order_id}"),
            ("order.cancelled", f"order:{order_id}")]
        await drain(worker, clock)
    finally:
        await client.close()

    [deal] = bitrix.deals.values()
    assert (deal.fields["ORIGIN_ID"], deal.fields["CATEGORY_ID"]) == (order_id, 2)
    assert "CONTACT_ID" not in deal.fields  # no call, no number to find the contact by
    assert deal.rows == [{"PRODUCT_NAME": "бутылка воды «Жемчужная роса» 19 л", "PRICE": "350.00", "QUANTITY": 5}]
    # A request the portal's 2/s limit turns away (a loaded machine) makes the worker deliver the whole
    # event again: its update may be repeated, with the same values, so repeats in a row are one.
    assert collapsed(deal.updates) == [{"OPPORTUNITY": "1750.00", "CURRENCY_ID": "RUB"}, {"STAGE_ID": "C2:LOSE"}]
    assert collapsed([m for m in bitrix.deal_methods() if m != "crm.deal.list"]) == [
        "crm.deal.add", "crm.deal.productrows.set", "crm.deal.update", "crm.deal.productrows.set", "crm.deal.update"]

    [lead] = amocrm.leads.values()
    assert lead.fields["name"] == f"Заказ {order_id}"
    assert collapsed(lead.patches) == [{"price": 1750}, {"status_id": 143}]
    assert lead.fields["price"] == 1750 and lead.fields["status_id"] == 143
    created, changed, gone = lead.notes
    assert "бутылка воды «Жемчужная роса» 19 л: 2 × 350.00 ₽" in created and "упаковка одноразовых" in created
    assert "изменён (Ольга Операторова (op1)): звонок клиента" in changed and ": 5 × 350.00 ₽" in changed
    assert "отменён (Ольга Операторова (op1)): клиент уехал" in gone


async def test_a_refused_correction_enqueues_nothing(store, bitrix, amocrm) -> None:
    await load_demo_data(store.sessions)
    store.route_outbox(routing(*targets(bitrix, amocrm)))
    placed = await store.place_order(idempotency_key="k1", customer_id="C001", lines=[("WATER-19", 1)],
                                     source="operator")
    await store.cancel_order(placed.order.order_id, reason="ошибка", by="op")
    assert await outbox_rows(store) == 4
    with pytest.raises(OrderNotChangeable):
        await store.cancel_order(placed.order.order_id, reason="ещё раз", by="op")
    replay = await store.place_order(idempotency_key="k1", customer_id="C001", lines=[("WATER-19", 1)],
                                     source="operator")
    assert not replay.created
    assert await outbox_rows(store) == 4  # a refused change and a replayed order promise nothing
    items = await make_worker(store, [], Clock()).store.items()
    assert all(i.state == OutboxState.PENDING for i in items)
