"""How many call records per second the record writer sustains, and how many transactions per call.

Each call is start + 8 timeline events + end (10 records), submitted by ``--tasks`` concurrent tasks
the way the runner does (the start alone, the events and the end as one group). Baseline in the same
run (``--baseline``): the same calls through CrmStore's one-transaction-per-write methods
(record_call_start, add_timeline_events, record_call_end) from the same number of tasks.

    python bench/call_records.py --url sqlite+aiosqlite:////tmp/bench.sqlite3 --calls 10000
    python bench/call_records.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/bench --calls 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm_bridge.call_log import CallLog
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.dto import TimelineEventIn
from crm_bridge.services import CrmStore
from ivr.calls.record_spool import RecordSpool
from ivr.calls.record_writer import RecordWriter

T0 = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def events(call_id: str) -> list[TimelineEventIn]:
    return [TimelineEventIn(at=T0 + timedelta(seconds=i), call_id=call_id, customer_id=None, kind=f"step.{i}",
                            data={"i": i, "text": "Здравствуйте, Алексей Сергеевич"}) for i in range(8)]


async def one_call(sink, call_id: str) -> None:
    await sink.record_call_start(call_id=call_id, caller_number="+79161234567", normalized_number="+79161234567",
                                 customer_id=None, channel="PJSIP/trunk-1", script="repeat-order", started_at=T0)
    await sink.record_call_end(call_id, facts=facts_implying("order_placed"), reason="order_placed", ended_at=T0,
                               order_id=f"A-{call_id}", events=events(call_id))


async def run(sink, prefix: str, calls: int, tasks: int) -> float:
    queue = list(range(calls))

    async def worker() -> None:
        while queue:
            await one_call(sink, f"{prefix}-{queue.pop()}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    if isinstance(sink, RecordWriter):
        await sink.caught_up()
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=0, help="calls through CrmStore directly (0: skip)")
    args = parser.parse_args()
    await upgrade(args.url)
    engine = create_engine(args.url)
    sessions = session_factory(engine)
    tag = f"{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory() as spool_dir:
        writer = RecordWriter(CallLog(sessions), RecordSpool(Path(spool_dir)))
        cpu = time.process_time()
        seconds = await run(writer, f"w{tag}", args.calls, args.tasks)
        cpu = time.process_time() - cpu
        await writer.drain(10.0)
    records = args.calls * 10
    print(f"writer   {engine.dialect.name:10} calls={args.calls} records={records} {seconds:.2f}s "
          f"{records / seconds:,.0f} records/s {args.calls / seconds:,.0f} calls/s "
          f"transactions/call={writer.stats.transactions / args.calls:.3f} "
          f"records/transaction={writer.stats.written / max(1, writer.stats.transactions):.0f} "
          f"cpu ms/call={cpu * 1000 / args.calls:.2f} spooled={writer.stats.spooled}")
    if args.baseline:
        store = CrmStore(sessions)
        cpu = time.process_time()
        seconds = await run(store, f"s{tag}", args.baseline, args.tasks)
        cpu = time.process_time() - cpu
        print(f"baseline {engine.dialect.name:10} calls={args.baseline} records={args.baseline * 10} {seconds:.2f}s "
              f"{args.baseline * 10 / seconds:,.0f} records/s {args.baseline / seconds:,.0f} calls/s "
              f"transactions/call=2 cpu ms/call={cpu * 1000 / args.baseline:.2f}")
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
