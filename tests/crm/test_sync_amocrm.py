"""The pull from amoCRM against the local account (tests/crm/fake_amocrm_reads.py), on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.models import Customer, Deal, Order
from crm_bridge.services import CrmStore
from crm_bridge.sync import AmoCrmSource, SyncReport, SyncRunner, SyncStore
from crm_bridge.sync.client import CrmBadAnswer
from crm_bridge.sync.records import Entity
from tests.calls.harness import start_harness
from tests.crm.fake_amocrm_reads import LOST, PRODUCTS_CATALOG, TOKEN, FakeAmoReads
from tests.crm.sync_rig import (
    LAST_ORDER_GREETING,
    DiesAt,
    Killed,
    Sleeps,
    fingerprint,
    our_catalogue,
    quick,
    seed_amocrm,
)


@pytest.fixture
async def amo() -> AsyncIterator[FakeAmoReads]:
    fake = FakeAmoReads()
    fake.state.rate, fake.state.burst = 1000.0, 1000
    seed_amocrm(fake.state)
    await fake.start()
    yield fake
    await fake.stop()


def source(amo: FakeAmoReads, sleeps: Sleeps | None = None, *, token: str = TOKEN, retries: int = 3,
           limit: int = 50) -> AmoCrmSource:
    # 50 a page (amoCRM allows 250) so the 123 contacts span three pages, as on the Bitrix24 portal.
    return AmoCrmSource(amo.base_url, token, rate=1000.0, burst=1000, sleep=sleeps or Sleeps(),
                        retrying=quick(retries), limit=limit)


async def sync(store: CrmStore, amo: FakeAmoReads, *, full: bool = False, **kw) -> SyncReport:
    src = source(amo, **kw)
    try:
        return await SyncRunner(SyncStore(store.sessions), src).run(full=full)
    finally:
        await src.close()


async def count(store: CrmStore, model: type) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_a_synced_contact_is_greeted_by_name_and_hears_the_lead_managers_see(
        store: CrmStore, amo: FakeAmoReads, prompts_dir: Path) -> None:
    await our_catalogue(store)
    report = await sync(store, amo)
    assert report.ok, report.failure
    contacts, products, deals = (report.of(e) for e in ("contact", "product", "deal"))
    assert (contacts.fetched, contacts.pages, contacts.created, contacts.refused) == (123, 3, 122, 1)
    assert (products.created, products.unchanged) == (1, 1)
    assert (deals.fetched, deals.created, deals.refused) == (7, 3, 4)
    assert sorted(str(i) for i in report.issues) == sorted([
        "amocrm contact 2: no phone number",
        "amocrm contact 3: phone +79161234567 belongs to customer AMO-1: not attached",
        "amocrm deal 103: contact 2 is not in the store (not synced: see its own line)",
        "amocrm deal 104: row 1: product 999 is not in the store",
        "amocrm deal 106: element 1: quantity '2.5' is not a whole number",
        "amocrm deal 107: no contact",
    ])
    leads = [q for p, q, _ in amo.state.served if p == "/api/v4/leads"]
    assert leads and all(q["with"] == "catalog_elements,contacts" for q in leads)

    calls = await start_harness(store, prompts_dir)
    try:
        fake = await calls.call("+79161234567", ["1"])
    finally:
        await calls.stop()
    assert (fake.variables["IVR_CUSTOMER_ID"], fake.variables["IVR_REASON"]) == ("AMO-1", "order_placed")
    events = await store.call_timeline(fake.channel_vars["CHANNEL(linkedid)"])
    assert next(e.data["text"] for e in events if e.kind == "prompt.played").startswith(LAST_ORDER_GREETING)
    card = await store.get_customer_card("AMO-1")
    assert card.customer.patronymic == "Сергеевич"  # "Алексей Сергеевич" in first_name, as Russian accounts fill it
    async with store.sessions() as session:
        assert await session.scalar(select(Order.status).where(Order.order_id == "AMO-D105")) == "cancelled"


async def test_a_second_run_reads_only_what_changed_and_twice_changes_nothing(
        store: CrmStore, amo: FakeAmoReads) -> None:
    await our_catalogue(store)
    assert (await sync(store, amo)).ok
    first = await fingerprint(store)
    mark = str(amo.state.now)

    again = await sync(store, amo)
    assert (again.of("contact").fetched, again.of("deal").fetched) == (0, 0)
    assert amo.state.served[-1][2] == 0  # the empty page was a 204 with no body
    last = [q for p, q, _ in amo.state.served if p == "/api/v4/contacts"][-1]
    assert last["filter[updated_at][from]"] == mark
    assert await fingerprint(store) == first

    amo.state.tick(600)
    amo.state.touch(amo.state.contacts, 1, last_name="Иванов-Петров")
    amo.state.lead(108, 1, amo.state.now, [(10, 5)])
    amo.state.tick(60)
    before = amo.state.records_served("/api/v4/contacts"), amo.state.records_served("/api/v4/leads")
    changed = await sync(store, amo)
    assert (amo.state.records_served("/api/v4/contacts") - before[0],
            amo.state.records_served("/api/v4/leads") - before[1]) == (1, 1)
    lookup = await store.lookup_caller("+79161234567")
    assert lookup.customer.last_name == "Иванов-Петров"
    assert [(ln.sku, ln.quantity) for ln in lookup.last_order.lines] == [("WATER-19", 5)]
    assert changed.of("deal").created == 1


async def test_a_run_killed_after_page_two_resumes_there_and_ends_like_an_uninterrupted_one(
        store: CrmStore, amo: FakeAmoReads, tmp_path: Path) -> None:
    await our_catalogue(store)
    src = source(amo)
    with pytest.raises(Killed):
        await SyncRunner(SyncStore(store.sessions), DiesAt(src, Entity.CONTACT, "3")).run()
    await src.close()
    assert (await SyncStore(store.sessions).cursor("amocrm", "contact")).run_page == "3"
    assert await count(store, Customer) == 99

    resumed = await sync(store, amo)
    assert resumed.ok and resumed.resumed == ["contact"]
    assert amo.state.pages_asked("/api/v4/contacts") == ["1", "2", "3"]  # page 3 was never asked before the kill
    reference = f"sqlite+aiosqlite:///{tmp_path}/reference.sqlite3"
    await upgrade(reference)
    engine = create_engine(reference)
    try:
        other = CrmStore(session_factory(engine))
        await our_catalogue(other)
        assert (await sync(other, amo)).ok
        assert await fingerprint(store) == await fingerprint(other)
    finally:
        await engine.dispose()


async def test_401_429_and_an_account_that_is_down_say_so_in_one_line_without_the_token(
        store: CrmStore, amo: FakeAmoReads, capsys: pytest.CaptureFixture[str]) -> None:
    denied = await sync(store, amo, token="expired-or-revoked-token")
    assert denied.failure == "contacts: GET /api/v4/contacts: HTTP 401 Invalid access token"
    assert await count(store, Customer) == 0

    sleeps = Sleeps()
    amo.state.throttle_next = 3
    await our_catalogue(store)
    assert (await sync(store, amo, sleeps=sleeps)).ok
    assert sleeps.pauses[:3] == [1.0, 2.0, 4.0]
    assert [s for _, s in amo.state.refused].count(429) == 3

    amo.state.tick(60)
    amo.state.touch(amo.state.contacts, 5, first_name="Новое")
    amo.state.throttle_next = 100
    stuck = await sync(store, amo, retries=1)
    assert stuck.failure == "contacts: GET /api/v4/contacts: HTTP 429 Too many requests"
    amo.state.throttle_next = 0

    amo.state.fail_with(503)
    down = await sync(store, amo, retries=1)
    assert down.failure == "contacts: GET /api/v4/contacts: HTTP 503"
    amo.state.fail_with(None)
    logged = capsys.readouterr()
    assert "sync.stopped" in logged.out + logged.err
    for text in (denied.failure, stuck.failure, down.failure, logged.out, logged.err):
        assert TOKEN not in text
    async with store.sessions() as session:
        assert await session.scalar(select(Customer.first_name).where(Customer.customer_id == "AMO-5")) == "Клиент5"


async def test_a_refused_parameter_is_a_400_with_its_validation_errors(amo: FakeAmoReads) -> None:
    src = source(amo)
    try:
        with pytest.raises(CrmBadAnswer) as refused:
            await src.page(Entity.CONTACT, "yesterday", None)  # not a unix time
    finally:
        await src.close()
    assert str(refused.value).startswith("GET /api/v4/contacts: HTTP 400 Request validation failed")
    assert "InvalidType" in str(refused.value)


async def test_each_pulled_lead_is_one_deal_in_our_store_following_the_accounts_amount_and_loss(
        store: CrmStore, amo: FakeAmoReads) -> None:
    await our_catalogue(store)
    assert (await sync(store, amo)).ok

    async def deals() -> dict[str, tuple[str, str, str | None]]:
        out = {}
        for order_id in ("AMO-D100", "AMO-D101", "AMO-D105"):
            deal = await store.deal_of_order(order_id)
            assert deal is not None, order_id
            out[order_id] = (deal.stage, str(deal.amount), deal.customer_id)
        return out

    assert await deals() == {"AMO-D100": ("new", "1050.00", "AMO-1"), "AMO-D101": ("new", "1400.00", "AMO-1"),
                             "AMO-D105": ("cancelled", "5900.00", "AMO-1")}
    assert await count(store, Deal) == 3
    assert (await sync(store, amo, full=True)).ok
    assert await count(store, Deal) == 3  # a second run makes no second deal

    amo.state.tick(60)
    amo.state.touch(amo.state.leads, 101, _elements=[{"id": 10, "metadata": {
        "quantity": 5, "catalog_id": PRODUCTS_CATALOG, "price_id": 81}}])
    amo.state.touch(amo.state.leads, 100, status_id=LOST)
    amo.state.tick(60)
    report = await sync(store, amo)
    assert report.ok and report.of("deal").updated == 2
    assert await deals() == {"AMO-D100": ("cancelled", "1050.00", "AMO-1"), "AMO-D101": ("new", "1750.00", "AMO-1"),
                             "AMO-D105": ("cancelled", "5900.00", "AMO-1")}
    assert await count(store, Deal) == 3
