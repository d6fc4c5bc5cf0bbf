from decimal import Decimal

import pytest

from crm_bridge.money import money, vat_split


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
