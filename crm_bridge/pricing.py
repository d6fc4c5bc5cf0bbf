"""Order lines: checking quantities and pricing them from the catalogue (the robot, the API, edits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crm_bridge.dto import OrderLineView
from crm_bridge.errors import InactiveProduct, InvalidQuantity, UnknownProduct
from crm_bridge.money import money


def positive_lines(lines: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Validate quantities (ints ≥ 0; bool is not a quantity) and drop the zero ones."""
    out = []
    for sku, qty in lines:
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 0:
            raise InvalidQuantity(sku, qty)
        if qty > 0:
            out.append((sku, qty))
    return out


def priced(products: dict[str, Any], sku: str, quantity: int) -> OrderLineView:
    """``products``: Product rows or ORM objects by sku (anything with the Product columns)."""
    product = products.get(sku)
    if product is None:
        raise UnknownProduct(sku)
    if not product.active:
        raise InactiveProduct(sku)
    return OrderLineView(
        sku=sku,
        quantity=quantity,
        unit_price=product.price,
        amount=money(product.price * quantity),
        unit=product.unit,
        name=product.name,
        unit_en=product.unit_en,
        name_en=product.name_en,
    )
