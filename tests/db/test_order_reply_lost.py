"""An order whose reply is lost after it committed (PostgreSQL behind a TCP proxy that resets).

The store's promise: the order exists once, and whoever asks again by its idempotency key gets it,
whether the store's own retry or the caller's look-up (``order_for_key``) asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crm_bridge.db import session_factory
from crm_bridge.errors import StoreUnavailable
from crm_bridge.models import Invoice
from crm_bridge.services import CrmStore
from tests.db.seed import seed
from tests.db.tcp_proxy import TcpProxy, proxied_engine
from tests.db.test_store_hot_path import MORNING, count_rows

# Only the order's statement binds the invoice prefix: its reply is the one the proxy loses.
ORDER_STATEMENT = "СЧ-".encode()
ORDER = {"idempotency_key": "call-9:repeat", "customer_id": "C1", "lines": [("W19", 2)], "source": "ivr",
         "now": MORNING}


@pytest.fixture
async def proxied(db_url: str) -> AsyncIterator[tuple[TcpProxy, CrmStore]]:
    async with proxied_engine(db_url) as (proxy, engine):
        store = CrmStore(session_factory(engine))
        await seed(store)
        yield proxy, store


async def test_the_stores_retry_returns_the_order_whose_reply_was_lost(proxied) -> None:
    proxy, store = proxied
    proxy.lose_reply_to(ORDER_STATEMENT)
    placed = await store.place_order(**ORDER)
    assert proxy.reply_lost.is_set()
    # The retry ran on a fresh connection (the dead one was invalidated, not pooled) and replayed it.
    assert not placed.created and placed.order.order_id == "A-1001"
    assert await count_rows(store, Invoice) == 1


async def test_when_the_retry_fails_too_the_order_is_found_by_its_key(proxied) -> None:
    proxy, store = proxied
    proxy.lose_reply_to(ORDER_STATEMENT, refuse_after=1)
    with pytest.raises(StoreUnavailable):
        await store.place_order(**ORDER)
    found = await store.order_for_key(ORDER["idempotency_key"], "C1")
    assert found is not None and found.order.order_id == "A-1001" and not found.created
    assert await count_rows(store, Invoice) == 1
