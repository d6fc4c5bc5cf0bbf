"""The pull inside `ivr serve`: started by the composition root on ``sync.source``, one process at a
time on PostgreSQL (the sync lock), its last run and cursors in the service's health (/healthz)."""

from __future__ import annotations

from pathlib import Path

from crm_bridge.services import CrmStore
from ivr.app import start_service
from tests.calls.harness import database_url, harness_settings, wait_for
from tests.crm.fake_bitrix24 import TOKEN, FakeBitrix24, Portal, add_reads
from tests.crm.sync_rig import our_catalogue, seed_bitrix24


async def test_the_service_pulls_on_its_interval_and_shows_the_run_in_its_health(
        store: CrmStore, bitrix: FakeBitrix24, prompts_dir: Path) -> None:
    bitrix.rate, bitrix.burst = 1000.0, 1000
    portal = Portal()
    seed_bitrix24(portal)
    add_reads(bitrix, portal)
    await our_catalogue(store)
    url = database_url(store)
    settings = harness_settings(url, prompts_dir, sync={"source": "bitrix24", "interval_minutes": 60.0, "retries": 0},
                                crm_bitrix24={"webhook_url": bitrix.webhook_url, "rate": 1000.0, "burst": 1000})
    service = await start_service(settings, migrate=False)
    try:
        assert service.sync is not None
        await wait_for(lambda: service.sync.runs >= 1, timeout=20)
        health = service.health()["sync"]
        assert health["role"] == ("owner" if url.startswith("postgresql") else "local")
        assert health["last_ok"] is True and health["issues"] == 5 and health["running"] is False
        assert health["cursors"]["contact"]["since"] == portal.stamp()
        assert health["cursors"]["contact"]["resume_at_page"] is None
        assert (await store.lookup_caller("+79161234567")).customer.customer_id == "B24-1"

        # The next run waits for the interval (an hour); run_now() is what an admin's "sync now" calls.
        asked = len(portal.asked("crm.contact.list"))
        bitrix.fail_with(503)
        service.sync.run_now()
        await wait_for(lambda: service.sync.runs >= 2, timeout=20)
        assert len(portal.asked("crm.contact.list")) == asked  # refused before it was served
        health = service.health()["sync"]
        assert health["last_ok"] is False and health["last_failure"].startswith("contacts: crm.contact.list: HTTP 503")
        assert health["cursors"]["contact"]["last_error"].startswith("crm.contact.list: HTTP 503")
        assert TOKEN not in str(health)
    finally:
        await service.stop()
