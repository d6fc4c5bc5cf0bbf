"""The call-record writer over the real store: exactly once, in order, through outages and crashes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from crm_bridge.call_log import CallEnd, CallLog, CallRecord, CallStart, CallUpdate, TimelineRecord
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.db import create_engine, session_factory
from crm_bridge.errors import StoreUnavailable
from crm_bridge.models import Call, TimelineEvent
from crm_bridge.services import CrmStore
from ivr.calls.record_spool import RecordSpool
from ivr.calls.record_writer import RecordWriter
from tests.db.fixtures import _reset_pg_schema_empty
from tests.db.tcp_proxy import TcpProxy, proxied_engine

T0 = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
EVENTS_PER_CALL = 8
DEADLINE = 60.0  # generous bound for a loaded 2-core machine; nothing waits for it to pass


def call_records(call_id: str) -> list[CallRecord]:
    """One call's worth: start, eight timeline events, end."""
    events = [
        TimelineRecord(at=T0 + timedelta(seconds=i), call_id=call_id, customer_id=None, kind=f"step.{i}",
                       data={"i": i})
        for i in range(EVENTS_PER_CALL)
    ]
    return [
        CallStart(call_id=call_id, started_at=T0, caller_number="+79161234567", normalized_number="+79161234567",
                  channel="PJSIP/trunk-1", script="repeat-order"),
        *events,
        CallEnd(call_id=call_id, facts=facts_implying("order_placed"), reason="order_placed",
                ended_at=T0 + timedelta(minutes=1),
                order_id=f"A-{call_id}"),
    ]


async def submit_calls(writer: RecordWriter, call_ids: list[str]) -> None:
    """Each call from its own task, one record at a time, like the runner and the notifier do."""
    async def one(call_id: str) -> None:
        for record in call_records(call_id):
            await writer.submit([record])

    await asyncio.gather(*(one(c) for c in call_ids))


async def assert_each_call_once_and_whole(sessions: Any, call_ids: list[str]) -> None:
    async with sessions() as session:
        rows = (await session.execute(select(Call.call_id, Call.outcome, Call.order_id, Call.caller_number))).all()
        timeline = (await session.execute(
            select(TimelineEvent.call_id, TimelineEvent.kind).order_by(TimelineEvent.id)
        )).all()
    assert sorted(r.call_id for r in rows) == sorted(call_ids)
    assert all(r.outcome == "order_placed" and r.order_id == f"A-{r.call_id}" and r.caller_number for r in rows)
    per_call: dict[str, list[str]] = {}
    for call_id, kind in timeline:
        per_call.setdefault(call_id, []).append(kind)
    expected = [f"step.{i}" for i in range(EVENTS_PER_CALL)]
    wrong = {c: kinds for c, kinds in per_call.items() if kinds != expected}
    assert not wrong, f"{len(wrong)} calls with a missing, doubled or reordered timeline"
    assert sorted(per_call) == sorted(call_ids)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[Any]:
    engine = create_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def make_writer(sessions: Any, spool_dir: Path, **options: Any) -> RecordWriter:
    options = {"retry_min": 0.02, "retry_max": 0.2, **options}
    return RecordWriter(CallLog(sessions), RecordSpool(spool_dir), **options)


async def test_200_concurrent_calls_land_exactly_once_with_their_whole_timelines(sessions, tmp_path) -> None:
    writer = make_writer(sessions, tmp_path / "spool", max_batch=500)
    call_ids = [f"call-{n}" for n in range(200)]
    await submit_calls(writer, call_ids)  # 2,000 records from 200 tasks
    async with asyncio.timeout(DEADLINE):
        await writer.caught_up()
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, call_ids)
    assert (writer.stats.written, writer.stats.spooled, writer.stats.dead_letters) == (2_000, 0, 0)
    # Group commit: far fewer transactions than calls (two to four per call before).
    assert writer.stats.transactions <= len(call_ids) // 5


