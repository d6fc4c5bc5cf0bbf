"""Deals (сделки, issue 11): the commercial thread of an order, with a pipeline of stages.

A deal is made with its order, in the order's own write (``CrmStore.place_order``: one more CTE in
the robot's one-statement PostgreSQL write, two more inserts on SQLite; operator orders go the same
way; imports in ``importers/orders.py``). An order's cancel moves its deal to the pipeline's
``cancelled`` stage, an edit updates its amount (``crm_bridge.corrections``). Operators move deals
through the stages (``change_stage``), each move a ``deal.stage_changed`` event with who and when.

Calls: the call log's upsert of a call's end (and of the tracker's hang-up / customer updates)
sets ``calls.deal_id`` with :func:`deal_of_call`, inside the same statement: the deal of the order
the call placed, else the deal the call opened, else the deal it was already linked to, else the
caller's newest open deal, else their newest deal, else an unknown number's open lead-like deal.
With ``create_for_unknown`` an unknown number's call opens such a lead-like deal (no customer, the
phone kept, the first stage): one ``INSERT … SELECT`` per batch (:data:`OPEN_LEADS`), only then.

A deal's timeline is its own events (``timeline_events.deal_id``) and every event of its calls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Integer, and_, bindparam, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from crm_bridge.contract.events import EventKind
from crm_bridge.dto import CallView, DealView, TimelineEventView
from crm_bridge.errors import InvalidStage, UnknownDeal
from crm_bridge.models import Call, Customer, Deal, Order, TimelineEvent, UtcDateTime, as_utc
from crm_bridge.views import call_view, timeline_view

log = structlog.get_logger(__name__)

STAGE_CODE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # fits deals.stage (String(32)), safe in URLs
DEFAULT_STAGES: tuple[tuple[str, str], ...] = (
    ("new", "Новая"),
    ("confirmed", "Подтверждена"),
    ("in_delivery", "В доставке"),
    ("delivered", "Доставлена"),
    ("paid", "Оплачена"),
    ("cancelled", "Отменена"),
)
CURRENCY = "RUB"


def order_deal_title(order_id: str) -> str:
    return f"Заказ {order_id}"


@dataclass(frozen=True)
class Pipeline:
    """The configured stages (``[deals]``): codes in order with their display names; the first is
    where a deal starts; ``closed`` stages end a deal (no longer "the caller's open deal");
    ``cancelled`` is where an order's cancel moves its deal. Raises ValueError naming the setting."""

    stages: tuple[tuple[str, str], ...] = DEFAULT_STAGES
    closed: frozenset[str] = frozenset({"paid", "cancelled"})
    cancelled: str = "cancelled"
    create_for_unknown: bool = False
    names: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = [code for code, _ in self.stages]
        if len(codes) < 2:
            raise ValueError("deals.stages: at least two stages (where a deal starts, where it ends)")
        for code, name in self.stages:
            if not STAGE_CODE.match(code):
                raise ValueError(f"deals.stages: {code!r} is not a stage code (a-z, 0-9, _; starts with a letter; "
                                 "32 at most)")
            if not name.strip():
                raise ValueError(f"deals.stages: stage {code!r} has no display name")
        if len(set(codes)) != len(codes):
            raise ValueError("deals.stages: a stage code appears twice")
        unknown = sorted(set(self.closed) - set(codes))
        if unknown:
            raise ValueError(f"deals.closed: {unknown[0]!r} is not one of deals.stages ({', '.join(codes)})")
        if self.cancelled not in codes:
            raise ValueError(f"deals.cancelled: {self.cancelled!r} is not one of deals.stages ({', '.join(codes)})")
        if self.cancelled not in self.closed:
            raise ValueError(f"deals.cancelled: {self.cancelled!r} must be one of deals.closed")
        if codes[0] in self.closed:
            raise ValueError(f"deals.stages: the first stage {codes[0]!r} (where deals start) cannot be closed")
        object.__setattr__(self, "names", dict(self.stages))

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.stages)

    @property
    def initial(self) -> str:
        return self.stages[0][0]

    def name(self, code: str) -> str:
        return self.names.get(code, code)

    def is_closed(self, code: str) -> bool:
        return code in self.closed

    def check(self, code: str) -> str:
        """``code`` when the pipeline has it; else ``InvalidStage``."""
        if code not in self.names:
            raise InvalidStage(code, self.codes)
        return code


