"""Supervisor statistics of the calls in a period: read-only SQL aggregates, both backends.

``call_statistics(sessions, start, end)`` answers "how did the phone line do between ``start`` and
``end``?". What every number means (this is what the manager reads):

**Period.** A call belongs to the period when ``calls.started_at`` is in ``[start, end)``. Orders
belong to it when ``orders.ordered_at`` is in ``[start, end)``. Imported orders never count.

**Calls**
- *calls total*: calls started in the period (in progress ones included).
- *calls by outcome*: the same calls per ``calls.outcome`` (``order_placed``, ``operator_answered``,
  ``abandoned_in_queue``, ``abandoned_in_ivr``, ``queue_timeout``, ``callback_requested``,
  ``after_hours``, ``operator``, ``abandoned``, ``error``…); a call without an outcome yet (in
  progress, or its end was never written) is counted as ``in_progress``.
- *known-customer calls*: calls with a customer (``calls.customer_id`` set).
- *calls per hour*: calls by the local hour (0–23, in ``timezone``) of their start.

**Orders and automation**
- *IVR orders*: orders with source ``ivr`` placed in the period, and the sum of their totals.
- *operator orders from calls*: orders with source ``operator`` and a ``call_id``, placed in the
  period.
- *IVR order share* = IVR orders / (IVR orders + operator orders from calls): the share of the
  orders that came from the phone which the robot took. Not the automation rate: a call that
  ended with no order at all (the caller gave up, an operator only answered a question) is not in
  it, which is how it once read 99.4 % while the robot finished 17 % of the calls (issue 10).

**Automation** ("the robot finished N % of the calls it answered", ``robot_finished`` /
``robot_answered``, both numbers shown beside the rate):
- *calls the robot answered* (the denominator): ended calls (an outcome is decided) where the robot
  spoke, i.e. every ended call except those it never took: sent to the queue before it spoke
  (reason ``overloaded``: admission control; ``database_unavailable``: the store was not reachable
  since start-up) or by the dialplan because our server did not answer (``server_unreachable``).
  Those are counted apart (*calls the robot did not take*, ``robot_refused``) and shown beside the
  rate, so a robot that turns calls away cannot look better for it. A call the robot took and then
  failed (``error``, ``server_lost``…) stays in the denominator: a call the robot did not finish.
- *calls the robot finished* (the numerator): of those, the calls no human had to take —
  outcome ``order_placed`` (the robot placed the order), ``after_hours`` (the robot told the
  caller the hours and ended the call itself), or ``callback_requested`` taken by the robot's own
  script (the call never entered the queue; a caller who pressed for a callback while waiting for
  an operator wanted a human and does not count). Everything else (an operator answered, the
  caller hung up in the robot or in the queue, the queue timed out, the robot handed over) is a
  call the robot did not finish.
- *automation rate* = calls the robot finished / calls the robot answered.

**By day** (the trend on /stats): per local day of the call's start (``timezone``), every day of
the period even when empty: calls, calls the robot answered / finished and its rate, calls answered
by an operator and their share of all calls, calls that entered the queue and the service level.
- *IVR orders per known-customer call* = IVR orders / known-customer calls: how often a
  recognised caller ended up with an order from the robot.

**Queue** (a call "entered the queue" when the tracker saw it there: ``calls.queue`` or
``calls.queue_entered_at`` is set)
- *abandon rate* = calls abandoned in the queue (outcome ``abandoned_in_queue``) / calls that
  entered the queue.
- *wait*: ``calls.wait_seconds`` of queued calls, average and p90, for calls answered by an
  operator, for calls abandoned in the queue, and for all queued calls with a known wait
  (answered, abandoned, timed out, callback asked). p90 is the nearest-rank percentile: 90 % of
  those callers waited no longer than it.
- *service level* (N = ``service_level_seconds``) = queued calls answered by an operator after a
  wait of at most N seconds / calls that entered the queue.
- *average talk time*: average ``calls.talk_seconds`` of calls answered by an operator.

**Operators** (calls answered in the period, by ``operator_interface``): calls answered, their
average talk time, the average wait of their callers, and orders placed by operators in the period
on calls that operator answered (``orders.source = 'operator'``, ``orders.call_id`` = the call).

**IVR funnel** (strict: each stage counts only calls that passed the stages before it, from the
call timeline)
1. *calls*: calls total;
2. *greeting*: the menu was played (``prompt.played`` with step ``menu``);
3. *menu choice*: the caller pressed a key at the menu (``dtmf.received``, step ``menu``, digits
   not empty);
4. *order stage*: the robot went to place an order (``order.created``, or a ``step.failed`` /
   ``call.ended`` at step ``order``, or the call's reason says it hung up at the order, or the call's
   outcome is ``order_placed``);
5. *order placed*: ``order.created`` in the timeline or outcome ``order_placed``.
Each stage has its count and its share of the previous stage.

A ratio whose denominator is zero (an empty period, no queue…) is ``None`` (shown as "—"), never
a division by zero. Seconds are rounded to 0.01, ratios to 0.0001 (fractions, not percents).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import IN_PROGRESS, Outcome, Reason, hangup_at
from crm_bridge.errors import StoreUnavailable
from crm_bridge.models import Call, Order, TimelineEvent
from crm_bridge.money import money

# The runner's reasons for a caller who hung up while (or right after) the order was being written.
ORDER_STAGE_REASONS = (hangup_at("order"), Reason.HANGUP_AFTER_ORDER)
# Timeline events that say the robot was at the order step (a failure there, or the robot's end).
ORDER_STAGE_KINDS = (EventKind.STEP_FAILED, EventKind.CALL_ENDED)
FUNNEL_KINDS = (EventKind.PROMPT_PLAYED, EventKind.DTMF_RECEIVED, EventKind.ORDER_CREATED, *ORDER_STAGE_KINDS)
FUNNEL_STAGES = (
    ("calls", "Звонки"),
    ("greeting", "Приветствие и меню"),
    ("menu_choice", "Выбор в меню"),
    ("order_stage", "Оформление заказа"),
    ("order_placed", "Заказ оформлен"),
)

# The automation rate's definition (module docstring): who never reached the robot, what it finishes.
NOT_ANSWERED_BY_ROBOT = frozenset({Reason.OVERLOADED, Reason.DATABASE_UNAVAILABLE, Reason.SERVER_UNREACHABLE})
ROBOT_FINISHED_OUTCOMES = frozenset({Outcome.ORDER_PLACED, Outcome.AFTER_HOURS, Outcome.CALLBACK_REQUESTED})
AUTOMATION_DEFINITION = (
    "Робот закончил сам (заказ оформлен, нерабочее время, заказ обратного звонка без очереди) "
    "из звонков, которые робот принял (завершённые звонки, кроме переданных оператору до слов робота: "
    "перегрузка, база недоступна, сервер не ответил — они считаются отдельно)"
)


def robot_answered(outcome: str | None, reason: str | None) -> bool:
    """The call ended and the robot spoke in it (the automation rate's denominator)."""
    return outcome is not None and reason not in NOT_ANSWERED_BY_ROBOT


def robot_finished(outcome: str | None, reason: str | None, queued: bool) -> bool:
    """The robot answered the call and no human had to take it (the automation rate's numerator)."""
    if not robot_answered(outcome, reason) or outcome not in ROBOT_FINISHED_OUTCOMES:
        return False
    return not (outcome == Outcome.CALLBACK_REQUESTED and queued)


@dataclass(frozen=True)
class DayRow:
    day: date  # local day of the calls' start
    calls: int
    robot_answered: int
    robot_finished: int
    automation_rate: float | None  # robot_finished / robot_answered
    operator_answered: int  # calls an operator answered
    operator_share: float | None  # operator_answered / calls
    queued: int
    answered_within_service_level: int
    service_level: float | None  # answered_within_service_level / queued


@dataclass(frozen=True)
class WaitStats:
    count: int  # calls with a known wait
    average: float | None  # seconds
    p90: float | None  # seconds, nearest rank


@dataclass(frozen=True)
class OperatorRow:
    interface: str  # queue member interface ("PJSIP/101"); "" when the tracker did not learn it
    name: str | None
    calls_answered: int
    avg_talk_seconds: float | None
    avg_wait_seconds: float | None  # of the callers this operator answered
    orders: int  # operator orders on calls this operator answered


@dataclass(frozen=True)
class FunnelStage:
    stage: str  # calls | greeting | menu_choice | order_stage | order_placed
    label: str
    count: int
    share_of_previous: float | None  # None for the first stage or when the previous one is 0


@dataclass(frozen=True)
class CallStatistics:
    start: datetime  # aware UTC, inclusive
    end: datetime  # aware UTC, exclusive
    timezone: str
    service_level_seconds: int
    calls_total: int
    calls_by_outcome: tuple[tuple[str, int], ...]  # most frequent first, then by name
    known_customer_calls: int
    queued_calls: int
    answered_calls: int  # queued calls answered by an operator
    abandoned_in_queue: int
    abandon_rate: float | None
    wait_answered: WaitStats
    wait_abandoned: WaitStats
    wait_all: WaitStats
    answered_within_service_level: int
    service_level: float | None
    avg_talk_seconds: float | None
    ivr_orders: int
    ivr_orders_amount: Decimal
    operator_orders_from_calls: int
    orders_from_calls: int
    ivr_order_share: float | None  # IVR orders / orders from calls (not the automation rate)
    robot_answered: int
    robot_refused: int  # ended calls the robot never took (NOT_ANSWERED_BY_ROBOT): not in the rate, shown
    robot_finished: int
    robot_finished_by_outcome: tuple[tuple[str, int], ...]  # order_placed / after_hours / callback_requested
    automation_rate: float | None  # robot_finished / robot_answered
    ivr_orders_per_known_customer_call: float | None
    operators: tuple[OperatorRow, ...]
    funnel: tuple[FunnelStage, ...]
    calls_per_hour: tuple[int, ...]  # 24 buckets, local hour of the call's start
    days: tuple[DayRow, ...]  # every local day of the period, oldest first

    def outcome_count(self, outcome: str) -> int:
        return dict(self.calls_by_outcome).get(outcome, 0)


def ratio(numerator: int | float, denominator: int | float) -> float | None:
    """``numerator / denominator`` rounded to 4 places; None when the denominator is 0."""
    if not denominator:
        return None
    return round(numerator / denominator, 4)


def p90(values: Iterable[float]) -> float | None:
    """Nearest-rank 90th percentile: the smallest value with at least 90 % of the values ≤ it."""
    ordered = sorted(values)
    if not ordered:
        return None
    return _seconds(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)])


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