@pytest.mark.parametrize(("linger", "transactions"), [(3600.0, {1}), (0.0, {2, 3})])
async def test_linger_lets_other_calls_join_the_transaction_and_a_waiter_ends_it(
    sessions, tmp_path, linger: float, transactions: set[int]
) -> None:
    """Calls that arrive one after another: without linger the first is taken alone the moment the
    writer runs; with it they share one transaction, and sync() does not wait for the linger."""
    writer = make_writer(sessions, tmp_path / "spool", linger=linger)
    call_ids = ["early", "middle", "late"]
    for call_id in call_ids:
        await writer.submit(call_records(call_id))
        for _ in range(50):  # let the writer run as far as it will go without time passing
            await asyncio.sleep(0)
    async with asyncio.timeout(DEADLINE):
        await writer.sync()
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, call_ids)
    assert writer.stats.transactions in transactions


async def test_a_terminated_pooled_connection_costs_one_retry_not_the_spool(db_url: str, tmp_path) -> None:
    """The writer's connection killed between batches (a restart, a failover): the next batch goes
    through at once on a fresh connection, nothing is spooled."""
    if make_url(db_url).get_backend_name() != "postgresql":
        pytest.skip("a server-side kill of the connection: PostgreSQL")
    from tests.db.test_store_hot_path import backend_pid, terminate_backend

    engine = create_engine(db_url, pool_size=1)
    try:
        writer = make_writer(session_factory(engine), tmp_path / "spool")
        await writer.submit(call_records("before"))
        async with asyncio.timeout(DEADLINE):
            await writer.caught_up()
        await terminate_backend(db_url, await backend_pid(engine))
        with capture_logs() as logs:
            await writer.submit(call_records("after"))
            async with asyncio.timeout(DEADLINE):
                await writer.caught_up()
        await writer.drain(5.0)
        await assert_each_call_once_and_whole(session_factory(engine), ["before", "after"])
    finally:
        await engine.dispose()
    assert writer.stats.spooled == 0
    assert [e["event"] for e in logs if e["event"] == "call_log_connection_lost"] == ["call_log_connection_lost"]


async def test_records_keep_the_store_semantics(sessions, tmp_path) -> None:
    """A late IVR end keeps the tracker's refined outcome; an end without a start creates the row;
    an unknown customer id never erases a known one (the semantics of CrmStore's own methods)."""
    store = CrmStore(sessions)
    writer = make_writer(sessions, tmp_path / "spool")
    await writer.submit([
        CallStart(call_id="refined", started_at=T0, caller_number="+7916"),
        CallUpdate(call_id="refined", fields={"ended_at": T0}, started_at=T0,
                   facts=facts_implying("abandoned_in_queue")),
        CallEnd(call_id="refined", facts=facts_implying("operator"), reason="escalated",
                ended_at=T0 + timedelta(seconds=9)),
        CallEnd(call_id="no-start", facts=facts_implying("abandoned"), reason="hangup_at_menu", ended_at=T0),
        CallUpdate(call_id="no-start", fields={"customer_id": "nobody-knows-me"}, started_at=T0),
    ])
    await writer.drain(5.0)
    refined = await store.get_call("refined")
    assert refined is not None
    assert (refined.outcome, refined.reason, refined.ended_at, refined.caller_number) == (
        "abandoned_in_queue", "escalated", T0, "+7916")
    created = await store.get_call("no-start")
    assert created is not None and (created.outcome, created.started_at, created.customer_id) == (
        "abandoned_in_ivr", T0, None)


async def test_a_full_queue_makes_submit_wait_and_drops_nothing(sessions, tmp_path) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class GatedLog(CallLog):
        async def write(self, records):  # the real write, once the test opens the gate
            entered.set()
            await gate.wait()
            await super().write(records)

    writer = RecordWriter(GatedLog(sessions), RecordSpool(tmp_path / "spool"), max_backlog=10, max_batch=10)
    await writer.submit(call_records("first"))  # 10 records: taken by the writer, which blocks in write
    await entered.wait()
    await writer.submit(call_records("second"))  # the queue holds 10 more: now it is full
    assert writer.backlog == 20
    third = asyncio.ensure_future(writer.submit(call_records("third")))
    await asyncio.sleep(0)  # let it run up to its wait (it cannot finish: there is no room)
    assert not third.done() and writer.backlog == 20
    gate.set()
    async with asyncio.timeout(DEADLINE):
        await third  # admitted once the first batch is written
        await writer.caught_up()
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, ["first", "second", "third"])


