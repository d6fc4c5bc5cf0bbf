"""bench/fault_handover.py in a few seconds: two fault kinds, two calls each, the table and the JSON."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fault_handover import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
PG_ENV = "IVR_TEST_DATABASE_URL"


def test_two_fault_kinds_hand_every_call_over_with_the_reason(tmp_path: Path) -> None:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"{PG_ENV} is not set (the database faults stand in front of PostgreSQL)")
    out = tmp_path / "out.json"
    done = subprocess.run(
        [
            sys.executable, "bench/fault_handover.py", "--kinds", "pg_down_lookup,agi_garbage", "--calls", "2",
            "--wave", "2", "--pause", "0", "--cold-prompts", "--call-timeout", "30", "--deadline", "120",
            "--pg-url", os.environ[PG_ENV], "--json", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| kind | backend | calls | fault → heard p50/p99/max s |" in done.stdout  # the Markdown table
    kinds = {k["kind"]: k for k in json.loads(out.read_text())["kinds"]}
    assert set(kinds) == {"pg_down_lookup", "agi_garbage"}
    expected = {"pg_down_lookup": "operator/database_error", "agi_garbage": "operator/protocol_error"}
    for name, kind in kinds.items():
        assert (kind["calls"], kind["reached"], kind["handed_over"]) == (2, 2, 2), kind
        assert kind["results"] == {expected[name]: 2}
        assert 0 < kind["heard_s"]["p50"] <= kind["heard_s"]["max"] <= kind["handover_s"]["max"]
        assert kind["loadavg_start"] and kind["loadavg_end"]
    # The protocol fault: the server gets back in step (GET FULL VARIABLE) and hands over at once.
    assert kinds["agi_garbage"]["heard_by"] == {"hand-over": 2}


# --- the bench's fault proxy, against a local echo server ----------------------------------------


@pytest.fixture
async def echo_port():
    async def echo(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_the_proxy_stalls_open_links_until_cleared_then_forwards_again(echo_port: int) -> None:
    proxy = await FaultProxy("127.0.0.1", echo_port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"before\n")
        assert await reader.readline() == b"before\n"
        await proxy.set_mode("stall")
        writer.write(b"stalled\n")
        await writer.drain()
        await proxy.clear()  # the wave is over: the stalled link is reset, never half delivered
        try:
            got = await reader.read()
        except ConnectionError:
            got = b""
        assert got == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"after\n")
        assert await reader.readline() == b"after\n"
        writer.close()
    finally:
        await proxy.stop()


async def test_the_proxy_refuses_connections_while_down_and_listens_on_the_same_port_after(echo_port: int) -> None:
    proxy = await FaultProxy("127.0.0.1", echo_port).start()
    port = proxy.port
    try:
        await proxy.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        await proxy.clear()
        assert proxy.port == port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"up\n")
        assert await reader.readline() == b"up\n"
        writer.close()
    finally:
        await proxy.stop()


async def test_the_proxy_delays_every_reply_in_order(echo_port: int) -> None:
    proxy = await FaultProxy("127.0.0.1", echo_port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await proxy.set_mode("delay", delay=0.2)
        started = time.monotonic()
        writer.write(b"one\n")
        await writer.drain()
        writer.write(b"two\n")
        assert await reader.readline() == b"one\n"
        assert time.monotonic() - started >= 0.2  # a lower bound only: a loaded machine is slower, never faster
        assert await reader.readline() == b"two\n"
        writer.close()
    finally:
        await proxy.stop()


async def test_the_proxy_loses_the_reply_to_a_marked_statement_once_per_loss_armed(echo_port: int) -> None:
    # The echo server's reply carries the statement's own ReadyForQuery ('Z', length 5): its end.
    statement = b"INSERT ... 'SCH-1' ...Z\x00\x00\x00\x05I"
    proxy = await FaultProxy("127.0.0.1", echo_port).start()
    try:
        await proxy.set_mode("lose_reply", marker=b"SCH-", losses=1)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(statement)
        try:
            got = await reader.read()  # reset once the whole reply went by: nothing of it reaches us
        except ConnectionError:
            got = b""
        assert (got, proxy.lost_replies) == (b"", 1)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)  # the retry's new link
        writer.write(statement)
        assert await reader.readexactly(len(statement)) == statement  # the one loss is spent
        writer.close()
    finally:
        await proxy.stop()
