"""CrmStore: the unit-of-work boundary. One session per call, one commit at the end, DTOs out."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import case, func
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge import repositories as repo
from crm_bridge.db import SQLITE_BEGIN
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
    EmptyOrder,
    IdempotencyConflict,
    InactiveProduct,
    InvalidQuantity,
    InvalidSource,
    StoreUnavailable,
    UnknownCustomer,
    UnknownProduct,
)
from crm_bridge.models import Call, CallbackTask, Customer, Invoice, Order, OrderLine, Product, as_utc
from crm_bridge.money import money, vat_split
from crm_bridge.phones import normalize_phone
from crm_bridge.views import (
    call_view,
    callback_task_view,
    customer_view,
    line_view,
    order_view,
    product_view,
    timeline_view,
)

log = structlog.get_logger(__name__)

ORDER_SOURCES = frozenset({"import", "ivr", "operator"})
# Outcomes the AMI call tracker refines after the IVR ("abandoned" -> "abandoned_in_ivr" …): the IVR
# runner's own end-of-call write, when it arrives late, must not undo them.
REFINED_OUTCOMES = frozenset(
    {"operator_answered", "abandoned_in_queue", "abandoned_in_ivr", "callback_requested", "queue_timeout"}
)
# Columns update_call may set; customer_id is the EXTERNAL id (mapped to the FK like record_call_end).
CALL_FIELDS = frozenset(c.name for c in Call.__table__.columns) - {"call_id"}
CALLBACK_CLOSE_STATUSES = frozenset({"done", "no_answer", "cancelled"})
# "No answer" keeps the task open and tries again this much later.
CALLBACK_RETRY = timedelta(hours=1)
ORDER_SEQUENCE = "order"
INVOICE_SEQUENCE = "invoice"


@dataclass(frozen=True)
class StoreConfig:
    vat_rate: Decimal = Decimal("20")
    prices_include_vat: bool = True
    invoice_prefix: str = "СЧ-"
    order_prefix: str = "A-"
    delivery: DeliveryRules = field(default_factory=DeliveryRules)
    timezone: str = "Europe/Moscow"


class CrmStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: StoreConfig | None = None) -> None:
        self.sessions = sessions
        self.config = config or StoreConfig()
        self._tz = ZoneInfo(self.config.timezone)  # fail at start-up on a bad zone, not mid-call

    @asynccontextmanager
    async def _unit(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        try:
            async with self.sessions() as session:
                if write:
                    # SQLite: take the write lock up front (see crm_bridge.db); ignored by PostgreSQL.
                    await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
                yield session
        except IntegrityError:
            raise  # place_order settles idempotency races with it
        except (DBAPIError, OSError) as exc:
            # Driver and network failures become our own error: callers catch CrmError only.
            log.warning("store_unavailable", error=str(exc).splitlines()[0][:200])
            raise StoreUnavailable(str(exc).splitlines()[0][:200]) from exc

    # --- callers -------------------------------------------------------------------------------

    async def lookup_caller(self, raw_number: str | None) -> CallerLookup:
        """Who is calling, in at most two queries (the call is waiting on this)."""
        number = normalize_phone(raw_number)
        if number is None:
            return CallerLookup(status="invalid", number=None)
        async with self._unit() as session:
            owners = await repo.customers_by_phone(session, number)
            if not owners:
                return CallerLookup(status="unknown", number=number)
            if len(owners) > 1:
                ids = tuple(customer.customer_id for customer, _ in owners)
                return CallerLookup(status="shared", number=number, candidate_ids=ids)
            customer, phones = owners[0]
            last = await repo.last_order_of(session, customer.id)
        last_order = None
        if last is not None:
            order, invoice, lines = last
            # Read back with today's wording, but the quantities and prices as sold.
            views = [line_view(line, product) for line, product in lines]
            last_order = order_view(order, customer.customer_id, views, invoice)
        return CallerLookup(
            status="found",
            number=number,
            customer=customer_view(customer, phones),
            last_order=last_order,
        )

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
            order_view(order, customer_id, [line_view(line) for line in lines.get(order.id, [])], invoice)
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
    ) -> PlacedOrder:
        """Create order + lines + invoice in one transaction, once per ``idempotency_key``.

        A replay (retry, AGI reconnect, a concurrent duplicate) returns the first order with
        ``created=False``. Races are settled by the unique index on the key, not by a prior read.
        """
        if source not in ORDER_SOURCES:
            raise InvalidSource(source)
        wanted = _positive_lines(lines)
        if not wanted:
            raise EmptyOrder()
        ordered_at = as_utc(now) if now is not None else datetime.now(UTC)
        try:
            async with self._unit(write=True) as session:
                existing = await self._replay(session, idempotency_key, customer_id)
                if existing is not None:
                    return existing
                placed = await self._create_order(
                    session, idempotency_key, customer_id, wanted, source, call_id, ordered_at
                )
                await session.commit()
        except IntegrityError:
            # Someone committed the same key between our read and our insert: theirs wins.
            async with self._unit() as session:
                existing = await self._replay(session, idempotency_key, customer_id)
            if existing is None:
                raise
            return existing
        log.info(
            "order_placed",
            order_id=placed.order.order_id,
            invoice=placed.invoice.number,
            customer_id=customer_id,
            total=str(placed.invoice.total),
            source=source,
            call_id=call_id,
        )
        return placed

    async def order_for_key(self, idempotency_key: str, customer_id: str) -> PlacedOrder | None:
        """The order a key already placed, if any (to settle a write whose outcome is unknown)."""
        async with self._unit() as session:
            return await self._replay(session, idempotency_key, customer_id)

    async def _replay(self, session: AsyncSession, key: str, customer_id: str) -> PlacedOrder | None:
        found = await repo.order_by_idempotency_key(session, key)
        if found is None:
            return None
        order, invoice, owner = found
        if owner != customer_id:
            raise IdempotencyConflict(key, order.order_id)
        lines = (await repo.lines_of_orders(session, [order.id])).get(order.id, [])
        view = order_view(order, owner, [line_view(line) for line in lines], invoice)
        assert view.invoice is not None  # orders with a key are only made here, always with one
        log.info("order_replayed", order_id=order.order_id, idempotency_key=key)
        return PlacedOrder(order=view, invoice=view.invoice, created=False)

    async def _create_order(
        self,
        session: AsyncSession,
        key: str,
        customer_id: str,
        wanted: list[tuple[str, int]],
        source: str,
        call_id: str | None,
        ordered_at: datetime,
    ) -> PlacedOrder:
        customer = await repo.customer_by_external_id(session, customer_id)
        if customer is None:
            raise UnknownCustomer(customer_id)
        products = await repo.products_by_sku(session, [sku for sku, _ in wanted])
        priced = [_priced(products, sku, qty) for sku, qty in wanted]
        subtotal, vat, payable = vat_split(
            sum((line.amount for line in priced), Decimal(0)),
            self.config.vat_rate,
            included=self.config.prices_include_vat,
        )
        order = Order(
            order_id=await self._free_order_number(session),
            customer_id=customer.id,
            ordered_at=ordered_at,
            source=source,
            idempotency_key=key,
            call_id=call_id,
            delivery_date=self._delivery_date(ordered_at),
            total=sum((line.amount for line in priced), Decimal(0)),
        )
        session.add(order)
        await session.flush()  # a duplicate key fails here, before the invoice number is taken
        session.add_all(
            OrderLine(order_id=order.id, line_no=no, **_line_columns(line))
            for no, line in enumerate(priced, start=1)
        )
        invoice = Invoice(
            number=f"{self.config.invoice_prefix}{await repo.next_sequence_value(session, INVOICE_SEQUENCE)}",
            order_id=order.id,
            issued_at=ordered_at,
            subtotal=subtotal,
            vat_rate=self.config.vat_rate,
            vat_amount=vat,
            total=payable,
        )
        session.add(invoice)
        await session.flush()
        view = order_view(order, customer_id, priced, invoice)
        assert view.invoice is not None
        return PlacedOrder(order=view, invoice=view.invoice, created=True)

    async def _free_order_number(self, session: AsyncSession) -> str:
        """Next generated order number, skipping any an import already used (imports bring their own)."""
        while True:
            number = f"{self.config.order_prefix}{await repo.next_sequence_value(session, ORDER_SEQUENCE)}"
            if not await repo.orders_by_external_ids(session, [number]):
                return number
            log.warning("order_number_taken_by_import", order_id=number)

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
        outcome: str | None,
        reason: str | None,
        ended_at: datetime,
        customer_id: str | None = None,
        order_id: str | None = None,
        events: Sequence[TimelineEventIn] = (),
    ) -> None:
        """Close the call; a call whose start was never recorded is created (the log must not lose it).

        ``events``: the call's last timeline events, written in the same transaction (one commit
        per call end instead of two: the end of a call is the hot path under a burst).
        """
        values: dict[str, Any] = {"outcome": outcome, "reason": reason, "ended_at": as_utc(ended_at)}
        if order_id is not None:
            values["order_id"] = order_id
        customer_pk = repo.customer_pk_subquery(customer_id)
        # An unknown customer id must not erase the customer the call was started with.
        update = dict(values)
        # The AMI tracker may already have refined the outcome (the call ended after the AGI did):
        # keep its outcome and end time then; the runner's reason still says where the IVR stopped.
        refined = Call.outcome.in_(sorted(REFINED_OUTCOMES))
        update["outcome"] = case((refined, Call.outcome), else_=outcome)
        update["ended_at"] = case((refined, Call.ended_at), else_=values["ended_at"])
        if customer_pk is not None:
            update["customer_id"] = func.coalesce(customer_pk, Call.customer_id)
        async with self._unit(write=True) as session:
            if not await repo.update_call(session, call_id, update):
                log.warning("call_end_without_start", call_id=call_id)
                await repo.insert_call_if_absent(
                    session,
                    {"call_id": call_id, "started_at": values["ended_at"], "customer_id": customer_pk, **values},
                )
            await repo.insert_timeline_events(session, _timeline_rows(events))
            await session.commit()

    async def update_call(self, call_id: str, **fields: Any) -> None:
        """Set some columns of a call, creating the row when we never saw the call begin.

        AMI-only calls (our FastAGI was down, a direct queue call, the tracker started mid-call)
        get a row whose ``started_at`` is ``fields["started_at"]`` or now; on an existing row
        ``started_at`` is left alone (the IVR's own start time wins). ``customer_id`` is the
        external id; an unknown one never erases a known customer. Unknown field names raise
        ValueError (a typo must not be silently dropped).
        """
        unknown = set(fields) - CALL_FIELDS
        if unknown:
            raise ValueError(f"unknown call fields: {sorted(unknown)}")
        values = {k: (as_utc(v) if isinstance(v, datetime) else v) for k, v in fields.items()}
        started_at = values.pop("started_at", None) or datetime.now(UTC)
        customer_id = values.pop("customer_id", None)
        customer_pk = repo.customer_pk_subquery(customer_id)
        update = dict(values)
        if customer_pk is not None:
            update["customer_id"] = func.coalesce(customer_pk, Call.customer_id)
        async with self._unit(write=True) as session:
            if not update or not await repo.update_call(session, call_id, update):
                inserted = await repo.insert_call_if_absent(
                    session, {"call_id": call_id, "started_at": started_at, "customer_id": customer_pk, **values}
                )
                if not inserted and update:  # created concurrently (IVR start): apply ours on top
                    await repo.update_call(session, call_id, update)
            await session.commit()

    async def add_timeline_events(self, events: Sequence[TimelineEventIn]) -> None:
        rows = _timeline_rows(events)
        if not rows:
            return
        async with self._unit(write=True) as session:
            await repo.insert_timeline_events(session, rows)
            await session.commit()

    async def list_calls(self, limit: int = 50, offset: int = 0) -> list[CallView]:
        async with self._unit() as session:
            rows = await repo.calls_page(session, max(0, limit), max(0, offset))
        return [call_view(call, customer_id) for call, customer_id in rows]

    async def get_call(self, call_id: str) -> CallView | None:
        async with self._unit() as session:
            row = await repo.call_by_id(session, call_id)
        return None if row is None else call_view(*row)

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
                    kind="order.placed",
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
                    kind="call.recorded",
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


def _timeline_rows(events: Sequence[TimelineEventIn]) -> list[dict[str, Any]]:
    return [
        {"at": as_utc(e.at), "call_id": e.call_id, "customer_id": e.customer_id, "kind": e.kind, "data": dict(e.data)}
        for e in events
    ]


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


def _positive_lines(lines: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Validate quantities (ints ≥ 0; bool is not a quantity) and drop the zero ones."""
    out = []
    for sku, qty in lines:
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 0:
            raise InvalidQuantity(sku, qty)
        if qty > 0:
            out.append((sku, qty))
    return out


def _priced(products: dict[str, Product], sku: str, quantity: int) -> OrderLineView:
    product = products.get(sku)
    if product is None:
        raise UnknownProduct(sku)
    if not product.active:
        raise InactiveProduct(sku)
    return OrderLineView(
        sku=sku,
        quantity=quantity,
        unit_price=product.price,
        amount=money(product.price * quantity),
        unit=product.unit,
        name=product.name,
        unit_en=product.unit_en,
        name_en=product.name_en,
    )


def _line_columns(line: OrderLineView) -> dict[str, Any]:
    return dataclasses.asdict(line)
