"""The call row's outcome is decided by the store from the witnesses' merged facts (issue 8)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, update

from crm_bridge.call_log import CallEnd, CallLog, CallStart, CallUpdate, record_from_json
from crm_bridge.contract.dialplan import IvrResult
from crm_bridge.contract.outcomes import CallFacts, Outcome, QueueFate
from crm_bridge.models import Call
from crm_bridge.services import CrmStore

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
ROBOT_ORDER = CallFacts(order_id="A-1001", hung_up_in_ivr=True)  # the caller hung up during the goodbye
TRACKER_HANGUP = CallFacts(hung_up_in_ivr=True)  # Asterisk saw a call end in the IVR


def _records(first: str) -> list:
    start = CallStart(call_id="c", started_at=T0, caller_number="+79161234567")
    robot = CallEnd(call_id="c", facts=ROBOT_ORDER, reason="hangup_after_order", ended_at=T0 + timedelta(seconds=31),
                    order_id="A-1001")
    tracker = CallUpdate(call_id="c", fields={"ended_at": T0 + timedelta(seconds=30), "hangup_by": "caller"},
                         started_at=T0, facts=TRACKER_HANGUP)
    return [start, robot, tracker] if first == "robot" else [start, tracker, robot]


@pytest.mark.parametrize("first", ["robot", "tracker"])
async def test_one_batch_or_two_the_order_survives_a_hang_up_seen_by_the_tracker(store: CrmStore, first):
    log = CallLog(store.sessions)  # the record writer's own store side
    start, a, b = _records(first)
    await log.write([start, a, b])  # one batch: the records fold in in order
    one = await store.get_call("c")
    await log.write([CallStart(call_id="d", started_at=T0)])
    for record in (a, b):  # two batches: the second reads the first's facts under lock
        await log.write([_renamed(record, "d")])
    two = await store.get_call("d")
    for call in (one, two):
        assert call is not None
        assert (call.outcome, call.reason, call.order_id) == (Outcome.ORDER_PLACED, "hangup_after_order", "A-1001")
        assert call.ended_at == T0 + timedelta(seconds=30)  # the tracker saw the last channel go
        assert call.facts == ROBOT_ORDER.merged(TRACKER_HANGUP)


def _renamed(record, call_id: str):
    values = {k: v for k, v in vars(record).items() if k != "uid"}
    return type(record)(**{**values, "call_id": call_id})


async def test_a_batch_reads_its_calls_facts_once_whatever_its_size(store: CrmStore):
    """The facts are read (locked on PostgreSQL) in ONE statement per batch, inside the batch's own
    transaction, on the path the batch itself runs on (asyncpg on PostgreSQL, Core on SQLite)."""
    log = CallLog(store.sessions)
    ids = [f"b{n}" for n in range(5)]
    await log.write([CallStart(call_id=i, started_at=T0) for i in ids])
    statements: list[str] = []
    engine = store.sessions.kw["bind"].sync_engine

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        await log.write([
            record
            for i in ids
            for record in (
                CallEnd(call_id=i, facts=CallFacts(ivr_result=IvrResult.OPERATOR), reason="caller_request",
                        ended_at=T0 + timedelta(seconds=20)),
                CallUpdate(call_id=i, fields={"ended_at": T0 + timedelta(seconds=40)}, started_at=T0,
                           facts=CallFacts(queue=QueueFate.ANSWERED)),
            )
        ])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "facts" in s]
    assert len(reads) == 1, statements
    if store.sessions.kw["bind"].dialect.name == "postgresql":
        assert "FOR UPDATE" in reads[0]
    for i in ids:
        call = await store.get_call(i)
        assert call is not None and call.outcome == Outcome.OPERATOR_ANSWERED
        assert call.ended_at == T0 + timedelta(seconds=40)


async def test_two_witnesses_writing_at_once_lose_no_fact(store: CrmStore):
    await store.record_call_start(call_id="e", caller_number=None, normalized_number=None, customer_id=None,
                                  channel=None, script=None, started_at=T0)
    await asyncio.gather(
        store.record_call_end("e", facts=CallFacts(ivr_result=IvrResult.OPERATOR), reason="caller_request",
                              ended_at=T0 + timedelta(seconds=20)),
        store.update_call("e", facts=CallFacts(queue=QueueFate.ANSWERED), answered_at=T0 + timedelta(seconds=25)),
    )
    call = await store.get_call("e")
    assert call is not None and call.outcome == Outcome.OPERATOR_ANSWERED
    assert call.facts == CallFacts(ivr_result=IvrResult.OPERATOR, queue=QueueFate.ANSWERED)


async def test_a_row_from_before_facts_speaks_through_its_outcome(store: CrmStore):
    await store.record_call_start(call_id="old", caller_number=None, normalized_number=None, customer_id=None,
                                  channel=None, script=None, started_at=T0)
    async with store.sessions() as session:  # as version 0005 left it: an outcome, no facts
        await session.execute(update(Call).where(Call.call_id == "old").values(outcome="order_placed", order_id="A-7"))
        await session.commit()
    await store.update_call("old", facts=TRACKER_HANGUP, hangup_by="caller")
    call = await store.get_call("old")
    assert call is not None and call.outcome == Outcome.ORDER_PLACED


def test_records_spooled_by_the_previous_version_still_replay():
    end = record_from_json({"type": "end", "call_id": "s", "outcome": "abandoned", "reason": "hangup_at_menu",
                            "ended_at": T0.isoformat(), "customer_id": None, "order_id": None, "uid": "u1"})
    assert isinstance(end, CallEnd) and end.facts == CallFacts(hung_up_in_ivr=True)
    refined = record_from_json({"type": "update", "call_id": "s", "fields": {"outcome": "operator_answered"},
                                "started_at": T0.isoformat(), "uid": "u2"})
    assert isinstance(refined, CallUpdate) and refined.facts == CallFacts(queue=QueueFate.ANSWERED)
    assert refined.fields == {}


async def test_nobody_sets_the_outcome_directly(store: CrmStore):
    with pytest.raises(ValueError, match="outcome"):
        await store.update_call("x", outcome="order_placed")
