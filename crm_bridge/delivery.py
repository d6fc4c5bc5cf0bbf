"""Delivery date rules and the change deadline they imply: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta


@dataclass(frozen=True)
class DeliveryRules:
    cutoff: time = time(14, 0)
    days: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # ISO weekdays
    holidays: tuple[date, ...] = ()
    window_start: int = 9
    window_end: int = 14


def delivery_date(ordered_at_local: datetime, rules: DeliveryRules) -> date:
    """First delivery day after the order: tomorrow before the cut-off, the day after past it.

    ``ordered_at_local`` is the wall-clock time at the depot (the caller of this function converts
    from UTC with the configured timezone).
    """
    if not rules.days:
        raise ValueError("delivery rules name no delivery day")
    earliest = ordered_at_local.date() + timedelta(days=1)
    if ordered_at_local.time() >= rules.cutoff:
        earliest += timedelta(days=1)
    day = earliest
    for _ in range(366):
        if day.isoweekday() in rules.days and day not in rules.holidays:
            return day
        day += timedelta(days=1)
    raise ValueError("no delivery day within a year: check delivery days and holidays")


def change_deadline(delivery: date, rules: DeliveryRules) -> datetime:
    """Until when an order delivered on ``delivery`` may be cancelled or edited (depot wall clock).

    The cut-off of the calendar day before the delivery date (``delivery.cutoff``, 14:00): that is
    when the day's loading lists are closed. Delivery on Thursday -> until Wednesday 14:00; on
    Monday -> until Sunday 14:00 (a day without deliveries has a cut-off too: the depot plans then).
    An order is always changeable when placed: ``delivery_date`` picks a day whose deadline is
    still ahead (before the cut-off: tomorrow, deadline today at the cut-off; past it: the day
    after, deadline tomorrow at the cut-off). The deadline itself is already too late.
    """
    return datetime.combine(delivery - timedelta(days=1), rules.cutoff)


def changeable(now_local: datetime, delivery: date | None, rules: DeliveryRules) -> bool:
    """Whether an order with this delivery date may still be changed at ``now_local`` (naive,
    depot wall clock). Orders without a delivery date (imported history) never are."""
    if delivery is None:
        return False
    return now_local.replace(tzinfo=None) < change_deadline(delivery, rules)
