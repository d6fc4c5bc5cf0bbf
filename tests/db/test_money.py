from datetime import date
from decimal import Decimal

import pytest

from crm_bridge.money import RUSSIAN_VAT_RATES, money, vat_rate_on, vat_split


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Decimal("0.005"), Decimal("0.01")), (Decimal("2.675"), Decimal("2.68")), (0.1, Decimal("0.10")),
     ("1200.5", Decimal("1200.50")), (3, Decimal("3.00")), (Decimal("-0.005"), Decimal("-0.01"))],
)
def test_money_rounds_half_up_to_kopecks(value, expected) -> None:
    assert money(value) == expected


def test_vat_included_is_extracted_from_the_total() -> None:
    assert vat_split(Decimal("100"), Decimal("20"), included=True) == (
        Decimal("83.33"), Decimal("16.67"), Decimal("100.00"))
    assert vat_split(Decimal("1400"), Decimal("10"), included=True) == (
        Decimal("1272.73"), Decimal("127.27"), Decimal("1400.00"))


def test_vat_excluded_is_added_on_top() -> None:
    assert vat_split(Decimal("100"), Decimal("20"), included=False) == (
        Decimal("100.00"), Decimal("20.00"), Decimal("120.00"))
    assert vat_split(Decimal("0.03"), Decimal("20"), included=False) == (
        Decimal("0.03"), Decimal("0.01"), Decimal("0.04"))


@pytest.mark.parametrize(
    ("shipped", "rate"),
    [
        (date(2019, 1, 1), Decimal("20")),
        (date(2025, 12, 31), Decimal("20")),  # the last day of 20 %
        (date(2026, 1, 1), Decimal("22")),  # Federal Law 425-FZ: 22 % from 2026-01-01
        (date(2026, 11, 28), Decimal("22")),
        (date(2030, 6, 1), Decimal("22")),
    ],
)
def test_the_russian_vat_rate_by_shipment_date(shipped, rate) -> None:
    assert vat_rate_on(RUSSIAN_VAT_RATES, shipped) == rate


def test_vat_schedule_in_any_order_and_a_day_before_it() -> None:
    rates = [(date(2027, 1, 1), Decimal("10")), (date(2019, 1, 1), Decimal("20"))]
    assert vat_rate_on(rates, date(2026, 12, 31)) == Decimal("20")
    assert vat_rate_on(rates, date(2027, 1, 1)) == Decimal("10")
    with pytest.raises(ValueError, match="2018-12-31"):
        vat_rate_on(rates, date(2018, 12, 31))
