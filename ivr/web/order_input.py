"""The body of an order placed through the API, checked field by field against the configured bounds.

Every problem is reported with the JSON path of its field (``lines[2].quantity``), all at once, so a
client can mark each bad input; nothing out of range ever reaches the store (where a huge number
would be a database overflow, i.e. a 500).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String

from crm_bridge.models import Order, Product
from ivr.settings import Settings


def _length(column: Any) -> int:
    column_type = column.property.columns[0].type
    assert isinstance(column_type, String) and column_type.length is not None
    return column_type.length


MAX_SKU_LENGTH = _length(Product.sku)
MAX_CALL_ID_LENGTH = _length(Order.call_id)


@dataclass(frozen=True)
class OrderLimits:
    max_quantity: int  # per line: the same bound as a caller keying a quantity (flow.max_quantity)
    max_lines: int
    max_total_quantity: int
    duplicate_window_hours: float = 4.0  # orders.duplicate_window_hours: "repeat order?" (0: never asked)

    def __post_init__(self) -> None:
        if min(self.max_quantity, self.max_lines, self.max_total_quantity) < 1:
            raise ValueError(f"order limits must be positive: {self}")

    @classmethod
    def from_settings(cls, settings: Settings) -> OrderLimits:
        return cls(max_quantity=settings.flow.max_quantity, max_lines=settings.orders.max_lines,
                   max_total_quantity=settings.orders.max_total_quantity,
                   duplicate_window_hours=settings.orders.duplicate_window_hours)


@dataclass(frozen=True)
class FieldError:
    field: str  # JSON path in the request body: "lines", "lines[0].quantity", "call_id"
    message: str


@dataclass(frozen=True)
class OrderInput:
    lines: list[tuple[str, int]]
    call_id: str | None
    confirm_duplicate: bool = False  # the operator confirmed "repeat order?" (orders.duplicate_window_hours)


class InvalidOrderInput(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors[0].message if errors else "invalid order")
        self.errors = errors


LINES_SHAPE = 'body must be {"lines": [{"sku": "…", "quantity": N}, …]}'


def parse_order(body: Any, limits: OrderLimits) -> OrderInput:
    """The order's lines and call id; raises InvalidOrderInput listing every bad field."""
    if not isinstance(body, dict):
        raise InvalidOrderInput([FieldError("", LINES_SHAPE)])
    raw_lines = body.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise InvalidOrderInput([FieldError("lines", LINES_SHAPE)])
    if len(raw_lines) > limits.max_lines:
        raise InvalidOrderInput([FieldError("lines", f"at most {limits.max_lines} lines, got {len(raw_lines)}")])
    errors: list[FieldError] = []
    lines: list[tuple[str, int]] = []
    for index, raw in enumerate(raw_lines):
        at = f"lines[{index}]"
        if not isinstance(raw, dict):
            errors.append(FieldError(at, "every line must be an object with sku and quantity"))
            continue
        sku = _sku(raw.get("sku"), f"{at}.sku", errors)
        quantity = _quantity(raw.get("quantity"), f"{at}.quantity", limits, errors)
        if sku is not None and quantity is not None:
            lines.append((sku, quantity))
    call_id = _call_id(body.get("call_id"), errors)
    confirm = body.get("confirm_duplicate", False)
    if not isinstance(confirm, bool):
        errors.append(FieldError("confirm_duplicate", "confirm_duplicate must be true or false"))
    total = sum(quantity for _, quantity in lines)
    if not errors and total > limits.max_total_quantity:
        errors.append(FieldError("lines", f"at most {limits.max_total_quantity} units in one order, got {total}"))
    if errors:
        raise InvalidOrderInput(errors)
    return OrderInput(lines=lines, call_id=call_id, confirm_duplicate=confirm is True)


def _sku(value: Any, at: str, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError(at, "sku must be a non-empty string"))
        return None
    if len(value) > MAX_SKU_LENGTH:
        errors.append(FieldError(at, f"sku is longer than {MAX_SKU_LENGTH} characters"))
        return None
    return value


def _quantity(value: Any, at: str, limits: OrderLimits, errors: list[FieldError]) -> int | None:
    # bool is an int in Python and 2.0 a float in JSON: neither is a count of bottles.
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(at, f"quantity must be a whole number 1..{limits.max_quantity}"))
        return None
    if not 1 <= value <= limits.max_quantity:
        shown = value if abs(value) < 10**12 else f"{str(value)[:6]}… ({len(str(abs(value)))} digits)"
        errors.append(FieldError(at, f"quantity must be 1..{limits.max_quantity}, got {shown}"))
        return None
    return value


def _call_id(value: Any, errors: list[FieldError]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_CALL_ID_LENGTH:
        errors.append(FieldError("call_id", f"call_id must be a string of at most {MAX_CALL_ID_LENGTH} characters"))
        return None
    return value or None
