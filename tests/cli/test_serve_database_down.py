"""The real `ivr serve` process started while its PostgreSQL refuses connections (the TCP proxy of
tests/db/tcp_proxy.py, down): it listens anyway, hands calls to operators, says so in /healthz, and
takes calls itself once the proxy lets the database through, without a restart.

Every wait polls a condition against a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from crm_bridge.contract.outcomes import Reason
from tests.cli.conftest import clean_environ
from tests.cli.test_serve_process import free_port
from tests.db.fixtures import _reset_pg_schema_empty
from tests.db.tcp_proxy import TcpProxy
from tests.fakeasterisk import FakeAsterisk

IVR = Path(sys.executable).with_name("ivr")
BOUND = 60.0


async def until(condition, what: str, server: asyncio.subprocess.Process, timeout: float = BOUND):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        assert server.returncode is None, f"ivr serve exited early with {server.returncode}"
        value = await condition()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"no {what} after {timeout} s"
        await asyncio.sleep(0.05)


async def healthz(http: aiohttp.ClientSession, port: int):
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status, await response.json()
    except aiohttp.ClientConnectionError:
        return None


async def call(port: int, caller_id: str) -> FakeAsterisk:
    fake = FakeAsterisk(inputs=[], check_files=True)
    await fake.connect("127.0.0.1", port, caller_id=caller_id)
    assert await fake.wait_closed(30), "the server closes every call"
    return fake


@pytest.mark.timeout(180)
async def test_serve_with_the_database_down_at_start_hands_calls_over_then_serves_them(tmp_path, pg_database):
    await _reset_pg_schema_empty(pg_database)  # not migrated: the migrations run when it comes back
    url = make_url(pg_database)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxy.down()
    agi_port, web_port = free_port(), free_port()
    env = clean_environ({
        "IVR_AGI__PORT": str(agi_port),
        "IVR_WEB__PORT": str(web_port),
        "IVR_HOURS__OPEN": "00:00",  # operators always on duty: independent of the hour of the run
        "IVR_HOURS__CLOSE": "23:59:59.999999",
        "IVR_HOURS__DAYS": "1,2,3,4,5,6,7",
        "IVR_HOURS__HOLIDAYS": "",
        "IVR_DATABASE__URL": url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        "IVR_DATABASE__RETRY_MIN": "0.05",
        "IVR_DATABASE__RETRY_MAX": "0.5",
        "IVR_CALL_RECORDS__RETRY_MAX": "0.5",
        "IVR_PROMPTS__DIR": str(tmp_path / "prompts"),
        "IVR_PROMPTS__WARM_AT_START": "false",
        "IVR_PROMPTS__CALLS_DIR": str(tmp_path / "prompts-calls"),
    })
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = await asyncio.create_subprocess_exec(str(IVR), "serve", cwd=tmp_path, env=env, stdout=log,
                                                      stderr=asyncio.subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await until(lambda: healthz(http, web_port), "/healthz", server)
            assert status == 503 and body["status"] == "down"
            assert body["database"]["state"] == "unreachable" and body["database"]["since"]
            assert body["fastagi"]["listening"] is True

            refused = await call(agi_port, "+79990000000")
            assert (refused.variables["IVR_RESULT"], refused.variables["IVR_REASON"]) == \
                ("operator", Reason.DATABASE_UNAVAILABLE)
            await until(lambda: _log_count(log_path, "database.unavailable", 2), "retry lines", server)

            proxy.up()

            async def ready():
                answer = await healthz(http, web_port)
                return answer if answer and answer[0] == 200 else None

            _, body = await until(ready, "a healthy /healthz", server)
            assert body["database"]["state"] == "up"  # status degraded: AMI is not configured here
            served = await call(agi_port, "+79990000000")
            # The robot itself: the unknown number heard the greeting before going to an operator.
            assert (served.variables["IVR_RESULT"], served.variables["IVR_REASON"]) == ("operator", "unknown_number")
            assert served.played
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 20) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        await proxy.stop()
    output = log_path.read_text()
    assert "Traceback" not in output, output
    assert "database.ready" in output and "db_upgraded" in output
    assert "retry_in=" in output


async def _log_count(path: Path, event: str, at_least: int) -> bool:
    return path.read_text().count(event) >= at_least


@pytest.mark.timeout(180)
async def test_an_exposed_serve_checks_the_demo_passwords_once_the_database_answers(tmp_path, pg_database):
    """Beyond loopback, demo accounts on the demo password stop `ivr serve` (issue 10): with the
    database down at start the check cannot run, so serve runs and checks when it answers."""
    from crm_bridge.db import create_engine, session_factory, upgrade
    from crm_bridge.demo import create_demo_users

    await _reset_pg_schema_empty(pg_database)
    await upgrade(pg_database)
    engine = create_engine(pg_database)
    try:
        assert await create_demo_users(session_factory(engine))
    finally:
        await engine.dispose()
    url = make_url(pg_database)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxy.down()
    agi_port = free_port()
    env = clean_environ({
        "IVR_AGI__HOST": "0.0.0.0",
        "IVR_AGI__PORT": str(agi_port),
        "IVR_WEB__ENABLED": "false",
        "IVR_WEB__API_TOKEN": "a-real-token-for-this-test",
        "IVR_DATABASE__URL": url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        "IVR_DATABASE__RETRY_MIN": "0.05",
        "IVR_DATABASE__RETRY_MAX": "0.5",
        "IVR_PROMPTS__DIR": str(tmp_path / "prompts"),
        "IVR_PROMPTS__WARM_AT_START": "false",
    })
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = await asyncio.create_subprocess_exec(str(IVR), "serve", cwd=tmp_path, env=env, stdout=log,
                                                      stderr=asyncio.subprocess.STDOUT)
    try:
        async def listening():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", agi_port)
            except OSError:
                return False
            writer.close()
            return True

        await until(listening, "the FastAGI listener", server)
        proxy.up()
        assert await asyncio.wait_for(server.wait(), BOUND) == 2
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        await proxy.stop()
    output = log_path.read_text()
    assert "the demo-password check runs when it answers" in output
    assert "refusing to listen beyond loopback" in output and "admin" in output
    assert "Traceback" not in output, output
