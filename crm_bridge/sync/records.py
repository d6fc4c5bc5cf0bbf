"""What a CRM record becomes once mapped (pure, no I/O): the store's words, never the CRM's.

Each CRM module (``bitrix24.py``, ``amocrm.py``) maps its own JSON to these frozen records, or to a
``Refusal`` saying why the record cannot be taken (the report shows it; nothing of it is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Entity(StrEnum):
    """Synced in this order: a deal needs its contact and its products in the store first."""

    CONTACT = "contact"
    PRODUCT = "product"
    DEAL = "deal"


ENTITIES: tuple[Entity, ...] = (Entity.CONTACT, Entity.PRODUCT, Entity.DEAL)


@dataclass(frozen=True)
class MappedCustomer:
    external_id: str
    last_name: str
    first_name: str
    patronymic: str
    phones: tuple[str, ...]  # E.164, in the CRM's order, no repeats


@dataclass(frozen=True)
class MappedProduct:
    external_id: str
    code: str  # the CRM's article / code: matched against our skus ("" = none)
    name: str
    unit: str
    price: Decimal
    active: bool


@dataclass(frozen=True)
class MappedLine:
    product_external_id: str
    quantity: int
    price: Decimal | None  # None: the CRM gives no line price (amoCRM): the product's price


@dataclass(frozen=True)
class MappedOrder:
    external_id: str
    contact_external_id: str
    ordered_at: datetime
    cancelled: bool  # a lost deal: kept as a cancelled order, never the "last order" read back
    lines: tuple[MappedLine, ...]


@dataclass(frozen=True)
class Refusal:
    external_id: str
    reason: str


Mapped = MappedCustomer | MappedProduct | MappedOrder
