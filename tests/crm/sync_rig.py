"""What the sync tests share: the same CRM scenario seeded into each fake, a fingerprint of what the
sync left in the store, and no-wait retries (the backoffs are recorded, not slept)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from crm_bridge.demo import DEMO_DIR
from crm_bridge.importers import import_file
from crm_bridge.models import Customer, ExternalRef, Order, OrderLine, Phone
from crm_bridge.sync import Retrying
from tests.crm.fake_amocrm_reads import LOST, AmoReadState
from tests.crm.fake_bitrix24 import PORTAL_TZ, Portal

CONTACTS = 123  # 1..123: three Bitrix24 pages of 50
LAST_ORDER_GREETING = "Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки воды «Жемчужная роса»"


class Sleeps:
    """The sources' sleep: records each pause (pacing and backoff) and returns at once."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(round(seconds, 3))


def quick(retries: int = 3) -> Retrying:
    return Retrying(retries=retries, first=1.0, most=30.0)


async def our_catalogue(store: Any) -> None:
    """Our own product wording (what the robot says); the CRM's products map onto it by code."""
    report = await import_file(store, "products", DEMO_DIR / "products.csv")
    assert report.ok


def seed_bitrix24(p: Portal) -> None:
    p.now = datetime(2026, 11, 20, 12, 0, tzinfo=PORTAL_TZ)
    p.contact(1, "Алексей", "Иванов", "Сергеевич", phones=("8 (916) 123-45-67",))
    p.contact(2, "Пётр", "Безномерный")  # no phone: reported, not taken
    p.contact(3, "Мария", "Иванова", phones=("+7 916 123 45 67",))  # contact 1's number
    for cid in range(4, CONTACTS + 1):
        p.contact(cid, f"Клиент{cid}", "Тестов", phones=(f"+7926{cid:07d}",))
    p.product(10, "Вода «Жемчужная роса» 19 л", "350.00", code="WATER-19")
    p.product(11, "Кулер напольный", "5900.00")
    p.deal(100, 1, datetime(2026, 10, 1, 10, 0, tzinfo=PORTAL_TZ), [(10, "3.00", "350.00")], "S")
    p.deal(101, 1, datetime(2026, 11, 1, 10, 0, tzinfo=PORTAL_TZ), [(10, "4.00", "350.00")], "S")
    p.deal(102, 1, datetime(2026, 11, 5, 10, 0, tzinfo=PORTAL_TZ), [(0, "1.00", "300.00")])  # a free-text row
    p.deal(103, 2, datetime(2026, 11, 6, 10, 0, tzinfo=PORTAL_TZ), [(10, "1.00", "350.00")])  # contact not taken
    p.deal(104, 1, datetime(2026, 11, 7, 10, 0, tzinfo=PORTAL_TZ), [(999, "1.00", "10.00")])  # no such product
    p.deal(105, 1, datetime(2026, 11, 10, 10, 0, tzinfo=PORTAL_TZ), [(11, "1.00", "5900.00")], "F")  # lost
    p.now = datetime(2026, 11, 28, 12, 0, tzinfo=PORTAL_TZ)


def seed_amocrm(s: AmoReadState) -> None:
    week_ago = 1795000000
    s.now = week_ago
    s.contact(1, "Алексей Сергеевич", "Иванов", phones=("8 (916) 123-45-67",))
    s.contact(2, "Пётр", "Безномерный")
    s.contact(3, "Мария", "Иванова", phones=("+7 916 123 45 67",))
    for cid in range(4, CONTACTS + 1):
        s.contact(cid, f"Клиент{cid}", "Тестов", phones=(f"+7926{cid:07d}",))
    s.element(10, "Вода «Жемчужная роса» 19 л", "350", sku="WATER-19")
    s.element(11, "Кулер напольный", "5900")
    day = 86400
    s.lead(100, 1, week_ago - 50 * day, [(10, 3)])
    s.lead(101, 1, week_ago - 20 * day, [(10, 4)])
    s.lead(103, 2, week_ago - 15 * day, [(10, 1)])
    s.lead(104, 1, week_ago - 14 * day, [(999, 1)])
    s.lead(105, 1, week_ago - 10 * day, [(11, 1)], status_id=LOST)
    s.lead(106, 1, week_ago - 9 * day, [(10, 2.5)])  # not a whole number of bottles
    s.lead(107, None, week_ago - 8 * day, [(10, 1)])  # no contact
    s.now = week_ago + 7 * day


async def fingerprint(store: Any) -> dict[str, Any]:
    """What the sync left, without surrogate keys: equal for two runs that ended in the same store."""
    async with store.sessions() as session:
        customers = {c.customer_id: (c.last_name, c.first_name, c.patronymic)
                     for c in (await session.execute(select(Customer))).scalars()}
        pk = {c.id: c.customer_id for c in (await session.execute(select(Customer))).scalars()}
        phones = sorted((pk[p.customer_id], p.number) for p in (await session.execute(select(Phone))).scalars())
        orders = {o.id: o for o in (await session.execute(select(Order))).scalars()}
        lines = sorted((orders[ln.order_id].order_id, ln.line_no, ln.sku, ln.quantity, str(ln.unit_price))
                       for ln in (await session.execute(select(OrderLine))).scalars())
        heads = sorted((o.order_id, pk[o.customer_id], o.ordered_at.isoformat(), o.status, str(o.total), o.source)
                       for o in orders.values())
        refs = sorted((r.source, r.entity, r.external_id, r.local_key)
                      for r in (await session.execute(select(ExternalRef))).scalars())
    return {"customers": customers, "phones": phones, "orders": heads, "lines": lines, "refs": refs}


class Killed(BaseException):
    """The process dying: nothing in the runner catches it."""


class DiesAt:
    """A source whose process dies as it asks for one page (the pages before it are written)."""

    def __init__(self, inner: Any, entity: Any, token: str) -> None:
        self.inner, self.at = inner, (entity, token)
        self.name, self.prefix = inner.name, inner.prefix

    async def page(self, entity: Any, since: str | None, token: str | None) -> Any:
        if (entity, token) == self.at:
            raise Killed
        return await self.inner.page(entity, since, token)

    def map(self, entity: Any, raw: Any) -> Any:
        return self.inner.map(entity, raw)

    async def close(self) -> None:
        await self.inner.close()
