"""Queries over an AsyncSession or AsyncConnection. They flush when they must but never commit: services
own the unit of work.

The call's hot path (caller lookup, placing an order) is Core over an ``AsyncConnection``: statements
built once at import, executed with parameters, so SQLAlchemy's compiled cache and asyncpg's
per-connection prepared statements are hit on every call and no ORM objects are built.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ARRAY, Row, String, and_, any_, bindparam, delete, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from crm_bridge.contract.events import EventKind
from crm_bridge.deals import CURRENCY
from crm_bridge.models import (
    INVOICE_NUMBER_SEQUENCE,
    ORDER_NUMBER_SEQUENCE,
    Call,
    CallbackTask,
    Customer,
    Deal,
    Invoice,
    Order,
    OrderLine,
    Phone,
    Product,
    SequenceCounter,
    TimelineEvent,
    UtcDateTime,
)
from crm_bridge.pg_direct import DirectStatement

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


# --- the call's hot path: Core statements --------------------------------------------------------

_customers = Customer.__table__
_phones = Phone.__table__
_orders = Order.__table__
_lines = OrderLine.__table__
_invoices = Invoice.__table__
_products = Product.__table__
_counters = SequenceCounter.__table__
_deals = Deal.__table__
_timeline = TimelineEvent.__table__


def _order_invoice_line_columns() -> tuple[Any, ...]:
    """An order with its invoice and one of its lines: the columns both hot-path reads return."""
    return (
        _orders.c.order_id,
        _orders.c.ordered_at,
        _orders.c.source,
        _orders.c.call_id,
        _orders.c.delivery_date,
        _orders.c.total.label("order_total"),
        _invoices.c.number.label("invoice_number"),
        _invoices.c.issued_at,
        _invoices.c.subtotal,
        _invoices.c.vat_rate,
        _invoices.c.vat_amount,
        _invoices.c.total.label("invoice_total"),
        _lines.c.line_no,
        _lines.c.sku,
        _lines.c.quantity,
        _lines.c.unit_price,
        _lines.c.amount,
        _lines.c.unit,
        _lines.c.name,
        _lines.c.unit_en,
        _lines.c.name_en,
    )


def _caller_statement() -> Any:
    """Phone -> owners, each with all their phones and their newest order (invoice, lines, products).

    One flat row per (owner, phone, line): the caller's few phones times the last order's few lines.
    The newest order is a correlated ``LIMIT 1`` over ``ix_orders_customer_id_ordered_at_id``, the owners
    come from ``ix_phones_number`` (see bench/lookup_1m.py for the plan at 1M customers / 5M orders).
    Shared numbers also get their owners' last orders: they are rare and go to an operator anyway,
    and one statement for every case keeps the lookup at one round trip.
    """
    matched = _phones.alias("matched")
    phone = _phones.alias("phone")
    newest = _orders.alias("newest")
    last_order_pk = (
        select(newest.c.id)
        # A cancelled order is not "your last order" (the robot would offer to repeat it).
        .where(newest.c.customer_id == _customers.c.id, newest.c.status != "cancelled")
        .order_by(newest.c.ordered_at.desc(), newest.c.id.desc())
        .limit(1)
        .correlate(_customers)
        .scalar_subquery()
    )
    return (
        select(
            _customers.c.id.label("customer_pk"),
            _customers.c.customer_id,
            _customers.c.last_name,
            _customers.c.first_name,
            _customers.c.patronymic,
            _customers.c.language,
            _customers.c.address,
            phone.c.id.label("phone_pk"),
            phone.c.number.label("phone"),
            *_order_invoice_line_columns(),
            _products.c.id.label("product_pk"),
            _products.c.unit.label("product_unit"),
            _products.c.name.label("product_name"),
            _products.c.unit_en.label("product_unit_en"),
            _products.c.name_en.label("product_name_en"),
        )
        .select_from(
            matched.join(_customers, _customers.c.id == matched.c.customer_id)
            .join(phone, phone.c.customer_id == _customers.c.id)
            .outerjoin(_orders, _orders.c.id == last_order_pk)
            .outerjoin(_invoices, _invoices.c.order_id == _orders.c.id)
            .outerjoin(_lines, _lines.c.order_id == _orders.c.id)
            .outerjoin(_products, _products.c.sku == _lines.c.sku)
        )
        .where(matched.c.number == bindparam("number"))
        .order_by(_customers.c.customer_id, phone.c.id, _lines.c.line_no)
    )


CALLER_BY_PHONE = _caller_statement()
_CALLER_BY_PHONE_PG = DirectStatement(CALLER_BY_PHONE)


async def caller_rows(conn: AsyncConnection, number: str) -> Sequence[Row[Any]]:
    """Rows of ``CALLER_BY_PHONE`` for an E.164 ``number`` (empty: nobody owns it)."""
    if conn.dialect.name == "postgresql":  # the call path: straight on asyncpg (crm_bridge.pg_direct)
        return await _CALLER_BY_PHONE_PG.fetch(conn, {"number": number})
    return (await conn.execute(CALLER_BY_PHONE, {"number": number})).all()


def _order_inputs_statement(*, pg: bool) -> Any:
    """What placing an order needs to know, in one statement: the customer's key, whether the
    idempotency key was already used, and the wanted products (a one-row header LEFT JOIN products,
    so an unknown customer or product still returns the header).

    PostgreSQL takes the skus as one array (``= ANY``): the SQL text is the same for any number of
    lines, so it is prepared once per connection; SQLite gets an expanding ``IN`` list.
    """
    header = select(
        select(_customers.c.id)
        .where(_customers.c.customer_id == bindparam("customer_id"))
        .scalar_subquery()
        .label("customer_pk"),
        select(_orders.c.id)
        .where(_orders.c.idempotency_key == bindparam("key"))
        .scalar_subquery()
        .label("existing_pk"),
    ).subquery("wanted")
    if pg:
        wanted_sku = _products.c.sku == any_(bindparam("skus", type_=ARRAY(String)))
    else:
        wanted_sku = _products.c.sku.in_(bindparam("skus", expanding=True))
    return select(
        header.c.customer_pk,
        header.c.existing_pk,
        _products.c.sku,
        _products.c.price,
        _products.c.unit,
        _products.c.name,
        _products.c.unit_en,
        _products.c.name_en,
        _products.c.active,
    ).select_from(header.outerjoin(_products, wanted_sku))


ORDER_INPUTS = {
    "postgresql": _order_inputs_statement(pg=True),
    "sqlite": _order_inputs_statement(pg=False),
}
_ORDER_INPUTS_PG = DirectStatement(ORDER_INPUTS["postgresql"])


async def order_inputs(
    conn: AsyncConnection, customer_id: str, key: str, skus: Sequence[str]
) -> tuple[int | None, int | None, dict[str, Row[Any]]]:
    """(customer pk or None, pk of the order already placed under ``key`` or None, products by sku)."""
    params = {"customer_id": customer_id, "key": key, "skus": sorted(set(skus))}
    if conn.dialect.name == "postgresql":
        rows = await _ORDER_INPUTS_PG.fetch(conn, params)
    else:
        rows = (await conn.execute(ORDER_INPUTS[conn.dialect.name], params)).all()
    products = {row.sku: row for row in rows if row.sku is not None}
    return rows[0].customer_pk, rows[0].existing_pk, products


def _placed_order_statement() -> Any:
    return (
        select(
            _customers.c.customer_id,
            *_order_invoice_line_columns(),
        )
        .select_from(
            _orders.join(_customers, _customers.c.id == _orders.c.customer_id)
            .outerjoin(_invoices, _invoices.c.order_id == _orders.c.id)
            .outerjoin(_lines, _lines.c.order_id == _orders.c.id)
        )
        .where(_orders.c.idempotency_key == bindparam("key"))
        .order_by(_lines.c.line_no)
    )


PLACED_ORDER_BY_KEY = _placed_order_statement()


_PLACED_ORDER_BY_KEY_PG = DirectStatement(PLACED_ORDER_BY_KEY)


async def placed_order_rows(conn: AsyncConnection, key: str) -> Sequence[Row[Any]]:
    """The order placed under idempotency ``key``: one row per line (empty: no such order)."""
    if conn.dialect.name == "postgresql":
        return await _PLACED_ORDER_BY_KEY_PG.fetch(conn, {"key": key})
    return (await conn.execute(PLACED_ORDER_BY_KEY, {"key": key})).all()


# PostgreSQL: order, lines, invoice, its deal and the deal's deal.created event in ONE autocommit
# statement (one round trip, one implicit transaction, no lock held across an event-loop wait; the
# deal is two more CTEs, no more round trips). Numbers come from sequences, taken only when
# the order row is really inserted: the NOT EXISTS guard skips nextval for a key already committed,
# and the invoice's nextval runs only for the inserted order. ON CONFLICT DO NOTHING (no target)
# settles both a concurrent duplicate key (it waits for the other insert, then inserts nothing) and a
# generated number an import already took (nothing inserted; the service moves the sequence on).
PLACE_ORDER_PG = text(
    f"""
