"""The one way the console writes money, dates, times and durations: every page, every export, and
(through the mirror in ``static/console.js``, ``ivr.fmt``) every script.

Moments are shown in the business time zone (``hours.timezone``, ``ConsoleDeps.timezone``), never
the server's or the browser's: a call at 20:30 UTC reads "28 ноября 2026, 23:30" in Moscow. Words
are Russian, months in the genitive. Money is "1 400,00 ₽": groups of three and the rouble sign set
off by a no-break space (``NBSP``), so an amount never breaks across lines.

- ``datetime_text(moment, zone)`` — "28 ноября 2026, 23:30" (``seconds=True``: "…, 23:30:05");
- ``date_text(day)`` — "28 ноября 2026" (a ``date``, or a moment with its zone);
- ``short_day_text(day)`` — "28 ноя" (a chart's axis);
- ``time_text(moment, zone)`` — "23:30:05" (``seconds=False``: "23:30");
- ``money_text(value)`` — "1 400,00 ₽"; ``duration_text(seconds)`` — "1:05", "1:02:03", "—".

A naive datetime is UTC (that is how the store keeps them); an ISO string is parsed first.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

NBSP = "\u00a0"
MONTHS_GENITIVE = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)
ZoneLike = tzinfo | str


def zone_of(zone: ZoneLike) -> tzinfo:
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def local(moment: datetime | str | None, zone: ZoneLike) -> datetime | None:
    """``moment`` in the business zone; None for None or an unreadable string."""
    if moment is None or moment == "":
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone_of(zone))


def _day_words(day: date) -> str:
    return f"{day.day} {MONTHS_GENITIVE[day.month - 1]} {day.year}"


def date_text(day: date | datetime | str | None, zone: ZoneLike | None = None) -> str:
    """A day in words. A moment needs its ``zone`` (its day is the business day it fell on)."""
    if day is None or day == "":
        return ""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day) if len(day) == 10 else datetime.fromisoformat(day)
        except ValueError:
            return day
    if isinstance(day, datetime):
        if zone is None:
            raise TypeError("date_text of a datetime needs the business zone")
        moment = local(day, zone)
        assert moment is not None
        day = moment.date()
    return _day_words(day)


def short_day_text(day: date) -> str:
    """A day on a chart's axis: "28 ноя" (never "28.11": that reads as an amount)."""
    return f"{day.day} {MONTHS_GENITIVE[day.month - 1][:3]}"


def time_text(moment: datetime | str | None, zone: ZoneLike, *, seconds: bool = True) -> str:
    shown = local(moment, zone)
    if shown is None:
        return ""
    return shown.strftime("%H:%M:%S" if seconds else "%H:%M")


def datetime_text(moment: datetime | str | None, zone: ZoneLike, *, seconds: bool = False) -> str:
    shown = local(moment, zone)
    if shown is None:
        return ""
    return f"{_day_words(shown.date())}, {time_text(shown, zone, seconds=seconds)}"


def money_text(value: Any) -> str:
    """"1 400,00 ₽" (no-break spaces); "" for None; a value that is no number is shown as given."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return str(value)
    sign = "-" if amount < 0 else ""
    whole, _, cents = f"{abs(amount):,.2f}".partition(".")
    return f"{sign}{whole.replace(',', NBSP)},{cents}{NBSP}₽"


def duration_text(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour; "—" when unknown."""
    if seconds is None:
        return "—"
    total = int(round(float(seconds)))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def decimal_comma(value: float | Decimal) -> str:
    """A number as a Russian spreadsheet reads it (exports): "2620,00", "0,8"."""
    return str(value).replace(".", ",")
