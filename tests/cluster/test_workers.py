"""`ivr serve --workers N`: one port, N pids, a killed worker comes back, SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time

import pytest

from tests.cluster.conftest import wait_until
from tests.cluster.processes import IVR, Server, free_port, parent_of, pid_alive, serve_env
from tests.fakeasterisk import FakeAsterisk, build_env, encode_env


def test_sqlite_with_several_workers_is_refused_in_one_line(tmp_path):
    env = serve_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3", agi_port=free_port(),
                    web_port=free_port())
    result = subprocess.run([*IVR, "serve", "--workers", "2"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "ivr serve: --workers > 1 needs PostgreSQL (database.url postgresql+asyncpg://…); "
        "SQLite is the single-process embedded store"
    ]
    assert not (tmp_path / "ivr.sqlite3").exists()  # refused before touching anything


async def hold_agi_call(port: int, number: int) -> asyncio.StreamWriter:
    """A caller whose Asterisk never answers the first command: the call stays open on its worker."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_env(build_env(port, "repeat-order", "+79161234567", uniqueid=f"1795750923.{number}")))
    await writer.drain()
    await asyncio.wait_for(reader.readline(), 30)  # the first command: the call is being served
    return writer


async def pids_and_calls(server: Server, want_pids: int, timeout: float = 30.0) -> dict[int, int]:
    """Ask /healthz on fresh connections until ``want_pids`` different workers answered."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < want_pids:
        assert time.monotonic() < deadline, f"only {seen} answered"
        health = await server.health()
        seen[health["worker"]["pid"]] = health["fastagi"]["active_calls"]
    return seen


@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_two_workers_share_the_port_come_back_when_killed_and_stop_on_sigterm(tmp_path, pg_url):
    agi_port, web_port = free_port(), free_port()
    env = serve_env(tmp_path, pg_url, agi_port=agi_port, web_port=web_port, IVR_AGI__COMMAND_TIMEOUT="120")
    server = Server(tmp_path, "supervisor", env, "--demo", "--workers", "2")
    held: list[asyncio.StreamWriter] = []
    try:
        await server.wait_listening(agi_port)
        await server.wait_listening(web_port)
        await pids_and_calls(server, 2, timeout=60)  # both workers are up, not only the first
        held = [await hold_agi_call(agi_port, n) for n in range(20)]
        workers = await pids_and_calls(server, 2)
        assert all(parent_of(pid) == server.pid for pid in workers)
        # The kernel spread the 20 calls over both pids (all on one: probability 2**-19).
        assert sum(workers.values()) == 20 and all(calls > 0 for calls in workers.values()), workers
        for writer in held:
            writer.close()
        held = []

        call = FakeAsterisk(inputs=["1"])
        await call.connect("127.0.0.1", agi_port, caller_id="+79161234567", uniqueid="workers.order.1")
        assert await call.wait_closed(60)
        assert call.variables["IVR_RESULT"] == "done" and call.variables["IVR_ORDER_ID"], call.variables

        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: "worker.restarting" in server.output(), timeout=10, what="the restart is logged")
        restarted = await pids_and_calls(server, 2, timeout=60)
        assert victim not in restarted and len(restarted) == 2
        line = next(x for x in server.output().splitlines() if "worker.restarting" in x)
        assert f"pid={victim}" in line and "exit_code=-9" in line

        assert await server.stop(signal.SIGTERM) == 0
        assert not any(pid_alive(pid) for pid in restarted)
    finally:
        for writer in held:
            writer.close()
        server.kill()
    output = server.output()
    assert "Traceback" not in output, output
    assert "workers.stopping" in output and output.count("service_started") == 3


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_workers_that_cannot_start_stop_the_supervisor_instead_of_looping(tmp_path, pg_url):
    with socket.socket() as taken:  # a port held without SO_REUSEPORT: every worker's bind fails
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = serve_env(tmp_path, pg_url, agi_port=taken.getsockname()[1], web_port=free_port())
        server = Server(tmp_path, "supervisor", env, "--workers", "2")
        try:
            assert await server.stop(signal.SIGCONT, timeout=60) == 1  # SIGCONT: no request, just wait
        finally:
            server.kill()
    output = server.output()
    assert "worker.failed_at_start" in output and "worker.restarting" not in output
