"""Nothing is lost: `ivr serve` SIGKILLed with 500 events pending; after the restart every event
reaches the webhook exactly once, each call's events in order (both databases)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm_bridge.call_log import CallLog, TimelineRecord
from crm_bridge.db import create_engine, session_factory
from crm_bridge.outbox.routing import OutboxRouting
from crm_bridge.outbox.store import OutboxStore
from tests.cli.conftest import clean_environ
from tests.cli.test_serve_process import free_port
from tests.crm.fake_webhook import FakeWebhook
from tests.crm.rig import ALL

IVR = Path(sys.executable).with_name("ivr")
CALLS = 100
KINDS = ("call.started", "order.created", "call.ended", "call.hungup", "recording.ready")  # 5 × 100 = 500


def events() -> list[TimelineRecord]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    return [TimelineRecord(at=t0 + timedelta(seconds=10 * c + k), call_id=f"call-{c:03d}", customer_id=None,
                           kind=kind, data={})
            for c in range(CALLS) for k, kind in enumerate(KINDS)]


async def wait(predicate, timeout: float, what: str, server: asyncio.subprocess.Process | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if server is not None:
            assert server.returncode is None, f"ivr serve exited with {server.returncode}"
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def serve(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log.open("a")
    try:
        return await asyncio.create_subprocess_exec(str(IVR), "serve", env=env, cwd=log.parent, stdout=out,
                                                    stderr=subprocess.STDOUT)
    finally:
        out.close()


@pytest.mark.timeout(180)
async def test_sigkill_with_500_events_pending_then_each_arrives_exactly_once(db_url, tmp_path) -> None:
    webhook = FakeWebhook()
    await webhook.start()
    engine = create_engine(db_url)
    outbox = OutboxStore(session_factory(engine))
    records = events()
    await CallLog(outbox.sessions, outbox=OutboxRouting({"webhook": ALL})).write(records)
    env = clean_environ({
        "IVR_AGI__PORT": str(free_port()), "IVR_WEB__ENABLED": "false", "IVR_DATABASE__URL": db_url,
        "IVR_PROMPTS__DIR": str(tmp_path / "prompts"), "IVR_PROMPTS__WARM_AT_START": "false",
        "IVR_CALL_RECORDS__SPOOL_DIR": str(tmp_path / "spool"),
        "IVR_CRM__TARGETS": "webhook", "IVR_CRM__RETRY_MIN": "0.2", "IVR_CRM__RETRY_MAX": "0.5",
        "IVR_CRM__LEASE": "2", "IVR_CRM__POLL_INTERVAL": "0.1", "IVR_CRM__BATCH": "20",
        "IVR_CRM_WEBHOOK__URL": webhook.url, "IVR_CRM_WEBHOOK__SECRET": webhook.secret,
        "IVR_CRM_WEBHOOK__RATE": "200", "IVR_CRM_WEBHOOK__BURST": "20",
    })
    log = tmp_path / "serve.log"
    server = await serve(env, log)
    try:
        await wait(lambda: len(webhook.received) >= 100, 60, "the first deliveries", server)
        # The receiver goes down; once a 503 is settled in the database, every earlier success is
        # marked delivered (a worker settles its batch's successes before a failure), and the kill
        # loses no answer.
        webhook.fail_with(503)
        deadline = asyncio.get_running_loop().time() + 30
        while not any("503" in (i.last_error or "") for i in await outbox.items()):
            assert asyncio.get_running_loop().time() < deadline, "a failed delivery"
            await asyncio.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        assert await server.wait() == -signal.SIGKILL
        delivered_before = len(webhook.received)
        assert delivered_before < len(records), "the kill must leave events pending"

        webhook.fail_with(None)
        server = await serve(env, log)
        await wait(lambda: len(set(webhook.event_ids())) >= len(records), 90, "every event after the restart",
                   server)

        async def settled() -> bool:
            return all(i.state == "delivered" for i in await outbox.items())

        deadline = asyncio.get_running_loop().time() + 20
        while not await settled():
            assert asyncio.get_running_loop().time() < deadline, "rows still pending"
            await asyncio.sleep(0.1)
        server.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        await webhook.stop()
        await engine.dispose()
    counts = Counter(webhook.event_ids())
    assert set(counts) == {r.uid for r in records}
    assert max(counts.values()) == 1, [e for e, n in counts.items() if n > 1]  # exactly once
    by_call: dict[str, list[str]] = {}
    for event in webhook.received:
        by_call.setdefault(event["call_id"], []).append(event["kind"])
    assert all(kinds == list(KINDS) for kinds in by_call.values())  # in order, across the crash
    print(f"delivered before the kill: {delivered_before}, after the restart: {len(records) - delivered_before}",
          file=sys.stderr)
    assert "Traceback" not in log.read_text()