WITH new_order AS (
    INSERT INTO orders (order_id, customer_id, ordered_at, source, idempotency_key, call_id,
                        delivery_date, total)
    SELECT CAST(:order_prefix AS text) || nextval('{ORDER_NUMBER_SEQUENCE.name}'), CAST(:customer_pk AS integer),
           CAST(:ordered_at AS timestamptz), CAST(:source AS text), CAST(:key AS text), CAST(:call_id AS text),
           CAST(:delivery_date AS date), CAST(:total AS numeric)
    WHERE NOT EXISTS (SELECT 1 FROM orders WHERE idempotency_key = CAST(:key AS text))
    ON CONFLICT DO NOTHING
    RETURNING id, order_id
), new_lines AS (
    INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, unit, name, unit_en, name_en)
    SELECT new_order.id, line.no, line.sku, line.quantity, line.unit_price, line.amount, line.unit, line.name,
           line.unit_en, line.name_en
    FROM new_order, unnest(CAST(:skus AS text[]), CAST(:quantities AS integer[]),
                           CAST(:unit_prices AS numeric[]), CAST(:amounts AS numeric[]),
                           CAST(:units AS text[]), CAST(:names AS text[]),
                           CAST(:units_en AS text[]), CAST(:names_en AS text[]))
         WITH ORDINALITY AS line(sku, quantity, unit_price, amount, unit, name, unit_en, name_en, no)
), new_invoice AS (
    INSERT INTO invoices (number, order_id, issued_at, subtotal, vat_rate, vat_amount, total)
    SELECT CAST(:invoice_prefix AS text) || nextval('{INVOICE_NUMBER_SEQUENCE.name}'), new_order.id,
           CAST(:ordered_at AS timestamptz), CAST(:subtotal AS numeric), CAST(:vat_rate AS numeric),
           CAST(:vat_amount AS numeric), CAST(:payable AS numeric)
    FROM new_order
    RETURNING number
), new_deal AS (
    INSERT INTO deals (customer_id, title, stage, owner, amount, currency, order_id, created_at, updated_at)
    SELECT CAST(:customer_pk AS integer), 'Заказ ' || new_order.order_id, CAST(:deal_stage AS text),
           CAST(:owner AS text), CAST(:payable AS numeric), '{CURRENCY}', new_order.id,
           CAST(:ordered_at AS timestamptz), CAST(:ordered_at AS timestamptz)
    FROM new_order
    RETURNING id
), deal_created AS (
    INSERT INTO timeline_events (at, customer_id, kind, data, deal_id)
    SELECT CAST(:ordered_at AS timestamptz), CAST(:customer_id AS text),
           '{EventKind.DEAL_CREATED.value}',
           json_build_object('deal_id', new_deal.id, 'order_id', new_order.order_id,
                             'stage', CAST(:deal_stage AS text), 'amount', CAST(CAST(:payable AS numeric) AS text),
                             'source', CAST(:source AS text), 'by', CAST(:owner AS text)),
           new_deal.id
    FROM new_order, new_deal
)
SELECT new_order.order_id, new_invoice.number, new_deal.id FROM new_order, new_invoice, new_deal
"""
).bindparams(bindparam("ordered_at", type_=UtcDateTime))


_PLACE_ORDER_PG_DIRECT = DirectStatement(PLACE_ORDER_PG)


async def insert_order_pg(conn: AsyncConnection, params: dict[str, Any]) -> tuple[str, str, int] | None:
    """Run ``PLACE_ORDER_PG``; (order number, invoice number, deal id), or None when nothing was inserted."""
    rows = await _PLACE_ORDER_PG_DIRECT.fetch(conn, params)
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


# After an import took a generated number: move the order sequence past every number of the form
# <prefix><digits> already in the table (rare; a scan of orders is fine then).
SKIP_IMPORTED_ORDER_NUMBERS_PG = text(
    f"""
