"""Caller lookup at scale: 1M customers / 5M orders in a throw-away PostgreSQL database.

    .venv/bin/python bench/lookup_1m.py [--customers 1000000] [--orders-per-customer 5] [--lookups 5000]
                                        [--baseline-code /path/to/older/checkout]

1. ``CREATE DATABASE ivr_bench_<random>`` beside ``--pg-url`` (default ``IVR_TEST_DATABASE_URL``),
   ``crm_bridge.db.upgrade``, then generates the data in SQL (``INSERT … SELECT generate_series``):
   customers; one phone each, a second phone for every 10th, and every 1000th pair of customers
   sharing a number; N orders per customer over two years with one line each; an invoice for
   every 5th order. Then ANALYZE.
2. Measures ``CrmStore.lookup_caller`` on random known numbers, sequentially on a warm pool:
   p50/p99 wall time, CPU ms per lookup (``time.process_time``), statements per lookup
   (``before_cursor_execute``), and in a separate pass round trips per lookup through a counting
   TCP relay (bench/roundtrips.py). With ``--baseline-code`` the same measurement runs first in a
   child process importing ``crm_bridge`` from that checkout (e.g. the main branch): before and
   after on the same data in the same run.
3. Prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the lookup statement, then drops the database (FORCE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# --child-measure runs another checkout's crm_bridge: its root goes first on the path.
CODE = Path(os.environ.get("IVR_BENCH_CODE", ROOT))
sys.path[:0] = [str(CODE), str(ROOT)]

import structlog  # noqa: E402
from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench.roundtrips import RoundTripRelay  # noqa: E402

GENERATE = [
    "INSERT INTO products (sku, price, unit, name, active) VALUES "
    "('W19', 350, 'бутылка', 'воды 19 л', true), ('W5', 150, 'бутылка', 'воды 5 л', true), "
    "('CUPS', 99.99, 'упаковка', 'стаканчиков', true)",
    "INSERT INTO customers (customer_id, last_name, first_name, patronymic, language, address, created_at, updated_at) "
    "SELECT 'C' || g, 'Фамилия' || g, 'Имя', 'Отчество', 'ru', 'адрес ' || g, now(), now() "
    "FROM generate_series(1, :customers) g",
    # Customer pk n owns +7900<n padded to 7 digits>; every 10th a second number +7901…;
    # every 1000th customer also owns the number of the customer before it (a shared number).
    "INSERT INTO phones (number, customer_id) SELECT '+7900' || lpad(id::text, 7, '0'), id FROM customers",
    "INSERT INTO phones (number, customer_id) SELECT '+7901' || lpad(id::text, 7, '0'), id FROM customers "
    "WHERE id % 10 = 0",
    "INSERT INTO phones (number, customer_id) SELECT '+7900' || lpad((id - 1)::text, 7, '0'), id FROM customers "
    "WHERE id % 1000 = 0",
    "INSERT INTO orders (order_id, customer_id, ordered_at, source, total, delivery_date) "
    "SELECT 'H-' || c.id || '-' || k, c.id, now() - make_interval(days => (random() * 730)::int), 'import', "
    "350 * (1 + k % 4), NULL FROM customers c CROSS JOIN generate_series(1, :per_customer) k",
    "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, amount, unit, name) "
    "SELECT id, 1, 'W19', (total / 350)::int, 350, total, 'бутылка', 'воды 19 л' FROM orders",
    "INSERT INTO invoices (number, order_id, issued_at, subtotal, vat_rate, vat_amount, total) "
    "SELECT 'HI-' || id, id, ordered_at, round(total / 1.2, 2), 20, total - round(total / 1.2, 2), total "
    "FROM orders WHERE id % 5 = 0",
    "ANALYZE",
]


def phone_of(customer_pk: int) -> str:
    return f"+7900{customer_pk:07d}"


async def _admin(base_url: str, sql: str) -> None:
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def generate(url: str, customers: int, per_customer: int) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with engine.connect() as conn:
            for sql in GENERATE:
                t0 = time.perf_counter()
                await conn.execute(text(sql), {"customers": customers, "per_customer": per_customer})
                print(f"  {time.perf_counter() - t0:6.1f} s  {sql[:70]}…", flush=True)
    finally:
        await engine.dispose()


async def measure(url: str, customers: int, lookups: int, seed: int = 7) -> dict[str, Any]:
    """lookup_caller on ``lookups`` random known numbers: wall p50/p99, CPU, statements, round trips."""
    from crm_bridge.db import create_engine, session_factory
    from crm_bridge.services import CrmStore

    rng = random.Random(seed)
    numbers = [phone_of(rng.randint(1, customers)) for _ in range(lookups)]
    engine = create_engine(url, pool_size=5)
    store = CrmStore(session_factory(engine))
    statements = 0

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal statements
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements += 1

    try:
        for number in numbers[:200]:  # warm pool, statement caches and the buffer cache
            await store.lookup_caller(number)
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        walls = []
        found = 0
        cpu0 = time.process_time()
        for number in numbers:
            t0 = time.perf_counter()
            result = await store.lookup_caller(number)
            walls.append(time.perf_counter() - t0)
            found += result.status in ("found", "shared")
        cpu = time.process_time() - cpu0
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    finally:
        await engine.dispose()
    parsed = make_url(url)
    relay = RoundTripRelay(parsed.host or "127.0.0.1", parsed.port or 5432)
    port = await relay.start()
    engine = create_engine(parsed.set(port=port).render_as_string(hide_password=False), pool_size=1)
    try:
        store = CrmStore(session_factory(engine))
        for number in numbers[:20]:
            await store.lookup_caller(number)
        before = relay.round_trips
        for number in numbers[:200]:
            await store.lookup_caller(number)
        round_trips = (relay.round_trips - before) / 200
    finally:
        await engine.dispose()
        await relay.close()
    walls.sort()
    return {
        "lookups": lookups,
        "found": found,
        "p50_ms": 1000 * statistics.median(walls),
        "p99_ms": 1000 * walls[int(len(walls) * 0.99) - 1],
        "cpu_ms": 1000 * cpu / lookups,
        "statements": statements / lookups,
        "round_trips": round_trips,
    }


async def explain(url: str, number: str) -> str:
    from crm_bridge.repositories import CALLER_BY_PHONE

    engine = create_async_engine(url, pool_size=1)
    try:
        statement = CALLER_BY_PHONE.params(number=number)
        sql = str(statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as conn:
            rows = await conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql))
            return "\n".join(row[0] for row in rows)
    finally:
        await engine.dispose()


def run_baseline(code: str, url: str, customers: int, lookups: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-measure", url, "--customers", str(customers), "--lookups", str(lookups)],
        env={**os.environ, "IVR_BENCH_CODE": code, "PYTHONPATH": code},
        cwd=code, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, r: dict[str, Any]) -> str:
    return (f"{label:10} {r['lookups']:8} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['cpu_ms']:8.2f} "
            f"{r['statements']:6.1f} {r['round_trips']:6.1f}")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--orders-per-customer", type=int, default=5)
    p.add_argument("--lookups", type=int, default=5000)
    p.add_argument("--baseline-code", help="a checkout whose crm_bridge is measured first (e.g. /work/main)")
    p.add_argument("--pg-url", default=os.environ.get("IVR_TEST_DATABASE_URL",
                                                      "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    p.add_argument("--child-measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.child_measure:
        print(json.dumps(await measure(args.child_measure, args.customers, args.lookups)))
        return

    from crm_bridge.db import upgrade

    name = f"ivr_bench_{uuid.uuid4().hex[:10]}"
    url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
    await _admin(args.pg_url, f'CREATE DATABASE "{name}"')
    try:
        await upgrade(url)
        print(f"generating {args.customers:,} customers / {args.customers * args.orders_per_customer:,} orders "
              f"in {name}", flush=True)
        t0 = time.perf_counter()
        await generate(url, args.customers, args.orders_per_customer)
        print(f"generated in {time.perf_counter() - t0:.0f} s", flush=True)
        results = []
        if args.baseline_code:
            results.append(("baseline", run_baseline(args.baseline_code, url, args.customers, args.lookups)))
        results.append(("this", await measure(url, args.customers, args.lookups)))
        print(f"\n{'code':10} {'lookups':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>8} {'stmts':>6} {'trips':>6}")
        for label, r in results:
            print(row(label, r))
        print("\nEXPLAIN (ANALYZE, BUFFERS) of the lookup statement, a single owner:")
        print(await explain(url, phone_of(args.customers // 2 + 1)))
    finally:
        await _admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
