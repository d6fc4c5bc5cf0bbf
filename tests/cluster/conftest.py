"""PostgreSQL-only fixtures: several `ivr` processes only make sense on a shared PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from ivr.cluster import asyncpg_dsn
from tests.db.fixtures import _reset_pg_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url(pg_database: str) -> AsyncIterator[str]:
    """A private PostgreSQL database migrated to head (skipped without IVR_TEST_DATABASE_URL)."""
    await _reset_pg_schema(pg_database)
    yield pg_database


@pytest.fixture
def pg_dsn(pg_url: str) -> str:
    return asyncpg_dsn(pg_url)


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``predicate`` every 10 ms until true; returns the seconds it took, fails at ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not true after {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started
