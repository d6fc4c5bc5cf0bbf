import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from crm_bridge.db import create_engine, upgrade
from crm_bridge.models import Base


async def test_migrations_create_exactly_the_models_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    await upgrade(db_url)  # the fixture already upgraded once
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            counters = dict((await conn.execute(text("SELECT name, value FROM sequences"))).all())
    finally:
        await engine.dispose()
    assert version == ["0008"]
    assert counters == {"order": 1000, "invoice": 0}


async def test_sqlite_engine_uses_wal_and_creates_the_parent_directory(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nested/dir/crm.sqlite3"
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await engine.dispose()
    assert mode == "wal"
    assert timeout >= 1000
    assert (tmp_path / "nested" / "dir" / "crm.sqlite3").exists()


@pytest.mark.postgres
async def test_two_upgrades_at_once_on_an_empty_postgres_database(request) -> None:
    """Two instances started together on a fresh database: one migrates, the other waits, both succeed."""
    import asyncio

    from tests.db.fixtures import _reset_pg_schema_empty

    url = request.getfixturevalue("pg_database")
    await _reset_pg_schema_empty(url)
    await asyncio.gather(upgrade(url), upgrade(url), upgrade(url))
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    assert len(version) == 1