# --- SQL shared with the call log and the migration's idea of "the deal of a call" ------------------

def deal_of_call(*, sets_customer: bool) -> Any:
    """The deal a call is about, as one SQL expression for the SET of the call log's upsert of the
    ``calls`` row (``excluded``: the row the statement proposes; ``sets_customer``: it carries a
    customer). Plain SQL both backends speak: SQLAlchemy would not correlate these subqueries to
    the upsert's target. Order of preference: see the module doc."""
    customer = "COALESCE(excluded.customer_id, calls.customer_id)" if sets_customer else "calls.customer_id"
    return literal_column(f"""COALESCE(
    (SELECT d.id FROM deals d JOIN orders o ON o.id = d.order_id
      WHERE o.call_id = calls.call_id ORDER BY d.id DESC LIMIT 1),
    (SELECT d.id FROM deals d WHERE d.call_id = calls.call_id),
    calls.deal_id,
    (SELECT d.id FROM deals d WHERE d.customer_id = {customer}
      ORDER BY d.closed_at IS NOT NULL, d.created_at DESC, d.id DESC LIMIT 1),
    (SELECT d.id FROM deals d WHERE d.customer_id IS NULL AND d.phone = calls.normalized_number
        AND d.closed_at IS NULL ORDER BY d.id DESC LIMIT 1))""", type_=Integer)


# A lead-like deal for a call of an unknown number (one row per call ending in the batch without a
# customer): no customer on the call, a number nobody owns, no open lead-like deal for the number
# yet. Keyed by the call (deals.call_id is unique): a replayed batch opens nothing twice. Two calls
# of one unknown number ending in the same instant may each open one (rare; an operator merges).
def _open_lead(at: str) -> Any:
    return text(f"""
INSERT INTO deals (phone, title, stage, amount, currency, call_id, created_at, updated_at)
SELECT c.normalized_number, 'Звонок ' || c.normalized_number, CAST(:stage AS VARCHAR(32)), 0, '{CURRENCY}',
       c.call_id, {at}, {at}
FROM calls c
WHERE c.call_id = CAST(:call_id AS VARCHAR(64)) AND c.customer_id IS NULL AND c.normalized_number IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM phones p WHERE p.number = c.normalized_number)
  AND NOT EXISTS (SELECT 1 FROM deals d WHERE d.customer_id IS NULL AND d.phone = c.normalized_number
                    AND d.closed_at IS NULL)
ON CONFLICT (call_id) DO NOTHING
""").bindparams(bindparam("at", type_=UtcDateTime))


# PostgreSQL types the moment explicitly (a bare parameter in a SELECT list would be text).
OPEN_LEAD = {"postgresql": _open_lead("CAST(:at AS timestamptz)"), "sqlite": _open_lead(":at")}


# --- the service ------------------------------------------------------------------------------------


def deal_view(deal: Deal, pipeline: Pipeline, customer_id: str | None, order_id: str | None) -> DealView:
    return DealView(
        deal_id=deal.id, title=deal.title, stage=deal.stage, stage_name=pipeline.name(deal.stage),
        closed=deal.closed_at is not None, owner=deal.owner, amount=deal.amount, currency=deal.currency,
        customer_id=customer_id, phone=deal.phone, order_id=order_id, created_at=deal.created_at,
        updated_at=deal.updated_at, closed_at=deal.closed_at,
    )


def _deal_rows() -> Any:
    return (
        select(Deal, Customer.customer_id, Order.order_id)
        .outerjoin(Customer, Customer.id == Deal.customer_id)
        .outerjoin(Order, Order.id == Deal.order_id)
    )


def deal_event(kind: EventKind, at: datetime, deal: Deal, customer_id: str | None, data: dict[str, Any],
               call_id: str | None = None) -> TimelineEvent:
    return TimelineEvent(at=at, call_id=call_id, customer_id=customer_id, kind=kind.value,
                         data={"deal_id": deal.id, **data}, deal_id=deal.id)


