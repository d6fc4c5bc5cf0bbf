"""Admins see dead letters (scrubbed) and put them back in line; a CRM fetches one recording by a
signed, expiring link and nothing else; a target's secret never shows."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime

import pytest

from crm_bridge.connectors.base import Retry
from crm_bridge.connectors.bitrix24 import Bitrix24Target
from crm_bridge.connectors.recording_links import RecordingLinks
from crm_bridge.connectors.secrets import scrub_url
from crm_bridge.contract.crm import OutboxState
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.outbox.store import OutboxStore
from tests.console.conftest import PASSWORD, add_role_users, login, make_console_app, start_client
from tests.crm.rig import Clock, call_events, enqueue, make_worker, webhook_target
from tests.traces import TRACES

WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"
TOKEN = "s3cr3tw3bh00kt0k3n"
LINKS = RecordingLinks("link-secret-0123456789abcdef", "https://ivr.example.com", 3600)


async def test_an_admin_sees_a_dead_letter_and_retries_it(store, webhook) -> None:
    target = webhook_target(webhook)
    await enqueue(store, [target], call_events("c1", ("call.started",)))
    worker = make_worker(store, [target], Clock())
    webhook.fail_with(400)
    await worker.run_once("webhook")
    await worker.stop()
    [dead] = await worker.store.dead_letters()

    app = make_console_app(store, outbox=OutboxStore(store.sessions))
    await add_role_users(app)
    client = await start_client(app)
    try:
        csrf = await login(client, "adm1", PASSWORD)
        page = await (await client.get("/admin/crm")).text()
        assert "call.started" in page and "HTTP 400" in page and f"/admin/crm/{dead.id}/retry" in page
        assert webhook.secret not in page
        answer = await client.post(f"/admin/crm/{dead.id}/retry", data={"csrf_token": csrf}, allow_redirects=False)
        assert answer.status == 303
        [item] = await worker.store.items()
        assert (item.state, item.attempts) == (OutboxState.PENDING, 0)
        again = await client.post(f"/admin/crm/{dead.id}/retry", data={"csrf_token": csrf}, allow_redirects=False)
        assert again.status == 404  # not dead any more
    finally:
        await client.close()


async def test_a_signed_link_serves_its_one_recording_until_it_expires(store, tmp_path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copyfile(WAV, recordings / "a.wav")
    (recordings / "b.wav").write_bytes(b"RIFF-other-call")
    started = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for call_id in ("a", "b"):
        await store.record_call_start(call_id=call_id, caller_number="+79161234567", normalized_number=None,
                                      customer_id=None, channel=None, script="repeat-order", started_at=started)
        await store.update_call(call_id, facts=facts_implying("operator_answered"),
                                recording_path=str(recordings / f"{call_id}.wav"))
    app = make_console_app(store, recordings_dir=recordings, recording_links=LINKS)
    client = await start_client(app)  # never signed in: the link is all a CRM has
    try:
        token = LINKS.token("a")
        ok = await client.get(f"/r/{token}")
        assert ok.status == 200 and await ok.read() == WAV.read_bytes()
        encoded, expires, mac = token.split(".")
        forged = f"{LINKS.token('b').split('.')[0]}.{expires}.{mac}"  # another call under a's signature
        longer = f"{encoded}.{int(expires) + 86400}.{mac}"  # a later expiry under the old signature
        expired = LINKS.token("a", now=time.time() - 7200)
        for bad in (forged, longer, expired, "a.b.c", "x"):
            answer = await client.get(f"/r/{bad}")
            assert answer.status == 404, bad
            assert b"RIFF" not in await answer.read()
        assert LINKS.url("a").startswith("https://ivr.example.com/r/")
    finally:
        await client.close()


def test_urls_are_shown_without_their_token() -> None:
    url = f"https://portal.bitrix24.ru/rest/1/{TOKEN}/"
    assert scrub_url(url) == "https://portal.bitrix24.ru/rest/1/***/"
    assert TOKEN not in scrub_url(f"https://user:{TOKEN}@hook.example.com/x?key={TOKEN}")


async def test_a_transport_error_quoting_the_url_is_scrubbed(store) -> None:
    # A name that cannot resolve: aiohttp's error text names the address it tried.
    target = Bitrix24Target("bitrix24", f"http://{TOKEN}.invalid/rest/1/{TOKEN}/", default_user=1, users={},
                            crm_create=True, line_number="", finish_on="call.ended", links=None, rate=2, burst=2,
                            timeout=2.0)
    with pytest.raises(Retry) as caught:
        await target._call("telephony.externalcall.register", {"PHONE_NUMBER": "+7"})
    await target.close()
    assert TOKEN not in str(caught.value)  # not even as part of the host name it quotes


def test_a_short_link_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        RecordingLinks("short", "https://x", 60)


async def test_healthz_and_metrics_show_each_targets_backlog_without_failing_the_probe(store, webhook) -> None:
    """A CRM that is down delays its events; the probe stays ready and says how far behind it is."""
    from ivr.web.console.metrics import Metrics

    target = webhook_target(webhook)
    await enqueue(store, [target], call_events("c1", ("call.started",)))  # five minutes ago
    clock = Clock()
    worker = make_worker(store, [target], clock)
    webhook.fail_with(400)  # refused for good: a dead letter
    await worker.run_once("webhook")
    await worker.stop()
    await enqueue(store, [target], call_events("c2", ("call.started", "call.ended")))  # not tried yet
    outbox = OutboxStore(store.sessions)
    backlog = await outbox.backlog(("webhook", "bitrix24"), clock())
    assert backlog["bitrix24"].pending == 0 and backlog["bitrix24"].oldest_pending_seconds is None
    counts = backlog["webhook"]
    assert (counts.pending, counts.dead) == (2, 1)
    assert counts.oldest_pending_seconds is not None and 299 <= counts.oldest_pending_seconds <= 330

    app = make_console_app(store, outbox=outbox, outbox_targets=("webhook", "bitrix24"), metrics=Metrics(),
                           health=lambda: {"agi": {"listening": True, "active_calls": 0},
                                           "ami": {"status": "connected"}})
    client = await start_client(app)
    try:
        answer = await client.get("/healthz")
        assert answer.status == 200
        body = await answer.json()
        assert body["status"] == "ok"
        crm = body["crm"]["targets"]
        assert crm["webhook"]["dead"] == counts.dead and crm["webhook"]["pending"] == counts.pending
        assert crm["bitrix24"] == {"pending": 0, "dead": 0, "oldest_pending_seconds": None}
        text = await (await client.get("/metrics")).text()  # the test client is on the loopback address
        assert f'ivr_crm_outbox_dead{{target="webhook"}} {float(counts.dead)}' in text
        assert f'ivr_crm_outbox_pending{{target="webhook"}} {float(counts.pending)}' in text
        assert 'ivr_crm_outbox_pending{target="bitrix24"} 0.0' in text
        assert webhook.secret not in text
    finally:
        await client.close()
