from datetime import UTC, date, datetime, time

import pytest

from ivr.calls.hours import BusinessHours

HOURS = BusinessHours(timezone="Europe/Moscow", open=time(9), close=time(20), days=(1, 2, 3, 4, 5),
                      holidays=(date(2026, 12, 31),))


def msk(y, m, d, hh, mm=0):
    # Moscow is UTC+3 all year
    return datetime(y, m, d, hh - 3, mm, tzinfo=UTC) if hh >= 3 else datetime(y, m, d - 1, hh + 21, mm, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "is_open"),
    [
        (msk(2026, 11, 27, 9, 0), True),  # Friday, at opening
        (msk(2026, 11, 27, 19, 59), True),
        (msk(2026, 11, 27, 20, 0), False),  # closing time is closed
        (msk(2026, 11, 27, 8, 59), False),
        (msk(2026, 11, 28, 12, 0), False),  # Saturday: not a working day here
        (msk(2026, 12, 31, 12, 0), False),  # holiday
    ],
)
def test_is_open(now, is_open):
    assert HOURS.is_open(now) is is_open


def test_next_opening_skips_weekend_and_holidays():
    friday_night = msk(2026, 11, 27, 21, 0)
    assert HOURS.next_opening(friday_night).isoformat() == "2026-11-30T09:00:00+03:00"
    before_holiday = msk(2026, 12, 30, 22, 0)
    assert HOURS.next_opening(before_holiday).isoformat() == "2027-01-01T09:00:00+03:00"
    early_morning = msk(2026, 11, 26, 7, 0)
    assert HOURS.next_opening(early_morning).isoformat() == "2026-11-26T09:00:00+03:00"


def test_callback_is_due_now_when_open_and_after_opening_otherwise():
    now = msk(2026, 11, 27, 12, 0)
    assert HOURS.callback_due(now) == now
    assert HOURS.callback_due(msk(2026, 11, 27, 21, 0)).isoformat() == "2026-11-30T09:30:00+03:00"


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError):
        HOURS.is_open(datetime(2026, 11, 27, 12, 0))
