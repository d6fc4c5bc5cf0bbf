"""Money arithmetic: Decimal everywhere, two places, half up (as a cashier rounds)."""

from __future__ import annotations

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
