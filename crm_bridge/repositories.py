"""Queries over an AsyncSession. They flush when they must but never commit: services own the unit of work."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm_bridge.models import (
    Call,
    CallbackTask,
    Customer,
    Invoice,
    Order,
    OrderLine,
    Phone,
    Product,
    SequenceCounter,
    TimelineEvent,
)

# IN lists stay below SQLite's bound-parameter limit and keep PostgreSQL plans sane.
CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_for(session: AsyncSession) -> Any:
    """Dialect insert with ON CONFLICT support (both backends speak the same syntax)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# --- customers and phones ----------------------------------------------------------------------


async def customers_by_phone(session: AsyncSession, number: str) -> list[tuple[Customer, list[str]]]:
    """Customers owning ``number`` with all their phones, in ONE query (lookup has a tight budget)."""
    matched = aliased(Phone)
    every = aliased(Phone)
    stmt = (
        select(Customer, every.number)
        .join(matched, and_(matched.customer_id == Customer.id, matched.number == number))
        .join(every, every.customer_id == Customer.id)
        .order_by(Customer.customer_id, every.id)
    )
    found: dict[int, tuple[Customer, list[str]]] = {}
    for customer, phone in (await session.execute(stmt)).all():
        found.setdefault(customer.id, (customer, []))[1].append(phone)
    return list(found.values())


async def customer_by_external_id(session: AsyncSession, customer_id: str) -> Customer | None:
    return (await session.execute(select(Customer).where(Customer.customer_id == customer_id))).scalar()


async def customers_by_external_ids(session: AsyncSession, ids: Sequence[str]) -> dict[str, Customer]:
    out: dict[str, Customer] = {}
    for part in chunks(sorted(set(ids))):
        rows = await session.execute(select(Customer).where(Customer.customer_id.in_(part)))
        out.update({c.customer_id: c for c in rows.scalars()})
    return out


