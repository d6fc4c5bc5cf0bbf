"""The call path's statements run straight on asyncpg (crm_bridge.pg_direct): the same rows, the same
conversions and the same errors as through SQLAlchemy Core, on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_bridge import repositories as repo
from crm_bridge.db import autocommit, create_engine, session_factory
from crm_bridge.errors import StoreUnavailable
from crm_bridge.pg_direct import DirectStatement
from crm_bridge.services import CrmStore
from tests.db.seed import IVANOV_PHONE, seed
from tests.db.test_store_hot_path import is_pg

MORNING = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
async def pg_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    if not is_pg(db_url):
        pytest.skip("the direct path is PostgreSQL's; SQLite runs the statements through Core")
    engine = create_engine(db_url, pool_size=2)
    store = CrmStore(session_factory(engine))
    await seed(store)
    await store.place_order(idempotency_key="k1", customer_id="C1", lines=[("W19", 2), ("CUPS", 1)],
                            source="ivr", now=MORNING)
    try:
        yield autocommit(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        (repo.CALLER_BY_PHONE, {"number": IVANOV_PHONE}),
        (repo.PLACED_ORDER_BY_KEY, {"key": "k1"}),
        (repo.ORDER_INPUTS["postgresql"], {"customer_id": "C1", "key": "k1", "skus": ["CUPS", "W19"]}),
    ],
)
async def test_direct_rows_equal_core_rows_with_their_types(pg_engine, statement, params) -> None:
    async with pg_engine.connect() as conn:
        core = (await conn.execute(statement, params)).all()
        direct = await DirectStatement(statement).fetch(conn, params)
    assert core, "the seed must give rows to compare"
    assert [tuple(r) for r in direct] == [tuple(r) for r in core]
    assert [type(v) for r in direct for v in r] == [type(v) for r in core for v in r]
    names = list(core[0]._fields)
    assert [getattr(direct[0], name) for name in names] == [getattr(core[0], name) for name in names]


async def test_times_read_aware_utc_and_money_as_decimals(pg_engine) -> None:
    async with pg_engine.connect() as conn:
        rows = await DirectStatement(repo.PLACED_ORDER_BY_KEY).fetch(conn, {"key": "k1"})
    assert rows[0].ordered_at == MORNING and rows[0].ordered_at.tzinfo is UTC
    assert isinstance(rows[0].invoice_total, Decimal) and rows[0].invoice_total.as_tuple().exponent == -2


async def test_a_refused_statement_is_store_unavailable_and_the_connection_stays_usable(pg_engine) -> None:
    broken = DirectStatement(text("SELECT CAST(:n AS integer) / 0"))
    async with pg_engine.connect() as conn:
        with pytest.raises(StoreUnavailable, match="division by zero"):
            await broken.fetch(conn, {"n": 1})
        assert (await DirectStatement(text("SELECT 1 AS one")).fetch(conn, {}))[0].one == 1


async def test_a_naive_time_is_refused_before_it_reaches_the_server(pg_engine) -> None:
    """UtcDateTime's bind conversion runs on the direct path too."""
    statement = DirectStatement(repo.PLACE_ORDER_PG)
    with pytest.raises(ValueError, match="naive datetime"):
        statement.args({"ordered_at": datetime(2026, 1, 1)})