SELECT setval('{ORDER_NUMBER_SEQUENCE.name}', GREATEST(
    (SELECT last_value FROM {ORDER_NUMBER_SEQUENCE.name}),
    (SELECT max(CAST(substr(order_id, CAST(:start AS integer)) AS bigint)) FROM orders
      WHERE order_id LIKE CAST(:pattern AS text) ESCAPE '\\'
        AND substr(order_id, CAST(:start AS integer)) ~ '^[0-9]{{1,18}}$')))
"""
)


async def skip_imported_order_numbers_pg(conn: AsyncConnection, prefix: str) -> None:
    await conn.execute(SKIP_IMPORTED_ORDER_NUMBERS_PG, {"start": len(prefix) + 1, "pattern": f"{like_escape(prefix)}%"})


# --- SQLite: the counter table, inside the BEGIN IMMEDIATE write transaction ----------------------

_BUMP_COUNTER = (
    update(_counters)
    .where(_counters.c.name == bindparam("counter"))
    .values(value=_counters.c.value + 1)
    .returning(_counters.c.value)
)


async def next_counter_value(conn: AsyncConnection, name: str) -> int:
    """Take the next value of counter ``name`` (SQLite: gapless, the write lock is already held).

    A database made without migrations has no counter rows: the first use creates it at 0.
    """
    value = (await conn.execute(_BUMP_COUNTER, {"counter": name})).scalar()
    if value is None:
        await conn.execute(sqlite.insert(_counters).values(name=name, value=0).on_conflict_do_nothing())
        value = (await conn.execute(_BUMP_COUNTER, {"counter": name})).scalar_one()
    return int(value)


_ORDER_NUMBER_TAKEN = select(_orders.c.id).where(_orders.c.order_id == bindparam("order_id"))
_INSERT_ORDER = insert(_orders).returning(_orders.c.id)


async def order_number_taken(conn: AsyncConnection, order_id: str) -> bool:
    return (await conn.execute(_ORDER_NUMBER_TAKEN, {"order_id": order_id})).first() is not None


_INSERT_DEAL = insert(_deals).returning(_deals.c.id)


async def insert_order_rows(
    conn: AsyncConnection, order: dict[str, Any], lines: list[dict[str, Any]], invoice: dict[str, Any],
    deal: dict[str, Any], deal_event: dict[str, Any],
) -> int:
    """Insert an order, its lines, its invoice, its deal and the deal's event (the ``order_id`` and
    ``deal_id`` keys are filled in); returns the deal's id."""
    order_pk = (await conn.execute(_INSERT_ORDER, order)).scalar_one()
    await conn.execute(insert(_lines), [{**line, "order_id": order_pk} for line in lines])
    await conn.execute(insert(_invoices), {**invoice, "order_id": order_pk})
    deal_pk = int((await conn.execute(_INSERT_DEAL, {**deal, "order_id": order_pk})).scalar_one())
    event = {**deal_event, "deal_id": deal_pk, "data": {"deal_id": deal_pk, **deal_event["data"]}}
    await conn.execute(insert(_timeline), event)
    return deal_pk

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