async def phones_of(session: AsyncSession, customer_pks: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for part in chunks(sorted(set(customer_pks))):
        stmt = select(Phone.customer_id, Phone.number).where(Phone.customer_id.in_(part)).order_by(Phone.id)
        for pk, number in (await session.execute(stmt)).all():
            out[pk].append(number)
    return out


async def phone_rows_of(session: AsyncSession, customer_pks: Sequence[int]) -> dict[int, list[Phone]]:
    out: dict[int, list[Phone]] = defaultdict(list)
    for part in chunks(sorted(set(customer_pks))):
        stmt = select(Phone).where(Phone.customer_id.in_(part)).order_by(Phone.id)
        for phone in (await session.execute(stmt)).scalars():
            out[phone.customer_id].append(phone)
    return out


# --- products ----------------------------------------------------------------------------------


async def products_by_sku(session: AsyncSession, skus: Sequence[str]) -> dict[str, Product]:
    out: dict[str, Product] = {}
    for part in chunks(sorted(set(skus))):
        rows = await session.execute(select(Product).where(Product.sku.in_(part)))
        out.update({p.sku: p for p in rows.scalars()})
    return out


async def all_products(session: AsyncSession, *, active_only: bool) -> list[Product]:
    stmt = select(Product).order_by(Product.sku)
    if active_only:
        stmt = stmt.where(Product.active.is_(True))
    return list((await session.execute(stmt)).scalars())


# --- orders and invoices -----------------------------------------------------------------------


async def last_order_of(
    session: AsyncSession, customer_pk: int
) -> tuple[Order, Invoice | None, list[tuple[OrderLine, Product | None]]] | None:
    """Newest order with its invoice, lines and the lines' current products, in ONE query."""
    newest = (
        select(Order.id)
        .where(Order.customer_id == customer_pk)
        .order_by(Order.ordered_at.desc(), Order.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        select(Order, Invoice, OrderLine, Product)
        .outerjoin(Invoice, Invoice.order_id == Order.id)
        .outerjoin(OrderLine, OrderLine.order_id == Order.id)
        .outerjoin(Product, Product.sku == OrderLine.sku)
        .where(Order.id == newest)
        .order_by(OrderLine.line_no)
    )
    rows = (await session.execute(stmt)).all()
    if not rows:
        return None
    order, invoice = rows[0][0], rows[0][1]
    lines = [(line, product) for _, _, line, product in rows if line is not None]
    return order, invoice, lines


async def orders_of_customer(session: AsyncSession, customer_pk: int) -> list[tuple[Order, Invoice | None]]:
    stmt = (
        select(Order, Invoice)
        .outerjoin(Invoice, Invoice.order_id == Order.id)
        .where(Order.customer_id == customer_pk)
        .order_by(Order.ordered_at.desc(), Order.id.desc())
    )
    return [(o, i) for o, i in (await session.execute(stmt)).all()]


async def lines_of_orders(session: AsyncSession, order_pks: Sequence[int]) -> dict[int, list[OrderLine]]:
    out: dict[int, list[OrderLine]] = defaultdict(list)
    for part in chunks(sorted(set(order_pks))):
        stmt = select(OrderLine).where(OrderLine.order_id.in_(part)).order_by(OrderLine.line_no)
        for line in (await session.execute(stmt)).scalars():
            out[line.order_id].append(line)
    return out


async def order_by_idempotency_key(
    session: AsyncSession, key: str
) -> tuple[Order, Invoice | None, str] | None:
    """The order placed under ``key`` with its invoice and its customer's external id."""
    stmt = (
        select(Order, Invoice, Customer.customer_id)
        .join(Customer, Customer.id == Order.customer_id)
        .outerjoin(Invoice, Invoice.order_id == Order.id)
        .where(Order.idempotency_key == key)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1], row[2])


async def orders_by_external_ids(session: AsyncSession, ids: Sequence[str]) -> dict[str, Order]:
    out: dict[str, Order] = {}
    for part in chunks(sorted(set(ids))):
        rows = await session.execute(select(Order).where(Order.order_id.in_(part)))
        out.update({o.order_id: o for o in rows.scalars()})
    return out


async def next_sequence_value(session: AsyncSession, name: str) -> int:
    """Atomically take the next value of counter ``name``.

    ``UPDATE … RETURNING`` locks the counter row until the transaction ends, so numbers are unique
    and gapless (a rolled-back order gives its number back). Works on SQLite ≥ 3.35 and PostgreSQL.
    """
    bump = (
        update(SequenceCounter)
        .where(SequenceCounter.name == name)
        .values(value=SequenceCounter.value + 1)
        .returning(SequenceCounter.value)
    )
    value = (await session.execute(bump)).scalar()
    if value is None:  # counter not seeded (schema made without migrations): create it, then bump
        ins = _insert_for(session)(SequenceCounter).values(name=name, value=0)
        await session.execute(ins.on_conflict_do_nothing(index_elements=["name"]))
        value = (await session.execute(bump)).scalar_one()
    return int(value)


# --- calls and timeline ------------------------------------------------------------------------


def customer_pk_subquery(customer_id: str | None) -> Any:
    """Internal key of an external customer id as a scalar subquery (NULL when unknown or None)."""
    if customer_id is None:
        return None
    return select(Customer.id).where(Customer.customer_id == customer_id).scalar_subquery()


async def insert_call_if_absent(session: AsyncSession, values: dict[str, Any]) -> bool:
    stmt = (
        _insert_for(session)(Call)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["call_id"])
        .returning(Call.call_id)
    )
    return (await session.execute(stmt)).first() is not None


async def update_call(session: AsyncSession, call_id: str, values: dict[str, Any]) -> bool:
    result = await session.execute(
        update(Call).where(Call.call_id == call_id).values(**values).returning(Call.call_id)
    )
    return result.first() is not None


async def insert_timeline_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(TimelineEvent), rows)


