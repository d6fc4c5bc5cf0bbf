"""Money as said aloud: whole rubles and kopecks, rounded like the invoice."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def rubles_and_kopecks(amount: Decimal) -> tuple[int, int]:
    """Decimal('1200.505') -> (1200, 51); negative amounts are never spoken in prompts."""
    amount = Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if amount < 0:
        raise ValueError("negative amounts are not spoken in prompts")
    rubles = int(amount)
    return rubles, int((amount - rubles) * 100)
