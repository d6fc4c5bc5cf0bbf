"""The outbox table's units of work: claim what is due, settle each delivery, dead letters.

Several processes may run a worker at once (a hand-over of the outbox lock, a second `ivr serve`):
a claim takes its rows ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and under the process's writer lock
with ``BEGIN IMMEDIATE`` on SQLite, and *leases* them (``next_attempt_at = now + lease``) before it
commits, so no other worker takes them while the delivery runs; a worker that dies mid-delivery
leaves its rows to be taken again when the lease runs out (at least once; see the README).

Order per call: a row is due only when no *earlier* row (occurred_at, then id) of the same call
(or the same subject, ``order:<id>``) and target is still pending, leased or not. A dead row does
not hold the call back (else one refused event would block its call for ever); an admin's retry
puts it back in line.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.contract.crm import OutboxState
from crm_bridge.contract.events import EventKind
from crm_bridge.db import sqlite_writer_lock, write_session
from crm_bridge.dto import CallView, OutboxBacklog, OutboxItem
from crm_bridge.models import Call, Customer, ExternalRef, OutboxRow
from crm_bridge.outbox.routing import ORDER_SUBJECT
from crm_bridge.sync.records import Entity
from crm_bridge.transcripts import TRANSCRIPTS, TranscriptView, transcript_view
from crm_bridge.views import call_view

OUTBOX = OutboxRow.__table__
_EARLIER = OUTBOX.alias("earlier")
PENDING, DELIVERED, DEAD = OutboxState.PENDING.value, OutboxState.DELIVERED.value, OutboxState.DEAD.value
MAX_ERROR = 500
DEAL_ENTITY = Entity.DEAL.value  # external_refs.entity of a CRM deal (lead) made from one of our orders


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=row.id, event_id=row.event_id, target=row.target, kind=row.kind, call_id=row.call_id,
        occurred_at=row.occurred_at, payload=dict(row.payload or {}), state=row.state, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, last_error=row.last_error, remote_ref=row.remote_ref,
        created_at=row.created_at, delivered_at=row.delivered_at, subject=row.subject,
    )


def _due(target: str, now: datetime) -> Any:
    o, e = OUTBOX.c, _EARLIER.c
    # The same call, or the same subject (an order's change waits for its creation, made in a call
    # or in the console); NULL equals nothing, so rows without either are never held back.
    earlier_pending = exists().where(
        e.target == o.target, or_(e.call_id == o.call_id, e.subject == o.subject), e.state == PENDING,
        or_(e.occurred_at < o.occurred_at, and_(e.occurred_at == o.occurred_at, e.id < o.id)),
    )
    return and_(o.target == target, o.state == PENDING, o.next_attempt_at <= now, ~earlier_pending)


class OutboxStore:
    """Owns its transactions (one per method), returns DTOs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._writer_lock = sqlite_writer_lock(sessions.kw["bind"])

    def _write(self) -> AbstractAsyncContextManager[AsyncSession]:
        return write_session(self.sessions, self._writer_lock)

    async def claim(self, target: str, now: datetime, *, limit: int, lease: float) -> list[OutboxItem]:
        """Up to ``limit`` due rows of ``target`` in order, each counted as one more attempt and
        leased for ``lease`` seconds."""
        query = (
            select(OUTBOX).where(_due(target, now)).order_by(OUTBOX.c.occurred_at, OUTBOX.c.id).limit(limit)
            .with_for_update(skip_locked=True, of=OUTBOX)
        )
        async with self._write() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            await session.execute(
                update(OUTBOX).where(OUTBOX.c.id.in_(ids))
                .values(attempts=OUTBOX.c.attempts + 1, next_attempt_at=now + timedelta(seconds=lease))
            )
        return [_claimed(r) for r in rows]

    async def delivered(self, done: Sequence[tuple[int, str | None]], now: datetime) -> None:
        """Rows the target took, ``(id, remote_ref)`` each: one transaction, one executemany.

        An order's creation that a CRM answered with its deal (lead) id is also remembered in
        ``external_refs`` as (target, deal, id) -> the order, in the same transaction: the pull from
        that CRM (crm_bridge/sync) then knows the deal is our order and leaves it alone, instead of
        importing it as a second order."""
        if not done:
            return
        refs = {item_id: ref for item_id, ref in done if ref}
        async with self._write() as session:
            await session.execute(
                update(OUTBOX).where(OUTBOX.c.id == bindparam("item_id"))
                .values(state=DELIVERED, delivered_at=now, remote_ref=bindparam("ref"), last_error=None)
                .execution_options(synchronize_session=False),
                [{"item_id": item_id, "ref": ref} for item_id, ref in done],
            )
            if refs:
                await _remember_deals(session, refs, now)

    async def failed(self, item_id: int, error: str, next_attempt_at: datetime, *, dead: bool,
                     count_attempt: bool = True) -> None:
        """The delivery failed: try again at ``next_attempt_at``, or never (``dead``).
        ``count_attempt=False`` gives the claim's attempt back (the target only asked us to slow down)."""
        values: dict[str, Any] = {"state": DEAD if dead else PENDING, "next_attempt_at": next_attempt_at,
                                  "last_error": error[:MAX_ERROR]}
        if not count_attempt:
            values["attempts"] = OUTBOX.c.attempts - 1
        async with self._write() as session:
            await session.execute(update(OUTBOX).where(OUTBOX.c.id == item_id).values(**values))

    async def hold_back(self, item_ids: Sequence[int], next_attempt_at: datetime) -> None:
        """Claimed rows left untried (their target is failing): back in line at ``next_attempt_at``,
        their claim's attempt given back. One statement for the lot."""
        if not item_ids:
            return
        async with self._write() as session:
            await session.execute(
                update(OUTBOX).where(OUTBOX.c.id.in_(list(item_ids)))
                .values(next_attempt_at=next_attempt_at, attempts=OUTBOX.c.attempts - 1)
            )

    async def batch_context(self, target: str, call_ids: Sequence[str]) -> tuple[
            dict[str, CallView], dict[tuple[str, str], str]]:
        """For a claimed batch, in one read: its calls' rows, and what ``target`` answered to their
        delivered events, by (call_id, kind). Per row this cost two reads (measured: half the
        worker's CPU per delivery)."""
        if not call_ids:
            return {}, {}
        ids = sorted(set(call_ids))
        async with self.sessions() as session:
            rows = (await session.execute(
                select(Call, Customer.customer_id).outerjoin(Customer, Customer.id == Call.customer_id)
                .where(Call.call_id.in_(ids))
            )).all()
            refs = (await session.execute(
                select(OUTBOX.c.call_id, OUTBOX.c.kind, OUTBOX.c.remote_ref).where(
                    OUTBOX.c.target == target, OUTBOX.c.call_id.in_(ids), OUTBOX.c.state == DELIVERED,
                    OUTBOX.c.remote_ref.is_not(None),
                ).order_by(OUTBOX.c.id.desc())  # the first delivered wins below
            )).all()
        return ({call.call_id: call_view(call, customer) for call, customer in rows},
                {(call_id, kind): ref for call_id, kind, ref in refs})

    async def transcripts(self, transcript_ids: Sequence[int]) -> dict[int, TranscriptView]:
        """The transcripts a claimed batch's ``transcript.ready`` rows name, with their words, in one
        read (the event carries the text cut short, never the words and their timings)."""
        if not transcript_ids:
            return {}
        async with self.sessions() as session:
            rows = (await session.execute(
                select(TRANSCRIPTS).where(TRANSCRIPTS.c.id.in_(sorted(set(transcript_ids)))))).all()
        return {row.id: transcript_view(row) for row in rows}

    async def subject_refs(self, target: str, subjects: Sequence[str]) -> dict[str, str]:
        """What ``target`` answered to the first delivered event of each subject that answered
        anything (an order's deal id), in one read for a claimed batch."""
        if not subjects:
            return {}
        async with self.sessions() as session:
            rows = (await session.execute(
                select(OUTBOX.c.subject, OUTBOX.c.remote_ref).where(
                    OUTBOX.c.target == target, OUTBOX.c.subject.in_(sorted(set(subjects))),
                    OUTBOX.c.state == DELIVERED, OUTBOX.c.remote_ref.is_not(None),
                ).order_by(OUTBOX.c.id.desc())  # the first delivered wins below
            )).all()
        return {subject: ref for subject, ref in rows}

    async def dead_letters(self, limit: int = 200) -> list[OutboxItem]:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(OUTBOX).where(OUTBOX.c.state == DEAD).order_by(OUTBOX.c.id.desc()).limit(limit)
            )).all()
        return [_item(r) for r in rows]

    async def retry(self, item_id: int, now: datetime) -> bool:
        """A dead row back in line with a fresh count of attempts; False when it is not dead."""
        async with self._write() as session:
            result = await session.execute(
                update(OUTBOX).where(OUTBOX.c.id == item_id, OUTBOX.c.state == DEAD)
                .values(state=PENDING, attempts=0, next_attempt_at=now)
            )
            return bool(result.rowcount)

    async def items(self, *, target: str | None = None, call_id: str | None = None) -> list[OutboxItem]:
        """Rows in id order (tests, diagnostics)."""
        query = select(OUTBOX).order_by(OUTBOX.c.id)
        if target is not None:
            query = query.where(OUTBOX.c.target == target)
        if call_id is not None:
            query = query.where(OUTBOX.c.call_id == call_id)
        async with self.sessions() as session:
            return [_item(r) for r in (await session.execute(query)).all()]

    async def counts(self) -> dict[str, dict[str, int]]:
        """{target: {state: rows}}: the console's summary."""
        async with self.sessions() as session:
            rows = (await session.execute(
                select(OUTBOX.c.target, OUTBOX.c.state, func.count()).group_by(OUTBOX.c.target, OUTBOX.c.state)
            )).all()
        out: dict[str, dict[str, int]] = {}
        for target, state, n in rows:
            out.setdefault(target, {})[state] = n
        return out

    async def backlog(self, targets: Sequence[str], now: datetime) -> dict[str, OutboxBacklog]:
        """Pending and dead rows per target, and the age of the oldest pending one: one grouped read
        (delivered rows are not counted: the index on (state, next_attempt_at) skips them)."""
        async with self.sessions() as session:
            rows = (await session.execute(
                select(OUTBOX.c.target, OUTBOX.c.state, func.count(), func.min(OUTBOX.c.occurred_at))
                .where(OUTBOX.c.state.in_((PENDING, DEAD))).group_by(OUTBOX.c.target, OUTBOX.c.state)
            )).all()
        found: dict[tuple[str, str], tuple[int, datetime | None]] = {
            (target, state): (n, oldest) for target, state, n, oldest in rows}
        out: dict[str, OutboxBacklog] = {}
        for target in sorted(set(targets) | {t for t, _ in found}):
            pending, oldest = found.get((target, PENDING), (0, None))
            out[target] = OutboxBacklog(
                pending=pending, dead=found.get((target, DEAD), (0, None))[0],
                oldest_pending_seconds=None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 3),
            )
        return out


async def _remember_deals(session: AsyncSession, refs: dict[int, str], now: datetime) -> None:
    created = (await session.execute(
        select(OUTBOX.c.id, OUTBOX.c.target, OUTBOX.c.subject).where(
            OUTBOX.c.id.in_(list(refs)), OUTBOX.c.kind == EventKind.ORDER_CREATED.value,
            OUTBOX.c.subject.like(f"{ORDER_SUBJECT}%"))
    )).all()
    for item_id, target, subject in created:
        external_id = refs[item_id][:64]
        known = await session.scalar(select(ExternalRef.id).where(
            ExternalRef.source == target, ExternalRef.entity == DEAL_ENTITY, ExternalRef.external_id == external_id))
        if known is None:
            session.add(ExternalRef(source=target, entity=DEAL_ENTITY, external_id=external_id,
                                    local_key=subject[len(ORDER_SUBJECT):], synced_at=now))


def _claimed(row: Any) -> OutboxItem:
    return replace(_item(row), attempts=row.attempts + 1)  # as the claim left it
