"""The sync's units of work: one page of one entity written with its cursor, in one transaction.

A page either lands whole, its cursor moved past it, or not at all: a run killed between two pages
resumes at the next page, and a run killed inside one repeats that page (every write is an upsert
keyed by the CRM's id through ``external_refs``, so repeating a page changes nothing).

Rules of the mapping into the store (crm_bridge/README.md, "Pull from a CRM"):

- **Contacts → customers** ``<prefix><id>`` (``B24-17``). The CRM owns the name and the phones of
  a customer it created: they follow it. A phone another customer already owns is not attached
  and is reported: the robot hands a shared number to an operator, so attaching it would stop the
  other customer's greeting.
- **Products**: a CRM product whose code is one of our skus *is* that product (its price and
  "on sale" follow the CRM); else a product ``<prefix>P<id>`` is made. Once a product exists its
  wording (unit, name: what the robot says, in the genitive) is ours to edit, not the CRM's.
- **Deals → orders** ``<prefix>D<id>`` (source ``bitrix24``/``amocrm``, no invoice, like history).
  A deal is taken whole or not at all (an unknown product in one row refuses it: the robot must not
  read back part of an order). A lost deal is a cancelled order. An order of ours a CRM deal points
  to (pushed by the outbox: source ``ivr``/``operator``) is ours, left as it is.
- **Each pulled order has its deal** in our store (``crm_bridge.deals.upsert_order_deal``, as imports
  do), in the page's transaction: a new one at the pipeline's first stage (where imports put an
  order), or its ``cancelled`` stage for a lost CRM deal. A later change brings the deal's amount up
  to date, moves it to ``cancelled`` when the CRM deal is lost, and back to the first stage when a
  manager reopens it; otherwise an operator's stage moves here stay (the CRM's own stages are not
  ours: the pipelines need not match). Those moves are ``deal.stage_changed`` events by the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge import repositories as repo
from crm_bridge.db import sqlite_writer_lock, write_session
from crm_bridge.deals import Pipeline, deals_of_orders, upsert_order_deal
from crm_bridge.importers.bounds import fit, fit_money, fit_quantity
from crm_bridge.models import Customer, Deal, ExternalRef, Order, OrderLine, Phone, Product, SyncCursor
from crm_bridge.money import money
from crm_bridge.sync.records import Entity, Mapped, MappedCustomer, MappedOrder, MappedProduct, Refusal
from crm_bridge.sync.report import SyncReport

SYNC_SOURCES = frozenset({"bitrix24", "amocrm"})  # orders.source of what a sync wrote
MAX_ERROR = 500


@dataclass(frozen=True)
class CursorView:
    source: str
    entity: str
    since: str | None
    run_since: str | None
    run_mark: str | None
    run_page: str | None
    pages: int
    updated_at: datetime | None
    finished_at: datetime | None
    last_error: str | None

    @property
    def in_progress(self) -> bool:
        """A run stopped between pages (killed, or the CRM failed): the next run continues it."""
        return self.run_page is not None


@dataclass(frozen=True)
class PageWrite:
    """Where the run stands once this page is written."""

    run_since: str | None
    run_mark: str | None
    next_page: str | None  # None: this was the last page: ``since`` becomes ``run_mark``


def _view(row: SyncCursor | None, source: str, entity: str) -> CursorView:
    if row is None:
        return CursorView(source, entity, None, None, None, None, 0, None, None, None)
    return CursorView(row.source, row.entity, row.since, row.run_since, row.run_mark, row.run_page, row.pages,
                      row.updated_at, row.finished_at, row.last_error)


class SyncStore:
    """Owns its transactions (one per method), returns DTOs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], pipeline: Pipeline | None = None) -> None:
        self.sessions = sessions
        self.pipeline = pipeline or Pipeline()  # the store's ``[deals]`` (CrmStore.config.deals)
        self._writer_lock = sqlite_writer_lock(sessions.kw["bind"])

    def _write(self) -> AbstractAsyncContextManager[AsyncSession]:
        return write_session(self.sessions, self._writer_lock)

    async def cursor(self, source: str, entity: str) -> CursorView:
        async with self.sessions() as session:
            return _view(await session.get(SyncCursor, (source, entity)), source, entity)

    async def cursors(self) -> list[CursorView]:
        async with self.sessions() as session:
            rows = (await session.execute(select(SyncCursor).order_by(SyncCursor.source, SyncCursor.entity))).scalars()
            return [_view(r, r.source, r.entity) for r in rows]

    async def refs(self, source: str, entity: str) -> dict[str, str]:
        """external id -> local key (tests, the console)."""
        async with self.sessions() as session:
            rows = await session.execute(select(ExternalRef.external_id, ExternalRef.local_key).where(
                ExternalRef.source == source, ExternalRef.entity == entity))
            return {r.external_id: r.local_key for r in rows}

    async def forget_run(self, source: str, entity: str) -> None:
        """``--full``: the next run reads everything (refs stay: nothing is created twice)."""
        async with self._write() as session:
            row = await session.get(SyncCursor, (source, entity))
            if row is not None:
                row.since = row.run_since = row.run_mark = row.run_page = None
                row.updated_at = datetime.now(UTC)

    async def record_error(self, source: str, entity: str, message: str) -> None:
        async with self._write() as session:
            row = await _cursor_row(session, source, entity)
            row.last_error = message[:MAX_ERROR]
            row.updated_at = datetime.now(UTC)

    async def write_page(self, source: str, prefix: str, entity: Entity, items: Sequence[Mapped | Refusal],
                         report: SyncReport, at: PageWrite) -> None:
        """Write one page's records and move the cursor past it, together. ``report`` is only
        changed once the transaction committed (a failed page leaves no counts behind)."""
        page = SyncReport(source)
        now = datetime.now(UTC)
        async with self._write() as session:
            for item in items:
                if isinstance(item, Refusal):
                    page.issue(entity.value, item.external_id, item.reason)
            mapped = [i for i in items if not isinstance(i, Refusal)]
            if entity == Entity.CONTACT:
                await _contacts(session, source, prefix, [m for m in mapped if isinstance(m, MappedCustomer)],
                                page, now)
            elif entity == Entity.PRODUCT:
                await _products(session, source, prefix, [m for m in mapped if isinstance(m, MappedProduct)],
                                page, now)
            else:
                await _orders(session, source, prefix, [m for m in mapped if isinstance(m, MappedOrder)], page, now,
                              self.pipeline)
            row = await _cursor_row(session, source, entity.value)
            if at.next_page is None:
                row.since = at.run_mark or at.run_since or row.since
                row.run_since = row.run_mark = row.run_page = None
                row.finished_at = now
                row.last_error = None
            else:
                row.run_since, row.run_mark, row.run_page = at.run_since, at.run_mark, at.next_page
            row.pages += 1
            row.updated_at = now
            await session.flush()
        counts, mine = report.of(entity.value), page.of(entity.value)
        counts.created += mine.created
        counts.updated += mine.updated
        counts.unchanged += mine.unchanged
        counts.refused += mine.refused
        report.issues.extend(page.issues)
        report.unattached.extend(page.unattached)

    async def attach_freed(self, report: SyncReport) -> None:
        """Attach the phones a page left unattached whose other owner has since given them up (a number
        that moved from a contact on a later page); their issues leave the report."""
        if not report.unattached:
            return
        async with self._write() as session:
            owners = await _owners(session, {number for _, number, _ in report.unattached})
            customers = await repo.customers_by_external_ids(session, [key for key, _, _ in report.unattached])
            for key, number, issue in list(report.unattached):
                customer = customers.get(key)
                if customer is None or set(owners.get(number, {})) - {customer.id}:
                    continue
                if customer.id not in owners.get(number, {}):
                    session.add(Phone(number=number, customer_id=customer.id))
                    owners.setdefault(number, {})[customer.id] = key
                report.unattached.remove((key, number, issue))
                report.issues.remove(issue)


