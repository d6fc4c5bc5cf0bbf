"""Cost of the store's two hot calls, per call: lookup_caller and place_order.

    .venv/bin/python bench/store_calls.py [--backend sqlite|postgres|both] [--calls 1000]

Per backend, on a fresh database (a SQLite file in a temp dir, or a throw-away PostgreSQL database
beside ``IVR_TEST_DATABASE_URL`` / ``--pg-url``, dropped at the end) with 1,000 customers:
* CPU ms per call: ``time.process_time`` over ``--calls`` sequential calls on a warm pool, divided.
* wall ms per call (p50/p99) in the same pass.
* statements per call: SQLAlchemy ``before_cursor_execute`` events (BEGIN/COMMIT/ROLLBACK excluded).
* round trips per call (PostgreSQL): a counting TCP relay in front of the server (bench/roundtrips.py),
  in a separate pass of 200 calls so the relay's own CPU is not in the CPU figure.
* ``--burst N``: the database work of N whole repeat-order calls all in flight at once (lookup, call
  start, place order, call end with 8 timeline events), on a pool of 10: calls/s and failures (e.g.
  "database is locked" on SQLite, pool timeouts).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
from sqlalchemy import bindparam, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench.roundtrips import RoundTripRelay  # noqa: E402
from crm_bridge.contract.outcomes import facts_implying  # noqa: E402
from crm_bridge.db import create_engine, session_factory, upgrade  # noqa: E402
from crm_bridge.models import UtcDateTime  # noqa: E402
from crm_bridge.services import CrmStore  # noqa: E402

CUSTOMERS = 1000
AT = datetime(2026, 2, 1, 9, tzinfo=UTC)


async def _admin(base_url: str, sql: str) -> None:
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _seed(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO products (sku, price, unit, name, active) VALUES "
                "('W19', 350, 'бутылка', 'воды 19 л', true), ('CUPS', 99.99, 'упаковка', 'стаканчиков', true)"))
            await conn.execute(text(
                "INSERT INTO customers (customer_id, last_name, first_name, patronymic, language, address,"
                " created_at, updated_at) VALUES (:cid, 'Иванов', 'Иван', 'Иванович', 'ru', '', :at, :at)"
            ).bindparams(bindparam("at", type_=UtcDateTime)), [{"cid": f"C{n}", "at": AT} for n in range(CUSTOMERS)])
            await conn.execute(text(
                "INSERT INTO phones (number, customer_id) SELECT '+7916' || (9000000 + id), id "
                "FROM customers"))
            await conn.execute(text(
                "INSERT INTO orders (order_id, customer_id, ordered_at, source, total) "
                "SELECT 'H-' || id, id, :at, 'import', 700 FROM customers"
            ).bindparams(bindparam("at", type_=UtcDateTime)), {"at": AT})
            await conn.execute(text(
                "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, unit, name) "
                "SELECT id, 1, 'W19', 2, 350, 700, 'бутылка', 'воды 19 л' FROM orders"))
    finally:
        await engine.dispose()


def _phone(n: int) -> str:
    return f"+7916{9000000 + (n % CUSTOMERS) + 1}"


async def _measure(store: CrmStore, op: Callable[[int], Awaitable[Any]], calls: int, start: int) -> dict[str, float]:
    for n in range(start, start + 50):  # warm the pool and the statement caches
        await op(n)
    statements = 0

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal statements
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements += 1

    engine = store.sessions.kw["bind"]
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    walls = []
    cpu0 = time.process_time()
    for n in range(start + 50, start + 50 + calls):
        t0 = time.perf_counter()
        await op(n)
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu0
    event.remove(engine.sync_engine, "before_cursor_execute", count)
    walls.sort()
    return {
        "cpu_ms": 1000 * cpu / calls,
        "p50_ms": 1000 * statistics.median(walls),
        "p99_ms": 1000 * walls[int(len(walls) * 0.99) - 1],
        "statements": statements / calls,
    }


def _ops(store: CrmStore, tag: str) -> dict[str, Callable[[int], Awaitable[Any]]]:
    async def lookup(n: int) -> Any:
        found = await store.lookup_caller(_phone(n))
        assert found.status == "found" and found.last_order is not None, found

    async def place(n: int) -> Any:
        placed = await store.place_order(idempotency_key=f"{tag}-{n}", customer_id=f"C{n % CUSTOMERS}",
                                         lines=[("W19", 2), ("CUPS", 1)], source="ivr")
        assert placed.created

    return {"lookup_caller": lookup, "place_order": place}


async def _burst(store: CrmStore, calls: int) -> dict[str, float]:
    from crm_bridge.dto import TimelineEventIn

    async def call(n: int) -> None:
        call_id = f"burst-{n}"
        now = datetime.now(UTC)
        found = await store.lookup_caller(_phone(n))
        assert found.customer is not None
        await store.record_call_start(call_id=call_id, caller_number=_phone(n), normalized_number=_phone(n),
                                      customer_id=found.customer.customer_id, channel=None, script="repeat-order",
                                      started_at=now)
        placed = await store.place_order(idempotency_key=f"{call_id}:repeat", customer_id=found.customer.customer_id,
                                         lines=[("W19", 2)], source="ivr", call_id=call_id)
        events = [TimelineEventIn(at=now, call_id=call_id, customer_id=found.customer.customer_id, kind="step",
                                  data={"n": k}) for k in range(8)]
        await store.record_call_end(call_id, facts=facts_implying("order_placed"), reason="order_placed", ended_at=now,
                                    customer_id=found.customer.customer_id, order_id=placed.order.order_id,
                                    events=events)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(call(n) for n in range(calls)), return_exceptions=True)
    elapsed = time.perf_counter() - t0
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures[:3]:
        print(f"  failure: {type(failure).__name__}: {str(failure)[:150]}")
    return {"calls": calls, "calls_per_s": calls / elapsed, "failed": len(failures)}


async def run_backend(
    backend: str, calls: int, pg_base: str, burst: int = 0
) -> list[tuple[str, str, dict[str, float]]]:
    rows = []
    tmp = tempfile.TemporaryDirectory()
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp.name}/bench.sqlite3"
    else:
        name = f"ivr_bench_store_{uuid.uuid4().hex[:8]}"
        await _admin(pg_base, f'CREATE DATABASE "{name}"')
        url = make_url(pg_base).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(url)
        await _seed(url)
        engine = create_engine(url)
        store = CrmStore(session_factory(engine))
        for label, op in _ops(store, "cpu").items():
            rows.append((backend, label, await _measure(store, op, calls, 0)))
        if burst:
            rows.append((backend, "burst", await _burst(store, burst)))
        await engine.dispose()
        if backend == "postgres":
            parsed = make_url(url)
            relay = RoundTripRelay(parsed.host or "127.0.0.1", parsed.port or 5432)
            port = await relay.start()
            engine = create_engine(parsed.set(port=port).render_as_string(hide_password=False))
            store = CrmStore(session_factory(engine))
            for (_label, op), (_, _, row) in zip(_ops(store, "rt").items(), rows[:2], strict=True):
                for n in range(100_000, 100_050):
                    await op(n)
                before = relay.round_trips
                for n in range(100_050, 100_250):
                    await op(n)
                row["round_trips"] = (relay.round_trips - before) / 200
            await engine.dispose()
            await relay.close()
    finally:
        if backend == "postgres":
            await _admin(pg_base, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        tmp.cleanup()
    return rows


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--burst", type=int, default=0, help="also run N whole calls' database work at once")
    p.add_argument("--pg-url", default=os.environ.get("IVR_TEST_DATABASE_URL",
                                                      "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    args = p.parse_args()
    # The store logs every order at info: measured here is the store, not the log renderer.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"{'backend':9} {'call':14} {'cpu ms':>7} {'p50 ms':>7} {'p99 ms':>7} {'stmts':>6} {'round trips':>11}")
    for backend in backends:
        for b, label, r in await run_backend(backend, args.calls, args.pg_url, args.burst):
            if label == "burst":
                print(f"{b:9} burst: {r['calls']:.0f} calls at once, {r['calls_per_s']:.1f} calls/s, "
                      f"{r['failed']:.0f} failed")
                continue
            rt = f"{r['round_trips']:.1f}" if "round_trips" in r else "-"
            print(f"{b:9} {label:14} {r['cpu_ms']:7.2f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
                  f"{r['statements']:6.1f} {rt:>11}")


if __name__ == "__main__":
    asyncio.run(main())
