"""SQLAlchemy declarative models of the CRM store.

Services read these through explicit queries and return DTOs, so relationships are not declared:
there is nothing a caller could lazy-load by accident (async lazy loads fail).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from crm_bridge.money import money

# Deterministic constraint names: migrations and both backends agree on them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC; always reads back tz-aware (SQLite drops the offset and returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """Numeric(12, 2) that always reads back as a quantized Decimal (SQLite goes through float)."""

    impl = Numeric(12, 2)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else money(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else money(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC from an aware datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64), unique=True)
    last_name: Mapped[str] = mapped_column(String(100), default="")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    patronymic: Mapped[str] = mapped_column(String(100), default="")
    language: Mapped[str] = mapped_column(String(2), default="ru")
    address: Mapped[str] = mapped_column(Text, default="")
    # A company customer (the invoice's buyer is then the company): legal name, ИНН, КПП; "" otherwise.
    company: Mapped[str] = mapped_column(String(300), default="")
    inn: Mapped[str] = mapped_column(String(12), default="")
    kpp: Mapped[str] = mapped_column(String(9), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Phone(Base):
    """One number may belong to several customers (family, office): lookup then says "shared"."""

    __tablename__ = "phones"
    __table_args__ = (UniqueConstraint("number", "customer_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(20), index=True)  # E.164
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    price: Mapped[Decimal] = mapped_column(Money)
    unit: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    unit_en: Mapped[str | None] = mapped_column(String(50))
    name_en: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Order(Base):
    __tablename__ = "orders"
    # (customer, time, id): a customer's newest order is the first entry of a backward index scan,
    # ties on ordered_at included (migration 0004; the lookup reads it on every call).
    __table_args__ = (Index(None, "customer_id", "ordered_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    ordered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(16))  # import | ivr | operator
    # Unique: the database itself refuses a second order for the same call action (races included).
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    delivery_date: Mapped[date | None] = mapped_column(Date)
    total: Mapped[Decimal] = mapped_column(Money)
    # Corrections by an operator (migration 0008): "placed" or "cancelled"; revision + 1 per edit;
    # the last change's time, who made it (the console user) and why. The full story is on the
    # customer's timeline (order.changed / order.cancelled events).
    status: Mapped[str] = mapped_column(String(16), default="placed", server_default=text("'placed'"))
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    changed_by: Mapped[str | None] = mapped_column(String(200))
    change_reason: Mapped[str | None] = mapped_column(Text)


class OrderLine(Base):
    """A sold line with a snapshot of the product's wording, so history reads back as it was sold."""

    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "line_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    unit: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    unit_en: Mapped[str | None] = mapped_column(String(50))
    name_en: Mapped[str | None] = mapped_column(String(200))