async def test_a_rejected_record_is_dead_lettered_and_the_rest_written(sessions, tmp_path) -> None:
    writer = make_writer(sessions, tmp_path / "spool")
    bad = TimelineRecord(at=T0, call_id="good-1", customer_id=None, kind=None, data={})  # type: ignore[arg-type]
    await writer.submit([*call_records("good-1"), bad, *call_records("good-2")])
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, ["good-1", "good-2"])
    (letter,) = RecordSpool(tmp_path / "spool").dead_letters()
    assert letter["record"]["uid"] == bad.uid and writer.stats.dead_letters == 1


async def test_a_spool_left_by_a_crash_is_written_once_at_start(sessions, tmp_path) -> None:
    spool = RecordSpool(tmp_path / "spool")
    committed = call_records("committed-before-the-crash")
    await CallLog(sessions).write(committed)  # the crash came after COMMIT but before forgetting it
    spool.append(committed)
    spool.append(call_records("only-in-the-spool"))
    with spool.path.open("a") as handle:
        handle.write('{"records": [{"type": "start", "call_')  # torn by the crash
    spool.close()  # the crashed process is gone: its slot is free
    writer = make_writer(sessions, spool.directory)
    writer.start()
    async with asyncio.timeout(DEADLINE):
        await writer.caught_up()
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, ["committed-before-the-crash", "only-in-the-spool"])
    assert not spool.has_batches()
    assert len(spool.dead_letters()) == 1  # the torn line, kept for a human


async def test_shutdown_spools_what_the_database_cannot_take_and_the_next_start_writes_it(
    sessions, tmp_path
) -> None:
    gate = asyncio.Event()

    class HangingLog(CallLog):
        async def write(self, records):
            await gate.wait()  # a database that never answers

    first_spool = RecordSpool(tmp_path / "spool")
    first = RecordWriter(HangingLog(sessions), first_spool, write_timeout=30.0)
    await submit_calls(first, ["a", "b", "c"])
    await first.drain(0.05)  # grace over: the in-flight batch and the queue go to the spool
    assert first.stats.spooled == 30 and first.backlog == 0
    first_spool.close()  # the process exits
    second = make_writer(sessions, tmp_path / "spool")
    second.start()
    async with asyncio.timeout(DEADLINE):
        await second.caught_up()
    await second.drain(5.0)
    await assert_each_call_once_and_whole(sessions, ["a", "b", "c"])


async def test_workers_sharing_a_spool_directory_never_touch_each_others_file(sessions, tmp_path) -> None:
    live = RecordSpool(tmp_path / "spool")
    live.append(call_records("owned-by-a-live-worker"))  # a running worker with its own spool
    dead = [RecordSpool(tmp_path / "spool") for _ in range(2)]
    for n, spool in enumerate(dead):
        spool.append(call_records(f"left-by-dead-worker-{n}"))
    assert [s.path.name for s in (live, *dead)] == ["spool-0.jsonl", "spool-1.jsonl", "spool-2.jsonl"]
    for spool in dead:
        spool.close()  # those workers died
    # A new worker takes the first free slot (1) and adopts slot 2, which nobody holds any more.
    writer = make_writer(sessions, tmp_path / "spool")
    writer.start()
    async with asyncio.timeout(DEADLINE):
        await writer.caught_up()
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, ["left-by-dead-worker-0", "left-by-dead-worker-1"])
    assert not (tmp_path / "spool" / "spool-2.jsonl").exists()
    assert [[r.call_id for r in batch][0] for batch in live.batches()] == ["owned-by-a-live-worker"]