async def _cursor_row(session: AsyncSession, source: str, entity: str) -> SyncCursor:
    row = await session.get(SyncCursor, (source, entity))
    if row is None:
        row = SyncCursor(source=source, entity=entity, pages=0, updated_at=datetime.now(UTC))
        session.add(row)
    return row


async def _refs(session: AsyncSession, source: str, entity: str, ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in repo.chunks(sorted(set(ids))):
        rows = await session.execute(select(ExternalRef.external_id, ExternalRef.local_key).where(
            ExternalRef.source == source, ExternalRef.entity == entity, ExternalRef.external_id.in_(part)))
        out.update({r.external_id: r.local_key for r in rows})
    return out


def _remember(session: AsyncSession, known: dict[str, str], source: str, entity: str, external_id: str,
              key: str, now: datetime) -> None:
    if external_id not in known:
        session.add(ExternalRef(source=source, entity=entity, external_id=external_id, local_key=key, synced_at=now))
        known[external_id] = key


async def _owners(session: AsyncSession, numbers: set[str]) -> dict[str, dict[int, str]]:
    """number -> {customer pk: customer_id} of everyone who owns it now."""
    out: dict[str, dict[int, str]] = {}
    for part in repo.chunks(sorted(numbers)):
        rows = await session.execute(select(Phone.number, Customer.id, Customer.customer_id)
                                     .join(Customer, Customer.id == Phone.customer_id).where(Phone.number.in_(part)))
        for r in rows:
            out.setdefault(r.number, {})[r.id] = r.customer_id
    return out


def _assign(row: Any, fields: dict[str, Any]) -> bool:
    changed = False
    for name, value in fields.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


async def _contacts(session: AsyncSession, source: str, prefix: str, items: list[MappedCustomer],
                    report: SyncReport, now: datetime) -> None:
    entity = Entity.CONTACT.value
    refs = await _refs(session, source, entity, [m.external_id for m in items])
    keys = {m.external_id: refs.get(m.external_id, f"{prefix}{m.external_id}") for m in items}
    customers = await repo.customers_by_external_ids(session, list(keys.values()))
    phone_rows = await repo.phone_rows_of(session, [c.id for c in customers.values()])
    owners = await _owners(session, {n for m in items for n in m.phones})
    for m in items:
        key = keys[m.external_id]
        try:
            fit(key, Customer.customer_id)
            fields = {"last_name": fit(m.last_name, Customer.last_name),
                      "first_name": fit(m.first_name, Customer.first_name),
                      "patronymic": fit(m.patronymic, Customer.patronymic)}
        except ValueError as exc:
            report.issue(entity, m.external_id, str(exc))
            continue
        customer = customers.get(key)
        created = customer is None
        if customer is None:
            customer = Customer(customer_id=key, address="", language="ru", company="", inn="", kpp="", **fields)
            session.add(customer)
            await session.flush()
            customers[key] = customer
            changed = True
        else:
            changed = _assign(customer, fields)
        keep: list[str] = []
        for number in m.phones:
            others = {pk: cid for pk, cid in owners.get(number, {}).items() if pk != customer.id}
            if others:
                issue = report.note(entity, m.external_id, f"phone {number} belongs to customer "
                                                           f"{', '.join(sorted(others.values()))}: not attached")
                report.unattached.append((key, number, issue))
                continue
            keep.append(number)
        current = phone_rows.get(customer.id, [])
        have = {p.number for p in current}
        if have != set(keep):
            for phone in current:
                if phone.number not in keep:
                    await session.delete(phone)
                    owners.get(phone.number, {}).pop(customer.id, None)
            session.add_all(Phone(number=n, customer_id=customer.id) for n in keep if n not in have)
            changed = True
        for number in keep:
            owners.setdefault(number, {})[customer.id] = key
        _remember(session, refs, source, entity, m.external_id, key, now)
        counts = report.of(entity)
        if created:
            counts.created += 1
        elif changed:
            counts.updated += 1
        else:
            counts.unchanged += 1
    await session.flush()


async def _products(session: AsyncSession, source: str, prefix: str, items: list[MappedProduct],
                    report: SyncReport, now: datetime) -> None:
    entity = Entity.PRODUCT.value
    refs = await _refs(session, source, entity, [m.external_id for m in items])
    keys = {m.external_id: refs.get(m.external_id) or m.code or f"{prefix}P{m.external_id}" for m in items}
    products = await repo.products_by_sku(session, list(keys.values()))
    for m in items:
        key = keys[m.external_id]
        try:
            fit(key, Product.sku)
            fit_money(m.price, "price")
            name, unit = fit(m.name, Product.name), fit(m.unit, Product.unit)
        except ValueError as exc:
            report.issue(entity, m.external_id, str(exc))
            continue
        product = products.get(key)
        counts = report.of(entity)
        if product is None:
            product = Product(sku=key, price=money(m.price), unit=unit, name=name, active=m.active)
            session.add(product)
            products[key] = product
            counts.created += 1
        elif _assign(product, {"price": money(m.price), "active": m.active}):
            counts.updated += 1
        else:
            counts.unchanged += 1
        _remember(session, refs, source, entity, m.external_id, key, now)
    await session.flush()


def _deal_stage(cancelled: bool, deal: Deal | None, pipeline: Pipeline) -> str | None:
    """Where a pulled order's deal goes (None: where it is, or the first stage for a new one)."""
    if cancelled:
        return pipeline.cancelled
    if deal is not None and deal.stage == pipeline.cancelled:
        return pipeline.initial  # reopened in the CRM
    return None


async def _orders(session: AsyncSession, source: str, prefix: str, items: list[MappedOrder],
                  report: SyncReport, now: datetime, pipeline: Pipeline) -> None:
    entity = Entity.DEAL.value
    refs = await _refs(session, source, entity, [m.external_id for m in items])
    contact_keys = await _refs(session, source, Entity.CONTACT.value, [m.contact_external_id for m in items])
    product_keys = await _refs(session, source, Entity.PRODUCT.value,
                               [ln.product_external_id for m in items for ln in m.lines])
    customers = await repo.customers_by_external_ids(session, list(contact_keys.values()))
    products = await repo.products_by_sku(session, list(product_keys.values()))
    keys = {m.external_id: refs.get(m.external_id, f"{prefix}D{m.external_id}") for m in items}
    existing = await repo.orders_by_external_ids(session, list(keys.values()))
    stored = await repo.lines_of_orders(session, [o.id for o in existing.values()])
    deals = await deals_of_orders(session, [o.id for o in existing.values()])  # one query per 500, not per order
    for m in items:
        key = keys[m.external_id]
        customer = customers.get(contact_keys.get(m.contact_external_id, ""))
        if customer is None:
            report.issue(entity, m.external_id, f"contact {m.contact_external_id} is not in the store "
                                                "(not synced: see its own line)")
            continue
        missing = [f"row {n}: product {ln.product_external_id} is not in the store"
                   for n, ln in enumerate(m.lines, start=1)
                   if products.get(product_keys.get(ln.product_external_id, "")) is None]
        if missing:
            report.issue(entity, m.external_id, "; ".join(missing))
            continue
        row = existing.get(key)
        counts = report.of(entity)
        if row is not None and row.source not in SYNC_SOURCES:
            _remember(session, refs, source, entity, m.external_id, key, now)
            counts.unchanged += 1  # our own order, pushed to the CRM: ours stays authoritative
            continue
        old = stored.get(row.id, []) if row is not None else []
        kept = {(ln.sku, ln.quantity): ln.unit_price for ln in old}
        lines: list[OrderLine] = []
        try:
            fit(key, Order.order_id)
            for no, ln in enumerate(m.lines, start=1):
                product = products[product_keys[ln.product_external_id]]
                price = money(ln.price) if ln.price is not None else kept.get((product.sku, ln.quantity),
                                                                                product.price)
                lines.append(OrderLine(line_no=no, sku=product.sku, quantity=fit_quantity(ln.quantity),
                                       unit_price=price, amount=fit_money(money(price * ln.quantity), "line amount"),
                                       unit=product.unit, name=product.name, unit_en=product.unit_en,
                                       name_en=product.name_en))
            total = fit_money(sum((ln.amount for ln in lines), Decimal(0)), "deal total")
        except ValueError as exc:
            report.issue(entity, m.external_id, str(exc))
            continue
        status = "cancelled" if m.cancelled else "placed"
        ordered_at = m.ordered_at.astimezone(UTC)
        if row is not None and (row.customer_id, row.ordered_at, row.status, row.total) == (
                customer.id, ordered_at, status, total) and [(ln.sku, ln.quantity, ln.unit_price) for ln in old] == [
                (ln.sku, ln.quantity, ln.unit_price) for ln in lines]:
            counts.unchanged += 1
            _remember(session, refs, source, entity, m.external_id, key, now)
            if row.id not in deals:  # pulled before orders had deals: it gets its own now
                await upsert_order_deal(session, row, customer.customer_id, pipeline, deal=None,
                                        stage=_deal_stage(m.cancelled, None, pipeline), by=source, now=now)
            continue
        if row is None:
            row = Order(order_id=key, customer_id=customer.id, ordered_at=ordered_at, source=source, total=total,
                        status=status)
            session.add(row)
            await session.flush()
            counts.created += 1
        else:
            await session.execute(delete(OrderLine).where(OrderLine.order_id == row.id))
            _assign(row, {"customer_id": customer.id, "ordered_at": ordered_at, "status": status, "total": total})
            counts.updated += 1
        for ln in lines:
            ln.order_id = row.id
        session.add_all(lines)
        deal = deals.get(row.id)
        await upsert_order_deal(session, row, customer.customer_id, pipeline, deal=deal,
                                stage=_deal_stage(m.cancelled, deal, pipeline), by=source, now=now)
        _remember(session, refs, source, entity, m.external_id, key, now)
    await session.flush()
