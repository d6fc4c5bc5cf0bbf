"""`ivr sync bitrix24|amocrm [--full]` through the real entry point: the report it prints, its exit code,
and never the CRM's secret. The fake portal runs on its own loop in a thread (``main`` runs its own)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from tests.cli.test_commands import query
from tests.crm.fake_bitrix24 import TOKEN, FakeBitrix24, Portal, add_reads
from tests.crm.sync_rig import seed_bitrix24


class PortalThread:
    def __init__(self) -> None:
        self.fake = FakeBitrix24(rate=1000.0, burst=1000)
        self.portal = Portal()
        seed_bitrix24(self.portal)
        add_reads(self.fake, self.portal)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def portal(monkeypatch) -> Iterator[PortalThread]:
    running = PortalThread()
    running.start()
    monkeypatch.setenv("IVR_CRM_BITRIX24__WEBHOOK_URL", running.fake.webhook_url)
    monkeypatch.setenv("IVR_CRM_BITRIX24__RATE", "1000")
    monkeypatch.setenv("IVR_CRM_BITRIX24__BURST", "1000")
    yield running
    running.stop()
    running.close()


def test_sync_prints_its_report_and_a_second_run_fetches_nothing(ivr_env, portal) -> None:
    first = ivr_env.run("sync", "bitrix24")
    assert first.code == 0, first.err
    assert "bitrix24 contacts: fetched 123, created 122, updated 0, unchanged 0, not mapped 1" in first.out
    assert "bitrix24 contact 2: no phone number" in first.err
    assert TOKEN not in first.out + first.err
    assert query(ivr_env.db_path, "SELECT count(*) FROM customers") == [(122,)]

    second = ivr_env.run("sync", "bitrix24")
    assert second.code == 0, second.err
    assert "bitrix24 contacts: fetched 0, created 0" in second.out

    full = ivr_env.run("sync", "bitrix24", "--full")
    assert full.code == 0 and "bitrix24 contacts: fetched 123, created 0, updated 0, unchanged 122" in full.out


def test_a_portal_that_is_down_is_one_line_and_exit_1(ivr_env, portal, monkeypatch) -> None:
    portal.stop()
    monkeypatch.setenv("IVR_SYNC__RETRIES", "0")
    down = ivr_env.run("sync", "bitrix24")
    assert down.code == 1
    stopped = [line for line in down.err.splitlines() if line.startswith("ivr sync:")]
    assert len(stopped) == 1 and "contacts: crm.contact.list: ClientConnectorError" in stopped[0]
    assert TOKEN not in down.out + down.err


def test_amocrm_without_its_settings_says_which_key(ivr_env) -> None:
    missing = ivr_env.run("sync", "amocrm")
    assert missing.code == 1
    assert "crm_amocrm.base_url is empty" in missing.err
