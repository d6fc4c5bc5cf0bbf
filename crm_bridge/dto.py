"""Frozen data returned across the store's boundary: never ORM objects (async lazy loads fail)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from crm_bridge.contract.outcomes import CallFacts


@dataclass(frozen=True)
class ProductView:
    sku: str
    price: Decimal
    unit: str  # counted noun, nominative singular: "бутылка"
    name: str  # said after the noun: "воды «Жемчужная роса» 19 л"
    unit_en: str | None = None
    name_en: str | None = None


@dataclass(frozen=True)
class OrderLineView:
    sku: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    unit: str
    name: str
    unit_en: str | None = None
    name_en: str | None = None


@dataclass(frozen=True)
class InvoiceView:
    number: str
    issued_at: datetime
    subtotal: Decimal  # without VAT
    vat_rate: Decimal
    vat_amount: Decimal
    total: Decimal  # what the customer pays
    status: str = "issued"  # "issued" | "cancelled" (its order was cancelled)
    revision: int = 1  # + 1 each time its order is edited (recomputed under the same number)


@dataclass(frozen=True)
class OrderView:
    order_id: str  # external id (import) or generated number ("A-1002")
    customer_id: str
    ordered_at: datetime
    lines: tuple[OrderLineView, ...]
    total: Decimal
    source: str  # "import" | "ivr" | "operator"
    delivery_date: date | None = None
    invoice: InvoiceView | None = None
    status: str = "placed"  # "placed" | "cancelled"
    revision: int = 1  # + 1 per edit
    changed_at: datetime | None = None  # the last cancel or edit: when, by whom, why
    changed_by: str | None = None
    change_reason: str | None = None
    change_deadline: datetime | None = None  # aware UTC; None: never changeable (no delivery date)
    call_id: str | None = None  # the call it was placed in (robot or operator); None for imports

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    def same_lines(self, lines: Sequence[tuple[str, int]]) -> bool:
        """The same multiset of (sku, quantity) as ``lines`` (zero quantities left out)."""
        asked = sorted((sku, qty) for sku, qty in lines if qty > 0)
        return asked == sorted((line.sku, line.quantity) for line in self.lines)

    def difference(self, customer_id: str, lines: Sequence[tuple[str, int]], source: str) -> str | None:
        """What makes a request under this order's idempotency key another order: ``"customer"``,
        ``"lines"`` or ``"source"``; None when it asks for this very order again (a replay).

        Lines compare as a multiset of (sku, quantity), zero quantities left out (they are never
        stored): the order of the lines does not matter, their quantities do.
        """
        if customer_id != self.customer_id:
            return "customer"
        if not self.same_lines(lines):
            return "lines"
        if source != self.source:
            return "source"
        return None


@dataclass(frozen=True)
class CustomerView:
    customer_id: str
    last_name: str
    first_name: str
    patronymic: str
    language: str  # "ru" | "en"
    address: str
    phones: tuple[str, ...]  # E.164
    # A company customer: legal name, ИНН, КПП (the invoice's buyer); "" for a private person.
    company: str = ""
    inn: str = ""
    kpp: str = ""


LookupStatus = Literal["found", "unknown", "shared", "invalid"]


@dataclass(frozen=True)
class CallerLookup:
    """Who is calling: exactly one customer ("found"), nobody, several, or an unusable number."""

    status: LookupStatus
    number: str | None  # E.164 when the raw caller id could be normalized
    customer: CustomerView | None = None
    last_order: OrderView | None = None
    candidate_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlacedOrder:
    order: OrderView
    invoice: InvoiceView
    created: bool  # False when the same call key had already placed it (idempotent replay)
    deal_id: int | None = None  # the deal made with it (None on a replay)


@dataclass(frozen=True)
class CallView:
    call_id: str  # Asterisk linkedid (or uniqueid)
    caller_number: str | None  # raw caller id as Asterisk sent it
    normalized_number: str | None
    customer_id: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    reason: str | None
    order_id: str | None
    # Filled by the AMI call tracker (None until known); appended so positional uses keep working.
    queue: str | None = None
    queue_entered_at: datetime | None = None
    wait_seconds: float | None = None
    answered_at: datetime | None = None
    talk_seconds: float | None = None
    operator_interface: str | None = None
    operator_name: str | None = None
    hangup_by: str | None = None  # "caller" | "operator" | "system"
    recording_path: str | None = None
    recording_seconds: float | None = None
    recording_bytes: int | None = None
    transfers: int | None = None
    # What the witnesses saw; ``outcome`` is decide_outcome of these (rows older than facts: implied).
    facts: CallFacts = CallFacts()


@dataclass(frozen=True)
class TimelineEventView:
    seq: int
    at: datetime
    call_id: str | None
    customer_id: str | None
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class CustomerCard:
    customer: CustomerView
    orders: tuple[OrderView, ...]  # newest first, each with lines and invoice


CallbackStatus = Literal["open", "done", "no_answer", "cancelled"]


@dataclass(frozen=True)
class CallbackTaskView:
    """A customer to call back; at most one task per customer (or number) is open at a time."""

    task_id: int
    customer_id: str | None  # external customer id
    number: str | None  # E.164
    reason: str  # "abandoned_in_queue", several joined by "; " when the customer called again
    due_at: datetime
    status: str  # CallbackStatus
    created_at: datetime
    updated_at: datetime
    call_id: str | None  # the call that opened the task
    attempts: int  # requests folded into this task + unanswered call-backs
    note: str | None


@dataclass(frozen=True)
class TimelineEventIn:
    """One timeline event to store; ``data`` must be JSON-serializable (Decimal/datetime become str)."""

    at: datetime
    call_id: str | None
    customer_id: str | None
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class OutboxBacklog:
    """One target's outbox as /healthz and /metrics report it."""

    pending: int  # waiting for their turn or their next attempt
    dead: int  # dead letters an admin has not retried
    oldest_pending_seconds: float | None  # age of the oldest pending event: a stuck target shows here


@dataclass(frozen=True)
class OutboxItem:
    """One outbox row (crm_bridge.outbox): an event promised to one target."""

    id: int
    event_id: str
    target: str
    kind: str
    call_id: str | None
    occurred_at: datetime
    payload: dict[str, Any]
    state: str  # crm_bridge.contract.crm.OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    remote_ref: str | None
    created_at: datetime
    delivered_at: datetime | None
    subject: str | None = None  # "order:<id>" for an order's events (crm_bridge.outbox.routing.subject_of)


@dataclass(frozen=True)
class DealView:
    """A deal (сделка): the commercial thread of an order, or a lead-like deal of an unknown caller."""

    deal_id: int
    title: str
    stage: str  # a code of the configured pipeline (crm_bridge.deals.Pipeline)
    stage_name: str  # its display name ("Новая"); the raw code when the pipeline no longer has it
    closed: bool  # the stage is a closed one (closed_at set)
    owner: str | None  # console username; None: the robot or an import
    amount: Decimal  # what the customer pays for its order
    currency: str
    customer_id: str | None  # external id; None for a lead-like deal
    phone: str | None  # E.164 of a lead-like deal's caller
    order_id: str | None  # the order's number; None for a lead-like deal
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
