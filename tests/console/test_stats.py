"""crm_bridge.stats on both backends: a known day of calls, every number; empty period; boundaries.

The known day (2026-11-20, Moscow = UTC+3) is seeded through the store (calls, tracker fields,
timeline, orders); tests/console/test_stats_web.py reuses it for the page, JSON and CSV.

Ten calls in the day:

| call   | customer | start (Msk) | what happened                                              |
| ------ | -------- | ----------- | ---------------------------------------------------------- |
| ivr1   | C001     | 10:00       | menu 1 → IVR order                                        |
| ivr2   | C002     | 10:10       | menu 2, quantities, confirm 1 → IVR order                 |
| ivr3   | C003     | 11:05       | menu 1 → IVR order                                        |
| ivr4   | C004     | 12:30       | menu 1 → IVR order                                        |
| op1    | C001     | 13:00       | menu 0 → queue, PJSIP/101 Анна after 5 s, talks 120 s, operator order |
| op2    | C002     | 13:20       | no input at the menu → queue, PJSIP/102 Борис after 25 s, talks 60 s |
| ab1    | C003     | 14:00       | menu 0 → queue, abandoned after 12 s                       |
| ab2    | C004     | 15:00       | menu 2 …, confirm 1, the order write times out → queue, abandoned after 40 s |
| drop   | C001     | 16:00       | greeting played, hung up at the menu                       |
| unk    | —        | 23:30       | unknown number → queue, Queue() gives up after 60 s        |

Outside the day (must never count): a call and an IVR order at 23:59:59 on the 19th, a call and an
operator order at 00:00 on the 21st (Moscow).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_bridge.contract.outcomes import CallFacts, facts_implying
from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from crm_bridge.phones import normalize_phone
from crm_bridge.stats import call_statistics, local_days, p90, ratio, robot_answered, robot_finished

TZ = "Europe/Moscow"
DAY_START = datetime(2026, 11, 19, 21, 0, tzinfo=UTC)  # 2026-11-20 00:00 Moscow
DAY_END = DAY_START + timedelta(days=1)
PHONES = {"C001": "+79161234567", "C002": "+79031112233", "C003": "+79265554433", "C004": "+74951234567"}


@dataclass
class Seeded:
    ivr_amount: Decimal  # sum of the four IVR orders of the day, as the store priced them


def msk(hour: int, minute: int = 0, second: int = 0, day: int = 20) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=3)


class _Seeder:
    def __init__(self, store) -> None:
        self.store = store

    async def call(
        self, call_id: str, customer: str | None, at: datetime, *, outcome: str, reason: str,
        events: list[tuple[str, dict[str, Any]]], caller: str | None = None, order_id: str | None = None,
        **tracked: Any,
    ) -> None:
        number = caller or PHONES[customer]  # type: ignore[index]
        await self.store.record_call_start(
            call_id=call_id, caller_number=number, normalized_number=normalize_phone(number), customer_id=customer,
            channel="PJSIP/trunk-0001", script="repeat-order", started_at=at,
        )
        await self.store.add_timeline_events([
            TimelineEventIn(at=at + timedelta(seconds=i), call_id=call_id, customer_id=customer, kind=kind, data=data)
            for i, (kind, data) in enumerate(events)
        ])
        await self.store.record_call_end(
            call_id, facts=facts_implying(outcome if outcome in ("order_placed", "abandoned") else "operator"),
            reason=reason,
            ended_at=at + timedelta(seconds=90), customer_id=customer, order_id=order_id,
        )
        if tracked or outcome not in ("order_placed", "abandoned"):
            # What the AMI tracker adds afterwards (refined outcome, queue, operator).
            await self.store.update_call(call_id, facts=facts_implying(outcome),
                                         ended_at=at + timedelta(minutes=5), **tracked)

    async def ivr_order(self, call_id: str, customer: str, at: datetime, lines: list[tuple[str, int]]) -> Any:
        return await self.store.place_order(
            idempotency_key=f"ivr:{call_id}", customer_id=customer, lines=lines, source="ivr", call_id=call_id,
            now=at,
        )

    async def operator_order(self, call_id: str, customer: str, at: datetime, lines: list[tuple[str, int]]) -> Any:
        return await self.store.place_order(
            idempotency_key=f"op:{call_id}", customer_id=customer, lines=lines, source="operator", call_id=call_id,
            now=at,
        )


def _menu(digits: str, timed_out: bool = False) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("caller.identified", {"status": "found"}),
        ("prompt.played", {"step": "menu", "text": "…"}),
        ("dtmf.received", {"step": "menu", "digits": digits, "timed_out": timed_out}),
    ]


def _queue(queue: str = "operators") -> list[tuple[str, dict[str, Any]]]:
    return [("call.escalated", {"reason": "x"}), ("prompt.played", {"step": "handover"}),
            ("queue.entered", {"queue": queue})]


async def seed_day(store) -> Seeded:
    report = await load_demo_data(store.sessions)
    assert report.ok
    s = _Seeder(store)
    amount = Decimal(0)

    async def ivr_call(call_id: str, customer: str, at: datetime, events: list, lines: list) -> Decimal:
        placed = await s.ivr_order(call_id, customer, at + timedelta(seconds=30), lines)
        events = [*events, ("order.created", {"order_id": placed.order.order_id}),
                  ("prompt.played", {"step": "goodbye"}), ("call.ended", {"step": "goodbye"})]
        await s.call(call_id, customer, at, outcome="order_placed", reason="order_placed", events=events,
                     order_id=placed.order.order_id)
        return placed.order.total

    amount += await ivr_call("ivr1", "C001", msk(10), _menu("1"), [("WATER-19", 2)])
    quantities = [("prompt.played", {"step": "quantity:WATER-19"}),
                  ("dtmf.received", {"step": "quantity:WATER-19", "digits": "3", "timed_out": False}),
                  ("prompt.played", {"step": "confirm"}),
                  ("dtmf.received", {"step": "confirm", "digits": "1", "timed_out": False})]
    amount += await ivr_call("ivr2", "C002", msk(10, 10), [*_menu("2"), *quantities],
                             [("WATER-19", 3), ("CUPS-100", 1)])
    amount += await ivr_call("ivr3", "C003", msk(11, 5), _menu("1"), [("BOTTLE-19", 1)])
    amount += await ivr_call("ivr4", "C004", msk(12, 30), _menu("1"), [("WATER-5", 2)])

    await s.call("op1", "C001", msk(13), outcome="operator_answered", reason="caller_request",
                 events=[*_menu("0"), *_queue(), ("operator.answered", {"operator_interface": "PJSIP/101"})],
                 queue="operators", queue_entered_at=msk(13, 0, 30), wait_seconds=5.0,
                 answered_at=msk(13, 0, 35), talk_seconds=120.0, operator_interface="PJSIP/101",
                 operator_name="Анна", hangup_by="caller")
    await s.operator_order("op1", "C001", msk(13, 3), [("WATER-19", 5)])
    await s.call("op2", "C002", msk(13, 20), outcome="operator_answered", reason="no_input",
                 events=[*_menu("", timed_out=True), ("prompt.played", {"step": "menu"}),
                         ("dtmf.received", {"step": "menu", "digits": "", "timed_out": True}), *_queue()],
                 queue="operators", queue_entered_at=msk(13, 20, 40), wait_seconds=25.0,
                 answered_at=msk(13, 21, 5), talk_seconds=60.0, operator_interface="PJSIP/102",
                 operator_name="Борис", hangup_by="operator")
    await s.call("ab1", "C003", msk(14), outcome="abandoned_in_queue", reason="caller_request",
                 events=[*_menu("0"), *_queue()], queue="operators", queue_entered_at=msk(14, 0, 30),
                 wait_seconds=12.0, hangup_by="caller")
    await s.call("ab2", "C004", msk(15), outcome="abandoned_in_queue", reason="database_timeout",
                 events=[*_menu("2"), *quantities, ("step.failed", {"step": "order", "reason": "database_timeout"}),
                         *_queue()],
                 queue="operators", queue_entered_at=msk(15, 1), wait_seconds=40.0, hangup_by="caller")
    await s.call("drop", "C001", msk(16), outcome="abandoned", reason="hangup_at_menu",
                 events=[("caller.identified", {"status": "found"}), ("prompt.played", {"step": "menu"}),
                         ("call.ended", {"step": "menu", "outcome": "abandoned"})])
    await store.update_call("drop", facts=facts_implying("abandoned_in_ivr"), hangup_by="caller")
    await s.call("unk", None, msk(23, 30), caller="+79990000000", outcome="queue_timeout",
                 reason="unknown_number",
                 events=[("caller.identified", {"status": "unknown"}), *_queue()],
                 queue="operators", queue_entered_at=msk(23, 30, 20), wait_seconds=60.0, hangup_by="system")

    # Just outside the day, on both sides.
    await ivr_call("before", "C002", msk(23, 59, 29, day=19), _menu("1"), [("WATER-19", 9)])
    await s.call("after", "C003", msk(0, 0, 0, day=21), outcome="operator_answered", reason="caller_request",
                 events=[*_menu("0"), *_queue()], queue="operators", queue_entered_at=msk(0, 0, 30, day=21),
                 wait_seconds=3.0, answered_at=msk(0, 0, 33, day=21), talk_seconds=30.0,
                 operator_interface="PJSIP/101", operator_name="Анна")
    await s.operator_order("after", "C003", msk(0, 2, 0, day=21), [("WATER-19", 1)])
    return Seeded(ivr_amount=amount)


# --- the numbers ------------------------------------------------------------------------------------

EXPECTED_OUTCOMES = (
    ("order_placed", 4), ("abandoned_in_queue", 2), ("operator_answered", 2), ("abandoned_in_ivr", 1),
    ("queue_timeout", 1),
)
EXPECTED_HOURS = tuple({10: 2, 11: 1, 12: 1, 13: 2, 14: 1, 15: 1, 16: 1, 23: 1}.get(h, 0) for h in range(24))
EXPECTED_FUNNEL = (
    ("calls", 10, None),
    ("greeting", 9, 0.9),  # everybody but the unknown number heard the menu
    ("menu_choice", 7, 0.7778),  # op2 keyed nothing, drop hung up: 7 / 9
    ("order_stage", 5, 0.7143),  # ivr1-4 and ab2 (its order write timed out): 5 / 7
    ("order_placed", 4, 0.8),
)


async def day_stats(store, start=DAY_START, end=DAY_END, sl: int = 20):
    return await call_statistics(store.sessions, start, end, service_level_seconds=sl, timezone=TZ)


async def test_known_day_every_number(store):
    seeded = await seed_day(store)
    s = await day_stats(store)

    assert (s.start, s.end, s.timezone, s.service_level_seconds) == (DAY_START, DAY_END, TZ, 20)
    assert s.calls_total == 10
    assert s.calls_by_outcome == EXPECTED_OUTCOMES
    assert s.outcome_count("order_placed") == 4 and s.outcome_count("after_hours") == 0
    assert s.known_customer_calls == 9

    # Orders: 4 by the robot, 1 by an operator on a call (op1); "before"/"after" are outside the day.
    assert s.ivr_orders == 4
    assert s.ivr_orders_amount == seeded.ivr_amount
    assert s.ivr_orders_amount == Decimal("2620.00")  # 2×350 + (3×350 + 120) + 450 + 2×150 (demo prices)
    assert s.operator_orders_from_calls == 1
    assert s.orders_from_calls == 5
    assert s.ivr_order_share == 0.8  # 4 / 5: the share of orders, not the automation rate
    # The honest rate: the robot answered all 10 calls and finished the 4 with an order itself.
    assert (s.robot_finished, s.robot_answered, s.automation_rate, s.robot_refused) == (4, 10, 0.4, 0)
    assert s.robot_finished_by_outcome == (("after_hours", 0), ("callback_requested", 0), ("order_placed", 4))
    assert [astuple(d) for d in s.days] == [(date(2026, 11, 20), 10, 10, 4, 0.4, 2, 0.2, 5, 1, 0.2)]
    assert s.ivr_orders_per_known_customer_call == 0.4444  # 4 / 9

    # Queue: op1, op2, ab1, ab2, unk entered it.
    assert s.queued_calls == 5
    assert s.answered_calls == 2
    assert s.abandoned_in_queue == 2
    assert s.abandon_rate == 0.4  # 2 / 5
    assert (s.wait_answered.count, s.wait_answered.average, s.wait_answered.p90) == (2, 15.0, 25.0)  # 5, 25
    assert (s.wait_abandoned.count, s.wait_abandoned.average, s.wait_abandoned.p90) == (2, 26.0, 40.0)  # 12, 40
    assert (s.wait_all.count, s.wait_all.average, s.wait_all.p90) == (5, 28.4, 60.0)  # + unk's 60
    assert s.answered_within_service_level == 1  # op1 (5 s); op2 waited 25 s
    assert s.service_level == 0.2  # 1 / 5
    assert s.avg_talk_seconds == 90.0  # (120 + 60) / 2

    assert [(r.interface, r.name, r.calls_answered, r.avg_talk_seconds, r.avg_wait_seconds, r.orders)
            for r in s.operators] == [
        ("PJSIP/101", "Анна", 1, 120.0, 5.0, 1),
        ("PJSIP/102", "Борис", 1, 60.0, 25.0, 0),
    ]
    assert [(f.stage, f.count, f.share_of_previous) for f in s.funnel] == list(EXPECTED_FUNNEL)
    assert s.calls_per_hour == EXPECTED_HOURS


async def test_service_level_threshold_is_inclusive(store):
    await seed_day(store)
    assert (await day_stats(store, sl=25)).service_level == 0.4  # op2 waited exactly 25 s: counts
    assert (await day_stats(store, sl=4)).service_level == 0.0


async def test_empty_period(store):
    await seed_day(store)
    start = datetime(2026, 11, 1, 21, 0, tzinfo=UTC)
    s = await day_stats(store, start, start + timedelta(days=1))
    assert s.calls_total == 0 and s.calls_by_outcome == () and s.known_customer_calls == 0
    assert (s.ivr_orders, s.ivr_orders_amount, s.operator_orders_from_calls, s.orders_from_calls) == (
        0, Decimal("0.00"), 0, 0)
    assert s.automation_rate is None and s.ivr_orders_per_known_customer_call is None
    assert (s.queued_calls, s.answered_calls, s.abandoned_in_queue, s.answered_within_service_level) == (0, 0, 0, 0)
    assert s.abandon_rate is None and s.service_level is None and s.avg_talk_seconds is None
    for wait in (s.wait_answered, s.wait_abandoned, s.wait_all):
        assert (wait.count, wait.average, wait.p90) == (0, None, None)
    assert s.operators == ()
    assert [(f.stage, f.count, f.share_of_previous) for f in s.funnel] == [
        ("calls", 0, None), ("greeting", 0, None), ("menu_choice", 0, None), ("order_stage", 0, None),
        ("order_placed", 0, None),
    ]
    assert s.calls_per_hour == (0,) * 24
    assert [astuple(d) for d in s.days] == [(date(2026, 11, 2), 0, 0, 0, None, 0, None, 0, 0, None)]


async def test_empty_database(store):
    s = await day_stats(store, DAY_START, DAY_START)  # a zero-length period on an empty store
    assert s.calls_total == 0 and s.ivr_orders_amount == Decimal("0.00") and s.automation_rate is None


async def test_period_boundaries(store):
    await seed_day(store)
    # [start, end): the last second before the day holds "before" (its call and its IVR order) only.
    before = await day_stats(store, msk(23, 59, 29, day=19), DAY_START)
    assert before.calls_total == 1 and before.calls_by_outcome == (("order_placed", 1),)
    assert (before.ivr_orders, before.orders_from_calls, before.ivr_order_share) == (1, 1, 1.0)
    assert (before.robot_finished, before.robot_answered, before.automation_rate) == (1, 1, 1.0)
    assert [d.day for d in before.days] == [date(2026, 11, 19)]
    assert before.calls_per_hour[23] == 1 and sum(before.calls_per_hour) == 1
    # A call starting exactly at the end of a period belongs to the next one, in hour 0.
    edge = await day_stats(store, DAY_END, DAY_END + timedelta(seconds=1))
    assert edge.calls_total == 1 and edge.calls_per_hour[0] == 1
    assert edge.operator_orders_from_calls == 0  # its order came two minutes later
    assert [(r.interface, r.calls_answered, r.orders) for r in edge.operators] == [("PJSIP/101", 1, 0)]
    # A period ending exactly when a call starts leaves it out; one microsecond later takes it in.
    assert (await day_stats(store, DAY_START, msk(23, 30))).calls_total == 9  # unk started at 23:30
    assert (await day_stats(store, DAY_START, msk(23, 30) + timedelta(microseconds=1))).calls_total == 10
    # Two days: both edges in, Анна has the "after" call and its order too.
    two = await day_stats(store, msk(0, day=19), msk(0, day=22))
    assert two.calls_total == 12 and two.ivr_orders == 5 and two.operator_orders_from_calls == 2
    assert two.ivr_order_share == round(5 / 7, 4)
    assert (two.robot_finished, two.robot_answered, two.automation_rate) == (5, 12, round(5 / 12, 4))
    # Every local day of the period, oldest first (the 19th has "before", the 21st "after").
    assert [(d.day.day, d.calls, d.robot_finished, d.robot_answered, d.operator_answered) for d in two.days] == [
        (19, 1, 1, 1, 0), (20, 10, 4, 10, 2), (21, 1, 0, 1, 1)]
    assert [(r.interface, r.calls_answered, r.avg_talk_seconds, r.avg_wait_seconds, r.orders)
            for r in two.operators] == [("PJSIP/101", 2, 75.0, 4.0, 2), ("PJSIP/102", 1, 60.0, 25.0, 0)]
    assert two.calls_per_hour[0] == 1 and two.calls_per_hour[23] == 2


async def test_order_of_a_call_answered_before_the_period_still_counts_for_its_operator(store):
    await seed_day(store)
    # The 21st from 00:01: the "after" call started before, its operator order at 00:02 is inside.
    s = await day_stats(store, msk(0, 1, day=21), msk(0, 3, day=21))
    assert s.calls_total == 0 and s.operator_orders_from_calls == 1 and s.ivr_order_share == 0.0
    assert s.automation_rate is None and s.robot_answered == 0
    assert [(r.interface, r.name, r.calls_answered, r.avg_talk_seconds, r.orders) for r in s.operators] == [
        ("PJSIP/101", "Анна", 0, None, 1)]


async def test_bad_arguments(store):
    with pytest.raises(ValueError):
        await call_statistics(store.sessions, datetime(2026, 11, 20), datetime(2026, 11, 21))
    with pytest.raises(ValueError):
        await call_statistics(store.sessions, DAY_END, DAY_START)


def test_p90_is_nearest_rank():
    assert p90([]) is None
    assert p90([7]) == 7.0
    assert p90([40, 12]) == 40.0
    assert p90(range(1, 11)) == 9.0  # 10 values: the 9th
    assert p90(range(1, 12)) == 10.0  # 11 values: ceil(9.9) = 10th
    assert ratio(1, 0) is None and ratio(0, 3) == 0.0 and ratio(2, 3) == 0.6667


# --- the automation rate's definition, row by row ----------------------------------------------------

# (outcome, reason, entered the queue) -> (the robot answered it, the robot finished it)
AUTOMATION_ROWS = [
    ("order_placed", "order_placed", False, True, True),
    ("order_placed", "readback_failed", True, True, True),  # the order stands; a human only read it back
    ("after_hours", "after_hours:caller_request", False, True, True),
    ("callback_requested", "callback_requested", False, True, True),  # the robot's own callback script
    ("callback_requested", "callback_requested", True, True, False),  # pressed 1 while waiting for a human
    ("operator_answered", "caller_request", True, True, False),
    ("operator_answered", "overloaded", True, False, False),  # refused before the robot spoke
    ("operator", "server_unreachable", False, False, False),  # our server never answered
    ("operator_answered", "database_unavailable", True, False, False),  # sent on before the robot spoke
    ("error", "server_lost", False, True, False),  # the robot took it and crashed: not finished
    ("error", "database_error", True, True, False),
    ("abandoned_in_ivr", "hangup_at_menu", False, True, False),
    ("abandoned_in_queue", "unknown_number", True, True, False),
    ("queue_timeout", "no_input", True, True, False),
    ("operator", "caller_request", False, True, False),
    (None, None, False, False, False),  # in progress: not in the rate until it ends
]


@pytest.mark.parametrize(("outcome", "reason", "queued", "answered", "finished"), AUTOMATION_ROWS)
def test_automation_definition(outcome, reason, queued, answered, finished):
    assert robot_answered(outcome, reason) is answered
    assert robot_finished(outcome, reason, queued) is finished


def test_local_days_cover_the_period():
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(TZ)
    assert local_days(DAY_START, DAY_END, zone) == [date(2026, 11, 20)]
    assert local_days(DAY_START, DAY_START, zone) == [date(2026, 11, 20)]
    assert local_days(DAY_START - timedelta(hours=1), DAY_END + timedelta(seconds=1), zone) == [
        date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 21)]


async def test_automation_on_the_store_refused_apart_robot_callbacks_and_after_hours_in(store):
    """On both backends, beside the known day: a call refused as overloaded (then answered by an
    operator) is neither in the numerator nor the denominator but counted apart; a robot callback,
    an after-hours call and a queue callback show the numerator's rules on stored rows."""
    await seed_day(store)

    async def call(call_id: str, minute: int, facts: CallFacts, reason: str, **tracked: Any) -> None:
        at = msk(17, minute)
        await store.record_call_start(call_id=call_id, caller_number="+79161234567",
                                      normalized_number="+79161234567", customer_id="C001", channel="PJSIP/t-1",
                                      script="repeat-order", started_at=at)
        await store.record_call_end(call_id, facts=facts, reason=reason, ended_at=at + timedelta(minutes=1),
                                    customer_id="C001", order_id=None)
        if tracked:
            await store.update_call(call_id, **tracked)

    await call("refused", 0, CallFacts(refused=True), "overloaded")
    await store.update_call("refused", facts=facts_implying("operator_answered"), queue="operators",
                            queue_entered_at=msk(17, 0, 5), wait_seconds=4.0, answered_at=msk(17, 0, 9))
    await call("robot-cb", 10, facts_implying("callback_requested"), "callback_requested")
    await call("closed", 20, facts_implying("after_hours"), "after_hours:caller_request")
    await call("queue-cb", 30, facts_implying("callback_requested"), "callback_requested",
               queue="operators", queue_entered_at=msk(17, 30, 5), wait_seconds=30.0)
    s = await day_stats(store)
    assert s.calls_total == 14 and s.robot_refused == 1
    assert (s.robot_finished, s.robot_answered) == (6, 13)  # 4 orders + robot callback + after hours
    assert s.robot_finished_by_outcome == (("after_hours", 1), ("callback_requested", 1), ("order_placed", 4))
    assert s.automation_rate == round(6 / 13, 4)
