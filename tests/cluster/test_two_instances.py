"""Two `ivr serve` instances on one PostgreSQL and one FastAGI port; the AMI owner is SIGKILLed mid-load.

What must hold (issue 7): every call whose caller heard an order number (IVR_ORDER_ID) has exactly
that order in the database, no call has two orders, calls cut by the kill and dialled again with the
same linkedid (what a retry looks like) end with exactly one order, and the survivor logs in to AMI
within 5 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import pytest

from ivr.cluster import asyncpg_dsn
from tests.cluster.conftest import wait_until
from tests.cluster.processes import Server, free_port, serve_env
from tests.fakeami import FakeAmi
from tests.fakeasterisk import FakeAsterisk

CALLS = 60
PARALLEL = 6
KILL_AFTER = 15  # calls finished before the owner dies: the rest are in flight or not yet dialled
TAKEOVER_LIMIT = 5.0


async def repeat_order_call(agi_port: int, linkedid: str, menu: asyncio.Event | None = None) -> str | None:
    """One caller pressing 1; returns the order id the robot handed to the dialplan, if any. With
    ``menu``, the caller sits in the menu (GET DATA unanswered) until that event is set."""

    async def thinking(_cmd: object) -> None:
        assert menu is not None
        await menu.wait()
        return None  # then the usual answer: the key "1"

    call = FakeAsterisk(inputs=["1"], replies={"GET DATA": thinking} if menu is not None else None)
    try:
        await call.connect("127.0.0.1", agi_port, caller_id="+79161234567", uniqueid=linkedid)
    except OSError:
        return None
    await call.wait_closed(60)
    return call.variables.get("IVR_ORDER_ID") or None


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_sigkill_of_the_ami_owner_mid_load_loses_and_duplicates_no_order(tmp_path, pg_url):
    agi_port = free_port()
    async with FakeAmi() as ami:
        servers: list[Server] = []
        for name in ("a", "b"):
            env = serve_env(
                tmp_path, pg_url, agi_port=agi_port, web_port=free_port(),
                IVR_AMI__HOST=ami.host, IVR_AMI__PORT=str(ami.port), IVR_AMI__USERNAME=ami.username,
                IVR_AMI__SECRET=ami.secret, IVR_AMI__RECONNECT_MIN="0.1",
            )
            # The first loads the demo data; both would migrate, one after the other here.
            servers.append(Server(tmp_path, name, env, *(["--demo"] if name == "a" else [])))
            await servers[-1].wait_listening(servers[-1].web_port)
        try:
            await ami.wait_for_logins(1, timeout=30)
            health = {s.pid: await s.health() for s in servers}
            roles = {pid: h["worker"]["ami"] for pid, h in health.items()}
            assert sorted(roles.values()) == ["owner", "standby"], roles
            # A standby is healthy: it is ready to take over, not broken.
            assert sorted((h["status"], h["ami"]["status"]) for h in health.values()) == [
                ("ok", "connected"), ("ok", "standby")
            ]
            assert len(ami.clients) == 1  # only the owner is connected to Asterisk
            owner = next(s for s in servers if roles[s.pid] == "owner")
            survivor = next(s for s in servers if s is not owner)

            results: dict[str, str | None] = {}
            gate = asyncio.Semaphore(PARALLEL)

            async def dial(n: int) -> None:
                async with gate:
                    linkedid = f"1795750923.{1000 + n}"
                    results[linkedid] = await repeat_order_call(agi_port, linkedid)

            load = [asyncio.create_task(dial(n)) for n in range(KILL_AFTER)]
            await asyncio.gather(*load)
            # Callers in the middle of the menu when the owner dies: dialled until the owner holds
            # some (the kernel spreads connections over both), so the kill cuts calls for certain.
            menu = asyncio.Event()

            async def held(n: int) -> None:
                linkedid = f"1795750923.{1000 + n}"
                results[linkedid] = await repeat_order_call(agi_port, linkedid, menu)

            async def in_menu(server: Server) -> int:
                return (await server.health())["fastagi"]["active_calls"]

            n = KILL_AFTER
            while n < CALLS and await in_menu(owner) < 2:
                load.append(asyncio.create_task(held(n)))
                n += 1
                for _ in range(500):  # until the new caller sits in the menu on one of the two
                    if await in_menu(owner) + await in_menu(survivor) >= n - KILL_AFTER:
                        break
                    await asyncio.sleep(0.01)
            killed_at = time.monotonic()
            os.kill(owner.pid, signal.SIGKILL)
            menu.set()
            load += [asyncio.create_task(dial(k)) for k in range(n, CALLS)]
            await wait_until(lambda: ami.logins >= 2, timeout=TAKEOVER_LIMIT, what="the survivor logs in to AMI")
            takeover = ami.login_times[-1] - killed_at
            await asyncio.gather(*load)
            print(f"\nAMI takeover after SIGKILL of the owner: {takeover:.2f} s; "
                  f"calls: {CALLS}, with an order id: {sum(1 for v in results.values() if v)}")
            assert (await survivor.health())["worker"]["ami"] == "owner"
            assert len(ami.clients) == 1

            cut = [linkedid for linkedid, order in results.items() if order is None]
            assert cut, "the kill cut no call: the test did not test anything"
            retried = {linkedid: await repeat_order_call(agi_port, linkedid) for linkedid in cut}
            assert all(retried.values()), retried  # the survivor serves them all

            conn = await asyncpg.connect(asyncpg_dsn(pg_url))
            try:
                rows = await conn.fetch("SELECT order_id, call_id, idempotency_key FROM orders WHERE source = 'ivr'")
            finally:
                await conn.close()
            by_call: dict[str, list[str]] = {}
            for row in rows:
                by_call.setdefault(row["call_id"], []).append(row["order_id"])
                assert row["idempotency_key"] == f"ivr:{row['call_id']}"
            assert {k: v for k, v in by_call.items() if len(v) > 1} == {}  # 0 duplicates
            heard = {k: v for k, v in results.items() if v} | retried
            assert {k: by_call.get(k) for k in heard} == {k: [v] for k, v in heard.items()}  # 0 lost
            assert len(rows) == CALLS  # and nothing else
        finally:
            for server in servers:
                server.kill()
    for server in servers:
        assert "Traceback" not in server.output(), server.output()
