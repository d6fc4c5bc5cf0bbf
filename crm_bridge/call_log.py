"""The call log written in batches: call starts, call ends, AMI call-field updates, timeline rows.

Every fact about a call is a small frozen *record* with a unique ``uid``. ``CallLog.write`` puts
any number of records, of any number of calls, into the database in ONE transaction with a few
Core ``executemany`` statements (group commit): a call costs a fraction of a transaction instead
of the 2–4 it cost when each write had its own (issue 7). Records are also plain JSON
(``record_to_json`` / ``record_from_json``) so a batch can wait in a local spool file while the
database is unreachable and be replayed later.

Replaying a batch that was already committed (its COMMIT reply was lost, the process crashed after
writing but before forgetting it) changes nothing, so a batch may be written *at least* once:

- a call start is ``INSERT … ON CONFLICT DO NOTHING``;
- a call end and an AMI update are upserts that set the same values again;
- a timeline row carries the record's uid in ``timeline_events.event_uid`` (unique):
  ``ON CONFLICT (event_uid) DO NOTHING``;
- an outbox row (the CRM bridge, ``crm_bridge.outbox``) is keyed by (record uid, target):
  ``ON CONFLICT (event_id, target) DO NOTHING``. Rows are made only for the kinds a configured
  target wants, in the same transaction as the timeline row they copy; with no target configured,
  no statement at all;
- a pending transcript (``crm_bridge.transcripts``, with ``transcripts=True``) is made beside every
  ``recording.ready`` row, keyed by (call, recording path): ``ON CONFLICT DO NOTHING``, so neither a
  replayed batch nor the same file announced twice queues a second transcription.

Semantics kept from the one-call-per-transaction store methods (``CrmStore.record_call_start``,
``record_call_end``, ``update_call``): a call end or update without a start still creates the row;
an unknown customer id never erases a known customer; one call's records apply in submission order.

The outcome is never written by a witness. The runner's end and the tracker's updates carry the
*facts* each saw (``crm_bridge.contract.outcomes.CallFacts``); ``write`` reads the row's facts
(``FOR UPDATE`` on PostgreSQL: another worker's batch may hold the same call), merges the new ones
in submission order and stores the merged facts with ``decide_outcome`` of them. Whichever witness
lands last, the row holds the same verdict. ``ended_at``: an update's (the tracker saw the last
channel go) always; a call end's (the robot's part is over) only while the row has none.
That last point is why a batch runs in *waves*: wave k holds the k-th row record of every call,
so one statement never touches a call twice and a call's start always runs before its end.

Errors (drawn once, here): ``StoreUnavailable`` when the database cannot be reached or answer
(connection refused or reset, timeout, SQLite locked or read-only): the batch is intact and can be
retried. ``RecordRejected`` when the database refused a value (too long, wrong type, constraint):
retrying the same batch cannot succeed; split it to find the record.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy import ARRAY, String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import CallFacts, decide_outcome, facts_implying
from crm_bridge.db import SQLITE_BEGIN, autocommit, is_sqlite, sqlite_writer_lock
from crm_bridge.deals import OPEN_LEAD, Pipeline, deal_of_call
from crm_bridge.dto import TimelineEventIn
from crm_bridge.errors import RecordRejected, StoreUnavailable
from crm_bridge.models import Call, Customer, OutboxRow, TimelineEvent, Transcript, UtcDateTime, as_utc
from crm_bridge.outbox.routing import OutboxRouting
from crm_bridge.pg_direct import DirectStatement, driver, settle_lost_connection
from crm_bridge.transcripts import pending_row
from crm_bridge.views import row_facts

log = structlog.get_logger(__name__)

# Columns a CallUpdate may set; customer_id is the EXTERNAL id (mapped to the FK). The outcome and
# the facts it is decided from are the store's to write (``facts=`` on the record).
# deal_id is the store's to decide too (crm_bridge.deals.deal_of_call), at each end and update.
CALL_FIELDS = frozenset(c.name for c in Call.__table__.columns) - {"call_id", "outcome", "facts", "deal_id"}


def new_uid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class CallStart:
    """The IVR answered a call (``CrmStore.record_call_start``). An existing row is left alone."""

    call_id: str
    started_at: datetime
    caller_number: str | None = None
    normalized_number: str | None = None
    customer_id: str | None = None  # external id
    channel: str | None = None
    script: str | None = None
    uid: str = field(default_factory=new_uid)


@dataclass(frozen=True)
class CallEnd:
    """The IVR is done with a call (``CrmStore.record_call_end``); creates the row when missing."""

    call_id: str
    facts: CallFacts  # what the robot saw; the row's outcome is decided from all witnesses' facts
    reason: str | None
    ended_at: datetime
    customer_id: str | None = None  # external id; unknown or None keeps the row's customer
    order_id: str | None = None  # None keeps the row's order
    uid: str = field(default_factory=new_uid)


@dataclass(frozen=True)
class CallUpdate:
    """Some columns the AMI tracker learnt (``CrmStore.update_call``); creates the row when missing.

    ``started_at`` is used only when the row is created; ``customer_id`` (in ``fields``) is the
    external id. Unknown column names raise ValueError at once: a typo must not reach the queue.
    """

    call_id: str
    fields: Mapping[str, Any]
    started_at: datetime
    facts: CallFacts | None = None  # what the tracker saw, merged into the row's facts
    uid: str = field(default_factory=new_uid)

    def __post_init__(self) -> None:
        unknown = set(self.fields) - CALL_FIELDS
        if unknown:
            raise ValueError(f"unknown call fields: {sorted(unknown)}")
        if "started_at" in self.fields:
            raise ValueError("started_at is the record's own field, not an update")


@dataclass(frozen=True)
class TimelineRecord:
    """One timeline row; ``uid`` becomes ``timeline_events.event_uid``."""

    at: datetime
    call_id: str | None
    customer_id: str | None
    kind: str
    data: Mapping[str, Any]
    uid: str = field(default_factory=new_uid)

    @classmethod
    def of(cls, event: TimelineEventIn) -> TimelineRecord:
        return cls(at=event.at, call_id=event.call_id, customer_id=event.customer_id, kind=event.kind,
                   data=dict(event.data))


CallRecord = CallStart | CallEnd | CallUpdate | TimelineRecord
RowRecord = CallStart | CallEnd | CallUpdate
_TYPES: dict[str, type] = {"start": CallStart, "end": CallEnd, "update": CallUpdate, "timeline": TimelineRecord}
_NAMES = {cls: name for name, cls in _TYPES.items()}
_CALL_DATETIMES = frozenset(c.name for c in Call.__table__.columns if isinstance(c.type, UtcDateTime))


# --- JSON (the spool's format) -------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    # Same rule as the database's JSON columns (crm_bridge.db): Decimal and friends become their text.
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def record_to_json(record: CallRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _NAMES[type(record)]}
    for name, value in vars(record).items():
        if isinstance(value, CallFacts):
            value = value.to_json()
        out[name] = dict(value) if isinstance(value, Mapping) else value
    # Round-trip through json so the dict holds only JSON types (datetimes as ISO text).
    return json.loads(json.dumps(out, ensure_ascii=False, default=_json_default))


def record_from_json(data: Mapping[str, Any]) -> CallRecord:
    """Inverse of ``record_to_json``; raises ValueError/KeyError/TypeError on a malformed record."""
    values = dict(data)
    cls = _TYPES[values.pop("type")]
    for name in ("started_at", "ended_at", "at"):
        if name in values and isinstance(values[name], str):
            values[name] = datetime.fromisoformat(values[name])
    if cls is CallEnd and "outcome" in values:  # spooled by a version before facts: its outcome says them
        values["facts"] = facts_implying(values.pop("outcome"), values.get("order_id"))
    elif "facts" in values and not (cls is CallUpdate and values["facts"] is None):
        values["facts"] = CallFacts.from_json(values["facts"])
    if cls is CallUpdate and "outcome" in values["fields"]:  # the same, for a tracker update
        fields = dict(values["fields"])
        values["facts"] = facts_implying(fields.pop("outcome"))
        values["fields"] = fields
    if cls is CallUpdate:
        values["fields"] = {
            k: (datetime.fromisoformat(v) if k in _CALL_DATETIMES and isinstance(v, str) else v)
            for k, v in dict(values["fields"]).items()
        }
    return cls(**values)


# --- the store side --------------------------------------------------------------------------------


class CallLog:
    """Writes batches of call records; one transaction per ``write``. Never commits anything else."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, outbox: OutboxRouting | None = None,
                 transcripts: bool = False, deals: Pipeline | None = None) -> None:
        self.sessions = sessions
        # speech.transcripts: every recording.ready queues its transcription in the same transaction.
        self._transcripts = transcripts
        # Lead-like deals for unknown numbers' calls (deals.create_for_unknown): the stage they open
        # in; None: no statement for it at all.
        self._lead_stage = deals.initial if deals is not None and deals.create_for_unknown else None
        # The CRM targets' share of each batch (crm_bridge.outbox); None or no target: nothing to do.
        self._outbox = outbox if outbox is not None and outbox.targets else None
        engine = sessions.kw["bind"]
        # SQLite: queue behind the process's other writers (orders, callbacks) on one asyncio lock
        # instead of spinning in busy_timeout (crm_bridge.db); None on PostgreSQL.
        self._writer_lock = sqlite_writer_lock(engine)
        # PostgreSQL: the batch runs on the pooled connection's asyncpg driver in one explicit
        # transaction (crm_bridge.pg_direct: SQLAlchemy's per-statement cost was half the writer's).
        self._pg_engine = None if is_sqlite(engine) else autocommit(engine)

    async def write(self, records: Sequence[CallRecord]) -> None:
        """All ``records`` in one transaction, or none of them (see the module doc for errors).

        A dead pooled connection (the pool does not pre-ping) gets one more try on a fresh one at
        once: writing a batch twice is harmless, and a database restart then costs no spooling.
        """
        if not records:
            return
        try:
            await self._write_once(records)
        except Exception as exc:
            if not _connection_lost(exc):
                raise _translated(exc) from exc
            log.warning("call_log_connection_lost", error=_first_line(exc))
            try:
                await self._write_once(records)
            except Exception as again:
                raise _translated(again) from again

    async def _write_once(self, records: Sequence[CallRecord]) -> None:
        if self._pg_engine is not None:
            await self._write_once_pg(records)
            return
        async with contextlib.AsyncExitStack() as stack:
            if self._writer_lock is not None:
                await stack.enter_async_context(self._writer_lock)
            session = await stack.enter_async_context(self.sessions())
            # SQLite: take the write lock up front (see crm_bridge.db); ignored by PostgreSQL.
            conn = await session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})

            async def execute(statement: Any, rows: list[dict[str, Any]]) -> None:
                await conn.execute(statement, rows)

            async def customer_pks(ids: set[str]) -> dict[str, int]:
                found = await conn.execute(
                    select(Customer.customer_id, Customer.id).where(Customer.customer_id.in_(ids))
                )
                return {customer_id: pk for customer_id, pk in found.all()}

            async def call_rows(call_ids: list[str]) -> Sequence[tuple[Any, ...]]:
                # No FOR UPDATE on SQLite: the batch already holds the database's write lock.
                return (await conn.execute(_call_rows_query(CALLS.c.call_id.in_(call_ids)))).all()

            await _write(records, _statements(conn.dialect.name), execute, customer_pks, call_rows, self._outbox,
                         self._transcripts, self._lead_stage)
            await session.commit()

    async def _write_once_pg(self, records: Sequence[CallRecord]) -> None:
        assert self._pg_engine is not None
        async with self._pg_engine.connect() as conn:
            raw = await driver(conn)

            async def execute(statement: Any, rows: list[dict[str, Any]]) -> None:
                await _direct(statement, rows[0]).executemany(conn, raw, rows)

            async def customer_pks(ids: set[str]) -> dict[str, int]:
                return {row.customer_id: row.id for row in await _CUSTOMER_PKS_PG.fetch(conn, {"ids": sorted(ids)})}

            async def call_rows(call_ids: list[str]) -> Sequence[tuple[Any, ...]]:
                # On the same driver connection, inside raw.transaction(): the lock lasts the batch.
                return await _CALL_ROWS_PG.fetch(conn, {"ids": call_ids})

            try:
                async with raw.transaction():
                    await _write(records, _statements("postgresql"), execute, customer_pks, call_rows,
                                 self._outbox, self._transcripts, self._lead_stage)
            except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
                await settle_lost_connection(conn)  # the pool learns the connection is gone
                raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [repr(exc)])[0][:300]