def move(deal: Deal, stage: str, pipeline: Pipeline, at: datetime) -> str:
    """Set the deal's stage (and ``closed_at`` by the pipeline); returns the previous stage."""
    previous = deal.stage
    deal.stage = stage
    deal.updated_at = at
    if pipeline.is_closed(stage):
        deal.closed_at = deal.closed_at if pipeline.is_closed(previous) and deal.closed_at else at
    else:
        deal.closed_at = None
    return previous


class Deals:
    """Deal services; a mixin of ``CrmStore`` (its ``_unit`` and ``config.deals``)."""

    config: Any  # StoreConfig
    if TYPE_CHECKING:
        def _unit(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncSession]: ...

    @property
    def pipeline(self) -> Pipeline:
        pipeline: Pipeline = self.config.deals
        return pipeline

    async def list_deals(self, *, stage: str | None = None, customer_id: str | None = None, limit: int = 50,
                         offset: int = 0) -> list[DealView]:
        """Deals, the last changed first; ``stage``: one pipeline stage (``InvalidStage`` otherwise),
        ``customer_id``: one customer's (external id; unknown: none)."""
        stmt = _deal_rows().order_by(Deal.updated_at.desc(), Deal.id.desc()).limit(max(1, limit)).offset(max(0, offset))
        if stage is not None:
            stmt = stmt.where(Deal.stage == self.pipeline.check(stage))
        if customer_id is not None:
            stmt = stmt.where(Customer.customer_id == customer_id)
        async with self._unit() as session:
            rows = (await session.execute(stmt)).all()
        return [deal_view(deal, self.pipeline, cid, oid) for deal, cid, oid in rows]

    async def count_deals_by_stage(self) -> dict[str, int]:
        async with self._unit() as session:
            rows = (await session.execute(select(Deal.stage, func.count()).group_by(Deal.stage))).all()
        return {stage: int(n) for stage, n in rows}

    async def get_deal(self, deal_id: int) -> DealView | None:
        async with self._unit() as session:
            row = (await session.execute(_deal_rows().where(Deal.id == deal_id))).first()
        return None if row is None else deal_view(row[0], self.pipeline, row[1], row[2])

    async def deal_of_order(self, order_id: str) -> DealView | None:
        async with self._unit() as session:
            row = (await session.execute(_deal_rows().where(Order.order_id == order_id))).first()
        return None if row is None else deal_view(row[0], self.pipeline, row[1], row[2])

    async def deal_timeline(self, deal_id: int, limit: int = 500) -> list[TimelineEventView]:
        """The deal's events and every event of its calls, NEWEST FIRST (like a customer's)."""
        limit = max(1, min(int(limit), 1000))
        calls = select(Call.call_id).where(Call.deal_id == deal_id)
        stmt = (
            select(TimelineEvent)
            .where(or_(TimelineEvent.deal_id == deal_id,
                       and_(TimelineEvent.call_id.is_not(None), TimelineEvent.call_id.in_(calls))))
            .order_by(TimelineEvent.at.desc(), TimelineEvent.id.desc())
            .limit(limit)
        )
        async with self._unit() as session:
            events = list((await session.execute(stmt)).scalars())
        return [timeline_view(e) for e in events]

    async def deal_calls(self, deal_id: int, limit: int = 100) -> list[CallView]:
        """The deal's calls, newest first (the deal page's list and recordings)."""
        stmt = (
            select(Call, Customer.customer_id).outerjoin(Customer, Customer.id == Call.customer_id)
            .where(Call.deal_id == deal_id).order_by(Call.started_at.desc(), Call.call_id.desc()).limit(limit)
        )
        async with self._unit() as session:
            rows = (await session.execute(stmt)).all()
        return [call_view(call, cid) for call, cid in rows]

    async def change_stage(self, deal_id: int, stage: str, who: str, *, now: datetime | None = None) -> DealView:
        """Move a deal to ``stage`` (an operator, from the console or the API), with a
        ``deal.stage_changed`` event saying who and when. The same stage again changes nothing.
        Raises ``InvalidStage`` for a code the pipeline lacks, ``UnknownDeal``."""
        self.pipeline.check(stage)
        at = as_utc(now) if now is not None else datetime.now(UTC)
        async with self._unit(write=True) as session:
            row = (await session.execute(_deal_rows().where(Deal.id == deal_id).with_for_update(of=Deal))).first()
            if row is None:
                raise UnknownDeal(deal_id)
            deal, customer_id, order_id = row
            previous = deal.stage
            if previous != stage:
                move(deal, stage, self.pipeline, at)
                session.add(deal_event(EventKind.DEAL_STAGE_CHANGED, at, deal, customer_id, {
                    "by": who, "stage": stage, "previous_stage": previous, "order_id": order_id}))
                await session.flush()
            view = deal_view(deal, self.pipeline, customer_id, order_id)
            await session.commit()
        if previous != stage:
            log.info("deal_stage_changed", deal_id=deal_id, stage=stage, previous_stage=previous, by=who)
        return view

    async def deals_of_calls(self, call_ids: Sequence[str]) -> dict[str, int]:
        """call id -> its deal id, for the calls that have one."""
        if not call_ids:
            return {}
        stmt = select(Call.call_id, Call.deal_id).where(Call.call_id.in_(list(call_ids)), Call.deal_id.is_not(None))
        async with self._unit() as session:
            return {cid: did for cid, did in (await session.execute(stmt)).all()}