# --- the database goes away -------------------------------------------------------------------------


async def _load_through_outage(writer: RecordWriter, outage_down, outage_up, sessions) -> None:
    """Half the calls, database down, the other half, database back: every record once."""
    call_ids = [f"call-{n}" for n in range(100)]
    await submit_calls(writer, call_ids[:50])
    async with asyncio.timeout(DEADLINE):
        await writer.sync()
    outage_down()
    await submit_calls(writer, call_ids[50:])
    async with asyncio.timeout(DEADLINE):
        await writer.sync()  # everything is committed or spooled, nothing waits in memory
    assert writer.spooling and writer.stats.spooled > 0
    outage_up()
    writer.retry_now()
    async with asyncio.timeout(DEADLINE):
        await writer.caught_up()
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, call_ids)


@pytest.fixture
async def proxied(db_url: str) -> AsyncIterator[tuple[TcpProxy, Any]]:
    async with proxied_engine(db_url) as (proxy, engine):
        yield proxy, session_factory(engine)


async def test_postgres_stopped_mid_load_every_record_arrives_once(proxied, sessions, tmp_path) -> None:
    proxy, through_proxy = proxied
    writer = make_writer(through_proxy, tmp_path / "spool", write_timeout=5.0)
    await _load_through_outage(writer, proxy.down, proxy.up, sessions)


async def test_a_commit_whose_reply_is_lost_is_not_doubled(proxied, sessions, tmp_path) -> None:
    proxy, through_proxy = proxied
    writer = make_writer(through_proxy, tmp_path / "spool", write_timeout=5.0)
    proxy.lose_commit_reply()
    await submit_calls(writer, ["lost-reply"])
    async with asyncio.timeout(DEADLINE):
        await proxy.commit_reply_lost.wait()
        await writer.caught_up()  # written again at once on a fresh connection (or spooled and replayed)
    await writer.drain(5.0)
    await assert_each_call_once_and_whole(sessions, ["lost-reply"])
    async with sessions() as session:
        uids = (await session.execute(select(func.count(TimelineEvent.event_uid.distinct())))).scalar_one()
    assert uids == EVENTS_PER_CALL


async def test_sqlite_locked_mid_load_every_record_arrives_once(db_url: str, sessions, tmp_path) -> None:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        pytest.skip("SQLite's own outage: another process holds the write lock")
    engine = create_engine(db_url)

    @event.listens_for(engine.sync_engine, "connect")
    def _short_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        # After crm_bridge.db's hook: give up on a held lock in 50 ms instead of 15 s.
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    locker = sqlite3.connect(url.database, isolation_level=None)
    try:
        writer = make_writer(session_factory(engine), tmp_path / "spool")

        def lock() -> None:
            locker.execute("BEGIN EXCLUSIVE")

        def unlock() -> None:
            locker.execute("COMMIT")

        await _load_through_outage(writer, lock, unlock, sessions)
    finally:
        locker.close()
        await engine.dispose()


def test_record_json_round_trip_keeps_every_field() -> None:
    from crm_bridge.call_log import record_from_json, record_to_json

    records = [*call_records("x"), CallUpdate(call_id="x", fields={"answered_at": T0, "queue": "q"}, started_at=T0)]
    assert [record_from_json(record_to_json(r)) for r in records] == records
    assert Counter(type(r).__name__ for r in records)["TimelineRecord"] == EVENTS_PER_CALL


async def test_a_database_not_migrated_yet_is_unavailable_not_a_rejection(db_url: str) -> None:
    """A database back before its migrations ran (ivr serve's start-up retry) holds the records in
    the spool; split and dead-lettered they would be lost."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        await _reset_pg_schema_empty(db_url)
        engine = create_engine(db_url)
    else:
        engine = create_engine(url.set(database=f"{url.database}.empty").render_as_string(hide_password=False))
    try:
        with pytest.raises(StoreUnavailable):
            await CallLog(session_factory(engine)).write(call_records("not-migrated"))
    finally:
        await engine.dispose()