class Invoice(Base):
    """One invoice per order; its lines are the order's lines (an invoice never differs from them)."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    subtotal: Mapped[Decimal] = mapped_column(Money)
    vat_rate: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    vat_amount: Mapped[Decimal] = mapped_column(Money)
    total: Mapped[Decimal] = mapped_column(Money)
    # "issued" or "cancelled" (its order was cancelled); an edited order's invoice keeps its number
    # and is recomputed with revision + 1 (crm_bridge/README.md, "Correcting an order").
    status: Mapped[str] = mapped_column(String(16), default="issued", server_default=text("'issued'"))
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class SequenceCounter(Base):
    """Gapless counters of order and invoice numbers on SQLite (taken inside the write transaction).

    On PostgreSQL migration 0004 moved numbering to the sequences below and this table is left as it
    was then (see crm_bridge/README.md, "Numbers").
    """

    __tablename__ = "sequences"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


# PostgreSQL order and invoice numbers (migration 0004 starts them where the counters stood).
ORDER_NUMBER_SEQUENCE = Sequence("order_number_seq", start=1001, metadata=Base.metadata)
INVOICE_NUMBER_SEQUENCE = Sequence("invoice_number_seq", start=1, metadata=Base.metadata)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (Index(None, "started_at"),)

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # Asterisk linkedid
    caller_number: Mapped[str | None] = mapped_column(String(200))  # raw, as Asterisk sent it
    normalized_number: Mapped[str | None] = mapped_column(String(20), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    channel: Mapped[str | None] = mapped_column(String(200))
    script: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Decided by the store from ``facts`` (crm_bridge.contract.outcomes.decide_outcome), never set.
    outcome: Mapped[str | None] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(String(200))
    # What the robot and the AMI tracker saw of the call (CallFacts.to_json), merged.
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # External order number, not a FK: the call log must never fail on a referential detail.
    order_id: Mapped[str | None] = mapped_column(String(64))
    # What the AMI call tracker learns after the IVR: queue, operator, hang-up and recording.
    queue: Mapped[str | None] = mapped_column(String(100))
    queue_entered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    operator_interface: Mapped[str | None] = mapped_column(String(200))
    operator_name: Mapped[str | None] = mapped_column(String(200))
    hangup_by: Mapped[str | None] = mapped_column(String(16))  # caller | operator | system
    recording_path: Mapped[str | None] = mapped_column(String(500))
    recording_seconds: Mapped[float | None] = mapped_column(Float)
    recording_bytes: Mapped[int | None] = mapped_column(Integer)
    transfers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The deal the call is about (migration 0010): the deal its order created, else the caller's
    # open deal, else their last one; decided by the call log's upsert (crm_bridge.deals.DEAL_OF_CALL).
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"), index=True)


class TimelineEvent(Base):
    """Append-only log of what happened in a call; ordered by the autoincrement id."""

    __tablename__ = "timeline_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # External customer id, not a FK, for the same reason as calls.order_id.
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Id of the record that wrote the row (crm_bridge.call_log): a replayed batch lands once.
    event_uid: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)
    # The deal an event is about when it is not a call's (deal.created, deal.stage_changed): a
    # deal's timeline is these plus every event of its calls (migration 0010).
    deal_id: Mapped[int | None] = mapped_column(Integer, index=True)


class Deal(Base):
    """The commercial thread of an order (сделка, migration 0010): a stage of the configured
    pipeline (crm_bridge.deals.Pipeline), an owner, an amount, and a timeline.

    One deal per order through ``deals.order_id`` (unique), not ``orders.deal_id``: the deal is
    inserted after its order in the robot's one-statement write (a CTE reads the new order's id),
    and a lead-like deal of an unknown caller has no order at all. ``closed_at`` is set while the
    stage is a closed one: "the caller's open deal" is ``closed_at IS NULL``, whatever the pipeline.
    """

    __tablename__ = "deals"
    __table_args__ = (
        Index(None, "customer_id", "created_at"),  # the caller's newest (open) deal, at every call end
        Index(None, "stage", "updated_at"),  # the console's list by stage
        Index(None, "phone"),  # an unknown caller's open lead-like deal
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164 of a lead-like deal's caller
    title: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(64))  # console username, or None (the robot, an import)
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="RUB", server_default=text("'RUB'"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    # The call that opened a lead-like deal (unique: a replayed call-log batch opens it once).
    call_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CallbackTask(Base):
    """A customer to call back (abandoned in the queue, asked for it…).

    At most ONE open task per customer (or per number when the customer is unknown): the database
    enforces it with a partial unique index on ``open_key`` (``customer:<id>`` / ``number:<e164>``,
    NULL once the task is closed), so concurrent abandoned calls can never open two.
    """

    __tablename__ = "callback_tasks"
    __table_args__ = (
        Index(
            None,
            "open_key",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index(None, "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # External customer id, not a FK (like timeline_events.customer_id): a task outlives a re-import.
    customer_id: Mapped[str | None] = mapped_column(String(64))
    number: Mapped[str | None] = mapped_column(String(20))  # E.164
    reason: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))  # open | done | no_answer | cancelled
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    call_id: Mapped[str | None] = mapped_column(String(64), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    note: Mapped[str | None] = mapped_column(Text)
    open_key: Mapped[str | None] = mapped_column(String(100))


class User(Base):
    """A console user (operator, supervisor, admin). ``username`` is stored casefolded: unique without case."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string
    role: Mapped[str] = mapped_column(String(16))  # operator | supervisor | admin
    display_name: Mapped[str] = mapped_column(String(200), default="")
    operator_interface: Mapped[str | None] = mapped_column(String(200))  # queue member, e.g. PJSIP/101
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class WebSession(Base):
    """A signed-in browser. ``id`` is the SHA-256 (hex) of the cookie's random token: a leaked table
    cannot be replayed as cookies."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # absolute end of the session
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class OutboxRow(Base):
    """One call event for one CRM target, waiting for (or past) its delivery (crm_bridge/outbox).

    Written in the same transaction as the timeline row it copies (crm_bridge.call_log), so the
    event and its delivery promise commit together; ``(event_id, target)`` is unique, so a replayed
    batch or a retried enqueue never promises the same event twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "target"),
        Index(None, "state", "next_attempt_at"),  # the worker's "what is due"
        Index(None, "call_id", "target"),  # "is an earlier event of this call still pending?"
        Index(None, "subject", "target"),  # the same for the call's subject (an order), and its remote ref
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(32))  # the timeline record's uid
    target: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(50))
    call_id: Mapped[str | None] = mapped_column(String(64))  # the ordering key
    # What the event is about beyond its call (``order:<id>``, migration 0012): the second ordering
    # key (an order's change waits for its creation), and where its remote ref (the deal) is found.
    subject: Mapped[str | None] = mapped_column(String(80))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(10))  # crm_bridge.contract.crm.OutboxState
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))  # scrubbed of the target's secrets
    # What the target answered that later events need (Bitrix24's CALL_ID from the register).
    remote_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ExternalRef(Base):
    """Which local row a CRM record is (crm_bridge/sync): (source, entity, external id) -> the local
    key (``customers.customer_id``, ``products.sku`` or ``orders.order_id``). A second sync finds its
    rows here, so it updates them instead of creating others."""

    __tablename__ = "external_refs"
    __table_args__ = (UniqueConstraint("source", "entity", "external_id"), Index(None, "entity", "local_key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(20))  # bitrix24 | amocrm
    entity: Mapped[str] = mapped_column(String(20))  # contact | product | deal
    external_id: Mapped[str] = mapped_column(String(64))
    local_key: Mapped[str] = mapped_column(String(64))
    synced_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SyncCursor(Base):
    """Where the pull of one entity from one CRM stands (crm_bridge/sync/runner.py).

    ``since``: the CRM's own time of the last finished run's start (the next run asks for records
    modified since then). A run in progress keeps its filter (``run_since``), the CRM's time at its
    first page (``run_mark``, the next ``since``) and the page to ask for next (``run_page``); each is
    written in the transaction that stores the page, so a killed run resumes where it stood."""

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    entity: Mapped[str] = mapped_column(String(20), primary_key=True)
    since: Mapped[str | None] = mapped_column(String(40))
    run_since: Mapped[str | None] = mapped_column(String(40))
    run_mark: Mapped[str | None] = mapped_column(String(40))
    run_page: Mapped[str | None] = mapped_column(String(40))
    pages: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))  # scrubbed of the CRM's secrets


