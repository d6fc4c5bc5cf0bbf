"""`ivr serve` with the database down at start: calls go to operators until it answers, then the robot.

PostgreSQL sits behind the TCP proxy (tests/db/tcp_proxy.py), which refuses connections until the
test lets them through; every wait is on an explicit event or a condition with a deadline.
"""

from __future__ import annotations

import asyncio

import pytest
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from crm_bridge.contract.outcomes import Reason
from crm_bridge.demo import load_demo_data
from ivr.app import StartupError, start_service
from ivr.database_gate import DatabaseGate, may_come_back, never_reachable, retry_until_ready
from tests.calls.harness import database_url, harness_settings, wait_for
from tests.db.tcp_proxy import TcpProxy
from tests.fakeasterisk import FakeAsterisk

BOUND = 30.0  # a bound on waits for explicit events, never a pause


def tracebacks(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical", "exception")]


def through(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


async def call(port: int, caller_id: str, inputs: list | None = None) -> FakeAsterisk:
    fake = FakeAsterisk(inputs=inputs or [], check_files=True)
    await fake.connect("127.0.0.1", port, caller_id=caller_id)
    assert await fake.wait_closed(BOUND), "the server closes every call"
    return fake


async def test_calls_go_to_operators_while_the_database_is_down_at_start_then_to_the_robot(store, prompts_dir):
    url = database_url(store)
    if make_url(url).get_backend_name() != "postgresql":
        pytest.skip("the TCP proxy stands in front of PostgreSQL")
    await load_demo_data(store.sessions)
    proxy = await TcpProxy(make_url(url).host or "127.0.0.1", make_url(url).port or 5432).start()
    proxy.down()  # PostgreSQL not accepting yet
    settings = harness_settings(through(url, proxy), prompts_dir,
                                database={"retry_min": 0.05, "retry_max": 0.2},
                                call_records={"retry_min": 0.05, "retry_max": 0.2})
    try:
        with structlog.testing.capture_logs() as logs:
            service = await start_service(settings, migrate=True)
            try:
                assert not service.database.ready and service.health()["database"]["unreachable_since"]
                refused = await call(service.agi.port, "+79161234567", inputs=["1"])
                assert (refused.variables["IVR_RESULT"], refused.variables["IVR_REASON"]) == \
                    ("operator", Reason.DATABASE_UNAVAILABLE)
                assert refused.played == []  # handed over at once, not a word from the robot
                # The retry goes on in the background, one line per attempt with the next delay.
                await wait_for(lambda: sum(e["event"] == "database.unavailable" for e in logs) >= 2, BOUND)

                proxy.up()
                await asyncio.wait_for(service.database.became_ready.wait(), BOUND)
                served = await call(service.agi.port, "+79161234567", inputs=["1"])
                assert (served.variables["IVR_RESULT"], served.variables["IVR_REASON"]) == ("done", "order_placed")

                # The refused call's row was spooled while the database was away, and written since.
                refused_id = refused.channel_vars["UNIQUEID"]

                async def refused_row():
                    row = await store.get_call(refused_id)
                    return row if row is not None and row.outcome else None

                row = await wait_for(refused_row, BOUND)
                assert (row.outcome, row.reason) == ("operator", Reason.DATABASE_UNAVAILABLE)
            finally:
                await service.stop()
    finally:
        await proxy.stop()
    attempts = [e for e in logs if e["event"] == "database.unavailable"]
    assert all(0 < e["retry_in"] <= 0.2 and e["error"] for e in attempts), attempts
    assert [e["event"] for e in logs if e["event"].startswith("call.database_unavailable")] == \
        ["call.database_unavailable"]
    assert any(e["event"] == "database.ready" for e in logs)
    assert tracebacks(logs) == []


async def test_a_role_the_server_refuses_stops_the_start_with_one_line(store, prompts_dir):
    url = database_url(store)
    if make_url(url).get_backend_name() != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    bad = make_url(url).set(username="no_such_role_ivr").render_as_string(hide_password=False)
    with pytest.raises(StartupError) as raised:
        await start_service(harness_settings(bad, prompts_dir), migrate=True)
    message = str(raised.value)
    assert "no_such_role_ivr" in message and "configuration error, not retried" in message
    assert "\n" not in message


async def test_the_retry_backs_off_exponentially_up_to_the_cap_one_line_per_attempt():
    gate, failures = DatabaseGate(), [ConnectionRefusedError(111, "Connect call failed")] * 5

    async def prepare():
        if failures:
            raise failures.pop()

    with structlog.testing.capture_logs() as logs:
        # jitter 0.5 makes the factor exactly 1: the delays are the schedule itself.
        await asyncio.wait_for(retry_until_ready(gate, prepare, retry_min=0.01, retry_max=0.04, jitter=lambda: 0.5),
                               BOUND)
    assert gate.ready and gate.attempts == 6 and gate.unreachable_since is None
    assert [e["retry_in"] for e in logs if e["event"] == "database.unavailable"] == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert tracebacks(logs) == []


@pytest.mark.parametrize(("error", "retried"), [
    (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"), True),
    (OSError(-2, "Name or service not known"), True),  # socket.gaierror: a host that does not resolve (yet)
    (TimeoutError(), True),
    (ValueError("a bug"), False),
])
def test_what_the_start_retries(error, retried):
    assert may_come_back(error) is retried
    assert not never_reachable(error)


class _PgError(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "retried", "fatal"), [
    ("57P03", True, False),  # the database system is starting up
    ("53300", True, False),  # too many connections
    ("08006", True, False),  # connection failure
    ("25006", True, False),  # read-only (a standby not promoted yet): migrations cannot run there
    ("28P01", False, True),  # password authentication failed
    ("28000", False, True),  # role does not exist / pg_hba rejects
    ("3D000", False, True),  # database does not exist
    ("42601", False, False),  # a migration's syntax error: a bug, shown at once
])
def test_what_the_start_retries_by_sqlstate(sqlstate, retried, fatal):
    error = DBAPIError("SELECT 1", {}, _PgError(sqlstate))
    assert (may_come_back(error), never_reachable(error)) == (retried, fatal)
