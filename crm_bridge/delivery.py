"""Delivery date rules: pure functions, no I/O."""

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
