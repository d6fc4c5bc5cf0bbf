"""The call's hot path under stress: dead pooled connections, numbering across migration 0004,
imported numbers, concurrent writers on SQLite, and round trips counted on the wire (PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from structlog.testing import capture_logs

from bench.roundtrips import RoundTripRelay
from crm_bridge.db import create_engine, downgrade, session_factory, upgrade
from crm_bridge.models import Invoice, Order
from crm_bridge.services import CrmStore
from tests.db.seed import IVANOV_PHONE, seed

MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def is_pg(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


@pytest.fixture
async def one_connection_store(db_url: str) -> AsyncIterator[CrmStore]:
    """A seeded store whose pool holds ONE connection, so the test knows which backend it uses."""
    engine = create_engine(db_url, pool_size=1)
    store = CrmStore(session_factory(engine))
    await seed(store)
    try:
        yield store
    finally:
        await engine.dispose()


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def terminate_backend(url: str, pid: int) -> None:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            # With a timeout PostgreSQL waits until the backend is gone: no race with the next query.
            gone = (await conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})).scalar()
    finally:
        await admin.dispose()
    assert gone


async def count_rows(store: CrmStore, model: type) -> int:
    async with store.sessions() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


# --- dropped connections: no pre-ping, one retry --------------------------------------------------


async def test_lookup_succeeds_after_its_pooled_connection_was_terminated(
    db_url: str, one_connection_store: CrmStore
) -> None:
    if not is_pg(db_url):
        pytest.skip("pg_terminate_backend is PostgreSQL")
    store = one_connection_store
    assert (await store.lookup_caller(IVANOV_PHONE)).status == "found"  # the connection is pooled now
    await terminate_backend(db_url, await backend_pid(store.sessions.kw["bind"]))
    with capture_logs() as logs:
        found = await store.lookup_caller(IVANOV_PHONE)
    assert found.status == "found" and found.last_order is not None
    assert [e["unit"] for e in logs if e["event"] == "store_connection_lost"] == ["lookup_caller"]


async def test_place_order_succeeds_once_after_its_pooled_connection_was_terminated(
    db_url: str, one_connection_store: CrmStore
) -> None:
    if not is_pg(db_url):
        pytest.skip("pg_terminate_backend is PostgreSQL")
    store = one_connection_store
    await store.lookup_caller(IVANOV_PHONE)
    await terminate_backend(db_url, await backend_pid(store.sessions.kw["bind"]))
    with capture_logs() as logs:
        placed = await store.place_order(idempotency_key="call-1:repeat", customer_id="C1",
                                         lines=[("W19", 2)], source="ivr", now=MORNING)
    assert placed.created and (placed.order.order_id, placed.invoice.number) == ("A-1001", "СЧ-2026-1")
    assert [e["unit"] for e in logs if e["event"] == "store_connection_lost"] == ["place_order"]
    assert await count_rows(store, Invoice) == 1


# --- numbering -------------------------------------------------------------------------------------


async def _database_at_0003(db_url: str, tmp_path) -> str:
    """A fresh database migrated to 0003 only (the numbering before sequences)."""
    if is_pg(db_url):
        admin = create_async_engine(db_url, isolation_level="AUTOCOMMIT", pool_size=1)
        try:
            async with admin.connect() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await admin.dispose()
        url = db_url
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/at-0003.sqlite3"
    await upgrade(url, "0003")
    return url


async def test_order_and_invoice_numbers_continue_after_migration_0004(db_url: str, tmp_path) -> None:
    url = await _database_at_0003(db_url, tmp_path)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # as if 41 orders had been placed before the upgrade
            await conn.execute(text("UPDATE sequences SET value = 1041 WHERE name = 'order'"))
            await conn.execute(text("UPDATE sequences SET value = 41 WHERE name = 'invoice'"))
        await upgrade(url)
        store = CrmStore(session_factory(engine))
        await seed(store)
        placed = await store.place_order(idempotency_key="k", customer_id="C1", lines=[("W19", 1)],
                                         source="ivr", now=MORNING)
        assert (placed.order.order_id, placed.invoice.number) == ("A-1042", "СЧ-2026-42")
    finally:
        await engine.dispose()
    await downgrade(url, "0003")  # the downgrade hands the position back to the counter table
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            counters = dict((await conn.execute(text("SELECT name, value FROM sequences"))).all())
    finally:
        await engine.dispose()
    assert counters == {"order": 1042, "invoice": 42}


async def test_generated_numbers_skip_a_run_of_imported_ones(store: CrmStore) -> None:
    await seed(store)
    async with store.sessions() as s:
        s.add_all(Order(order_id=f"A-{n}", customer_id=1, ordered_at=MORNING, source="import", total=0)
                  for n in (1001, 1002, 1003, 1005))
        await s.commit()
    numbers = []
    for n in range(3):
        placed = await store.place_order(idempotency_key=f"k{n}", customer_id="C1", lines=[("W19", 1)],
                                         source="ivr", now=MORNING)
        numbers.append((placed.order.order_id, placed.invoice.number))
    # SQLite steps over each taken number; PostgreSQL jumps past the highest imported one at once.
    expected_first = "A-1004" if store.sessions.kw["bind"].dialect.name == "sqlite" else "A-1006"
    assert numbers[0] == (expected_first, "СЧ-2026-1")
    assert [invoice for _, invoice in numbers] == ["СЧ-2026-1", "СЧ-2026-2", "СЧ-2026-3"]
    assert len({order for order, _ in numbers} | {"A-1001", "A-1002", "A-1003", "A-1005"}) == 7


# --- SQLite: one writer at a time, no "database is locked" -------------------------------------------


async def test_sqlite_takes_a_burst_of_concurrent_orders_without_locking_errors(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/burst.sqlite3"
    await upgrade(url)
    engine = create_engine(url, pool_size=5)
    try:
        store = CrmStore(session_factory(engine))
        await seed(store)
        results = await asyncio.gather(
            *(store.place_order(idempotency_key=f"call-{n}", customer_id="C1", lines=[("W19", 1)], source="ivr",
                                now=MORNING)
              for n in range(60)),
            *(store.lookup_caller(IVANOV_PHONE) for _ in range(60)),
        )
    finally:
        await engine.dispose()
    invoices = sorted(int(r.invoice.number.removeprefix("СЧ-2026-")) for r in results[:60])
    assert invoices == list(range(1, 61))
    assert all(r.status == "found" for r in results[60:])


# --- PostgreSQL: round trips on the wire ------------------------------------------------------------


async def test_lookup_is_one_round_trip_and_place_order_two(db_url: str, store: CrmStore) -> None:
    if not is_pg(db_url):
        pytest.skip("round trips are a network cost: PostgreSQL")
    await seed(store)
    parsed = make_url(db_url)
    relay = RoundTripRelay(parsed.host or "127.0.0.1", parsed.port or 5432)
    port = await relay.start()
    engine = create_engine(parsed.set(port=port).render_as_string(hide_password=False), pool_size=1)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda c, cur, stmt, *a: statements.append(stmt))
    try:
        relayed = CrmStore(session_factory(engine))
        for n in range(2):  # warm: connect, then prepare each statement once on this connection
            await relayed.lookup_caller(IVANOV_PHONE)
            await relayed.place_order(idempotency_key=f"warm{n}", customer_id="C1", lines=[("W19", 1)], source="ivr")
        before, statements[:] = relay.round_trips, []
        found = await relayed.lookup_caller(IVANOV_PHONE)
        lookup_trips, lookup_statements = relay.round_trips - before, len(statements)
        before, statements[:] = relay.round_trips, []
        placed = await relayed.place_order(idempotency_key="k", customer_id="C1", lines=[("W19", 2), ("CUPS", 1)],
                                           source="ivr")
        order_trips, order_statements = relay.round_trips - before, len(statements)
    finally:
        await engine.dispose()
        await relay.close()
    assert found.status == "found" and placed.created
    assert (lookup_trips, lookup_statements) == (1, 1)
    assert (order_trips, order_statements) == (2, 2)
