"""ORM rows -> frozen DTOs. The only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from crm_bridge import models as m
from crm_bridge.contract.outcomes import CallFacts, facts_implying
from crm_bridge.dto import (
    CallbackTaskView,
    CallView,
    CustomerView,
    InvoiceView,
    OrderLineView,
    OrderView,
    ProductView,
    TimelineEventView,
)


def customer_view(customer: m.Customer, phones: Iterable[str]) -> CustomerView:
    return CustomerView(
        customer_id=customer.customer_id,
        last_name=customer.last_name,
        first_name=customer.first_name,
        patronymic=customer.patronymic,
        language=customer.language,
        address=customer.address,
        phones=tuple(phones),
        company=customer.company,
        inn=customer.inn,
        kpp=customer.kpp,
    )


def product_view(product: m.Product) -> ProductView:
    return ProductView(
        sku=product.sku,
        price=product.price,
        unit=product.unit,
        name=product.name,
        unit_en=product.unit_en,
        name_en=product.name_en,
    )


def line_payload(line: OrderLineView) -> dict[str, Any]:
    """An order line as the order events carry it (``order.created`` / ``order.changed`` ``lines``):
    what a CRM's deal needs without reading our store (product rows: name, price, quantity)."""
    return {"sku": line.sku, "quantity": line.quantity, "unit": line.unit, "name": line.name,
            "price": str(line.unit_price)}


def line_view(line: m.OrderLine, current: m.Product | None = None) -> OrderLineView:
    """Sold quantity and prices always; wording from ``current`` when given, else the snapshot."""
    wording = current if current is not None else line
    return OrderLineView(
        sku=line.sku,
        quantity=line.quantity,
        unit_price=line.unit_price,
        amount=line.amount,
        unit=wording.unit,
        name=wording.name,
        unit_en=wording.unit_en,
        name_en=wording.name_en,
    )


def invoice_view(invoice: m.Invoice) -> InvoiceView:
    return InvoiceView(
        number=invoice.number,
        issued_at=invoice.issued_at,
        subtotal=invoice.subtotal,
        vat_rate=invoice.vat_rate,
        vat_amount=invoice.vat_amount,
        total=invoice.total,
        status=invoice.status or "issued",
        revision=invoice.revision or 1,
    )


def order_view(
    order: m.Order,
    customer_id: str,
    lines: Iterable[OrderLineView],
    invoice: m.Invoice | None,
    change_deadline: datetime | None = None,
) -> OrderView:
    return OrderView(
        order_id=order.order_id,
        customer_id=customer_id,
        ordered_at=order.ordered_at,
        lines=tuple(lines),
        total=order.total,
        source=order.source,
        delivery_date=order.delivery_date,
        invoice=invoice_view(invoice) if invoice is not None else None,
        status=order.status or "placed",
        revision=order.revision or 1,
        changed_at=order.changed_at,
        changed_by=order.changed_by,
        change_reason=order.change_reason,
        change_deadline=change_deadline,
        call_id=order.call_id,
    )


def call_view(call: m.Call, customer_id: str | None) -> CallView:
    return CallView(
        call_id=call.call_id,
        caller_number=call.caller_number,
        normalized_number=call.normalized_number,
        customer_id=customer_id,
        started_at=call.started_at,
        ended_at=call.ended_at,
        outcome=call.outcome,
        reason=call.reason,
        order_id=call.order_id,
        queue=call.queue,
        queue_entered_at=call.queue_entered_at,
        wait_seconds=call.wait_seconds,
        answered_at=call.answered_at,
        talk_seconds=call.talk_seconds,
        operator_interface=call.operator_interface,
        operator_name=call.operator_name,
        hangup_by=call.hangup_by,
        recording_path=call.recording_path,
        recording_seconds=call.recording_seconds,
        recording_bytes=call.recording_bytes,
        transfers=call.transfers,
        facts=row_facts(call.facts, call.outcome, call.order_id),
    )


def row_facts(facts: dict | None, outcome: str | None, order_id: str | None) -> CallFacts:
    """A row's facts; a row written before facts existed says them by its outcome."""
    return CallFacts.from_json(facts) if facts is not None else facts_implying(outcome, order_id)


def callback_task_view(task: m.CallbackTask) -> CallbackTaskView:
    return CallbackTaskView(
        task_id=task.id,
        customer_id=task.customer_id,
        number=task.number,
        reason=task.reason,
        due_at=task.due_at,
        status=task.status,
        created_at=task.created_at,
        updated_at=task.updated_at,
        call_id=task.call_id,
        attempts=task.attempts,
        note=task.note,
    )


def timeline_view(event: m.TimelineEvent) -> TimelineEventView:
    return TimelineEventView(
        seq=event.id,
        at=event.at,
        call_id=event.call_id,
        customer_id=event.customer_id,
        kind=event.kind,
        data=dict(event.data or {}),
    )
