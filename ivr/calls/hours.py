"""Operators' business hours: pure functions of a UTC instant, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class BusinessHours:
    timezone: str = "Europe/Moscow"
    open: time = time(9, 0)
    close: time = time(20, 0)
    days: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # ISO weekdays
    holidays: tuple[date, ...] = ()
    callback_delay_minutes: int = 30

    def _local(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("business hours need an aware datetime")
        return now.astimezone(ZoneInfo(self.timezone))

    def _working_day(self, day: date) -> bool:
        return day.isoweekday() in self.days and day not in self.holidays

    def is_open(self, now: datetime) -> bool:
        local = self._local(now)
        return self._working_day(local.date()) and self.open <= local.time() < self.close

    def next_opening(self, now: datetime) -> datetime:
        """The start of the next working period at or after ``now`` (``now`` itself when open)."""
        if self.is_open(now):
            return now
        local = self._local(now)
        day = local.date()
        if local.time() >= self.open:
            day += timedelta(days=1)
        for _ in range(370):
            if self._working_day(day):
                return datetime.combine(day, self.open, tzinfo=ZoneInfo(self.timezone))
            day += timedelta(days=1)
        raise ValueError("no working day within a year: check business days and holidays")

    def callback_due(self, now: datetime) -> datetime:
        """When a callback should be made: at once during hours, else shortly after the next opening."""
        if self.is_open(now):
            return now
        return self.next_opening(now) + timedelta(minutes=self.callback_delay_minutes)
