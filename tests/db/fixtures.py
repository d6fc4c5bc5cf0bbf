"""Database fixtures shared by every test folder (re-exported by tests/conftest.py).

``db_url`` is an empty, migrated database: a SQLite file under tmp_path, or a throw-away
PostgreSQL database next to ``IVR_TEST_DATABASE_URL``. That database is created once per test
process under a unique name (parallel runs and leftovers of killed runs never collide), dropped
with FORCE at the end, and its ``public`` schema is dropped and re-migrated before every test
(CREATE DATABASE costs ~0.3 s, a schema reset plus upgrade about half of that).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.services import CrmStore, StoreConfig

T = TypeVar("T")
PG_ENV = "IVR_TEST_DATABASE_URL"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def create_pg_database(base_url: str) -> str:
    """Create a uniquely named database beside ``base_url``; returns its URL."""
    base = make_url(base_url)
    name = f"ivr_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    await _admin(base_url, f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(base_url: str, url: str) -> None:
    name = make_url(url).database
    await _admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(base_url: str, statement: str) -> None:
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def _sqlite_url(tmp_path: os.PathLike[str]) -> str:
    url = f"sqlite+aiosqlite:///{os.fspath(tmp_path)}/crm.sqlite3"
    await upgrade(url)
    return url


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One private PostgreSQL database per test process (sync fixture: no event loop is shared)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)")
    url = _run_in_thread(create_pg_database(base))
    try:
        yield url
    finally:
        _run_in_thread(drop_pg_database(base, url))


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a private thread: the first PostgreSQL test asks for the session database
    from inside its own running loop, where asyncio.run is not allowed."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _reset_pg_schema_empty(url: str) -> None:
    """The database with an empty ``public`` schema (not migrated)."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def _reset_pg_schema(url: str) -> None:
    await _reset_pg_schema_empty(url)
    await upgrade(url)


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[str]:
    """URL of an empty database migrated to head, on each backend."""
    if request.param == "sqlite":
        yield await _sqlite_url(tmp_path)
        return
    url = request.getfixturevalue("pg_database")
    await _reset_pg_schema(url)
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