class Transcript(Base):
    """The words of one call recording (issue 12), written by the transcription worker (ivr.speech.transcriber).

    A pending row is inserted in the same transaction as the call's ``recording.ready`` timeline row
    (crm_bridge.call_log); ``(call_id, recording_path)`` is unique, so a replayed batch or a second
    announcement of the same file never queues it twice. The worker claims rows by leasing them
    (``lease_until``), like the outbox: a worker that dies mid-file leaves the row to be claimed again.
    ``search_text`` is ``text`` lowercased in Python (SQLite's lower() folds ASCII only): the calls
    search matches words with LIKE on both backends (crm_bridge.call_search).
    """

    __tablename__ = "transcripts"
    __table_args__ = (
        UniqueConstraint("call_id", "recording_path"),
        Index(None, "state", "lease_until"),  # the worker's "what is due"
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    recording_path: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(10))  # crm_bridge.transcripts.TranscriptState
    language: Mapped[str | None] = mapped_column(String(8))
    model: Mapped[str | None] = mapped_column(String(200))  # the model directory's name
    # Before ``text``: the column of that name hides sqlalchemy.text in the rest of the class body.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    text: Mapped[str | None] = mapped_column(Text)
    search_text: Mapped[str | None] = mapped_column(Text)
    # [{"word", "start", "end", "conf", "channel", "speaker"}] in time order (crm_bridge.transcripts).
    words: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    channels: Mapped[int | None] = mapped_column(Integer)
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    work_seconds: Mapped[float | None] = mapped_column(Float)  # wall time of the transcription
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


__all__ = [
    "INVOICE_NUMBER_SEQUENCE",
    "ORDER_NUMBER_SEQUENCE",
    "Base",
    "Call",
    "CallbackTask",
    "Customer",
    "ExternalRef",
    "Deal",
    "Invoice",
    "Order",
    "OrderLine",
    "OutboxRow",
    "Phone",
    "Product",
    "SequenceCounter",
    "SyncCursor",
    "TimelineEvent",
    "Transcript",
    "User",
    "WebSession",
    "func",
]
