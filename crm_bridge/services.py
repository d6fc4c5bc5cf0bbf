"""CrmStore: the unit-of-work boundary. One session per call, one commit at the end, DTOs out."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import insert, literal, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from crm_bridge import repositories as repo
from crm_bridge.call_log import CallEnd, CallLog, CallUpdate, TimelineRecord
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import CallFacts
from crm_bridge.corrections import Corrections
from crm_bridge.db import SQLITE_BEGIN, autocommit, is_sqlite, sqlite_writer_lock
from crm_bridge.deals import CURRENCY, Deals, Pipeline, order_deal_title
from crm_bridge.delivery import DeliveryRules, delivery_date
from crm_bridge.dto import (
    CallbackTaskView,
    CallerLookup,
    CallView,
    CustomerCard,
    CustomerView,
    InvoiceView,
    OrderLineView,
    OrderView,
    PlacedOrder,
    ProductView,
    TimelineEventIn,
    TimelineEventView,
)
from crm_bridge.errors import (
    ConnectionLost,
    EmptyOrder,
    IdempotencyConflict,
    InvalidSource,
    StoreUnavailable,
    UnknownCustomer,
)
from crm_bridge.models import CallbackTask, Customer, OutboxRow, as_utc
from crm_bridge.money import RUSSIAN_VAT_RATES, money, vat_rate_on, vat_split
from crm_bridge.outbox.routing import OutboxRouting
from crm_bridge.phones import normalize_phone
from crm_bridge.pricing import positive_lines as _positive_lines
from crm_bridge.pricing import priced as _priced
from crm_bridge.transcripts import TranscriptStore, TranscriptView
from crm_bridge.views import (
    call_view,
    callback_task_view,
    customer_view,
    line_payload,
    line_view,
    order_view,
    product_view,
    timeline_view,
)

T = TypeVar("T")

log = structlog.get_logger(__name__)

ORDER_SOURCES = frozenset({"import", "ivr", "operator"})
CALLBACK_CLOSE_STATUSES = frozenset({"done", "no_answer", "cancelled"})
# "No answer" keeps the task open and tries again this much later.
CALLBACK_RETRY = timedelta(hours=1)
# SQLite counter rows (PostgreSQL: models.ORDER_NUMBER_SEQUENCE / INVOICE_NUMBER_SEQUENCE).
ORDER_SEQUENCE = "order"
INVOICE_SEQUENCE = "invoice"
# PostgreSQL: how often an import-taken order number may send place_order round again.
NUMBER_ATTEMPTS = 5


@dataclass(frozen=True)
class StoreConfig:
    # (first day, percent), chosen by the order's delivery (shipment) date: see money.vat_rate_on.
    vat_rates: tuple[tuple[date, Decimal], ...] = RUSSIAN_VAT_RATES
    prices_include_vat: bool = True
    # Invoice numbers carry the year of issue (store time zone): "СЧ-2026-17" (README: numbering).
    invoice_prefix: str = "СЧ-"
    order_prefix: str = "A-"
    customer_prefix: str = "C-"  # customers made in the console (crm_bridge.corrections)
    delivery: DeliveryRules = field(default_factory=DeliveryRules)
    timezone: str = "Europe/Moscow"
    deals: Pipeline = field(default_factory=Pipeline)  # [deals]: stages, closed ones, leads


class CrmStore(Corrections, Deals):
    """The store's services. The call's hot path (``lookup_caller``, ``place_order``) is Core over a
    pooled connection, one statement per step; the console's calls use ORM sessions (``_unit``).

    Dropped connections: the pool does not pre-ping (a round trip per checkout); a connection found
    dead raises ``ConnectionLost`` and reads and idempotent writes run once more (``_retry_once``).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: StoreConfig | None = None) -> None:
        self.sessions = sessions
        self.config = config or StoreConfig()
        self._tz = ZoneInfo(self.config.timezone)  # fail at start-up on a bad zone, not mid-call
        vat_rate_on(self.config.vat_rates, datetime.now(self._tz).date())  # and on a VAT schedule that starts later
        engine: AsyncEngine = sessions.kw["bind"]
        self._engine = engine
        self._sqlite = is_sqlite(engine)
        # PostgreSQL hot path: autocommit, one statement is one transaction (no BEGIN/ROLLBACK trips).
        self._reads = engine if self._sqlite else autocommit(engine)
        self._writer_lock = sqlite_writer_lock(engine)
        # call ends, AMI updates, timeline rows (batch semantics); calls linked to their deals
        self._call_log = CallLog(sessions, deals=self.config.deals)
        # CRM targets (crm_bridge.outbox): an order placed or corrected outside a call's records
        # (console, API) enqueues its event in its own transaction. None: nothing to enqueue.
        self.outbox: OutboxRouting | None = None

    def route_outbox(self, outbox: OutboxRouting | None) -> None:
        """Enqueue the events the store writes itself (operators' orders, corrections) for these targets."""
        self.outbox = outbox if outbox is not None and outbox.targets else None
        self._call_log = CallLog(self.sessions, outbox=self.outbox, deals=self.config.deals)

    def _wants(self, kind: EventKind) -> bool:
        return self.outbox is not None and kind.value in self.outbox.kinds

    async def _enqueue(self, conn: Any, record: TimelineRecord) -> None:
        """The record's outbox rows, on the caller's connection or session: they commit with the change."""
        if self.outbox is None:
            return
        rows = self.outbox.rows_for([record], datetime.now(UTC))
        if rows:
            await conn.execute(insert(OutboxRow.__table__), rows)

    def _order_created_record(self, placed: PlacedOrder, call_id: str | None) -> TimelineRecord:
        """``order.created`` of an order placed outside the robot (the robot's goes with its call's
        records): an outbox row only, not a timeline row (the customer's timeline shows the order
        itself, and the call statistics count the robot's orders)."""
        order, invoice = placed.order, placed.invoice
        return TimelineRecord(at=order.ordered_at, call_id=call_id, customer_id=order.customer_id,
                              kind=EventKind.ORDER_CREATED.value, data={
            "order_id": order.order_id, "invoice": invoice.number, "total": str(invoice.total), "replayed": False,
            "delivery_date": order.delivery_date.isoformat() if order.delivery_date else None,
            "lines": [line_payload(line) for line in order.lines]})

    @asynccontextmanager
    async def _order_connection(self, enqueue: bool) -> AsyncIterator[AsyncConnection]:
        """The PostgreSQL order path's connection: autocommit, or one transaction when the order's
        outbox row must commit with it (an operator's order with CRM targets)."""
        if not enqueue:
            async with self._connect() as conn:
                yield conn
            return
        async with _store_errors(), self._engine.connect() as conn, conn.begin():
            await conn.execute(select(literal(1)))  # BEGIN now: the direct statements run inside it
            yield conn

    @asynccontextmanager
    async def _unit(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        async with self._writing(write), _store_errors(), self.sessions() as session:
            if write:
                # SQLite: take the write lock up front (see crm_bridge.db); ignored by PostgreSQL.
                await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
            yield session

    @asynccontextmanager
    async def _writing(self, write: bool) -> AsyncIterator[None]:
        """SQLite write units of work queue on the engine's writer lock; a no-op otherwise."""
        if write and self._writer_lock is not None:
            async with self._writer_lock:
                yield
        else:
            yield

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled Core connection for the hot path: autocommit on PostgreSQL; on SQLite a
        deferred read transaction (writes go through ``_sqlite_write``)."""
        async with _store_errors(), self._reads.connect() as conn, _discarded_when_cancelled(conn):
            yield conn

    @asynccontextmanager
    async def _sqlite_write(self) -> AsyncIterator[AsyncConnection]:
        """SQLite: the process's writer lock, then BEGIN IMMEDIATE; commits when the block succeeds."""
        async with self._writing(True), _store_errors(), self._engine.connect() as conn:
            conn = await conn.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            async with conn.begin():
                yield conn

    async def _retry_once(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work``; when it met a dead pooled connection, run it once more on a fresh one.

        Only for work that is safe to repeat: reads, and writes made idempotent by a key.
        """
        try:
            return await work()
        except ConnectionLost as exc:
            log.warning("store_connection_lost", unit=what, error=str(exc))
            return await work()

    # --- callers -------------------------------------------------------------------------------

    async def lookup_caller(self, raw_number: str | None) -> CallerLookup:
        """Who is calling, in ONE statement (``repositories.CALLER_BY_PHONE``): on PostgreSQL one
        round trip on a warm pool (prepared once per connection, autocommit, no pre-ping)."""
        number = normalize_phone(raw_number)
        if number is None:
            return CallerLookup(status="invalid", number=None)

        async def read() -> Sequence[Row[Any]]:
            async with self._connect() as conn:
                return await repo.caller_rows(conn, number)

        return _caller_lookup(number, await self._retry_once("lookup_caller", read))

    async def get_customer_card(self, customer_id: str) -> CustomerCard | None:
        async with self._unit() as session:
            customer = await repo.customer_by_external_id(session, customer_id)
            if customer is None:
                return None
            phones = await repo.phones_of(session, [customer.id])
            orders = await repo.orders_of_customer(session, customer.id)
            lines = await repo.lines_of_orders(session, [o.id for o, _ in orders])
        # History reads back as it was sold: snapshot wording, not today's catalogue.
        views = tuple(
            order_view(order, customer_id, [line_view(line) for line in lines.get(order.id, [])], invoice,
                       self.change_deadline(order.delivery_date))
            for order, invoice in orders
        )
        return CustomerCard(customer=customer_view(customer, phones.get(customer.id, [])), orders=views)

    # --- catalogue and orders ------------------------------------------------------------------

    async def list_products(self, *, active_only: bool = True) -> list[ProductView]:
        async with self._unit() as session:
            products = await repo.all_products(session, active_only=active_only)
        return [product_view(p) for p in products]

    async def price_lines(self, lines: Sequence[tuple[str, int]]) -> tuple[OrderLineView, ...]:
        """Lines at today's prices; zero quantities dropped; unknown/inactive products raise."""
        wanted = _positive_lines(lines)
        if not wanted:
            return ()
        async with self._unit() as session:
            products = await repo.products_by_sku(session, [sku for sku, _ in wanted])
        return tuple(_priced(products, sku, qty) for sku, qty in wanted)

    async def place_order(
        self,
        *,
        idempotency_key: str,
        customer_id: str,
        lines: Sequence[tuple[str, int]],
        source: str,
        call_id: str | None = None,
        now: datetime | None = None,
        owner: str | None = None,
    ) -> PlacedOrder:
        """Create order + lines + invoice + its deal (``owner``: the console user placing it, None
        for the robot) atomically, once per ``idempotency_key``.

        A replay (retry, AGI reconnect, a concurrent duplicate) of the same request (customer,
        lines as a multiset of (sku, quantity), source) returns the first order with
        ``created=False``; the same key with another request raises ``IdempotencyConflict``
        carrying the key's order, which stands unchanged (issue 9: a changed order is never
        answered with the old one as if it were the new). Races are settled by the unique index on
        the key, and a duplicate that loses the race is compared with the winner alike. The
        comparison costs no statement: the replay reads the key's order anyway. PostgreSQL: two
        round trips (read the customer, the key and the prices; then one statement inserting order,
        lines and invoice with numbers from sequences), no transaction open across an await.
        SQLite: one BEGIN IMMEDIATE transaction under the writer lock, numbers from the counter
        table. A dropped connection is retried once (safe: the key makes the write idempotent; a
        retry after a commit whose reply was lost returns that order with ``created=False``).
        """
        if source not in ORDER_SOURCES:
            raise InvalidSource(source)
        wanted = _positive_lines(lines)
        if not wanted:
            raise EmptyOrder()
        ordered_at = as_utc(now) if now is not None else datetime.now(UTC)
        place = self._place_sqlite if self._sqlite else self._place_pg
        # The robot's orders reach the CRM with their call's records; everyone else's from here.
        enqueue = source != "ivr" and self._wants(EventKind.ORDER_CREATED)

        async def work() -> PlacedOrder:
            return await place(idempotency_key, customer_id, wanted, source, call_id, ordered_at, owner, enqueue)

        placed = await self._retry_once("place_order", work)
        if placed.created:
            log.info(
                "order_placed",
                order_id=placed.order.order_id,
                invoice=placed.invoice.number,
                customer_id=customer_id,
                total=str(placed.invoice.total),
                source=source,
                call_id=call_id,
            )
        else:
            log.info("order_replayed", order_id=placed.order.order_id, idempotency_key=idempotency_key)
        return placed

    async def order_for_key(self, idempotency_key: str, customer_id: str) -> PlacedOrder | None:
        """The order a key already placed, if any (to settle a write whose outcome is unknown)."""

        async def read() -> PlacedOrder | None:
            async with self._connect() as conn:
                return await self._replay(conn, idempotency_key, customer_id)

        return await self._retry_once("order_for_key", read)

    async def _replay(
        self, conn: AsyncConnection, key: str, customer_id: str,
        request: tuple[Sequence[tuple[str, int]], str] | None = None,
    ) -> PlacedOrder | None:
        """The order ``key`` placed, if any. Raises ``IdempotencyConflict`` when it is another
        customer's, or, given ``request`` (lines, source), when it is another order."""
        rows = await repo.placed_order_rows(conn, key)
        if not rows:
            return None
        first = rows[0]
        view = _order_from_rows(rows, first.customer_id, current_wording=False)
        if request is not None:
            differs = view.difference(customer_id, *request)
        else:
            differs = "customer" if view.customer_id != customer_id else None
        if differs is not None:  # logged once, by the caller that knows the context (call, request)
            raise IdempotencyConflict(key, view, differs)
        assert view.invoice is not None  # orders with a key are only made here, always with one
        return PlacedOrder(order=view, invoice=view.invoice, created=False)

    async def _place_pg(
        self,
        key: str,
        customer_id: str,
        wanted: list[tuple[str, int]],
        source: str,
        call_id: str | None,
        ordered_at: datetime,
        owner: str | None,
        enqueue: bool = False,
    ) -> PlacedOrder:
        for _ in range(NUMBER_ATTEMPTS):
            async with self._order_connection(enqueue) as conn:
                known = await self._replay_or_draft(conn, key, customer_id, wanted, source, ordered_at)
                if isinstance(known, PlacedOrder):
                    return known
                customer_pk, draft = known
                params = draft.pg_params(customer_pk, key, call_id, self.config, owner)
                numbers = await repo.insert_order_pg(conn, params)
                if numbers is not None:
                    order_id, invoice_number, deal_id = numbers
                    placed = draft.placed(order_id, invoice_number, call_id=call_id, deal_id=deal_id)
                    if enqueue:
                        await self._enqueue(conn, self._order_created_record(placed, call_id))
                    return placed
                # Nothing inserted: a concurrent duplicate of the key committed first (replay it,
                # or refuse it when it asked for another order), or an import had taken the
                # generated number (move the sequence on, try again).
                replayed = await self._replay(conn, key, customer_id, (wanted, source))
                if replayed is not None:
                    return replayed
                log.warning("order_number_taken_by_import", prefix=self.config.order_prefix)
                await repo.skip_imported_order_numbers_pg(conn, self.config.order_prefix)
        raise StoreUnavailable("place_order: no free order number after skipping imported numbers")

    async def _place_sqlite(
        self,
        key: str,
        customer_id: str,
        wanted: list[tuple[str, int]],
        source: str,
        call_id: str | None,
        ordered_at: datetime,
        owner: str | None,
        enqueue: bool = False,
    ) -> PlacedOrder:
        async with self._sqlite_write() as conn:
            known = await self._replay_or_draft(conn, key, customer_id, wanted, source, ordered_at)
            if isinstance(known, PlacedOrder):
                return known
            customer_pk, draft = known
            while True:  # a generated number an import already used is skipped
                order_id = f"{self.config.order_prefix}{await repo.next_counter_value(conn, ORDER_SEQUENCE)}"
                if not await repo.order_number_taken(conn, order_id):
                    break
                log.warning("order_number_taken_by_import", order_id=order_id)
            invoice_number = f"{draft.invoice_prefix}{await repo.next_counter_value(conn, INVOICE_SEQUENCE)}"
            deal_id = await repo.insert_order_rows(
                conn, *draft.rows(customer_pk, key, call_id, order_id, invoice_number),
                *draft.deal_rows(customer_pk, call_id, order_id, self.config.deals.initial, owner))
            placed = draft.placed(order_id, invoice_number, call_id=call_id, deal_id=deal_id)
            if enqueue:
                await self._enqueue(conn, self._order_created_record(placed, call_id))
        return placed

    async def _replay_or_draft(
        self, conn: AsyncConnection, key: str, customer_id: str, wanted: list[tuple[str, int]], source: str,
        ordered_at: datetime,
    ) -> PlacedOrder | tuple[int, _OrderDraft]:
        """The order this key already placed, or (customer pk, the priced draft) to insert."""
        customer_pk, existing_pk, products = await repo.order_inputs(conn, customer_id, key, [sku for sku, _ in wanted])
        if existing_pk is not None:
            replayed = await self._replay(conn, key, customer_id, (wanted, source))
            if replayed is not None:
                return replayed
        if customer_pk is None:
            raise UnknownCustomer(customer_id)
        return customer_pk, self._draft(customer_id, wanted, products, source, ordered_at)

    def _draft(
        self,
        customer_id: str,
        wanted: list[tuple[str, int]],
        products: dict[str, Any],
        source: str,
        ordered_at: datetime,
    ) -> _OrderDraft:
        """Price the lines (unknown/inactive products raise before any number is taken) and the VAT
        at the rate in force on the delivery (shipment) day."""
        priced = tuple(_priced(products, sku, qty) for sku, qty in wanted)
        total = sum((line.amount for line in priced), Decimal(0))
        delivery = self._delivery_date(ordered_at)
        rate = vat_rate_on(self.config.vat_rates, delivery)
        subtotal, vat, payable = vat_split(total, rate, included=self.config.prices_include_vat)
        year = ordered_at.astimezone(self._tz).year  # the invoice's date is the order's, in store time
        return _OrderDraft(
            customer_id=customer_id, lines=priced, source=source, ordered_at=ordered_at,
            delivery_date=delivery, total=money(total), subtotal=subtotal,
            vat_rate=rate, vat_amount=vat, payable=payable, invoice_prefix=f"{self.config.invoice_prefix}{year}-",
        )

    def _delivery_date(self, ordered_at: datetime) -> date:
        return delivery_date(ordered_at.astimezone(self._tz), self.config.delivery)

    # --- calls and timeline --------------------------------------------------------------------

    async def record_call_start(
        self,
        *,
        call_id: str,
        caller_number: str | None,
        normalized_number: str | None,
        customer_id: str | None,
        channel: str | None,
        script: str | None,
        started_at: datetime,
    ) -> bool:
        """Insert the call; False when it already exists (AGI reconnect with the same linkedid)."""
        async with self._unit(write=True) as session:
            created = await repo.insert_call_if_absent(
                session,
                {
                    "call_id": call_id,
                    "caller_number": caller_number,
                    "normalized_number": normalized_number,
                    "customer_id": repo.customer_pk_subquery(customer_id),
                    "channel": channel,
                    "script": script,
                    "started_at": as_utc(started_at),
                },
            )
            await session.commit()
        return created

    async def record_call_end(
        self,
        call_id: str,
        *,
        facts: CallFacts,
        reason: str | None,
        ended_at: datetime,
        customer_id: str | None = None,
        order_id: str | None = None,
        events: Sequence[TimelineEventIn] = (),
    ) -> None:
        """Close the call at once (the service queues it: ``RecordWriter.record_call_end``), with its
        last timeline ``events`` in the same transaction; semantics in ``crm_bridge.call_log``."""
        await self._call_log.write([
            *(TimelineRecord.of(e) for e in events),
            CallEnd(call_id=call_id, facts=facts, reason=reason, ended_at=ended_at, customer_id=customer_id,
                    order_id=order_id),
        ])

    async def update_call(self, call_id: str, *, facts: CallFacts | None = None, **fields: Any) -> None:
        """Set some columns of a call at once, creating the row when we never saw the call begin.

        AMI-only calls get a row whose ``started_at`` is ``fields["started_at"]`` or now; on an
        existing row ``started_at`` is left alone. Unknown field names raise ValueError; ``facts``
        join the row's facts and decide its outcome. The service queues this instead
        (``RecordWriter.update_call``); semantics in ``crm_bridge.call_log``.
        """
        started_at = fields.pop("started_at", None) or datetime.now(UTC)
        await self._call_log.write([CallUpdate(call_id=call_id, fields=fields, started_at=started_at, facts=facts)])

    async def add_timeline_events(self, events: Sequence[TimelineEventIn]) -> None:
        await self._call_log.write([TimelineRecord.of(e) for e in events])

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[CallView]:
        async with self._unit() as session:
            rows = await repo.calls_page(session, max(0, limit), max(0, offset))
        return [call_view(call, customer_id) for call, customer_id in rows]

    async def get_call(self, call_id: str) -> CallView | None:
        async with self._unit() as session:
            row = await repo.call_by_id(session, call_id)
        return None if row is None else call_view(*row)

    async def call_transcript(self, call_id: str) -> TranscriptView | None:
        """The call's transcript (crm_bridge.transcripts), whatever its state; None before any."""
        return await TranscriptStore(self.sessions).of_call(call_id)

    async def call_timeline(self, call_id: str) -> list[TimelineEventView]:
        async with self._unit() as session:
            events = await repo.timeline_of_call(session, call_id)
        return [timeline_view(e) for e in events]


    # --- customers by number ----------------------------------------------------------------------

    async def customer_by_number(self, number: str) -> CustomerView | None:
        """The single owner of ``number`` (raw or E.164); None when nobody or several own it."""
        normalized = normalize_phone(number)
        if normalized is None:
            return None
        async with self._unit() as session:
            owners = await repo.customers_by_phone(session, normalized)
        if len(owners) != 1:
            return None
        customer, phones = owners[0]
        return customer_view(customer, phones)

    async def customers_by_ids(self, customer_ids: Sequence[str]) -> dict[str, CustomerView]:
        """The customers among ``customer_ids`` that exist (the wallboard's names), phones left out."""
        if not customer_ids:
            return {}
        async with self._unit() as session:
            found = await repo.customers_by_external_ids(session, customer_ids)
        return {cid: customer_view(customer, ()) for cid, customer in found.items()}

    # --- callback tasks ------------------------------------------------------------------------

    async def open_callback_task(
        self,
        *,
        customer_id: str | None,
        number: str | None,
        reason: str,
        due_at: datetime,
        call_id: str | None,
    ) -> tuple[CallbackTaskView, bool]:
        """Open a callback task, or fold the request into the one already open for this customer.

        "Who" is the customer, or the number when the customer is unknown. While a task is open
        for them, a new request returns it with ``created=False``: attempts + 1, the new reason
        appended when different, the earlier due time kept. The partial unique index on
        ``open_key`` settles races (a concurrent duplicate gets IntegrityError and folds in).

        Idempotent per call: a second request from the call that opened the task (an AGI retry, a
        replayed spool) returns the task unchanged, so one request is counted once.
        """
        if customer_id:
            open_key = f"customer:{customer_id}"
        elif number:
            open_key = f"number:{number}"
        else:
            raise ValueError("a callback task needs a customer id or a number")
        due = as_utc(due_at)
        for _ in range(3):
            try:
                async with self._unit(write=True) as session:
                    now = datetime.now(UTC)
                    task = await repo.open_callback_task_by_key(session, open_key)
                    created = task is None
                    if task is None:
                        task = CallbackTask(
                            customer_id=customer_id, number=number, reason=reason, due_at=due, status="open",
                            created_at=now, updated_at=now, call_id=call_id, attempts=1, open_key=open_key,
                        )
                        session.add(task)
                    elif call_id is not None and task.call_id == call_id:
                        pass  # the same call asking again: already counted
                    else:
                        task.attempts += 1
                        if reason not in task.reason.split("; "):
                            task.reason = f"{task.reason}; {reason}"
                        task.number = task.number or number
                        task.due_at = min(task.due_at, due)
                        task.updated_at = now
                    await session.flush()
                    view = callback_task_view(task)
                    await session.commit()
            except IntegrityError:
                continue  # someone opened it between our read and our insert: fold into theirs
            log.info("callback_task_opened" if created else "callback_task_repeated", task_id=view.task_id,
                     customer_id=customer_id, number=number, reason=reason, call_id=call_id, attempts=view.attempts)
            return view, created
        raise StoreUnavailable("callback task: could not settle a concurrent insert")

    async def list_tasks(
        self, status: str | None = "open", limit: int = 100, offset: int = 0
    ) -> list[CallbackTaskView]:
        """Tasks with ``status`` (None: all), the earliest due first."""
        async with self._unit() as session:
            tasks = await repo.callback_tasks_page(session, status, max(0, limit), max(0, offset))
        return [callback_task_view(t) for t in tasks]

    async def close_task(self, task_id: int, status: str, note: str | None = None) -> CallbackTaskView | None:
        """Record the result of a call-back; None when the task does not exist.

        ``done`` / ``cancelled`` close the task. ``no_answer`` closes only this attempt: the task
        stays open, due again in an hour, attempts + 1. A task that is no longer open is returned
        unchanged (closing twice is harmless). ``note`` is appended to earlier notes.
        """
        if status not in CALLBACK_CLOSE_STATUSES:
            raise ValueError(f"callback status must be one of {sorted(CALLBACK_CLOSE_STATUSES)}, got {status!r}")
        async with self._unit(write=True) as session:
            task = await repo.callback_task_by_id(session, task_id, lock=True)
            if task is None:
                return None
            if task.status == "open":
                now = datetime.now(UTC)
                if note:
                    task.note = f"{task.note}\n{note}" if task.note else note
                if status == "no_answer":
                    task.attempts += 1
                    task.due_at = now + CALLBACK_RETRY
                else:
                    task.status = status
                    task.open_key = None
                task.updated_at = now
                await session.flush()
            view = callback_task_view(task)
            await session.commit()
        return view

    # --- console: search, customer timeline, invoices --------------------------------------------

    async def search_customers(self, query: str, limit: int = 50) -> list[CustomerView]:
        """Customers matching ``query``: a customer id, a phone in any Russian format, or name parts.

        Name parts match case-insensitively in any alphabet (``иванов`` finds «Иванов»; a typed ё
        also finds е), every word of the query must match the last name, first name, patronymic
        or customer id. SQLite folds ASCII only, so the SQL filter tries the case variants a person
        types (as typed, lower, UPPER, Capitalized) to get a bounded candidate set, which is then
        checked with ``str.casefold``. Digits match phones: the normalized E.164 number exactly, or
        a run of at least 4 digits anywhere in a number. Exact id and phone matches come first.
        """
        text = " ".join((query or "").split())[:200]
        limit = max(1, min(int(limit), 200))
        if not text:
            return []
        found: dict[str, Customer] = {}
        async with self._unit() as session:
            exact = await repo.customer_by_external_id(session, text)
            if exact is not None:
                found[exact.customer_id] = exact
            digits = re.sub(r"\D", "", text)
            if digits and not re.search(r"[^\d\s+()\-.]", text):  # a phone number, perhaps partial
                number = normalize_phone(text)
                if number is not None:
                    for customer, _ in await repo.customers_by_phone(session, number):
                        found.setdefault(customer.customer_id, customer)
                if len(digits) >= 4:
                    pattern = f"%{repo.like_escape(digits)}%"
                    for customer in await repo.customers_with_phone_like(session, pattern, limit):
                        found.setdefault(customer.customer_id, customer)
            tokens = _search_tokens(text)
            if tokens and len(found) < limit:
                patterns = [[f"%{repo.like_escape(v)}%" for v in _case_variants(t)] for t in tokens]
                candidates = await repo.customers_matching_tokens(session, patterns, limit * 10)
                for customer in candidates:
                    if _name_matches(customer, tokens):
                        found.setdefault(customer.customer_id, customer)
            chosen = list(found.values())[:limit]
            phones = await repo.phones_of(session, [c.id for c in chosen])
        return [customer_view(c, phones.get(c.id, [])) for c in chosen]

    async def customer_timeline(self, customer_id: str, limit: int = 200) -> list[TimelineEventView]:
        """What happened with a customer, NEWEST FIRST (``at`` descending, then ``seq`` descending).

        Every stored event of every call of the customer (see repo.timeline_of_customer), plus one
        entry per order (kind ``order.placed``, data: order_id, total, source, invoice,
        delivery_date, lines) and one per call of theirs that has no stored event in the window
        (kind ``call.recorded``: an AMI-only call; data: outcome, reason, caller_number, operator).
        Those built entries are not stored events: their ``seq`` is 0. At most ``limit`` entries.
        Unknown customer: an empty list.
        """
        limit = max(1, min(int(limit), 1000))
        async with self._unit() as session:
            customer = await repo.customer_by_external_id(session, customer_id)
            if customer is None:
                return []
            events = await repo.timeline_of_customer(session, customer_id, customer.id, limit)
            orders = await repo.orders_of_customer(session, customer.id)
            calls = await repo.calls_of_customer(session, customer.id, limit)
            line_counts = await repo.lines_of_orders(session, [o.id for o, _ in orders[:limit]])
        entries = [timeline_view(e) for e in events]
        oldest = entries[-1].at if len(entries) >= limit else None
        for order, invoice in orders[:limit]:
            entries.append(
                TimelineEventView(
                    seq=0, at=order.ordered_at, call_id=order.call_id, customer_id=customer_id,
                    kind=EventKind.ORDER_PLACED,
                    data={
                        "order_id": order.order_id,
                        "total": str(order.total),
                        "source": order.source,
                        "invoice": invoice.number if invoice is not None else None,
                        "delivery_date": order.delivery_date.isoformat() if order.delivery_date else None,
                        "lines": len(line_counts.get(order.id, [])),
                    },
                )
            )
        seen_calls = {e.call_id for e in events if e.call_id}
        for call in calls:
            if call.call_id in seen_calls or (oldest is not None and call.started_at < oldest):
                continue
            entries.append(
                TimelineEventView(
                    seq=0, at=call.started_at, call_id=call.call_id, customer_id=customer_id,
                    kind=EventKind.CALL_RECORDED,
                    data={
                        "outcome": call.outcome,
                        "reason": call.reason,
                        "caller_number": call.caller_number,
                        "operator": call.operator_name or call.operator_interface,
                    },
                )
            )
        entries.sort(key=lambda e: (e.at, e.seq), reverse=True)
        return entries[:limit]

    async def get_invoice(self, number: str) -> tuple[InvoiceView, OrderView, CustomerView] | None:
        """An invoice with its order (lines as sold) and its customer; None when no such number."""
        async with self._unit() as session:
            row = await repo.invoice_by_number(session, number)
            if row is None:
                return None
            invoice, order, customer = row
            lines = (await repo.lines_of_orders(session, [order.id])).get(order.id, [])
            phones = await repo.phones_of(session, [customer.id])
        view = order_view(order, customer.customer_id, [line_view(line) for line in lines], invoice)
        assert view.invoice is not None
        return view.invoice, view, customer_view(customer, phones.get(customer.id, []))


@asynccontextmanager
async def _discarded_when_cancelled(conn: AsyncConnection) -> AsyncIterator[None]:
    """A statement cancelled mid-flight (a call that could not wait: ivr/calls/silence.py) leaves
    its connection in an unknown state, its reply perhaps still to come: on PostgreSQL the
    connection is aborted at once (asyncpg's terminate; SQLAlchemy's own invalidation would first
    try a polite close for up to 2 s) and never goes back to the pool, where the next call would
    wait behind the stalled reply. aiosqlite finishes a statement in its thread whatever happens,
    so a SQLite connection is simply returned."""
    try:
        yield
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            driver = (await conn.get_raw_connection()).driver_connection
            if hasattr(driver, "terminate"):  # asyncpg
                driver.terminate()
                await conn.invalidate()
        raise


@asynccontextmanager
async def _store_errors() -> AsyncIterator[None]:
    """Driver and network failures become our own errors: callers catch CrmError only."""
    try:
        yield
    except IntegrityError:
        raise  # idempotency and callback races are settled with it by the caller
    except DBAPIError as exc:
        message = str(exc).splitlines()[0][:200]
        if exc.connection_invalidated:  # the pool has recycled its connections: worth one retry
            raise ConnectionLost(message) from exc
        log.warning("store_unavailable", error=message)
        raise StoreUnavailable(message) from exc
    except OSError as exc:
        message = str(exc).splitlines()[0][:200]
        log.warning("store_unavailable", error=message)
        raise StoreUnavailable(message) from exc


def _caller_lookup(number: str, rows: Sequence[Row[Any]]) -> CallerLookup:
    """``CALLER_BY_PHONE`` rows (ordered by owner, phone, line) -> the DTO."""
    if not rows:
        return CallerLookup(status="unknown", number=number)
    owners = tuple(dict.fromkeys(row.customer_id for row in rows))
    if len(owners) > 1:
        return CallerLookup(status="shared", number=number, candidate_ids=owners)
    first = rows[0]
    customer = CustomerView(
        customer_id=first.customer_id,
        last_name=first.last_name,
        first_name=first.first_name,
        patronymic=first.patronymic,
        language=first.language,
        address=first.address,
        phones=tuple(dict.fromkeys(row.phone for row in rows)),
    )
    last_order = None
    if first.order_id is not None:
        # Each phone repeats the order's lines: read them from the first phone's rows.
        # Read back with today's wording, but the quantities and prices as sold.
        own = [row for row in rows if row.phone_pk == first.phone_pk]
        last_order = _order_from_rows(own, first.customer_id, current_wording=True)
    return CallerLookup(status="found", number=number, customer=customer, last_order=last_order)


def _order_from_rows(rows: Sequence[Row[Any]], customer_id: str, *, current_wording: bool) -> OrderView:
    """One order's rows (one per line, order and invoice columns repeated) -> OrderView.

    ``current_wording``: unit and name from today's catalogue when the product still exists (what
    the robot reads back); otherwise the snapshot as sold (history, invoices, replays).
    """
    first = rows[0]
    lines = []
    for row in rows:
        if row.line_no is None:
            continue
        current = current_wording and row.product_pk is not None
        lines.append(
            OrderLineView(
                sku=row.sku,
                quantity=row.quantity,
                unit_price=row.unit_price,
                amount=row.amount,
                unit=row.product_unit if current else row.unit,
                name=row.product_name if current else row.name,
                unit_en=row.product_unit_en if current else row.unit_en,
                name_en=row.product_name_en if current else row.name_en,
            )
        )
    invoice = None
    if first.invoice_number is not None:
        invoice = InvoiceView(
            number=first.invoice_number,
            issued_at=first.issued_at,
            subtotal=first.subtotal,
            vat_rate=first.vat_rate,
            vat_amount=first.vat_amount,
            total=first.invoice_total,
        )
    return OrderView(
        order_id=first.order_id,
        customer_id=customer_id,
        ordered_at=first.ordered_at,
        lines=tuple(lines),
        total=first.order_total,
        source=first.source,
        delivery_date=first.delivery_date,
        invoice=invoice,
        call_id=first.call_id,
    )


@dataclass(frozen=True)
class _OrderDraft:
    """A priced order before it has numbers: the parameters of its insert and the DTO it becomes."""

    customer_id: str
    lines: tuple[OrderLineView, ...]
    source: str
    ordered_at: datetime
    delivery_date: date
    total: Decimal  # sum of the line amounts
    subtotal: Decimal
    vat_rate: Decimal
    vat_amount: Decimal
    payable: Decimal
    invoice_prefix: str  # the configured prefix and the year: "СЧ-2026-"

    def pg_params(self, customer_pk: int, key: str, call_id: str | None, config: StoreConfig,
                  owner: str | None = None) -> dict[str, Any]:
        """Parameters of ``repositories.PLACE_ORDER_PG`` (the lines as parallel arrays)."""
        return {
            "customer_id": self.customer_id,
            "deal_stage": config.deals.initial,
            "owner": owner,
            "order_prefix": config.order_prefix,
            "invoice_prefix": self.invoice_prefix,
            "customer_pk": customer_pk,
            "ordered_at": self.ordered_at,
            "source": self.source,
            "key": key,
            "call_id": call_id,
            "delivery_date": self.delivery_date,
            "total": self.total,
            "skus": [line.sku for line in self.lines],
            "quantities": [line.quantity for line in self.lines],
            "unit_prices": [line.unit_price for line in self.lines],
            "amounts": [line.amount for line in self.lines],
            "units": [line.unit for line in self.lines],
            "names": [line.name for line in self.lines],
            "units_en": [line.unit_en for line in self.lines],
            "names_en": [line.name_en for line in self.lines],
            "subtotal": self.subtotal,
            "vat_rate": self.vat_rate,
            "vat_amount": self.vat_amount,
            "payable": self.payable,
        }

    def rows(
        self, customer_pk: int, key: str, call_id: str | None, order_id: str, invoice_number: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """(order, lines, invoice) column values for ``repositories.insert_order_rows``."""
        order = {
            "order_id": order_id,
            "customer_id": customer_pk,
            "ordered_at": self.ordered_at,
            "source": self.source,
            "idempotency_key": key,
            "call_id": call_id,
            "delivery_date": self.delivery_date,
            "total": self.total,
        }
        lines = [{"line_no": no, **_line_columns(line)} for no, line in enumerate(self.lines, start=1)]
        invoice = {
            "number": invoice_number,
            "issued_at": self.ordered_at,
            "subtotal": self.subtotal,
            "vat_rate": self.vat_rate,
            "vat_amount": self.vat_amount,
            "total": self.payable,
        }
        return order, lines, invoice

    def deal_rows(self, customer_pk: int, call_id: str | None, order_id: str, stage: str,
                  owner: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(deal, its deal.created event) column values for ``repositories.insert_order_rows``; the
        same values as ``PLACE_ORDER_PG``'s deal CTEs."""
        deal = {
            "customer_id": customer_pk, "title": order_deal_title(order_id), "stage": stage, "owner": owner,
            "amount": self.payable, "currency": CURRENCY, "created_at": self.ordered_at,
            "updated_at": self.ordered_at,
        }
        # No call id: a call's timeline is its own writer's rows in their order (the call log's
        # batch comes later); the deal's timeline shows the call anyway, through calls.deal_id.
        event = {
            "at": self.ordered_at, "call_id": None, "customer_id": self.customer_id,
            "kind": EventKind.DEAL_CREATED.value,
            "data": {"order_id": order_id, "stage": stage, "amount": str(self.payable), "source": self.source,
                     "by": owner},
        }
        return deal, event

    def placed(self, order_id: str, invoice_number: str, *, call_id: str | None,
               deal_id: int | None = None) -> PlacedOrder:
        invoice = InvoiceView(
            number=invoice_number,
            issued_at=self.ordered_at,
            subtotal=self.subtotal,
            vat_rate=self.vat_rate,
            vat_amount=self.vat_amount,
            total=self.payable,
        )
        order = OrderView(
            order_id=order_id,
            customer_id=self.customer_id,
            ordered_at=self.ordered_at,
            lines=self.lines,
            total=self.total,
            source=self.source,
            delivery_date=self.delivery_date,
            invoice=invoice,
            call_id=call_id,
        )
        return PlacedOrder(order=order, invoice=invoice, created=True, deal_id=deal_id)


_PUNCT = ",;.:!?\"«»()"


def _search_tokens(text: str) -> list[str]:
    """Whitespace-separated words of a query without surrounding punctuation (at most 5), longest first."""
    words = [w.strip(_PUNCT) for w in text.split()]
    return sorted(dict.fromkeys(w for w in words if w), key=len, reverse=True)[:5]


def _fold(text: str) -> str:
    return text.casefold().replace("ё", "е")


def _case_variants(token: str) -> set[str]:
    variants = {token, token.lower(), token.upper(), token.capitalize(), token.title()}
    # ё is often typed as е (and stored either way): try both spellings of the typed word.
    return variants | {v.replace("ё", "е").replace("Ё", "Е") for v in variants}


def _name_matches(customer: Customer, tokens: Sequence[str]) -> bool:
    fields = [_fold(f or "") for f in (customer.last_name, customer.first_name, customer.patronymic,
                                       customer.customer_id)]
    return all(any(_fold(token) in field for field in fields) for token in tokens)


def _line_columns(line: OrderLineView) -> dict[str, Any]:
    return dataclasses.asdict(line)
