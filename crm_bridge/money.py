"""Money arithmetic: Decimal everywhere, two places, half up (as a cashier rounds)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def money(value: Decimal | int | str | float) -> Decimal:
    """Quantize to kopecks; floats go through ``str`` so 0.1 stays 0.1."""
    if isinstance(value, float):
        value = str(value)
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def vat_split(total: Decimal, rate: Decimal, *, included: bool) -> tuple[Decimal, Decimal, Decimal]:
    """Return (subtotal without VAT, VAT amount, total payable) for the sum of line amounts."""
    total = money(total)
    if included:
        vat = money(total * rate / (Decimal(100) + rate))
        return total - vat, vat, total
    vat = money(total * rate / Decimal(100))
    return total, vat, total + vat


# The Russian base VAT rate by the day it took effect (Tax Code art. 164 p. 3: 20 % from 2019-01-01,
# 22 % from 2026-01-01). The store's default when no schedule is configured (``orders.vat_rates``).
RUSSIAN_VAT_RATES: tuple[tuple[date, Decimal], ...] = (
    (date(2019, 1, 1), Decimal("20")),
    (date(2026, 1, 1), Decimal("22")),
)


def vat_rate_on(rates: Sequence[tuple[date, Decimal]], day: date) -> Decimal:
    """The rate in force on ``day`` (the shipment date): the last entry that started on or before it.

    ``rates`` is (first day, percent) in any order; a day before the first entry is an error
    (the schedule does not say), not a silent zero.
    """
    in_force = [(start, rate) for start, rate in rates if start <= day]
    if not in_force:
        raise ValueError(f"no VAT rate configured for {day.isoformat()} (orders.vat_rates)")
    return max(in_force)[1]
