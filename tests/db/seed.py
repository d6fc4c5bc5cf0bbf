"""Small hand-made data set for service tests (the importers have their own tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from crm_bridge.models import Customer, Order, OrderLine, Phone, Product
from crm_bridge.services import CrmStore

IVANOV_PHONE = "+79161234567"
SHARED_PHONE = "+74951234567"


def product(sku: str, price: str, unit: str, name: str, active: bool = True) -> Product:
    return Product(sku=sku, price=Decimal(price), unit=unit, name=name, active=active)


async def seed(store: CrmStore) -> None:
    async with store.sessions() as s:
        s.add_all(
            [
                product("W19", "350.00", "бутылка", "воды «Жемчужная роса» 19 л"),
                product("W5", "150.00", "бутылка", "воды «Жемчужная роса» 5 л"),
                product("CUPS", "99.99", "упаковка", "стаканчиков"),
                product("OLD", "10.00", "штука", "снятого товара", active=False),
            ]
        )
        ivanov = Customer(customer_id="C1", last_name="Иванов", first_name="Алексей", patronymic="Сергеевич")
        petrov = Customer(customer_id="C2", last_name="Петров", first_name="Пётр", patronymic="Петрович")
        petrova = Customer(customer_id="C3", last_name="Петрова", first_name="Анна", patronymic="Ивановна")
        s.add_all([ivanov, petrov, petrova])
        await s.flush()
        s.add_all(
            [
                Phone(number=IVANOV_PHONE, customer_id=ivanov.id),
                Phone(number="+79035550000", customer_id=ivanov.id),
                Phone(number=SHARED_PHONE, customer_id=petrov.id),
                Phone(number=SHARED_PHONE, customer_id=petrova.id),
            ]
        )
        old = Order(order_id="H-1", customer_id=ivanov.id, ordered_at=datetime(2026, 1, 10, 9, tzinfo=UTC),
                    source="import", total=Decimal("700.00"))
        new = Order(order_id="H-2", customer_id=ivanov.id, ordered_at=datetime(2026, 3, 5, 9, tzinfo=UTC),
                    source="import", total=Decimal("1400.00"))
        s.add_all([new, old])  # inserted out of date order on purpose
        await s.flush()
        s.add_all(
            [
                OrderLine(order_id=old.id, line_no=1, sku="W19", quantity=2, unit_price=Decimal("350"),
                          amount=Decimal("700"), unit="бутылка", name="воды 19 л (старое название)"),
                OrderLine(order_id=new.id, line_no=1, sku="W19", quantity=4, unit_price=Decimal("350"),
                          amount=Decimal("1400"), unit="бутыль", name="воды 19 л (старое название)"),
            ]
        )
        await s.commit()