def _translated(exc: BaseException) -> Exception:
    """Our two errors: the database was not there (retry later) or refused a value (split)."""
    if isinstance(exc, (StoreUnavailable, RecordRejected)):
        return exc
    if is_unavailable(exc):
        return StoreUnavailable(_first_line(exc))
    return RecordRejected(_first_line(exc))


def _connection_lost(exc: BaseException) -> bool:
    """A pooled connection that died under the batch: worth one immediate retry on a fresh one."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    if isinstance(exc, asyncpg.PostgresConnectionError):  # e.g. closed in the middle of the batch
        return True
    return isinstance(exc, (asyncpg.InterfaceError, ConnectionError)) and not isinstance(exc, asyncpg.PostgresError)


def is_unavailable(exc: BaseException) -> bool:
    """True when the failure says nothing about the records: the database was not there to answer.

    SQLite reports "database is locked", "attempt to write a readonly database" and "unable to open"
    as OperationalError; asyncpg's lost connections come out as InterfaceError / OperationalError or
    with ``connection_invalidated``. Integrity, data and programming errors are the records' fault.
    """
    if isinstance(exc, (OSError, TimeoutError, StoreUnavailable)):
        return True
    if isinstance(exc, asyncpg.PostgresError):  # the driver's own, from the PostgreSQL path
        return _is_connection_error(exc) or _is_transient(exc)
    if isinstance(exc, asyncpg.InterfaceError):  # the connection, not the records
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
            return True
        return isinstance(exc.orig, (OSError, TimeoutError)) or _is_connection_error(exc.orig)
    return False


def _is_connection_error(orig: BaseException | None) -> bool:
    # asyncpg's own connection errors (ConnectionDoesNotExistError, …) and PostgreSQL's class 08
    # (connection exception) and 57P (operator intervention: shutdown, cannot connect now).
    state = str(getattr(orig, "sqlstate", "") or "")
    name = type(orig).__name__ if orig is not None else ""
    return state.startswith(("08", "57P")) or "Connection" in name


def _is_transient(exc: BaseException) -> bool:
    # Says nothing about the records either: a deadlock or serialization failure (class 40), out of
    # resources (53), a lock not available (55P03) or a cancelled statement (57014). Retry later.
    state = str(getattr(exc, "sqlstate", "") or "")
    return state.startswith(("40", "53")) or state in ("55P03", "57014")


Execute = Callable[[Any, list[dict[str, Any]]], Awaitable[None]]
CustomerPks = Callable[[set[str]], Awaitable[dict[str, int]]]
# The call rows a batch's facts merge into, read (and locked on PostgreSQL) in the batch's own
# transaction: (call_id, facts, outcome, order_id, ended_at) per existing row, in call_id order.
CallRows = Callable[[list[str]], Awaitable[Sequence[tuple[Any, ...]]]]


async def _write(records: Sequence[CallRecord], statements: _Statements, execute: Execute,
                 customer_pks: CustomerPks, call_rows: CallRows, outbox: OutboxRouting | None = None,
                 transcripts: bool = False, lead_stage: str | None = None) -> None:
    # Core statements on the tables (not the ORM classes): an ORM-enabled insert with a list of
    # rows takes SQLAlchemy's ORM bulk path, measured 3x slower here.
    waves, timeline = _waves(records)
    ids = _customer_ids(records)
    customers = await customer_pks(ids) if ids else {}
    verdicts = await _verdicts(records, call_rows)
    for wave in waves:
        starts = [r for r in wave if isinstance(r, CallStart)]
        ends = [r for r in wave if isinstance(r, CallEnd)]
        updates: dict[tuple[str, ...], list[CallUpdate]] = {}
        for r in wave:
            if isinstance(r, CallUpdate):
                updates.setdefault(_update_columns(r), []).append(r)
        if starts:
            await execute(statements.start, [_start_row(r, customers) for r in starts])
        if ends:
            unknown = [r for r in ends if not customers.get(r.customer_id or "")]
            if lead_stage is not None and unknown:  # before the end: its upsert links the call to the lead
                at = datetime.now(UTC)
                await execute(statements.open_lead,
                              [{"call_id": r.call_id, "stage": lead_stage, "at": at} for r in unknown])
            await execute(statements.end, [_end_row(r, customers, verdicts[r.uid]) for r in ends])
        for names, group in updates.items():
            await execute(statements.update(names), [_update_row(r, customers, verdicts) for r in group])
    if timeline:
        await execute(statements.timeline, [_timeline_row(r) for r in timeline])
        if outbox is not None:
            rows = outbox.rows_for(timeline, datetime.now(UTC))
            if rows:  # one executemany for the whole batch, whatever the number of targets
                await execute(statements.outbox, rows)
        if transcripts:
            queued = [pending_row(r.call_id, str(r.data["path"]), as_utc(r.at)) for r in timeline
                      if r.kind == EventKind.RECORDING_READY and r.call_id and r.data.get("path")]
            if queued:
                await execute(statements.transcripts, queued)


CALLS = Call.__table__
TIMELINE = TimelineEvent.__table__
OUTBOX = OutboxRow.__table__
TRANSCRIPTS = Transcript.__table__


class _Statements:
    """The batch statements of one dialect, built once (both speak ON CONFLICT)."""

    def __init__(self, dialect: str) -> None:
        self.insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.start = self.insert(CALLS).on_conflict_do_nothing(index_elements=["call_id"])
        self.end = _end_statement(self.insert)
        self.timeline = self.insert(TIMELINE).on_conflict_do_nothing(index_elements=["event_uid"])
        self.outbox = self.insert(OUTBOX).on_conflict_do_nothing(index_elements=["event_id", "target"])
        self.transcripts = self.insert(TRANSCRIPTS).on_conflict_do_nothing(
            index_elements=["call_id", "recording_path"])
        self.open_lead = OPEN_LEAD[dialect]
        self._updates: dict[tuple[str, ...], Any] = {}

    def update(self, names: tuple[str, ...]) -> Any:
        if names not in self._updates:
            self._updates[names] = _update_statement(self.insert, names)
        return self._updates[names]


_BY_DIALECT: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    if dialect not in _BY_DIALECT:
        _BY_DIALECT[dialect] = _Statements(dialect)
    return _BY_DIALECT[dialect]


def _waves(records: Iterable[CallRecord]) -> tuple[list[list[RowRecord]], list[TimelineRecord]]:
    """Row records split so that wave k holds the k-th row record of each call; timeline rows apart
    (they reference no row, and one statement inserts them in submission order)."""
    depth: dict[str, int] = {}
    waves: list[list[RowRecord]] = []
    timeline: list[TimelineRecord] = []
    for record in records:
        if isinstance(record, TimelineRecord):
            timeline.append(record)
            continue
        k = depth.get(record.call_id, 0)
        depth[record.call_id] = k + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(record)
    return waves, timeline


def _customer_ids(records: Iterable[CallRecord]) -> set[str]:
    ids: set[str] = set()
    for r in records:
        if isinstance(r, (CallStart, CallEnd)) and r.customer_id:
            ids.add(r.customer_id)
        elif isinstance(r, CallUpdate) and isinstance(r.fields.get("customer_id"), str):
            ids.add(r.fields["customer_id"])
    return ids


# External customer ids -> internal keys, one query per batch (unknown ids are absent). PostgreSQL
# takes the ids as one array, so the text is the same for any number of them (prepared once).
_CUSTOMER_PKS_PG = DirectStatement(
    select(Customer.customer_id, Customer.id).where(Customer.customer_id == any_(bindparam("ids", type_=ARRAY(String))))
)


def _call_rows_query(where: Any) -> Any:
    return (
        select(CALLS.c.call_id, CALLS.c.facts, CALLS.c.outcome, CALLS.c.order_id, CALLS.c.ended_at)
        .where(where)
        .order_by(CALLS.c.call_id)  # one lock order for every writer: no deadlock between two batches
        .with_for_update()
    )


# The rows a batch's facts merge into, locked until the batch commits; one array parameter, so the
# text is the same for any number of calls (prepared once per connection).
_CALL_ROWS_PG = DirectStatement(_call_rows_query(CALLS.c.call_id == any_(bindparam("ids", type_=ARRAY(String)))))
# The batch statements compiled for asyncpg, by (statement, the columns a row sets).
_DIRECT: dict[tuple[int, tuple[str, ...]], DirectStatement] = {}


def _direct(statement: Any, row: Mapping[str, Any]) -> DirectStatement:
    keys = tuple(row)
    found = _DIRECT.get((id(statement), keys))
    if found is None:  # statements live as long as the process (_BY_DIALECT): their ids are stable
        found = _DIRECT[(id(statement), keys)] = DirectStatement(statement, column_keys=keys)
    return found


def _start_row(r: CallStart, customers: Mapping[str, int]) -> dict[str, Any]:
    return {
        "call_id": r.call_id, "caller_number": r.caller_number, "normalized_number": r.normalized_number,
        "customer_id": customers.get(r.customer_id) if r.customer_id else None, "channel": r.channel,
        "script": r.script, "started_at": as_utc(r.started_at),
    }


def _end_statement(insert: Any) -> Any:
    stmt = insert(CALLS)
    new, old = stmt.excluded, CALLS.c
    # outcome, facts and ended_at were settled in Python from the row read under lock (_verdicts).
    return stmt.on_conflict_do_update(
        index_elements=["call_id"],
        set_={
            "outcome": new.outcome,
            "facts": new.facts,
            "ended_at": new.ended_at,
            "reason": new.reason,
            "order_id": func.coalesce(new.order_id, old.order_id),
            "customer_id": func.coalesce(new.customer_id, old.customer_id),
            # The deal the call is about, decided in this same statement (crm_bridge.deals).
            "deal_id": deal_of_call(sets_customer=True),
        },
    )


def _end_row(r: CallEnd, customers: Mapping[str, int], verdict: _Verdict) -> dict[str, Any]:
    return {
        "call_id": r.call_id, "started_at": as_utc(r.ended_at), "ended_at": verdict.ended_at,
        "outcome": verdict.outcome, "facts": verdict.facts, "reason": r.reason, "order_id": r.order_id,
        "customer_id": customers.get(r.customer_id) if r.customer_id else None,
    }


def _update_statement(insert: Any, names: tuple[str, ...]) -> Any:
    stmt = insert(CALLS)
    new = stmt.excluded
    set_: dict[str, Any] = {n: new[n] for n in names if n != "customer_id"}
    if "customer_id" in names:
        set_["customer_id"] = func.coalesce(new.customer_id, CALLS.c.customer_id)
    if "customer_id" in names or "ended_at" in names:
        # The call's customer became known, or its last channel went (an operator may have placed
        # an order in it): the deal it is about, in the same statement (crm_bridge.deals).
        set_["deal_id"] = deal_of_call(sets_customer="customer_id" in names)
    if not set_:
        return stmt.on_conflict_do_nothing(index_elements=["call_id"])
    return stmt.on_conflict_do_update(index_elements=["call_id"], set_=set_)


def _update_columns(r: CallUpdate) -> tuple[str, ...]:
    """The columns an update sets (its statement's shape): its fields, plus the verdict's."""
    names = set(r.fields)
    if r.facts is not None:
        names |= {"facts", "outcome"}
    return tuple(sorted(names))


def _update_row(r: CallUpdate, customers: Mapping[str, int], verdicts: Mapping[str, _Verdict]) -> dict[str, Any]:
    row = {k: (as_utc(v) if isinstance(v, datetime) else v) for k, v in r.fields.items()}
    if "customer_id" in row:
        row["customer_id"] = customers.get(row["customer_id"]) if row["customer_id"] else None
    verdict = verdicts.get(r.uid)
    if verdict is not None:
        if r.facts is not None:
            row["facts"], row["outcome"] = verdict.facts, verdict.outcome
        if "ended_at" in row:
            row["ended_at"] = verdict.ended_at
    return {"call_id": r.call_id, "started_at": as_utc(r.started_at), **row}


@dataclass(frozen=True)
class _Verdict:
    """A row record's share of the call row: the merged facts, their outcome, the call's end."""

    facts: dict[str, Any]
    outcome: str | None
    ended_at: datetime | None


async def _verdicts(records: Sequence[CallRecord], call_rows: CallRows) -> dict[str, _Verdict]:
    """For every end or update that carries facts or an end time: the row as it will be after it.

    One read of the rows concerned per batch, locked on PostgreSQL (SQLite: the batch already holds
    the database's write lock), then the records fold in in submission order, so two records of one
    call in one batch see each other. Rows written before facts existed say them by their outcome.
    """
    concerned = {
        r.call_id for r in records
        if isinstance(r, CallEnd) or (isinstance(r, CallUpdate) and (r.facts is not None or "ended_at" in r.fields))
    }
    if not concerned:
        return {}
    state: dict[str, tuple[CallFacts, datetime | None]] = {}
    for call_id, facts, outcome, order_id, ended_at in await call_rows(sorted(concerned)):
        state[call_id] = (row_facts(facts, outcome, order_id), as_utc(ended_at) if ended_at is not None else None)
    verdicts: dict[str, _Verdict] = {}
    for r in records:
        if r.call_id not in concerned or isinstance(r, (CallStart, TimelineRecord)):
            continue
        facts, ended_at = state.get(r.call_id, (CallFacts(), None))
        if r.facts is not None:
            facts = facts.merged(r.facts)
        if isinstance(r, CallUpdate) and r.fields.get("ended_at") is not None:
            ended_at = as_utc(r.fields["ended_at"])  # the tracker saw the last channel go
        elif isinstance(r, CallEnd) and ended_at is None:
            ended_at = as_utc(r.ended_at)  # the robot's end only until the tracker says when the call ended
        state[r.call_id] = (facts, ended_at)
        verdicts[r.uid] = _Verdict(facts.to_json(), decide_outcome(facts), ended_at)
    return verdicts


def _timeline_row(r: TimelineRecord) -> dict[str, Any]:
    return {"at": as_utc(r.at), "call_id": r.call_id, "customer_id": r.customer_id, "kind": r.kind,
            "data": dict(r.data), "event_uid": r.uid}
