"""Whole calls land on their deal (issue 11): the order a call places makes its deal, the call is
linked to it, and the call's IVR path, keys, order and (later) recording are on the deal's timeline
as well as the customer's; the next call of the customer is about the same open deal; an unknown
number's call opens a lead-like deal when ``deals.create_for_unknown`` is on. Demo data as in
test_call_through.py (C001 +79161234567, imported history orders)."""

from __future__ import annotations

from datetime import UTC, datetime

from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from ivr.app import Seams, start_service
from tests.calls.harness import CallHarness, database_url, harness_settings, wait_for
from tests.fakeasterisk import TIMEOUT


async def _linked(store, deal_id, call_id):
    async def linked():
        return call_id in [c.call_id for c in await store.deal_calls(deal_id)]

    return await wait_for(linked)


async def test_a_call_that_orders_lands_on_its_deal_and_the_next_call_too(calls):
    fake = await calls.call("+79161234567", ["1"])
    call_id = fake.channel_vars["CHANNEL(linkedid)"]
    order_id = fake.variables["IVR_ORDER_ID"]
    deal = await calls.store.deal_of_order(order_id)
    assert (deal.customer_id, deal.stage, deal.owner) == ("C001", "new", None)
    await _linked(calls.store, deal.deal_id, call_id)
    # what the AMI tracker writes later (queue, operator, recording) is the call's, so the deal's too
    await calls.store.add_timeline_events([TimelineEventIn(
        at=datetime.now(UTC), call_id=call_id, customer_id=None, kind="recording.ready",
        data={"path": f"/var/spool/asterisk/monitor/ivr/{call_id}.wav", "seconds": 31.0})])
    timeline = await calls.store.deal_timeline(deal.deal_id)
    kinds = {e.kind for e in timeline if e.call_id == call_id}
    assert {"call.started", "caller.identified", "prompt.played", "dtmf.received", "order.created",
            "call.ended", "recording.ready"} <= kinds
    assert [e.data["order_id"] for e in timeline if e.kind == "deal.created"] == [order_id]
    customer_kinds = {e.kind for e in await calls.store.customer_timeline("C001") if e.call_id == call_id}
    assert kinds <= customer_kinds  # the same events on the customer's timeline

    again = await calls.call("+79161234567", [TIMEOUT, TIMEOUT])  # to an operator: about the open deal
    await _linked(calls.store, deal.deal_id, again.channel_vars["CHANNEL(linkedid)"])
    assert "IVR_ORDER_ID" not in again.variables


async def test_an_unknown_numbers_call_opens_a_lead_like_deal_when_configured(store, prompts_dir):
    await load_demo_data(store.sessions)
    settings = harness_settings(database_url(store), prompts_dir, deals={"create_for_unknown": True})
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True))
    harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
    try:
        fake = await harness.call("+79990001122", [])
        assert fake.variables["IVR_REASON"] == "unknown_number"
        call_id = fake.channel_vars["CHANNEL(linkedid)"]

        async def lead():
            found = [d for d in await harness.store.list_deals() if d.phone == "+79990001122"]
            return found[0] if found else None

        deal = await wait_for(lead)
        assert (deal.customer_id, deal.order_id, deal.stage) == (None, None, "new")
        await _linked(harness.store, deal.deal_id, call_id)
        timeline = await harness.store.deal_timeline(deal.deal_id)
        assert {"call.started", "call.escalated"} <= {e.kind for e in timeline}
    finally:
        await harness.stop()