# --- console corrections: customers, phones, orders (issue 10) ----------------------------------


async def next_counter(session: AsyncSession, name: str) -> int:
    """Take the next value of counter ``name`` in the ``sequences`` table, on either backend (console
    rate: the row lock of the UPDATE serializes concurrent takers on PostgreSQL, the write lock on
    SQLite). A missing row starts at 0."""
    bump = update(_counters).where(_counters.c.name == name).values(value=_counters.c.value + 1).returning(
        _counters.c.value
    )
    value = (await session.execute(bump)).scalar()
    if value is None:
        await session.execute(_insert_for(session)(_counters).values(name=name, value=0).on_conflict_do_nothing())
        value = (await session.execute(bump)).scalar_one()
    return int(value)


async def customer_id_taken(session: AsyncSession, customer_id: str) -> bool:
    stmt = select(Customer.id).where(Customer.customer_id == customer_id)
    return (await session.execute(stmt)).first() is not None


async def owners_of_phone(session: AsyncSession, number: str) -> list[str]:
    """External ids of the customers owning ``number`` (E.164)."""
    stmt = (
        select(Customer.customer_id)
        .join(Phone, Phone.customer_id == Customer.id)
        .where(Phone.number == number)
        .order_by(Customer.customer_id)
    )
    return list((await session.execute(stmt)).scalars())


async def order_for_change(session: AsyncSession, order_id: str) -> tuple[Order, Invoice | None, str] | None:
    """An order by its number with its invoice and its customer's external id, the order row locked
    for update on PostgreSQL (SQLite: the unit of work holds the write lock)."""
    stmt = (
        select(Order, Invoice, Customer.customer_id)
        .join(Customer, Customer.id == Order.customer_id)
        .outerjoin(Invoice, Invoice.order_id == Order.id)
        .where(Order.order_id == order_id)
        .with_for_update(of=Order)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1], row[2])


async def replace_order_lines(session: AsyncSession, order_pk: int, lines: Sequence[dict[str, Any]]) -> None:
    """The order's lines become ``lines`` (column values without order_id and line_no)."""
    await session.execute(delete(OrderLine).where(OrderLine.order_id == order_pk))
    if lines:
        await session.execute(
            insert(OrderLine), [{**line, "order_id": order_pk, "line_no": no} for no, line in enumerate(lines, 1)]
        )


async def recent_orders_of_customer(session: AsyncSession, customer_pk: int, since: Any) -> list[Order]:
    """The customer's orders placed at or after ``since`` and not cancelled, newest first."""
    stmt = (
        select(Order)
        .where(Order.customer_id == customer_pk, Order.ordered_at >= since, Order.status != "cancelled")
        .order_by(Order.ordered_at.desc(), Order.id.desc())
    )
    return list((await session.execute(stmt)).scalars())


def add_event(session: AsyncSession, event: TimelineEvent) -> None:
    """A timeline row written in the caller's unit of work (the change and its record commit together)."""
    session.add(event)
