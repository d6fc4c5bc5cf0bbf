"""Database fixtures shared by every test folder (re-exported by tests/conftest.py).

``db_url`` is an empty, migrated database: a SQLite file under tmp_path, or a throw-away
PostgreSQL database created per test next to ``IVR_TEST_DATABASE_URL`` (unique name, dropped
afterwards with FORCE, so parallel runs and leftovers of killed runs never collide).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.services import CrmStore, StoreConfig

PG_ENV = "IVR_TEST_DATABASE_URL"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@asynccontextmanager
async def temporary_pg_database(base_url: str) -> AsyncIterator[str]:
    base = make_url(base_url)
    name = f"ivr_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def _sqlite_url(tmp_path: os.PathLike[str]) -> str:
    url = f"sqlite+aiosqlite:///{os.fspath(tmp_path)}/crm.sqlite3"
    await upgrade(url)
    return url


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[str]:
    """URL of an empty database migrated to head, on each backend."""
    if request.param == "sqlite":
        yield await _sqlite_url(tmp_path)
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)")
    async with temporary_pg_database(base) as url:
        await upgrade(url)
        yield url


@pytest.fixture
def store_config() -> StoreConfig:
    return StoreConfig()


@pytest.fixture
async def store(db_url: str, store_config: StoreConfig) -> AsyncIterator[CrmStore]:
    engine = create_engine(db_url, pool_size=10)
    try:
        yield CrmStore(session_factory(engine), store_config)
    finally:
        await engine.dispose()
