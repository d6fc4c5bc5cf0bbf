"""Both CRMs down for an hour (the worker's clock stepped through every backoff, none of it slept),
then back: every call, deal and lead arrives exactly once, each call's events in order (register →
deal → finish on Bitrix24; the lead before the call on amoCRM), an order's change after its deal;
with the production retry settings nothing became a dead letter in that hour."""

from __future__ import annotations

from datetime import datetime, timedelta

from crm_bridge.call_log import CallEnd, CallStart, TimelineRecord
from crm_bridge.connectors.amocrm import AmoCrmTarget, LeadSettings
from crm_bridge.connectors.bitrix24 import Bitrix24Target, DealSettings
from crm_bridge.contract.crm import OutboxState
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.demo import load_demo_data
from tests.crm.fake_amocrm import FakeAmoCrm
from tests.crm.fake_bitrix24 import FakeBitrix24
from tests.crm.rig import Clock, drain, enqueue, make_worker, routing

NUMBERS = {"c1": "+79161234567", "c2": "+79031112233", "c3": "+79990000000"}
LINE = {"sku": "WATER-19", "quantity": 2, "unit": "бутылка", "name": "воды 19 л", "price": "350.00"}


def call_records(call_id: str, t0: datetime, order_id: str | None) -> list:
    number = NUMBERS[call_id]
    records: list = [
        CallStart(call_id=call_id, started_at=t0, caller_number=number, normalized_number=number),
        TimelineRecord(at=t0, call_id=call_id, customer_id=None, kind="call.started", data={"caller": number}),
    ]
    outcome = "abandoned_in_ivr"
    if order_id is not None:
        outcome = "order_placed"
        records.append(TimelineRecord(at=t0 + timedelta(seconds=20), call_id=call_id, customer_id=None,
                                      kind="order.created", data={"order_id": order_id, "total": "700.00",
                                                                  "invoice": f"СЧ-{order_id}", "lines": [LINE]}))
    records += [
        CallEnd(call_id=call_id, facts=facts_implying(outcome), reason=outcome, ended_at=t0 + timedelta(seconds=30)),
        TimelineRecord(at=t0 + timedelta(seconds=30), call_id=call_id, customer_id=None, kind="call.ended",
                       data={"outcome": outcome}),
    ]
    return records


async def test_both_crms_down_for_an_hour_then_everything_arrives_once_in_order(store, bitrix: FakeBitrix24,
                                                                                amocrm: FakeAmoCrm) -> None:
    await load_demo_data(store.sessions)
    for number in NUMBERS.values():
        amocrm.add_contact(number)
    crms = [
        Bitrix24Target("bitrix24", bitrix.webhook_url, default_user=1, users={}, crm_create=True, line_number="",
                       finish_on="call.ended", links=None, rate=2.0, burst=2, timeout=2.0, deals=DealSettings()),
        AmoCrmTarget("amocrm", amocrm.base_url, amocrm.token, source="ivr", default_user=5, users={},
                     finish_on="call.ended", links=None, leads=LeadSettings(), rate=7.0, burst=7, timeout=2.0),
    ]
    store.route_outbox(routing(*crms))
    clock = Clock()
    # The production retry settings ([crm] max_attempts 12, retry_min 5 s doubling up to 3600 s).
    worker = make_worker(store, crms, clock, max_attempts=12, retry_min=5.0, retry_max=3600.0)
    await bitrix.stop()
    await amocrm.stop()

    t0 = clock.now - timedelta(minutes=10)
    await enqueue(store, crms, call_records("c1", t0, "A-9001"))
    await enqueue(store, crms, call_records("c2", t0 + timedelta(seconds=60), "A-9002"))
    await enqueue(store, crms, call_records("c3", t0 + timedelta(seconds=120), None))

    down_until = clock.now + timedelta(hours=1)
    tries = 0
    while clock.now < down_until:  # the hour: every due row tried, the clock stepped to the next due time
        for name in worker.targets:
            tries += await worker.run_once(name)
        pending = [i for i in await worker.store.items() if i.state == OutboxState.PENDING]
        assert pending and len(pending) == len(await worker.store.items())  # nothing lost, nothing dead
        # Rows behind an earlier one of their call are due but wait: step to the next backoff's end.
        clock.now = min([i.next_attempt_at for i in pending if i.next_attempt_at > clock.now] or [down_until])
    # Backing off: 5 s doubling, about ten attempts of a call's first row in the hour, under max_attempts.
    attempts = max(i.attempts for i in await worker.store.items())
    assert tries > 0 and 8 <= attempts <= 11

    await bitrix.start()
    await amocrm.start()
    await drain(worker, clock)

    assert len(bitrix.calls) == 3 and len(bitrix.deals) == 2 and len(amocrm.calls) == 3 and len(amocrm.leads) == 2
    for remote, call in bitrix.calls.items():
        assert call.finish is not None and call.finish["CALL_ID"] == remote
    # Bitrix24, per call: the register, then its order's deal, then the finish.
    methods = bitrix.methods()
    registers = [i for i, m in enumerate(methods) if m == "telephony.externalcall.register"]
    finishes = [i for i, m in enumerate(methods) if m == "telephony.externalcall.finish"]
    adds = [i for i, m in enumerate(methods) if m == "crm.deal.add"]
    assert registers[0] < adds[0] < finishes[0] and registers[1] < adds[1] < finishes[1]
    assert sorted(d.fields["ORIGIN_ID"] for d in bitrix.deals.values()) == ["A-9001", "A-9002"]
    assert all(d.rows == [{"PRODUCT_NAME": "бутылка воды 19 л", "PRICE": "350.00", "QUANTITY": 2}]
               for d in bitrix.deals.values())
    # amoCRM: each call once (its uniq), each order's lead once with its note.
    assert sorted(c["uniq"] for c in amocrm.calls) == ["c1", "c2", "c3"]
    assert sorted(lead.fields["name"] for lead in amocrm.leads.values()) == ["Заказ A-9001", "Заказ A-9002"]
    assert all(len(lead.notes) == 1 for lead in amocrm.leads.values())
    assert all(i.state == OutboxState.DELIVERED for i in await worker.store.items())
