"""Fixtures shared by the call-through tests: one prompt cache per run, a harness per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_bridge.demo import load_demo_data
from tests.calls.harness import start_harness


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory) -> Path:
    # Shared by every test: the cache means each phrase is synthesized once per run.
    return tmp_path_factory.mktemp("prompts")


@pytest.fixture
async def calls(store, prompts_dir):
    """The whole service (composition root) on the test's database with the demo data."""
    await load_demo_data(store.sessions)
    harness = await start_harness(store, prompts_dir)
    yield harness
    await harness.stop()
