"""Bitrix24's error forms, as the fake portal answers them, become the outbox's three answers: try
again (expired token, 5xx), slow down (QUERY_LIMIT_EXCEEDED, not counted), dead at once (a refused
parameter); a finish waits for its register."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_bridge.call_log import CallEnd, TimelineRecord
from crm_bridge.connectors.bitrix24 import Bitrix24Target, DealSettings
from crm_bridge.contract.crm import OutboxState
from crm_bridge.contract.outcomes import facts_implying
from ivr.app import build_targets
from ivr.settings import default_settings
from tests.crm.fake_bitrix24 import FakeBitrix24
from tests.crm.rig import Clock, drain, enqueue, make_worker, start_of


def bitrix_target(fake: FakeBitrix24, rate: float = 1000.0) -> Bitrix24Target:
    return Bitrix24Target("bitrix24", fake.webhook_url, default_user=3, users={"PJSIP/101": "7"}, crm_create=False,
                          line_number="", finish_on="call.ended", links=None, rate=rate, burst=int(rate), timeout=2.0)


async def one_call(store, target: Bitrix24Target, call_id: str = "c1") -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    await enqueue(store, [target], [
        start_of(call_id),
        TimelineRecord(at=t0, call_id=call_id, customer_id=None, kind="call.started", data={}),
        CallEnd(call_id=call_id, facts=facts_implying("abandoned_in_ivr"), reason="hangup_at_menu",
                ended_at=t0 + timedelta(seconds=42)),
        TimelineRecord(at=t0 + timedelta(seconds=42), call_id=call_id, customer_id=None, kind="call.ended",
                       data={"outcome": "abandoned_in_ivr"}),
    ])


async def test_an_expired_token_is_retried_until_the_admin_fixes_it(store, bitrix) -> None:
    target = bitrix_target(bitrix)
    await one_call(store, target)
    clock = Clock()
    worker = make_worker(store, [target], clock)
    bitrix.expire_token()
    await worker.run_once("bitrix24")
    [first, _] = await worker.store.items()
    assert (first.state, first.attempts) == (OutboxState.PENDING, 1) and "expired_token" in (first.last_error or "")
    bitrix.expire_token(False)
    await drain(worker, clock)
    [(remote, call)] = bitrix.calls.items()
    assert call.finish is not None
    assert (call.finish["CALL_ID"], call.finish["USER_ID"], call.finish["STATUS_CODE"]) == (remote, 3, "304")
    assert call.register["PHONE_NUMBER"] == "+79161234567" and call.register["CRM_CREATE"] == 0
    assert bitrix.token not in repr(await worker.store.items())


async def test_the_portals_limit_is_waited_out_without_counting(store, bitrix) -> None:
    target = bitrix_target(bitrix)
    for n in range(4):
        await one_call(store, target, f"c{n}")
    clock = Clock()
    worker = make_worker(store, [target], clock)
    await worker.run_once("bitrix24")  # four registers at once: the portal takes two, refuses the rest
    assert ("telephony.externalcall.register", "QUERY_LIMIT_EXCEEDED") in bitrix.refused
    items = await worker.store.items()
    assert all(i.attempts <= 1 for i in items)  # a throttled register gave its attempt back
    throttled = [i for i in items if "QUERY_LIMIT_EXCEEDED" in (i.last_error or "")]
    assert throttled and all(i.attempts == 0 and i.state == OutboxState.PENDING for i in throttled)


async def test_a_refused_parameter_is_a_dead_letter(store, bitrix) -> None:
    target = bitrix_target(bitrix)
    await one_call(store, target)
    worker = make_worker(store, [target], Clock())
    bitrix.calls.clear()
    target._default_user = 0  # USER_ID=0: the portal refuses the register (ERROR_ARGUMENT, HTTP 400)
    await worker.run_once("bitrix24")
    [register, finish] = await worker.store.items()
    await worker.stop()
    assert (register.state, register.attempts) == (OutboxState.DEAD, 1)
    assert "ERROR_ARGUMENT" in (register.last_error or "")
    assert finish.state == OutboxState.PENDING  # it will wait for an admin's retry of the register


def test_an_unknown_webhook_event_stops_the_start_up() -> None:
    settings = default_settings().replace(crm={"targets": ["webhook"]}, crm_webhook={
        "url": "https://hook.example.com/x", "secret": "0123456789abcdef0", "events": ["call.startd"]})
    with pytest.raises(OSError, match="call.startd"):
        build_targets(settings)


async def test_a_deal_whose_answer_was_lost_is_found_again_never_made_twice(store, bitrix) -> None:
    target = Bitrix24Target("bitrix24", bitrix.webhook_url, default_user=3, users={}, crm_create=False,
                            line_number="", finish_on="call.ended", links=None, rate=1000.0, burst=1000,
                            timeout=2.0, deals=DealSettings())
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    line = {"sku": "W19", "quantity": 3, "unit": "бутылка", "name": "воды 19 л", "price": "350.00"}
    await enqueue(store, [target], [TimelineRecord(at=t0, call_id=None, customer_id="C1", kind="order.created",
                                                   data={"order_id": "A-7", "total": "1050.00", "lines": [line]})])
    bitrix.fail_once("crm.deal.add")  # the deal is made, the answer lost
    clock = Clock()
    worker = make_worker(store, [target], clock)
    await worker.run_once("bitrix24")
    [row] = await worker.store.items()
    assert row.state == OutboxState.PENDING and "HTTP 500" in (row.last_error or "")
    await drain(worker, clock)
    [deal] = bitrix.deals.values()
    assert deal.fields["ORIGIN_ID"] == "A-7" and deal.fields["TITLE"] == "Заказ A-7"
    assert deal.rows == [{"PRODUCT_NAME": "бутылка воды 19 л", "PRICE": "350.00", "QUANTITY": 3}]
    methods = bitrix.deal_methods()  # (the portal's 2/s may turn a lookup away: it is asked again)
    assert methods[0] == "crm.deal.add" and methods.count("crm.deal.add") == 1
    assert methods[-1] == "crm.deal.productrows.set" and "crm.deal.list" in methods
    [row] = await worker.store.items()
    assert (row.state, row.remote_ref) == (OutboxState.DELIVERED, str(deal.id))
