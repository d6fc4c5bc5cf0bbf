"""What the database would refuse, checked per cell first so that a bad row is reported with its line.

Lengths and money precision are read from the model columns (crm_bridge/models.py), so a schema
change moves the limits with it; a row past them would otherwise abort the whole file's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.orm import InstrumentedAttribute

from crm_bridge.models import Money
from crm_bridge.money import CENT

# Data rows in one import file at most: the whole file is one transaction and its rows are held in
# memory until it commits (measured: reading 100 000 customers peaks at 70 MB). A bigger export is
# split into several files.
MAX_ROWS = 100_000
# A history line of more than this many units is a typo (a phone number in the quantity column),
# not a sale; it also keeps price × quantity far from the Money column's limit.
MAX_QUANTITY = 100_000
# History before this is not something the robot will ever read back; earlier years are typos
# (and year 1 cannot even be shifted to UTC).
EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks of the exporting system and ours may disagree a little; more is a typo (2062 for 2026).
FUTURE_SLACK = timedelta(days=1)


def _money_max() -> Decimal:
    impl = Money.impl
    assert isinstance(impl, Numeric) and impl.precision is not None and impl.scale is not None
    return Decimal(10) ** (impl.precision - impl.scale) - CENT


MONEY_MAX = _money_max()  # 9 999 999 999.99 for Numeric(12, 2)


def fit(value: str, column: InstrumentedAttribute[object], label: str | None = None) -> str:
    """``value`` if the column can hold it; ValueError naming the field and the limit otherwise."""
    name = label or column.key
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character")
    column_type = column.property.columns[0].type
    length = column_type.length if isinstance(column_type, String) else None
    if length is not None and ("\n" in value or "\r" in value):  # String(n) columns are one-line values
        raise ValueError(f"{name} contains a line break")
    if length is not None and len(value) > length:
        raise ValueError(f"{name} is too long ({len(value)} characters, at most {length})")
    return value


def fit_money(value: Decimal, label: str) -> Decimal:
    if value > MONEY_MAX:
        raise ValueError(f"{label} {value} is too large (at most {MONEY_MAX})")
    return value


def fit_quantity(value: int) -> int:
    if value > MAX_QUANTITY:
        raise ValueError(f"quantity {value} is too large (at most {MAX_QUANTITY})")
    return value


def fit_moment(value: datetime, now: datetime | None = None) -> datetime:
    latest = (now or datetime.now(UTC)) + FUTURE_SLACK
    if not EARLIEST_ORDER <= value <= latest:
        raise ValueError(f"date {value:%Y-%m-%d} is out of range ({EARLIEST_ORDER:%Y-%m-%d} .. tomorrow)")
    return value
