"""Soak and outage: paced repeat-order calls for a long time against one ivr server on PostgreSQL,
sampling what must stay flat (RSS, open files, prompts and spool on disk) and checking at the end
that every call has its record, once.

    .venv/bin/python bench/soak.py --rate 60 --duration 1800             # the 30-minute soak
    .venv/bin/python bench/soak.py --rate 60 --duration 120 --outage-at 30 --outage-for 30

``--outage-at/--outage-for``: the server reaches PostgreSQL through a TCP proxy in this process
(tests/db/tcp_proxy.py) that resets and refuses every connection for that window: callers go to an
operator while it lasts (the lookup fails open), the record writer spools, and after the window
every call of the whole run must have its row and timeline exactly once and every order the robot
confirmed must exist.

The load generator, the server and PostgreSQL share the machine; the load average is printed.
Calls arrive in windows of ``--sample`` seconds at ``--rate``; between windows the server is sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agi_load import (  # noqa: E402  (after the path)
    Load,
    ServerProcess,
    _raise_nofile,
    prepare_database,
    prompt_library,
    run_load,
    temporary_pg_database,
)
from tests.db.tcp_proxy import TcpProxy  # noqa: E402

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def open_files(server: ServerProcess) -> int:
    total = 0
    for p in server._tree():
        with contextlib.suppress(Exception):
            total += p.num_fds()
    return total


async def exactly_once(url: str, prefix: str, confirmed: set[str]) -> dict[str, Any]:
    """Duplicates would show as more timeline starts/ends than calls, or two orders for one key."""
    from sqlalchemy import text

    from crm_bridge.db import create_engine

    like = prefix + "%"
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT "
                "(SELECT count(*) FROM calls WHERE call_id LIKE :p), "
                "(SELECT count(*) FROM calls WHERE call_id LIKE :p AND outcome IS NOT NULL), "
                "(SELECT count(*) FROM timeline_events WHERE call_id LIKE :p AND kind = 'call.started'), "
                "(SELECT count(*) FROM timeline_events WHERE call_id LIKE :p AND kind = 'call.ended'), "
                "(SELECT count(*) FROM orders WHERE call_id LIKE :p), "
                "(SELECT count(DISTINCT idempotency_key) FROM orders WHERE call_id LIKE :p), "
                "(SELECT count(*) FROM orders WHERE order_id = ANY(:confirmed)), "
                "(SELECT pg_database_size(current_database()))"
            ), {"p": like, "confirmed": sorted(confirmed)})).one()
    finally:
        await engine.dispose()
    keys = ("call_rows", "with_outcome", "started_events", "ended_events", "orders", "distinct_order_keys",
            "confirmed_orders_found", "db_bytes")
    return dict(zip(keys, row, strict=True))


async def main_async(args: argparse.Namespace) -> int:
    _raise_nofile(4096)
    workdir = Path(tempfile.mkdtemp(prefix="ivr-soak-"))
    pg_url = args.pg_url
    async with temporary_pg_database(pg_url) as url:
        data = await prepare_database(url, workdir, args.customers, 10)
        prompts = workdir / "prompts"
        import shutil

        shutil.copytree(await prompt_library(workdir), prompts)
        spool = workdir / "spool"
        proxy = None
        server_url = url
        if args.outage_for:
            from sqlalchemy.engine import make_url

            target = make_url(url)
            proxy = await TcpProxy(target.host or "127.0.0.1", target.port or 5432).start()
            server_url = target.set(port=proxy.port).render_as_string(hide_password=False)
        server = ServerProcess("ivr", workdir, db_url=server_url, prompts_dir=str(prompts))
        server.env["IVR_CALL_RECORDS__SPOOL_DIR"] = str(spool)
        await server.start()
        server.start_sampling()
        tag = f"s{uuid.uuid4().hex[:4]}"
        started = time.monotonic()
        load0 = os.getloadavg()
        samples: list[dict[str, Any]] = []
        results: Counter[str] = Counter()
        confirmed_orders: set[str] = set()
        window = 0
        outage_task = None
        if proxy is not None:
            async def outage() -> None:
                await asyncio.sleep(args.outage_at)
                proxy.down()
                print(f"[soak] database down at {time.monotonic() - started:.0f} s", file=sys.stderr)
                await asyncio.sleep(args.outage_for)
                proxy.up()
                print(f"[soak] database up at {time.monotonic() - started:.0f} s", file=sys.stderr)

            outage_task = asyncio.create_task(outage())
        try:
            while time.monotonic() - started < args.duration:
                calls = max(1, round(args.rate * args.sample))
                records, wall, _ = await run_load(
                    server.port, data["load"], Load(calls, rate=args.rate), idle=60, budget=args.sample + 120,
                    tag=f"{tag}w{window}",
                )
                window += 1
                for r in records:
                    results[f"{r.result}/{r.reason}"] += 1
                    if r.result == "done" and r.variables.get("IVR_ORDER_ID"):
                        confirmed_orders.add(r.variables["IVR_ORDER_ID"])
                sample = {
                    "t_s": round(time.monotonic() - started),
                    "calls": sum(results.values()),
                    "rss_mb": round(server.rss() / 2**20, 1),
                    "open_files": open_files(server),
                    "prompts_mb": round(dir_bytes(prompts) / 2**20, 2),
                    "spool_kb": round(dir_bytes(spool) / 1024, 1),
                    "load1": round(os.getloadavg()[0], 2),
                    "done_pct": round(100 * len(confirmed_orders) / max(1, sum(results.values())), 1),
                }
                samples.append(sample)
                print(f"[soak] {json.dumps(sample)}", file=sys.stderr)
        finally:
            if outage_task is not None:
                outage_task.cancel()
                proxy.up()
            cpu = server.stop_sampling()
            stopped = await server.stop()
            if proxy is not None:
                await proxy.stop()
        # Records: after the server stopped (its writer drained or spooled) and, for an outage, after
        # a restart would replay the spool; here the server came back while running, so it replayed.
        check = await exactly_once(url, f"%.{tag}w", confirmed_orders)
        total = sum(results.values())
        print()
        print(f"soak: {args.rate}/s for {args.duration} s, {total} calls, load average {load0[0]:.2f} → "
              f"{os.getloadavg()[0]:.2f}, server CPU {1000 * cpu / max(1, total):.2f} ms/call, stop: {stopped}")
        print("| t s | calls | RSS MB | open files | prompts MB | spool KB | load1 | done % |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for s in samples:
            print(f"| {s['t_s']} | {s['calls']} | {s['rss_mb']} | {s['open_files']} | {s['prompts_mb']} | "
                  f"{s['spool_kb']} | {s['load1']} | {s['done_pct']} |")
        print(f"results: {dict(results)}")
        print(f"records: {check}; orders the robot confirmed: {len(confirmed_orders)}")
        ok = (
            check["call_rows"] == total == check["with_outcome"] == check["started_events"] == check["ended_events"]
            and check["orders"] == check["distinct_order_keys"]
            and check["confirmed_orders_found"] == len(confirmed_orders)
        )
        print("every call recorded once, no order doubled:", "yes" if ok else "NO")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"samples": samples, "results": dict(results), "records": check, "confirmed": len(confirmed_orders),
                 "ok": ok}, indent=2))
        return 0 if ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="calls per second (default 60)")
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds per load window / sample (default 30)")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--outage-at", type=float, default=0.0, help="seconds into the run the database goes away")
    parser.add_argument("--outage-for", type=float, default=0.0, help="seconds the database stays away")
    parser.add_argument("--pg-url", default=os.environ.get("IVR_TEST_DATABASE_URL")
                        or "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", help="write samples and checks to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