async def upsert_order_deal(session: AsyncSession, order: Order, customer_id: str | None, pipeline: Pipeline, *,
                            deal: Deal | None, stage: str | None, by: str, now: datetime) -> bool:
    """For writers of orders in bulk (imports; a CRM pull should call it too): make the order's deal
    when ``deal`` is None (at ``stage`` or the pipeline's first, with its ``deal.created`` event, the
    order's source as its source), else bring it up to date: its amount, and ``stage`` when given
    (a ``deal.stage_changed`` event by ``by``). ``order`` must be flushed (its id known); no commit.
    Returns True when an existing deal changed."""
    if deal is None:
        start = stage or pipeline.initial
        deal = Deal(customer_id=order.customer_id, title=order_deal_title(order.order_id), stage=start,
                    amount=order.total, currency=CURRENCY, order_id=order.id, created_at=order.ordered_at,
                    updated_at=now, closed_at=now if pipeline.is_closed(start) else None)
        session.add(deal)
        await session.flush()
        session.add(deal_event(EventKind.DEAL_CREATED, order.ordered_at, deal, customer_id, {
            "order_id": order.order_id, "stage": start, "amount": str(order.total), "source": order.source,
            "by": None}))
        return False
    changed = False
    if deal.amount != order.total:
        deal.amount, deal.updated_at, changed = order.total, now, True
    if stage is not None and stage != deal.stage:
        previous = move(deal, stage, pipeline, now)
        session.add(deal_event(EventKind.DEAL_STAGE_CHANGED, now, deal, customer_id, {
            "by": by, "stage": stage, "previous_stage": previous, "order_id": order.order_id}))
        changed = True
    return changed


async def deals_of_orders(session: AsyncSession, order_pks: list[int]) -> dict[int, Deal]:
    """{order pk: its deal} for bulk writers (imports, the CRM pull): one query per 500 orders."""
    from crm_bridge.repositories import chunks  # repositories imports this module's statements

    out: dict[int, Deal] = {}
    for part in chunks(sorted(set(order_pks))):
        for deal in (await session.execute(select(Deal).where(Deal.order_id.in_(part)))).scalars():
            if deal.order_id is not None:
                out[deal.order_id] = deal
    return out


async def deal_for_order_pk(session: AsyncSession, order_pk: int) -> Deal | None:
    """The order's deal, locked for update on PostgreSQL (the order's change holds the unit)."""
    stmt = select(Deal).where(Deal.order_id == order_pk).with_for_update()
    return (await session.execute(stmt)).scalar()


__all__ = ["DEFAULT_STAGES", "Deals", "OPEN_LEAD", "Pipeline", "deal_of_call", "deals_of_orders", "upsert_order_deal"]