async def call_statistics(
    sessions: async_sessionmaker[AsyncSession],
    start: datetime,
    end: datetime,
    *,
    service_level_seconds: int = 20,
    timezone: str = "Europe/Moscow",
) -> CallStatistics:
    """The numbers of the calls started in ``[start, end)`` (see the module docstring)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("call_statistics needs aware datetimes")
    if end < start:
        raise ValueError("the period ends before it starts")
    zone = ZoneInfo(timezone)
    try:
        async with sessions() as session:
            return await _collect(session, start, end, service_level_seconds, timezone, zone)
    except (DBAPIError, OSError) as exc:
        raise StoreUnavailable(str(exc).splitlines()[0][:200]) from exc


async def _collect(
    session: AsyncSession, start: datetime, end: datetime, sl: int, timezone: str, zone: ZoneInfo
) -> CallStatistics:
    in_period = and_(Call.started_at >= start, Call.started_at < end)
    queued = or_(Call.queue.is_not(None), Call.queue_entered_at.is_not(None))
    answered = Call.answered_at.is_not(None)
    abandoned = Call.outcome == Outcome.ABANDONED_IN_QUEUE

    # Calls per outcome; the known-customer count rides along in the same scan.
    rows = (
        await session.execute(
            select(
                Call.outcome,
                func.count(),
                func.sum(case((Call.customer_id.is_not(None), 1), else_=0)),
            )
            .where(in_period)
            .group_by(Call.outcome)
        )
    ).all()
    by_outcome: dict[str, int] = {}
    known = 0
    for outcome, count, known_count in rows:
        key = outcome or IN_PROGRESS
        by_outcome[key] = by_outcome.get(key, 0) + int(count)
        known += int(known_count or 0)
    total = sum(by_outcome.values())

    # The queue: counts, averages and the service level in one aggregate.
    q = (
        await session.execute(
            select(
                func.count(),
                func.sum(case((answered, 1), else_=0)),
                func.sum(case((abandoned, 1), else_=0)),
                func.sum(case((and_(answered, Call.wait_seconds <= sl), 1), else_=0)),
                func.avg(case((answered, Call.wait_seconds))),
                func.avg(case((abandoned, Call.wait_seconds))),
                func.avg(Call.wait_seconds),
            ).where(in_period, queued)
        )
    ).one()
    queued_count, answered_count, abandoned_count, within_sl = (int(v or 0) for v in q[:4])
    avg_wait_answered, avg_wait_abandoned, avg_wait_all = (_seconds(v) for v in q[4:])

    # p90 needs the values themselves: one short row per queued call with a known wait.
    waits = (
        await session.execute(
            select(answered, abandoned, Call.wait_seconds).where(in_period, queued, Call.wait_seconds.is_not(None))
        )
    ).all()
    answered_waits = [float(w) for is_answered, _, w in waits if is_answered]
    abandoned_waits = [float(w) for _, is_abandoned, w in waits if is_abandoned]
    all_waits = [float(w) for _, _, w in waits]

    avg_talk = _seconds(
        (await session.execute(select(func.avg(Call.talk_seconds)).where(in_period, answered))).scalar()
    )

    orders = await _orders(session, start, end)
    operators = await _operators(session, in_period, start, end)
    funnel = await _funnel(session, in_period, total)
    hours, days, finished_by, refused = await _per_call(session, in_period, start, end, zone, sl)

    ivr_count, ivr_amount = orders.get("ivr", (0, money(0)))
    operator_count, _ = orders.get("operator", (0, money(0)))
    return CallStatistics(
        start=start,
        end=end,
        timezone=timezone,
        service_level_seconds=sl,
        calls_total=total,
        calls_by_outcome=tuple(sorted(by_outcome.items(), key=lambda item: (-item[1], item[0]))),
        known_customer_calls=known,
        queued_calls=queued_count,
        answered_calls=answered_count,
        abandoned_in_queue=abandoned_count,
        abandon_rate=ratio(abandoned_count, queued_count),
        wait_answered=WaitStats(len(answered_waits), avg_wait_answered, p90(answered_waits)),
        wait_abandoned=WaitStats(len(abandoned_waits), avg_wait_abandoned, p90(abandoned_waits)),
        wait_all=WaitStats(len(all_waits), avg_wait_all, p90(all_waits)),
        answered_within_service_level=within_sl,
        service_level=ratio(within_sl, queued_count),
        avg_talk_seconds=avg_talk,
        ivr_orders=ivr_count,
        ivr_orders_amount=ivr_amount,
        operator_orders_from_calls=operator_count,
        orders_from_calls=ivr_count + operator_count,
        ivr_order_share=ratio(ivr_count, ivr_count + operator_count),
        robot_answered=sum(d.robot_answered for d in days),
        robot_refused=refused,
        robot_finished=sum(d.robot_finished for d in days),
        robot_finished_by_outcome=finished_by,
        automation_rate=ratio(sum(d.robot_finished for d in days), sum(d.robot_answered for d in days)),
        ivr_orders_per_known_customer_call=ratio(ivr_count, known),
        operators=operators,
        funnel=funnel,
        calls_per_hour=hours,
        days=days,
    )


async def _orders(session: AsyncSession, start: datetime, end: datetime) -> dict[str, tuple[int, Decimal]]:
    """IVR orders and operator orders with a call, placed in the period: source -> (count, amount)."""
    rows = (
        await session.execute(
            select(Order.source, func.count(), func.sum(Order.total))
            .where(
                Order.ordered_at >= start,
                Order.ordered_at < end,
                or_(Order.source == "ivr", and_(Order.source == "operator", Order.call_id.is_not(None))),
            )
            .group_by(Order.source)
        )
    ).all()
    return {source: (int(count), money(amount or 0)) for source, count, amount in rows}


async def _operators(session: AsyncSession, in_period: Any, start: datetime, end: datetime) -> tuple[OperatorRow, ...]:
    interface = func.coalesce(Call.operator_interface, literal(""))
    rows = (
        await session.execute(
            select(
                interface,
                func.max(Call.operator_name),
                func.count(),
                func.avg(Call.talk_seconds),
                func.avg(Call.wait_seconds),
            )
            .where(in_period, Call.answered_at.is_not(None))
            .group_by(interface)
        )
    ).all()
    order_rows = (
        await session.execute(
            select(interface, func.max(Call.operator_name), func.count(Order.id))
            .select_from(Order)
            .join(Call, Call.call_id == Order.call_id)
            .where(
                Order.source == "operator",
                Order.ordered_at >= start,
                Order.ordered_at < end,
                Call.answered_at.is_not(None),
            )
            .group_by(interface)
        )
    ).all()
    orders = {key: int(count) for key, _, count in order_rows}
    out = {
        key: OperatorRow(key, name, int(count), _seconds(talk), _seconds(wait), orders.get(key, 0))
        for key, name, count, talk, wait in rows
    }
    # An order in the period on a call answered before it: the operator still gets the order.
    for key, name, count in order_rows:
        if key not in out:
            out[key] = OperatorRow(key, name, 0, None, None, int(count))
    return tuple(sorted(out.values(), key=lambda r: (-r.calls_answered, -r.orders, r.interface)))


async def _funnel(session: AsyncSession, in_period: Any, total: int) -> tuple[FunnelStage, ...]:
    kind = TimelineEvent.kind
    step = TimelineEvent.data["step"].as_string()
    digits = TimelineEvent.data["digits"].as_string()

    def flag(condition: Any) -> Any:
        return func.max(case((condition, 1), else_=0))

    period_calls = select(Call.call_id).where(in_period)
    flags = (
        select(
            TimelineEvent.call_id.label("call_id"),
            flag(and_(kind == EventKind.PROMPT_PLAYED, step == "menu")).label("greeting"),
            flag(and_(kind == EventKind.DTMF_RECEIVED, step == "menu", digits != "")).label("choice"),
            flag(or_(kind == EventKind.ORDER_CREATED, and_(kind.in_(ORDER_STAGE_KINDS), step == "order"))).label(
                "order_stage"
            ),
            flag(kind == EventKind.ORDER_CREATED).label("placed"),
        )
        .where(TimelineEvent.call_id.in_(period_calls), kind.in_(FUNNEL_KINDS))
        .group_by(TimelineEvent.call_id)
        .subquery()
    )
    greeting = flags.c.greeting == 1
    choice = and_(greeting, flags.c.choice == 1)
    placed_by_row = Call.outcome == Outcome.ORDER_PLACED
    order_stage = and_(
        choice, or_(flags.c.order_stage == 1, placed_by_row, Call.reason.in_(ORDER_STAGE_REASONS))
    )
    placed = and_(order_stage, or_(flags.c.placed == 1, placed_by_row))

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = (
        await session.execute(
            select(count(greeting), count(choice), count(order_stage), count(placed))
            .select_from(Call)
            .join(flags, flags.c.call_id == Call.call_id)
            .where(in_period)
        )
    ).one()
    return funnel_stages([total, *(int(v) for v in row)])


def funnel_stages(counts: Sequence[int]) -> tuple[FunnelStage, ...]:
    stages = []
    previous: int | None = None
    for (stage, label), value in zip(FUNNEL_STAGES, counts, strict=True):
        stages.append(FunnelStage(stage, label, value, None if previous is None else ratio(value, previous)))
        previous = value
    return tuple(stages)


@dataclass
class _DayCounts:
    calls: int = 0
    answered_by_robot: int = 0
    finished_by_robot: int = 0
    operator: int = 0
    queued: int = 0
    within_sl: int = 0

    def row(self, day: date) -> DayRow:
        return DayRow(
            day, self.calls, self.answered_by_robot, self.finished_by_robot,
            ratio(self.finished_by_robot, self.answered_by_robot), self.operator, ratio(self.operator, self.calls),
            self.queued, self.within_sl, ratio(self.within_sl, self.queued),
        )


def local_days(start: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    """The local days ``[start, end)`` touches, oldest first (an empty period still has its day)."""
    first = start.astimezone(zone).date()
    last = max(first, (end - timedelta(microseconds=1)).astimezone(zone).date())
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def _per_call(
    session: AsyncSession, in_period: Any, start: datetime, end: datetime, zone: ZoneInfo, sl: int
) -> tuple[tuple[int, ...], tuple[DayRow, ...], tuple[tuple[str, int], ...], int]:
    """Hours, days and the robot's finished calls, bucketed here, not in SQL: SQLite has no time
    zones, and the robot's definitions are Python (``robot_answered`` / ``robot_finished``), the one
    place they are written. One short row per call of the period (the period is bounded)."""
    hours = [0] * 24
    days = {day: _DayCounts() for day in local_days(start, end, zone)}
    finished_by: dict[str, int] = {}
    refused = 0
    queued = or_(Call.queue.is_not(None), Call.queue_entered_at.is_not(None))
    rows = await session.execute(
        select(Call.started_at, Call.outcome, Call.reason, queued, Call.answered_at.is_not(None), Call.wait_seconds)
        .where(in_period)
    )
    for started_at, outcome, reason, is_queued, answered, wait in rows:
        moment = started_at.astimezone(zone)
        hours[moment.hour] += 1
        counts = days.setdefault(moment.date(), _DayCounts())
        counts.calls += 1
        counts.answered_by_robot += robot_answered(outcome, reason)
        refused += outcome is not None and reason in NOT_ANSWERED_BY_ROBOT
        if robot_finished(outcome, reason, bool(is_queued)):
            counts.finished_by_robot += 1
            finished_by[outcome] = finished_by.get(outcome, 0) + 1
        counts.operator += outcome == Outcome.OPERATOR_ANSWERED
        if is_queued:
            counts.queued += 1
            counts.within_sl += bool(answered) and wait is not None and wait <= sl
    by = tuple((str(o), finished_by.get(o, 0)) for o in sorted(ROBOT_FINISHED_OUTCOMES))
    return tuple(hours), tuple(c.row(day) for day, c in sorted(days.items())), by, refused


__all__ = [
    "AUTOMATION_DEFINITION",
    "CallStatistics",
    "DayRow",
    "FunnelStage",
    "OperatorRow",
    "WaitStats",
    "call_statistics",
    "p90",
    "ratio",
    "robot_answered",
    "robot_finished",
]