async def calls_page(session: AsyncSession, limit: int, offset: int) -> list[tuple[Call, str | None]]:
    stmt = (
        select(Call, Customer.customer_id)
        .outerjoin(Customer, Customer.id == Call.customer_id)
        .order_by(Call.started_at.desc(), Call.call_id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [(c, cid) for c, cid in (await session.execute(stmt)).all()]


async def call_by_id(session: AsyncSession, call_id: str) -> tuple[Call, str | None] | None:
    stmt = (
        select(Call, Customer.customer_id)
        .outerjoin(Customer, Customer.id == Call.customer_id)
        .where(Call.call_id == call_id)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def timeline_of_call(session: AsyncSession, call_id: str) -> list[TimelineEvent]:
    stmt = select(TimelineEvent).where(TimelineEvent.call_id == call_id).order_by(TimelineEvent.id)
    return list((await session.execute(stmt)).scalars())



# --- callback tasks ----------------------------------------------------------------------------


async def open_callback_task_by_key(session: AsyncSession, open_key: str) -> CallbackTask | None:
    """The open task of ``open_key``, locked for update on PostgreSQL (SQLite holds the write lock)."""
    stmt = (
        select(CallbackTask)
        .where(CallbackTask.open_key == open_key, CallbackTask.status == "open")
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar()


async def callback_task_by_id(session: AsyncSession, task_id: int, *, lock: bool = False) -> CallbackTask | None:
    stmt = select(CallbackTask).where(CallbackTask.id == task_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar()


async def callback_tasks_page(
    session: AsyncSession, status: str | None, limit: int, offset: int
) -> list[CallbackTask]:
    stmt = select(CallbackTask).order_by(CallbackTask.due_at, CallbackTask.id).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(CallbackTask.status == status)
    return list((await session.execute(stmt)).scalars())


# --- console: customer search, customer timeline, invoices ---------------------------------------


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def customers_matching_tokens(
    session: AsyncSession, token_patterns: Sequence[Sequence[str]], limit: int
) -> list[Customer]:
    """Customers where EVERY token matches a name part or the customer id.

    ``token_patterns``: per token, the LIKE patterns (already escaped, with ``%``) that may match it;
    callers pass case variants because SQLite's LIKE/lower() fold ASCII only. The result is a
    bounded candidate set: the service re-checks it with a Unicode casefold.
    """
    columns = (Customer.last_name, Customer.first_name, Customer.patronymic, Customer.customer_id)
    stmt = select(Customer)
    for patterns in token_patterns:
        stmt = stmt.where(or_(*(column.like(p, escape="\\") for column in columns for p in patterns)))
    stmt = stmt.order_by(Customer.last_name, Customer.first_name, Customer.customer_id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def customers_with_phone_like(session: AsyncSession, pattern: str, limit: int) -> list[Customer]:
    """Customers owning a phone whose E.164 form matches the LIKE ``pattern`` (escaped)."""
    owners = select(Phone.customer_id).where(Phone.number.like(pattern, escape="\\"))
    stmt = (
        select(Customer)
        .where(Customer.id.in_(owners))
        .order_by(Customer.last_name, Customer.first_name, Customer.customer_id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def timeline_of_customer(
    session: AsyncSession, customer_id: str, customer_pk: int, limit: int
) -> list[TimelineEvent]:
    """The newest ``limit`` events of every call of the customer and of the customer themself.

    A call belongs to the customer when its row says so or when any of its events names them
    (events before identification carry no customer id, the call's later ones do).
    """
    named = select(TimelineEvent.call_id).where(
        TimelineEvent.customer_id == customer_id, TimelineEvent.call_id.is_not(None)
    )
    owned = select(Call.call_id).where(Call.customer_id == customer_pk)
    stmt = (
        select(TimelineEvent)
        .where(
            or_(
                TimelineEvent.customer_id == customer_id,
                TimelineEvent.call_id.in_(named),
                TimelineEvent.call_id.in_(owned),
            )
        )
        .order_by(TimelineEvent.at.desc(), TimelineEvent.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def calls_of_customer(session: AsyncSession, customer_pk: int, limit: int) -> list[Call]:
    stmt = (
        select(Call)
        .where(Call.customer_id == customer_pk)
        .order_by(Call.started_at.desc(), Call.call_id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def invoice_by_number(session: AsyncSession, number: str) -> tuple[Invoice, Order, Customer] | None:
    stmt = (
        select(Invoice, Order, Customer)
        .join(Order, Order.id == Invoice.order_id)
        .join(Customer, Customer.id == Order.customer_id)
        .where(Invoice.number == number)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1], row[2])
