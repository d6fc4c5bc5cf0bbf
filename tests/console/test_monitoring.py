"""Wallboard data and JSON, /healthz and /metrics over real HTTP (aiohttp TestServer), both backends.

The wallboard JSON is read here with the API bearer token (machine clients); the session side
(supervisor vs operator) is in test_monitoring_pages.py. /metrics is checked after a real call
through the real FastAGI server and repeat-order handler (tests/calls/harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.engine import make_url

from crm_bridge.db import create_engine, session_factory, sqlite_read_only_reason
from crm_bridge.demo import load_demo_data
from crm_bridge.dto import TimelineEventIn
from crm_bridge.services import CrmStore
from ivr.calls.screen_pop import OperatorBoard
from ivr.database_gate import DatabaseGate
from ivr.web.api import build_web_app
from ivr.web.console.deps import ConsoleDeps
from ivr.web.console.metrics import Metrics
from ivr.web.console.monitoring import AMI_DOWN_TEXT, _is_loopback, wallboard_data
from tests.calls.harness import database_url, start_harness, wait_for

TOKEN = "t0ken-monitoring"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TZ = "Europe/Moscow"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # 12:00 in Moscow


class FakeTracker:
    """What the console reads from ivr.calls.tracker.CallTracker."""

    def __init__(self, calls: list[dict[str, Any]], operators: dict[str, dict[str, Any]]) -> None:
        self.calls, self.operators = calls, operators

    def live_calls(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.calls]

    def operator_state(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.operators.items()}


def fake_tracker() -> FakeTracker:
    def ago(seconds: float) -> str:
        return (NOW - timedelta(seconds=seconds)).isoformat()

    return FakeTracker(
        calls=[
            {"call_id": "q1", "state": "queue", "since": ago(30), "queue": "operators", "operator": None,
             "operator_name": None, "customer_id": "C001", "caller": "+79161234567"},
            {"call_id": "r1", "state": "ivr", "since": ago(8), "queue": None, "operator": None,
             "operator_name": None, "customer_id": None, "caller": "+79990000000"},
            {"call_id": "q2", "state": "queue", "since": ago(95), "queue": "operators", "operator": None,
             "operator_name": None, "customer_id": None, "caller": "+79031112233"},
            {"call_id": "o1", "state": "operator", "since": ago(60), "queue": "operators", "operator": "PJSIP/101",
             "operator_name": "Анна", "customer_id": "C002", "caller": "+79031112233"},
        ],
        operators={
            "PJSIP/101": {"state": "talking", "call_id": "o1", "name": "Анна", "since": ago(60)},
            "PJSIP/102": {"state": "ringing", "call_id": "q2", "name": "Борис", "since": ago(3)},
            "PJSIP/103": {"state": "free", "call_id": None, "name": "Вера", "since": None},
        },
    )


def health(ami_status: str = "connected", listening: bool = True, active: int = 2):
    return lambda: {"agi": {"listening": listening, "active_calls": active},
                    "ami": {"status": ami_status, "last_error": None if ami_status == "connected" else "refused"}}


async def _orders_today(store) -> None:
    report = await load_demo_data(store.sessions)
    assert report.ok
    today = NOW - timedelta(hours=2)
    await store.place_order(idempotency_key="w1", customer_id="C001", lines=[("WATER-19", 2)], source="ivr", now=today)
    await store.place_order(idempotency_key="w2", customer_id="C002", lines=[("WATER-19", 1)], source="ivr", now=today)
    await store.place_order(idempotency_key="w3", customer_id="C003", lines=[("WATER-19", 1)], source="operator",
                            now=today)
    await store.place_order(idempotency_key="w4", customer_id="C004", lines=[("WATER-19", 1)], source="ivr",
                            now=NOW - timedelta(days=1))


def deps_for(store, **kw) -> ConsoleDeps:
    kw.setdefault("timezone", TZ)
    return ConsoleDeps(store=store, cookie_secure=False, **kw)


async def client_for(deps: ConsoleDeps, *, middlewares: tuple = ()) -> TestClient:
    app = build_web_app(deps.store, api_token=TOKEN, board=deps.board, console=deps)
    for middleware in middlewares:
        app.middlewares.insert(0, middleware)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


# --- wallboard --------------------------------------------------------------------------------------------


async def test_wallboard_with_tracker(store):
    await _orders_today(store)
    board = OperatorBoard(store, {"PJSIP/101": "Анна Смирнова", "PJSIP/104": "Глеб (не в смене)"})
    deps = deps_for(store, tracker=fake_tracker(), board=board, health=health())
    data = await wallboard_data(deps, now=NOW)
    assert data["ami"] == {"live": True, "status": "connected", "message": None, "status_text": "подключен"}
    assert data["clock"] == "12:00:00" and data["timezone"] == "Europe/Moscow"  # business time, not UTC
    assert data["ivr"]["count"] == 1 and data["ivr"]["calls"][0]["call_id"] == "r1"
    assert data["queue"]["count"] == 2
    assert [c["call_id"] for c in data["queue"]["calls"]] == ["q2", "q1"]  # the longest wait first
    assert data["queue"]["longest_wait_seconds"] == 95.0
    ops = {o["interface"]: o for o in data["operators"]["list"]}
    assert set(ops) == {"PJSIP/101", "PJSIP/102", "PJSIP/103", "PJSIP/104"}  # configured names too
    assert ops["PJSIP/101"]["state"] == "talking" and ops["PJSIP/101"]["seconds"] == 60.0
    # configured, but AMI never said a word of him: not "free"
    assert ops["PJSIP/104"]["state"] == "unknown" and ops["PJSIP/104"]["name"] == "Глеб (не в смене)"
    assert ops["PJSIP/104"]["state_text"] == "неизвестно"
    assert (data["operators"]["busy"], data["operators"]["free"], data["operators"]["unknown"]) == (2, 1, 1)
    # the queue names the customers it knows (demo data: C001 is Иванов Алексей Сергеевич)
    names = {c["call_id"]: c.get("customer_name") for c in data["queue"]["calls"]}
    assert names == {"q1": "Иванов Алексей Сергеевич", "q2": None}
    assert (data["operators"]["talking"], data["operators"]["ringing"]) == (1, 1)
    assert data["orders_today"]["ivr"] == 2 and data["orders_today"]["operator"] == 1
    assert data["orders_today"]["day"] == "2026-11-20"


async def test_wallboard_without_tracker_still_counts_orders(store):
    await _orders_today(store)
    data = await wallboard_data(deps_for(store, tracker=None, health=health("disabled", active=3)), now=NOW)
    assert data["ami"]["live"] is False and data["ami"]["message"] == AMI_DOWN_TEXT
    assert data["ami"]["status"] == "disabled"
    assert data["ivr"]["count"] == 3  # the robot's own FastAGI count
    assert data["queue"]["count"] is None and data["operators"]["busy"] is None
    assert data["orders_today"]["ivr"] == 2 and data["orders_today"]["operator"] == 1
    # A tracker whose AMI connection is down is not trusted for live numbers either.
    down = await wallboard_data(deps_for(store, tracker=fake_tracker(), health=health("auth_failed")), now=NOW)
    assert down["ami"] == {"live": False, "status": "auth_failed", "message": AMI_DOWN_TEXT,
                           "status_text": "неверный логин или пароль AMI"}
    assert down["queue"]["calls"] == [] and down["orders_today"]["total"] == 3


async def test_wallboard_json_with_bearer_token(store):
    deps = deps_for(store, tracker=fake_tracker(), health=health())
    client = await client_for(deps)
    try:
        resp = await client.get("/api/v1/wallboard", headers=AUTH)
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        data = await resp.json()
        assert data["queue"]["count"] == 2 and data["ami"]["live"] is True
        assert data["orders_today"]["total"] == 0
        assert (await client.get("/api/v1/wallboard")).status == 401
        assert (await client.get("/api/v1/wallboard", headers={"Authorization": "Bearer nope"})).status == 401
        deps.tracker = None
        data = await (await client.get("/api/v1/wallboard", headers=AUTH)).json()
        assert data["ami"]["message"] == AMI_DOWN_TEXT and data["orders_today"] is not None
    finally:
        await client.close()


# --- healthz ------------------------------------------------------------------------------------------------


async def test_healthz_ok_degraded_and_down(store):
    deps = deps_for(store, health=health())
    client = await client_for(deps)
    try:
        resp = await client.get("/healthz")  # no session, no token
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok"
        assert body["database"]["ok"] is True and body["fastagi"] == {"ok": True, "listening": True, "active_calls": 2}
        assert body["ami"]["status"] == "connected"

        deps.health = health("auth_failed")
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "degraded" and body["ami"]["status"] == "auth_failed"
        deps.health = health("disabled")
        assert (await (await client.get("/healthz")).json())["status"] == "degraded"

        deps.health = health(listening=False)
        resp = await client.get("/healthz")
        assert resp.status == 503 and (await resp.json())["status"] == "down"
        deps.health = None  # nothing tells us FastAGI listens
        assert (await client.get("/healthz")).status == 503
    finally:
        await client.close()


async def test_healthz_503_when_the_database_port_is_closed(store):
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")  # nobody listens on port 1
    dead = CrmStore(session_factory(engine))
    try:
        # The console (sessions, users) still runs on the real store; only the health check's store is dead.
        deps = deps_for(store, health=health())
        client = await client_for(deps)
        deps.store = dead
        try:
            resp = await client.get("/healthz")
            body = await resp.json()
            assert resp.status == 503 and body["status"] == "down"
            assert body["database"]["ok"] is False and body["database"]["error"]
            assert body["fastagi"]["ok"] is True
        finally:
            await client.close()
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def read_only_store(url: str):
    """A store on the same database that takes no writes: on PostgreSQL through a role whose
    default_transaction_read_only is on, on SQLite the file opened mode=ro (chmod cannot stop root)."""
    parsed = make_url(url)
    role = f"ivr_ro_{uuid.uuid4().hex[:8]}"
    admin = None
    if parsed.get_backend_name() == "postgresql":
        admin = create_engine(url)
        async with admin.connect() as conn:
            await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
            await conn.execute(text(f"ALTER ROLE {role} SET default_transaction_read_only = on"))
            await conn.commit()
        ro_url = parsed.set(username=role).render_as_string(hide_password=False)
    else:
        ro_url = f"sqlite+aiosqlite:///file:{parsed.database}?mode=ro&uri=true"
    engine = create_engine(ro_url)
    try:
        yield CrmStore(session_factory(engine))
    finally:
        await engine.dispose()
        if admin is not None:
            async with admin.connect() as conn:
                await conn.execute(text(f"DROP ROLE {role}"))
                await conn.commit()
            await admin.dispose()


async def test_healthz_503_on_a_read_only_database(store):
    deps = deps_for(store, health=health())
    client = await client_for(deps)
    try:
        async with read_only_store(database_url(store)) as read_only:
            deps.store = read_only
            resp = await client.get("/healthz")
            body = await resp.json()
        # It answers, but no order could be placed there: a readiness probe must take this one out.
        assert resp.status == 503 and body["status"] == "down"
        assert body["database"]["state"] == "read_only" and body["database"]["ok"] is False
        assert body["database"]["error"] in ("transaction_read_only is on", "opened read-only (mode=ro)")
        deps.store = store
        body = await (await client.get("/healthz")).json()
        assert body["status"] == "ok" and body["database"]["state"] == "up"
    finally:
        await client.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a chmod 0444 file all the same")
def test_a_sqlite_file_this_process_may_not_write_is_read_only(tmp_path):
    path = tmp_path / "crm.sqlite3"
    path.write_bytes(b"")
    path.chmod(0o444)
    assert sqlite_read_only_reason(make_url(f"sqlite+aiosqlite:///{path}")) == f"file {path} is read-only"


def test_a_writable_sqlite_file_is_not_read_only(tmp_path):
    assert sqlite_read_only_reason(make_url(f"sqlite+aiosqlite:///{tmp_path}/crm.sqlite3")) is None


async def test_healthz_says_since_when_the_database_is_unreachable(store):
    gate = DatabaseGate(clock=lambda: NOW)
    gate.mark_unreachable("ConnectionRefusedError: [Errno 111] Connect call failed")
    deps = deps_for(store, health=health(), database=gate)
    client = await client_for(deps)
    try:
        resp = await client.get("/healthz")  # the start-up retry's word: no second knock on the database
        body = await resp.json()
        assert resp.status == 503 and body["database"]["state"] == "unreachable"
        assert body["database"]["since"] == NOW.isoformat() and "Connect call failed" in body["database"]["error"]
        gate.mark_ready()
        body = await (await client.get("/healthz")).json()
        assert body["status"] == "ok" and body["database"]["since"] is None
    finally:
        await client.close()


class _HangingSession:
    async def __aenter__(self):
        return self

    def get_bind(self):
        return SimpleNamespace(dialect=SimpleNamespace(name="postgresql"))

    async def __aexit__(self, *exc):
        return False

    async def execute(self, statement):
        await asyncio.sleep(3600)


async def test_healthz_503_when_the_database_hangs(store, monkeypatch):
    from ivr.web.console import monitoring

    monkeypatch.setattr(monitoring, "DB_TIMEOUT", 0.2)
    deps = deps_for(store, health=health())
    client = await client_for(deps)
    deps.store = SimpleNamespace(sessions=_HangingSession)
    try:
        started = asyncio.get_running_loop().time()
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["database"] == {
            "ok": False, "state": "unreachable", "since": None, "error": "no answer within 0.2 s",
            "seconds": body["database"]["seconds"]}
        assert asyncio.get_running_loop().time() - started < 2
    finally:
        await client.close()


# --- metrics ------------------------------------------------------------------------------------------------


def test_loopback_addresses():
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("::ffff:127.0.0.1")
    assert _is_loopback("127.0.0.5")
    assert not _is_loopback("10.0.0.5") and not _is_loopback("192.168.1.1") and not _is_loopback("")
    assert not _is_loopback(None) and not _is_loopback("garbage")


def _remote(address: str):
    @web.middleware
    async def fake_remote(request: web.Request, handler):
        return await handler(request.clone(remote=address))

    return fake_remote


async def test_metrics_access(store):
    deps = deps_for(store, metrics=Metrics(), health=health())
    local = await client_for(deps)
    remote = await client_for(deps, middlewares=(_remote("203.0.113.9"),))
    try:
        resp = await local.get("/metrics")  # from 127.0.0.1: allowed without a token
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        assert "ivr_active_agi_calls" in await resp.text()
        assert (await remote.get("/metrics")).status == 403
        assert (await remote.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 403
        assert (await local.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 403
        resp = await remote.get("/metrics", headers=AUTH)  # elsewhere: with the API token
        assert resp.status == 200 and "ivr_agi_command_seconds" in await resp.text()
        deps.metrics = None
        assert (await local.get("/metrics")).status == 404
    finally:
        await local.close()
        await remote.close()


def test_metrics_listener_counts_and_never_raises():
    metrics = Metrics()
    at = datetime.now(UTC)

    def event(kind: str, **data: Any) -> TimelineEventIn:
        return TimelineEventIn(at=at, call_id="c", customer_id=None, kind=kind, data=data)

    metrics.listener(event("call.ended", outcome="order_placed", reason="order_placed"))
    metrics.listener(event("call.hungup", outcome="operator_answered", who="caller"))
    metrics.listener(event("call.hungup", outcome=None))
    metrics.listener(event("operator.answered", hold_time=12, operator_interface="PJSIP/101"))
    metrics.listener(event("queue.abandoned", wait_seconds=40.5))
    metrics.listener(event("queue.abandoned", wait_seconds="garbage"))  # ignored
    metrics.listener(event("prompt.played", text="…"))  # not counted
    metrics.listener(None)  # type: ignore[arg-type]  # a broken event never raises
    metrics.observe_agi("STREAM FILE", 0.012)
    metrics.observe_agi("GET DATA", 1.5)
    text = metrics.render().decode()
    assert 'ivr_calls_total{outcome="order_placed",stage="ivr"} 1.0' in text
    assert 'ivr_calls_total{outcome="operator_answered",stage="call"} 1.0' in text
    assert 'ivr_calls_total{outcome="unknown",stage="call"} 1.0' in text
    assert 'ivr_queue_wait_seconds_count{result="answered"} 1.0' in text
    assert 'ivr_queue_wait_seconds_sum{result="abandoned"} 40.5' in text
    assert 'ivr_agi_command_seconds_count{command="STREAM FILE"} 1.0' in text
    assert 'ivr_agi_command_seconds_bucket{command="GET DATA",le="2.5"} 1.0' in text
    assert "ivr_tts_cache_hits_total 0.0" in text and "ivr_active_agi_calls 0.0" in text


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in metrics"
    return float(match.group(1))


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("monitoring-prompts")


async def test_metrics_after_a_real_call(store, prompts_dir):
    report = await load_demo_data(store.sessions)
    assert report.ok
    metrics = Metrics()
    harness = await start_harness(store, prompts_dir)
    harness.server.on_command = metrics.observe_agi  # the hook ivr.app wires at construction
    harness.notifier.subscribe(metrics.listener)
    metrics.bind_agi_server(harness.server)
    metrics.bind_prompt_cache(harness.service.prompt_cache)
    client = await client_for(deps_for(store, metrics=metrics, health=health()))
    try:
        fake = await harness.call("+79161234567", ["1"])
        assert fake.variables["IVR_RESULT"] == "done"
        await harness.call("+79990000000", [])  # unknown number -> operator
        await wait_for(lambda: sum(1 for e in harness.live_events if e.kind == "call.ended") == 2)
        await wait_for(lambda: harness.server.active_calls == 0)
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
        await harness.stop()
    for name in ("ivr_calls_total", "ivr_agi_command_seconds_bucket", "ivr_queue_wait_seconds",
                 "ivr_tts_cache_hits_total", "ivr_tts_cache_misses_total", "ivr_active_agi_calls"):
        assert name in text, name
    assert _value(text, 'ivr_calls_total{outcome="order_placed",stage="ivr"}') == 1.0
    assert _value(text, 'ivr_calls_total{outcome="operator",stage="ivr"}') == 1.0
    assert _value(text, 'ivr_agi_command_seconds_count{command="ANSWER"}') == 2.0
    assert _value(text, 'ivr_agi_command_seconds_count{command="EXEC"}') >= 2.0  # the hand-overs (MSet)
    media = [c for c in ("STREAM FILE", "GET DATA") if f'command="{c}"' in text]
    assert media, "media commands are timed too"
    hits = _value(text, "ivr_tts_cache_hits_total")
    misses = _value(text, "ivr_tts_cache_misses_total")
    assert hits + misses > 0
    assert _value(text, "ivr_active_agi_calls") == 0.0  # both calls are over


async def test_a_failing_observer_never_breaks_a_call(store, prompts_dir):
    report = await load_demo_data(store.sessions)
    assert report.ok
    seen: list[str] = []

    def observer(verb: str, seconds: float) -> None:
        seen.append(verb)
        raise RuntimeError("metrics backend exploded")

    harness = await start_harness(store, prompts_dir)
    harness.server.on_command = observer
    try:
        fake = await harness.call("+79161234567", ["1"])
    finally:
        await harness.stop()
    assert fake.variables["IVR_RESULT"] == "done"
    assert seen[0] == "ANSWER" and "EXEC" in seen
