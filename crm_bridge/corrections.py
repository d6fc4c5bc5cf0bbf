"""What an operator corrects in the store from the console (issue 10): new customers, a number
attached to a customer (a shared number when it already had an owner), an address, a cancelled or
edited order, a note on a callback task, and the "repeat order?" check before an order is placed.

Mixed into ``CrmStore`` (``crm_bridge.services``): the same units of work, DTOs out. Every change is
written together with its timeline event (the customer's timeline says who did what, when, why),
in one transaction. ``by`` is the signed-in console user's name; ``now`` is injectable (tests).

Orders change until the cut-off of the day before their delivery date
(``crm_bridge.delivery.change_deadline``); see crm_bridge/README.md, "Correcting an order".
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge import repositories as repo
from crm_bridge.call_log import TimelineRecord
from crm_bridge.contract.events import EventKind
from crm_bridge.deals import deal_event, deal_for_order_pk, move
from crm_bridge.delivery import DeliveryRules, change_deadline
from crm_bridge.dto import CallbackTaskView, CustomerView, OrderLineView, OrderView
from crm_bridge.errors import (
    ChangeReasonRequired,
    EmptyOrder,
    InvalidCustomer,
    OrderNotChangeable,
    UnknownCustomer,
    UnknownOrder,
    UnknownTask,
)
from crm_bridge.models import Customer, Order, Phone, TimelineEvent, as_utc
from crm_bridge.money import money, vat_split
from crm_bridge.phones import normalize_phone
from crm_bridge.pricing import positive_lines, priced
from crm_bridge.views import callback_task_view, customer_view, line_payload, line_view, order_view

log = structlog.get_logger(__name__)

CUSTOMER_COUNTER = "customer"  # sequences row numbering customers made in the console
MAX_REASON = 500
MAX_NOTE = 2000
MAX_ADDRESS = 500
NAME_FIELDS = {"last_name": "фамилия", "first_name": "имя", "patronymic": "отчество"}
MAX_NAME = 100  # models.Customer name columns


def _now(now: datetime | None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


def _reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise ChangeReasonRequired()
    return text[:MAX_REASON]


def _event(kind: EventKind, at: datetime, customer_id: str | None, data: dict[str, Any],
           call_id: str | None = None) -> TimelineEvent:
    return TimelineEvent(at=at, call_id=call_id, customer_id=customer_id, kind=kind.value, data=data)


def _line_dicts(lines: Sequence[OrderLineView]) -> list[dict[str, Any]]:
    return [line_payload(line) for line in lines]


class Corrections:
    """Console corrections; a mixin of ``CrmStore``, whose parts it uses:"""

    config: Any  # StoreConfig
    _tz: ZoneInfo
    if TYPE_CHECKING:
        def _unit(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncSession]: ...
        async def _enqueue(self, conn: Any, record: TimelineRecord) -> None: ...

    async def _order_event(self, session: AsyncSession, kind: EventKind, at: datetime, customer_id: str,
                           data: dict[str, Any]) -> None:
        """The order's timeline event and, with CRM targets, its outbox rows: one transaction."""
        record = TimelineRecord(at=at, call_id=None, customer_id=customer_id, kind=kind.value, data=data)
        repo.add_event(session, TimelineEvent(at=at, call_id=None, customer_id=customer_id, kind=kind.value,
                                              data=data, event_uid=record.uid))
        await session.flush()
        await self._enqueue(session, record)

    # --- deadlines ------------------------------------------------------------------------------

    def change_deadline(self, delivery: date | None) -> datetime | None:
        """Aware UTC end of the time an order delivered on ``delivery`` may be changed; None: never."""
        if delivery is None:
            return None
        rules: DeliveryRules = self.config.delivery
        return change_deadline(delivery, rules).replace(tzinfo=self._tz).astimezone(UTC)

    def _check_changeable(self, order: Order, now: datetime) -> None:
        if order.status == "cancelled":
            raise OrderNotChangeable(order.order_id, "cancelled", f"Заказ {order.order_id} уже отменён.")
        deadline = self.change_deadline(order.delivery_date)
        if deadline is None:
            raise OrderNotChangeable(order.order_id, "no_delivery_date",
                                     f"Заказ {order.order_id} без даты доставки (из учётной системы): "
                                     "его меняют в учётной системе.")
        if now >= deadline:
            local = deadline.astimezone(self._tz)
            raise OrderNotChangeable(
                order.order_id, "cutoff",
                f"Заказ {order.order_id} уже нельзя изменить или отменить: приём изменений на доставку "
                f"{order.delivery_date:%d.%m.%Y} закрыт {local:%d.%m.%Y в %H:%M}. Свяжитесь со складом.")

    # --- customers and phones -------------------------------------------------------------------

    async def create_customer(
        self,
        *,
        last_name: str,
        first_name: str,
        patronymic: str = "",
        address: str = "",
        language: str = "ru",
        number: str | None = None,
        call_id: str | None = None,
        by: str,
        now: datetime | None = None,
    ) -> CustomerView:
        """A new customer with a generated id (``<customer_prefix><n>``) and, when given, the
        number they called from. ``call_id``: the call they were made from; its event names the
        call, so that call's story joins the customer's timeline. Raises ``InvalidCustomer``
        naming the bad field."""
        names = {"last_name": last_name, "first_name": first_name, "patronymic": patronymic}
        names = {k: " ".join((v or "").split()) for k, v in names.items()}
        for field, value in names.items():
            if len(value) > MAX_NAME:
                raise InvalidCustomer(field, f"Поле «{NAME_FIELDS[field]}» длиннее {MAX_NAME} знаков.")
        if not names["last_name"] and not names["first_name"]:
            raise InvalidCustomer("last_name", "Укажите фамилию или имя клиента.")
        address = " ".join((address or "").split())
        if len(address) > MAX_ADDRESS:
            raise InvalidCustomer("address", f"Адрес длиннее {MAX_ADDRESS} знаков.")
        if language not in ("ru", "en"):
            raise InvalidCustomer("language", "Язык: русский или английский.")
        normalized = None
        if number and number.strip():
            normalized = normalize_phone(number)
            if normalized is None:
                raise InvalidCustomer("number", f"Номер «{number.strip()}» не распознан: нужен российский номер.")
        at = _now(now)
        async with self._unit(write=True) as session:
            while True:  # an imported customer may already hold a generated id: skip it
                customer_id = f"{self.config.customer_prefix}{await repo.next_counter(session, CUSTOMER_COUNTER)}"
                if not await repo.customer_id_taken(session, customer_id):
                    break
            customer = Customer(customer_id=customer_id, language=language, address=address, created_at=at,
                                updated_at=at, **names)
            session.add(customer)
            await session.flush()
            shared: list[str] = []
            if normalized is not None:
                shared = await repo.owners_of_phone(session, normalized)
                session.add(Phone(number=normalized, customer_id=customer.id))
            name = " ".join(v for v in names.values() if v)
            repo.add_event(session, _event(EventKind.CUSTOMER_CREATED, at, customer_id,
                                           {"by": by, "number": normalized, "name": name}, call_id=call_id))
            if shared:
                repo.add_event(session, _event(EventKind.PHONE_ATTACHED, at, customer_id,
                                               {"by": by, "number": normalized, "shared_with": shared},
                                               call_id=call_id))
            await session.flush()
            view = customer_view(customer, [normalized] if normalized else [])
            await session.commit()
        log.info("customer_created", customer_id=customer_id, by=by, number=normalized, shared_with=shared)
        return view

    async def attach_phone(self, customer_id: str, number: str, *, by: str, call_id: str | None = None,
                           now: datetime | None = None) -> CustomerView:
        """Attach ``number`` to the customer; when others own it already it becomes a shared number
        (the robot then hands the caller to an operator, who picks). Attaching twice changes nothing.
        ``call_id``: as for ``create_customer``."""
        normalized = normalize_phone(number)
        if normalized is None:
            raise InvalidCustomer("number", f"Номер «{(number or '').strip()}» не распознан: нужен российский номер.")
        at = _now(now)
        async with self._unit(write=True) as session:
            customer = await repo.customer_by_external_id(session, customer_id)
            if customer is None:
                raise UnknownCustomer(customer_id)
            owners = await repo.owners_of_phone(session, normalized)
            if customer_id not in owners:
                session.add(Phone(number=normalized, customer_id=customer.id))
                repo.add_event(session, _event(EventKind.PHONE_ATTACHED, at, customer_id,
                                               {"by": by, "number": normalized, "shared_with": owners},
                                               call_id=call_id))
                await session.flush()
            phones = (await repo.phones_of(session, [customer.id])).get(customer.id, [])
            view = customer_view(customer, phones)
            await session.commit()
        log.info("phone_attached", customer_id=customer_id, number=normalized, by=by, shared_with=owners)
        return view

    async def change_address(self, customer_id: str, address: str, *, by: str,
                             now: datetime | None = None) -> CustomerView:
        text = " ".join((address or "").split())
        if not text:
            raise InvalidCustomer("address", "Укажите адрес.")
        if len(text) > MAX_ADDRESS:
            raise InvalidCustomer("address", f"Адрес длиннее {MAX_ADDRESS} знаков.")
        at = _now(now)
        async with self._unit(write=True) as session:
            customer = await repo.customer_by_external_id(session, customer_id)
            if customer is None:
                raise UnknownCustomer(customer_id)
            previous = customer.address
            if text != previous:
                customer.address = text
                customer.updated_at = at
                repo.add_event(session, _event(EventKind.CUSTOMER_CHANGED, at, customer_id,
                                               {"by": by, "address": text, "previous_address": previous}))
                await session.flush()
            phones = (await repo.phones_of(session, [customer.id])).get(customer.id, [])
            view = customer_view(customer, phones)
            await session.commit()
        log.info("customer_address_changed", customer_id=customer_id, by=by)
        return view

    # --- orders ---------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> OrderView | None:
        async with self._unit() as session:
            found = await repo.order_for_change(session, order_id)
            if found is None:
                return None
            order, invoice, customer_id = found
            lines = (await repo.lines_of_orders(session, [order.id])).get(order.id, [])
        return order_view(order, customer_id, [line_view(line) for line in lines], invoice,
                          self.change_deadline(order.delivery_date))

    async def _order_to_change(self, session: Any, order_id: str, at: datetime) -> tuple[Any, Any, str]:
        """The order (locked), its invoice and its customer's id, if it may still change at ``at``."""
        found = await repo.order_for_change(session, order_id)
        if found is None:
            raise UnknownOrder(order_id)
        self._check_changeable(found[0], at)
        return found

    async def cancel_order(self, order_id: str, *, reason: str, by: str,
                           now: datetime | None = None) -> OrderView:
        """Cancel the order (until its change deadline); its invoice is marked cancelled, keeping
        its number (a gapless invoice series never loses a number)."""
        why = _reason(reason)
        at = _now(now)
        async with self._unit(write=True) as session:
            order, invoice, customer_id = await self._order_to_change(session, order_id, at)
            order.status = "cancelled"
            order.changed_at, order.changed_by, order.change_reason = at, by, why
            if invoice is not None:
                invoice.status = "cancelled"
            deal = await deal_for_order_pk(session, order.id)
            if deal is not None and deal.stage != self.config.deals.cancelled:
                previous = move(deal, self.config.deals.cancelled, self.config.deals, at)
                repo.add_event(session, deal_event(EventKind.DEAL_STAGE_CHANGED, at, deal, customer_id, {
                    "by": by, "stage": deal.stage, "previous_stage": previous, "reason": why,
                    "order_id": order.order_id}))
            await self._order_event(session, EventKind.ORDER_CANCELLED, at, customer_id, {
                "order_id": order.order_id, "by": by, "reason": why, "total": str(order.total),
                "invoice": invoice.number if invoice is not None else None,
                "delivery_date": order.delivery_date.isoformat() if order.delivery_date else None,
            })
            lines = (await repo.lines_of_orders(session, [order.id])).get(order.id, [])
            view = order_view(order, customer_id, [line_view(line) for line in lines], invoice,
                              self.change_deadline(order.delivery_date))
            await session.commit()
        log.info("order_cancelled", order_id=order_id, by=by, reason=why)
        return view

    async def change_order(self, order_id: str, lines: Sequence[tuple[str, int]], *, reason: str, by: str,
                           now: datetime | None = None) -> OrderView:
        """Replace the order's lines (until its change deadline). A product already in the order
        keeps the price and wording it was sold at; a product added is priced from today's
        catalogue (and must be on sale). The invoice keeps its number and is recomputed with
        revision + 1 at the VAT rate it was issued with; the delivery date stays."""
        why = _reason(reason)
        wanted = positive_lines(lines)
        if not wanted:
            raise EmptyOrder()
        at = _now(now)
        async with self._unit(write=True) as session:
            order, invoice, customer_id = await self._order_to_change(session, order_id, at)
            sold = {line.sku: line for line in (await repo.lines_of_orders(session, [order.id])).get(order.id, [])}
            before = [line_view(line) for line in sold.values()]
            merged: dict[str, int] = {}
            for sku, quantity in wanted:  # the same product twice is one line
                merged[sku] = merged.get(sku, 0) + quantity
            if sorted(merged.items()) == sorted((line.sku, line.quantity) for line in before):
                raise OrderNotChangeable(order_id, "unchanged", "Состав заказа не изменился.")
            new_skus = [sku for sku in merged if sku not in sold]
            products = await repo.products_by_sku(session, new_skus) if new_skus else {}
            new_lines: list[OrderLineView] = []
            for sku, quantity in merged.items():
                if sku in sold:
                    kept = line_view(sold[sku])
                    new_lines.append(OrderLineView(sku=sku, quantity=quantity, unit_price=kept.unit_price,
                                                   amount=money(kept.unit_price * quantity), unit=kept.unit,
                                                   name=kept.name, unit_en=kept.unit_en, name_en=kept.name_en))
                else:
                    new_lines.append(priced(products, sku, quantity))
            previous_total = order.total
            total = money(sum((line.amount for line in new_lines), Decimal(0)))
            await repo.replace_order_lines(session, order.id, [_columns(line) for line in new_lines])
            order.total = total
            order.revision = (order.revision or 1) + 1
            order.changed_at, order.changed_by, order.change_reason = at, by, why
            if invoice is not None:
                rate = Decimal(invoice.vat_rate)
                subtotal, vat, payable = vat_split(total, rate, included=self.config.prices_include_vat)
                invoice.subtotal, invoice.vat_amount, invoice.total = subtotal, vat, payable
                invoice.revision = order.revision
                invoice.issued_at = at
            deal = await deal_for_order_pk(session, order.id)
            if deal is not None:  # the deal's amount is what the customer pays now
                deal.amount = invoice.total if invoice is not None else total
                deal.updated_at = at
            await self._order_event(session, EventKind.ORDER_CHANGED, at, customer_id, {
                "order_id": order.order_id, "by": by, "reason": why, "revision": order.revision,
                "previous_total": str(previous_total), "total": str(total),
                "invoice": invoice.number if invoice is not None else None,
                "lines": _line_dicts(new_lines), "previous_lines": _line_dicts(before),
            })
            view = order_view(order, customer_id, new_lines, invoice, self.change_deadline(order.delivery_date))
            await session.commit()
        log.info("order_changed", order_id=order_id, by=by, reason=why, revision=view.revision, total=str(total))
        return view

    async def recent_same_order(self, customer_id: str, lines: Sequence[tuple[str, int]], *,
                                within: timedelta, now: datetime | None = None) -> OrderView | None:
        """The customer's newest order (not cancelled) of the last ``within`` with the same lines
        (a multiset of sku and quantity), or None: "a repeat order?" is asked before another is
        placed. Only a question: two operators may still place the same order at the same moment."""
        wanted = positive_lines(lines)
        if not wanted or within <= timedelta(0):
            return None
        since = _now(now) - within
        async with self._unit() as session:
            customer = await repo.customer_by_external_id(session, customer_id)
            if customer is None:
                return None
            orders = await repo.recent_orders_of_customer(session, customer.id, since)
            all_lines = await repo.lines_of_orders(session, [o.id for o in orders])
        for order in orders:
            view = order_view(order, customer_id, [line_view(line) for line in all_lines.get(order.id, [])], None)
            if view.same_lines(wanted):
                return view
        return None

    # --- callback tasks -------------------------------------------------------------------------

    async def add_task_note(self, task_id: int, note: str, *, by: str,
                            now: datetime | None = None) -> CallbackTaskView:
        """Append a note to a task (open or not) without closing it; on the timeline of the task's
        customer and call."""
        text = (note or "").strip()[:MAX_NOTE]
        if not text:
            raise ChangeReasonRequired()
        at = _now(now)
        async with self._unit(write=True) as session:
            task = await repo.callback_task_by_id(session, task_id, lock=True)
            if task is None:
                raise UnknownTask(task_id)
            task.note = f"{task.note}\n{by}: {text}" if task.note else f"{by}: {text}"
            task.updated_at = at
            repo.add_event(session, _event(EventKind.CALLBACK_NOTE, at, task.customer_id,
                                           {"by": by, "task_id": task.id, "note": text}, call_id=task.call_id))
            await session.flush()
            view = callback_task_view(task)
            await session.commit()
        log.info("callback_task_note", task_id=task_id, by=by)
        return view


def _columns(line: OrderLineView) -> dict[str, Any]:
    return {"sku": line.sku, "quantity": line.quantity, "unit_price": line.unit_price, "amount": line.amount,
            "unit": line.unit, "name": line.name, "unit_en": line.unit_en, "name_en": line.name_en}


__all__ = ["Corrections"]
