"""Fixtures of the CRM bridge tests: the fake receivers, started and stopped around each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.crm.fake_amocrm import FakeAmoCrm
from tests.crm.fake_bitrix24 import FakeBitrix24
from tests.crm.fake_webhook import FakeWebhook


@pytest.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    fake = FakeWebhook()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def bitrix() -> AsyncIterator[FakeBitrix24]:
    fake = FakeBitrix24()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def amocrm() -> AsyncIterator[FakeAmoCrm]:
    fake = FakeAmoCrm()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory):
    # One prompt cache for the CRM tests' calls: each phrase is synthesized once per run.
    return tmp_path_factory.mktemp("crm-prompts")
