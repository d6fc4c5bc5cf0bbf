"""Upsert order history by external order_id: rows sharing an order_id are one order's lines.

History orders get no invoice and no delivery date; their lines snapshot the catalogue wording at
import time. An order is loaded whole or not at all: a bad line would make the IVR read back a
wrong "last order".

Every order gets its deal (crm_bridge.deals) in the file's transaction: at the optional ``stage``
column's stage (a code or a display name of ``[deals] stages``), else the pipeline's first. A stage
the pipeline lacks is a row error, and the order still loads (its deal keeps or gets the first
stage): the stage is not what the robot reads back. A re-import moving a deal to another stage
writes a ``deal.stage_changed`` event by "import".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge import repositories as repo
from crm_bridge.deals import Pipeline, deals_of_orders, upsert_order_deal
from crm_bridge.importers import cells
from crm_bridge.importers.bounds import fit, fit_money
from crm_bridge.importers.report import ImportReport
from crm_bridge.importers.tabular import Table
from crm_bridge.models import Customer, Deal, Order, OrderLine, Product, utcnow
from crm_bridge.money import money


@dataclass
class _Line:
    line: int
    sku: str
    quantity: int
    price: Decimal | None  # None: today's catalogue price (or the price already stored)


@dataclass
class _Order:
    order_id: str
    customer_id: str
    ordered_at: datetime
    first_line: int
    lines: list[_Line] = field(default_factory=list)
    broken: bool = False
    stage: str | None = None  # a pipeline code; None: not given (or not understood)


async def load(session: AsyncSession, table: Table, report: ImportReport, zone: ZoneInfo,
               pipeline: Pipeline | None = None) -> None:
    pipeline = pipeline or Pipeline()
    orders = _group(table, report, zone, pipeline)
    customers = await repo.customers_by_external_ids(session, [o.customer_id for o in orders.values()])
    products = await repo.products_by_sku(session, [ln.sku for o in orders.values() for ln in o.lines])
    existing = await repo.orders_by_external_ids(session, list(orders))
    stored_lines = await repo.lines_of_orders(session, [o.id for o in existing.values()])
    deals = await deals_of_orders(session, [o.id for o in existing.values()])  # one query per 500, not per order

    for order in orders.values():
        for ln in order.lines:
            if ln.sku not in products:
                report.error(table.file, ln.line, f"unknown sku {ln.sku!r}")
                order.broken = True
        if order.customer_id not in customers:
            report.error(table.file, order.first_line, f"unknown customer {order.customer_id!r}")
            order.broken = True
        row = existing.get(order.order_id)
        if row is not None and row.source != "import":
            report.error(table.file, order.first_line,
                         f"order_id {order.order_id!r} belongs to an order placed by {row.source}")
            order.broken = True
        if order.broken:
            continue
        customer_pk = customers[order.customer_id].id
        stored = stored_lines.get(row.id, []) if row is not None else []
        if row is not None and _same(row, stored, order, customer_pk):
            if await _deal_for(session, row, order, pipeline, deals.get(row.id)):
                report.updated += 1
            else:
                report.unchanged += 1
            continue
        # Re-importing after a price change must not rewrite history: an unchanged (sku, quantity)
        # without a price in the file keeps the price already stored.
        lines = _build_lines(order, products, {(ln.sku, ln.quantity): ln.unit_price for ln in stored})
        if not _amounts_fit(table.file, order, lines, report):
            continue
        if row is None:
            row = await _create(session, order, customer_pk, lines)
            report.created += 1
        else:
            await _replace(session, row, order, customer_pk, lines)
            report.updated += 1
        await _deal_for(session, row, order, pipeline, deals.get(row.id))
    await session.flush()


def _amounts_fit(file: str, order: _Order, lines: list[OrderLine], report: ImportReport) -> bool:
    """Line amounts and the total must fit the Money columns; else the order is reported, not loaded."""
    fits = True
    for source, built in zip(order.lines, lines, strict=True):
        try:
            fit_money(built.amount, "line amount")
        except ValueError as exc:
            report.error(file, source.line, str(exc))
            fits = False
    if fits:
        try:
            fit_money(sum((ln.amount for ln in lines), Decimal(0)), f"order {order.order_id!r} total")
        except ValueError as exc:
            report.error(file, order.first_line, str(exc))
            fits = False
    return fits


def _group(table: Table, report: ImportReport, zone: ZoneInfo, pipeline: Pipeline) -> dict[str, _Order]:
    orders: dict[str, _Order] = {}
    bad_lines: dict[str, list[int]] = {}
    for row in table.rows:
        v = row.values
        order_id = cells.text(v.get("order_id"))
        if not order_id:
            report.error(table.file, row.line, "missing order_id")
            continue
        try:
            fit(order_id, Order.order_id)
        except ValueError as exc:  # no usable key to group this line's order by
            report.error(table.file, row.line, str(exc))
            continue
        try:
            customer_id = fit(cells.text(v.get("customer_id")), Customer.customer_id)
            if not customer_id:
                raise ValueError("missing customer_id")
            ordered_at = cells.moment(v.get("ordered_at"), zone)
            sku = fit(cells.text(v.get("sku")), OrderLine.sku)
            if not sku:
                raise ValueError("missing sku")
            qty = cells.quantity(v.get("quantity"))
            raw_price = v.get("price")
            line_price = None if cells.text(raw_price) == "" else cells.price(raw_price)
        except ValueError as exc:
            report.error(table.file, row.line, str(exc))
            bad_lines.setdefault(order_id, []).append(row.line)
            continue
        order = orders.setdefault(order_id, _Order(order_id, customer_id, ordered_at, row.line))
        if (order.customer_id, order.ordered_at) != (customer_id, ordered_at):
            report.error(table.file, row.line,
                         f"order {order_id!r}: customer or date differs from line {order.first_line}")
            order.broken = True
            continue
        order.lines.append(_Line(row.line, sku, qty, line_price))
        stage_cell = cells.text(v.get("stage"))
        if stage_cell:
            stage = _stage(stage_cell, pipeline)
            if stage is None:
                report.error(table.file, row.line, f"order {order_id!r}: unknown deal stage {stage_cell!r} "
                             f"(one of {', '.join(pipeline.codes)}); the order is loaded, "
                             "its deal's stage not taken from the file")
            elif order.stage is not None and order.stage != stage:
                report.error(table.file, row.line, f"order {order_id!r}: deal stage {stage_cell!r} differs from "
                             f"an earlier line's {order.stage!r}; the first is kept")
            else:
                order.stage = stage
    for order_id, lines in bad_lines.items():
        order = orders.get(order_id)
        if order is not None and not order.broken:
            order.broken = True
            at = ", ".join(str(n) for n in lines)
            report.error(table.file, order.first_line, f"order {order_id!r} not loaded: invalid line(s) {at}")
    return orders


def _same(row: Order, stored: list[OrderLine], order: _Order, customer_pk: int) -> bool:
    if (row.customer_id, row.ordered_at) != (customer_pk, order.ordered_at) or len(stored) != len(order.lines):
        return False
    return all(
        (old.sku, old.quantity) == (new.sku, new.quantity) and new.price in (None, old.unit_price)
        for old, new in zip(stored, order.lines, strict=True)
    )


async def _create(session: AsyncSession, order: _Order, customer_pk: int, lines: list[OrderLine]) -> Order:
    row = Order(order_id=order.order_id, customer_id=customer_pk, ordered_at=order.ordered_at, source="import",
                total=sum((ln.amount for ln in lines), Decimal(0)))
    session.add(row)
    await session.flush()
    for ln in lines:
        ln.order_id = row.id
    session.add_all(lines)
    return row


async def _replace(session: AsyncSession, row: Order, order: _Order, customer_pk: int,
                   lines: list[OrderLine]) -> None:
    await session.execute(delete(OrderLine).where(OrderLine.order_id == row.id))
    row.customer_id = customer_pk
    row.ordered_at = order.ordered_at
    row.total = sum((ln.amount for ln in lines), Decimal(0))
    for ln in lines:
        ln.order_id = row.id
    session.add_all(lines)


def _build_lines(order: _Order, products: dict[str, Product],
                 kept: dict[tuple[str, int], Decimal]) -> list[OrderLine]:
    out = []
    for no, ln in enumerate(order.lines, start=1):
        product = products[ln.sku]
        unit_price = ln.price if ln.price is not None else kept.get((ln.sku, ln.quantity), product.price)
        out.append(OrderLine(line_no=no, sku=ln.sku, quantity=ln.quantity, unit_price=unit_price,
                             amount=money(unit_price * ln.quantity), unit=product.unit, name=product.name,
                             unit_en=product.unit_en, name_en=product.name_en))
    return out


def _stage(cell: str, pipeline: Pipeline) -> str | None:
    """A stage code from a cell holding the code or the display name (any case, ё as е)."""
    wanted = cell.strip().casefold().replace("ё", "е")
    for code, name in pipeline.stages:
        if wanted in (code, name.casefold().replace("ё", "е")):
            return code
    return None


async def _deal_for(session: AsyncSession, row: Order, order: _Order, pipeline: Pipeline, deal: Deal | None) -> bool:
    """The order's deal made or brought up to date (``deals.upsert_order_deal``); True when an
    existing deal changed."""
    customer = await session.get(Customer, row.customer_id)  # loaded with the file's customers: no query
    return await upsert_order_deal(session, row, customer.customer_id if customer is not None else None, pipeline,
                                   deal=deal, stage=order.stage, by="import", now=utcnow())
