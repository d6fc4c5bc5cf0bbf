"""The pull from Bitrix24 against the local portal (tests/crm/fake_bitrix24.py read side), on both
databases: the store it fills, a whole call on it, a second run, a killed run, a failing portal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_bridge.db import create_engine, session_factory, upgrade
from crm_bridge.models import Customer, Deal, ExternalRef, Order
from crm_bridge.services import CrmStore
from crm_bridge.sync import Bitrix24Source, SyncReport, SyncRunner, SyncStore
from crm_bridge.sync.records import Entity
from tests.calls.harness import start_harness
from tests.crm.fake_bitrix24 import TOKEN, FakeBitrix24, Portal, add_reads
from tests.crm.sync_rig import (
    LAST_ORDER_GREETING,
    DiesAt,
    Killed,
    Sleeps,
    fingerprint,
    our_catalogue,
    quick,
    seed_bitrix24,
)


@pytest.fixture
async def portal(bitrix: FakeBitrix24) -> Portal:
    bitrix.rate, bitrix.burst = 1000.0, 1000  # the pace is tested on its own clock (test_sync_units.py)
    p = Portal()
    seed_bitrix24(p)
    add_reads(bitrix, p)
    return p


def source(bitrix: FakeBitrix24, sleeps: Sleeps | None = None, *, url: str | None = None,
           retries: int = 3) -> Bitrix24Source:
    return Bitrix24Source(url or bitrix.webhook_url, rate=1000.0, burst=1000, sleep=sleeps or Sleeps(),
                          retrying=quick(retries))


async def sync(store: CrmStore, bitrix: FakeBitrix24, *, full: bool = False, entities: tuple[Entity, ...] | None = None,
               **kw) -> SyncReport:
    src = source(bitrix, **kw)
    try:
        runner = SyncRunner(SyncStore(store.sessions), src)
        return await (runner.run(full=full, entities=entities) if entities else runner.run(full=full))
    finally:
        await src.close()


async def count(store: CrmStore, model: type) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_a_synced_contact_is_greeted_by_name_and_hears_the_deal_managers_see(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal, prompts_dir: Path) -> None:
    await our_catalogue(store)
    report = await sync(store, bitrix)
    assert report.ok, report.failure
    contacts, products, deals = (report.of(e) for e in ("contact", "product", "deal"))
    assert (contacts.fetched, contacts.pages, contacts.created, contacts.refused) == (123, 3, 122, 1)
    assert (products.created, products.unchanged) == (1, 1)  # the cooler is new; WATER-19 is ours (same price)
    assert (deals.fetched, deals.created, deals.refused) == (6, 3, 3)
    said = sorted(str(i) for i in report.issues)
    assert said == sorted([
        "bitrix24 contact 2: no phone number",
        "bitrix24 contact 3: phone +79161234567 belongs to customer B24-1: not attached",
        "bitrix24 deal 102: row 1: 'Доставка' is not a catalogue product",
        "bitrix24 deal 103: contact 2 is not in the store (not synced: see its own line)",
        "bitrix24 deal 104: row 1: product 999 is not in the store",
    ])
    # Three list pages of contacts, the rows of six deals in ONE batch request.
    assert len(portal.asked("crm.contact.list")) == 3 and len(portal.asked("batch")) == 1
    assert portal.asked("crm.deal.productrows.get") == []

    calls = await start_harness(store, prompts_dir)
    try:
        fake = await calls.call("+79161234567", ["1"])
    finally:
        await calls.stop()
    assert fake.variables["IVR_CUSTOMER_ID"] == "B24-1"
    assert fake.variables["IVR_REASON"] == "order_placed"
    card = await store.get_customer_card("B24-1")
    placed = next(o for o in card.orders if o.source == "ivr")
    assert [(ln.sku, ln.quantity) for ln in placed.lines] == [("WATER-19", 4)]  # deal 101, not the lost 105
    events = await store.call_timeline(fake.channel_vars["CHANNEL(linkedid)"])
    greeting = next(e.data["text"] for e in events if e.kind == "prompt.played")
    assert greeting.startswith(LAST_ORDER_GREETING)


async def test_a_second_run_reads_only_what_changed_and_a_full_run_changes_nothing(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal) -> None:
    await our_catalogue(store)
    assert (await sync(store, bitrix)).ok
    first = await fingerprint(store)
    since = portal.stamp()

    again = await sync(store, bitrix)
    assert [c.fetched for c in again.counts.values()] == [0, 0, 0]
    assert portal.asked("crm.contact.list")[-1]["filter"] == {">=DATE_MODIFY": since}
    full = await sync(store, bitrix, full=True)
    assert full.ok and full.of("contact").fetched == 123
    assert sum(c.created + c.updated for c in full.counts.values()) == 0
    assert await fingerprint(store) == first

    portal.tick(600)
    portal.touch(portal.contacts, 1, LAST_NAME="Иванов-Петров")
    portal.deal(106, 1, portal.now, [(10, "5", "360.00")], "P")
    portal.tick(60)
    served = portal.records_served("crm.contact.list"), portal.records_served("crm.deal.list")
    changed = await sync(store, bitrix)
    assert (portal.records_served("crm.contact.list") - served[0],
            portal.records_served("crm.deal.list") - served[1]) == (1, 1)
    assert (changed.of("contact").updated, changed.of("deal").created) == (1, 1)
    lookup = await store.lookup_caller("+79161234567")
    assert lookup.customer.last_name == "Иванов-Петров"
    assert [(ln.sku, ln.quantity, str(ln.unit_price)) for ln in lookup.last_order.lines] == [("WATER-19", 5, "360.00")]


async def test_a_run_killed_after_page_two_resumes_there_and_ends_like_an_uninterrupted_one(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal, tmp_path: Path) -> None:
    await our_catalogue(store)
    src = source(bitrix)
    with pytest.raises(Killed):
        await SyncRunner(SyncStore(store.sessions), DiesAt(src, Entity.CONTACT, "100")).run()
    await src.close()
    cursor = await SyncStore(store.sessions).cursor("bitrix24", "contact")
    assert (cursor.run_page, cursor.pages) == ("100", 2)
    assert await count(store, Customer) == 99  # two whole pages (contact 2 has no phone), nothing of the third

    # The portal fails on the next run's first page: a clear line, the cursor where it was.
    bitrix.fail_with(502)
    failed = await sync(store, bitrix)
    assert failed.failure.startswith("contacts: crm.contact.list: HTTP 502")
    assert (await SyncStore(store.sessions).cursor("bitrix24", "contact")).run_page == "100"
    bitrix.fail_with(None)

    resumed = await sync(store, bitrix)
    assert resumed.ok and resumed.resumed == ["contact"]
    assert portal.asked("crm.contact.list")[-1]["start"] == 100
    assert resumed.of("contact").fetched == 23

    assert await fingerprint(store) == await _uninterrupted(tmp_path, bitrix)


async def _uninterrupted(tmp_path: Path, bitrix: FakeBitrix24) -> dict:
    url = f"sqlite+aiosqlite:///{tmp_path}/reference.sqlite3"
    await upgrade(url)
    engine = create_engine(url)
    try:
        other = CrmStore(session_factory(engine))
        await our_catalogue(other)
        assert (await sync(other, bitrix)).ok
        return await fingerprint(other)
    finally:
        await engine.dispose()


async def test_a_portal_that_is_down_refuses_the_webhook_or_throttles_says_so_in_one_line(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = bitrix.webhook_url.replace(TOKEN, "not-the-token-at-all")
    denied = await sync(store, bitrix, url=wrong)
    assert denied.failure == "contacts: crm.contact.list: HTTP 401 INVALID_CREDENTIALS Invalid request credentials"
    assert await count(store, Customer) == 0

    sleeps = Sleeps()
    portal.throttle_next = 2  # QUERY_LIMIT_EXCEEDED twice, then served
    await our_catalogue(store)
    slowed = await sync(store, bitrix, sleeps=sleeps)
    assert slowed.ok and sleeps.pauses[:2] == [1.0, 2.0]
    assert [code for _, code in bitrix.refused].count("QUERY_LIMIT_EXCEEDED") == 2

    portal.throttle_next = 100
    portal.tick(60)
    portal.touch(portal.contacts, 5, NAME="Новое имя")
    stuck = await sync(store, bitrix, retries=2)
    assert stuck.failure == "contacts: crm.contact.list: HTTP 503 QUERY_LIMIT_EXCEEDED Too many requests"
    portal.throttle_next = 0

    await bitrix.stop()
    down = await sync(store, bitrix)
    assert down.failure.startswith("contacts: crm.contact.list: ClientConnectorError")
    cursor = await SyncStore(store.sessions).cursor("bitrix24", "contact")
    logged = capsys.readouterr()
    assert "sync.stopped" in logged.out + logged.err
    for text in (denied.failure, stuck.failure, down.failure, cursor.last_error, logged.out, logged.err):
        assert TOKEN not in text and bitrix.webhook_url not in text
    async with store.sessions() as session:
        assert await session.scalar(select(Customer.first_name).where(Customer.customer_id == "B24-5")) == "Клиент5"


async def test_a_lost_deal_is_a_cancelled_order_never_read_back(store: CrmStore, bitrix: FakeBitrix24,
                                                                portal: Portal) -> None:
    await our_catalogue(store)
    assert (await sync(store, bitrix)).ok
    async with store.sessions() as session:
        status = await session.scalar(select(Order.status).where(Order.order_id == "B24-D105"))
    assert status == "cancelled"
    portal.tick(60)
    portal.touch(portal.deals, 105, STAGE_SEMANTIC_ID="P")  # reopened by a manager
    report = await sync(store, bitrix, entities=(Entity.DEAL,))
    assert report.of("deal").updated == 1
    lookup = await store.lookup_caller("+79161234567")
    assert [ln.sku for ln in lookup.last_order.lines] == ["B24-P11"]


async def test_a_number_that_moves_to_an_earlier_contact_follows_it_in_one_run(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal) -> None:
    assert (await sync(store, bitrix, entities=(Entity.CONTACT,))).ok
    portal.tick(60)
    moved = "+79260000060"  # contact 60's number, now contact 4's; contact 60 has a new one
    portal.touch(portal.contacts, 4, PHONE=[{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": moved}])
    portal.touch(portal.contacts, 60, PHONE=[{"ID": "2", "VALUE_TYPE": "WORK", "VALUE": "+79269999960"}])
    portal.tick(60)
    report = await sync(store, bitrix, entities=(Entity.CONTACT,))
    assert report.ok and report.of("contact").fetched == 2
    assert report.issues == []  # contact 4 came first, when 60 still had it: attached once 60 gave it up
    assert (await store.lookup_caller(moved)).customer.customer_id == "B24-4"
    assert (await store.lookup_caller("+79269999960")).customer.customer_id == "B24-60"
    assert (await store.lookup_caller("+79260000004")).status == "unknown"


async def test_a_portal_failing_between_the_deals_and_their_rows_writes_nothing_of_that_page(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal) -> None:
    await our_catalogue(store)

    def fail_the_rows(method: str, params: dict) -> None:
        if method == "batch":
            bitrix.fail_with(500)

    portal.before_read = fail_the_rows
    failed = await sync(store, bitrix, retries=0)
    assert failed.failure == "deals: batch: HTTP 500"
    assert (failed.of("contact").created, failed.of("deal").created) == (122, 0)
    assert await count(store, Order) == 0  # the deal page came back, its rows did not: nothing of it is written
    assert (await SyncStore(store.sessions).cursor("bitrix24", "deal")).last_error == "batch: HTTP 500"

    portal.before_read = None
    bitrix.fail_with(None)
    again = await sync(store, bitrix)
    assert again.ok and again.of("deal").created == 3 and again.of("contact").fetched == 0


async def test_a_deal_pushed_from_one_of_our_orders_stays_our_order(store: CrmStore, bitrix: FakeBitrix24,
                                                                    portal: Portal) -> None:
    """The push side records (bitrix24, deal, <id>) -> our order when it creates a deal; the pull then
    leaves that order as it is instead of making a second one from the deal."""
    await our_catalogue(store)
    assert (await sync(store, bitrix, entities=(Entity.CONTACT, Entity.PRODUCT))).ok
    placed = await store.place_order(idempotency_key="ivr:call-1", customer_id="B24-1", lines=[("WATER-19", 2)],
                                     source="ivr")
    async with store.sessions() as session:
        session.add(ExternalRef(source="bitrix24", entity="deal", external_id="101",
                                local_key=placed.order.order_id, synced_at=datetime.now(UTC)))
        await session.commit()
    report = await sync(store, bitrix, entities=(Entity.DEAL,))
    assert report.ok and (report.of("deal").created, report.of("deal").unchanged) == (2, 1)
    card = await store.get_customer_card("B24-1")
    ours = next(o for o in card.orders if o.order_id == placed.order.order_id)
    assert (ours.source, [(ln.sku, ln.quantity) for ln in ours.lines]) == ("ivr", [("WATER-19", 2)])
    assert "B24-D101" not in {o.order_id for o in card.orders}


async def _deals(store: CrmStore, *order_ids: str) -> dict[str, tuple[str, str, str | None]]:
    out = {}
    for order_id in order_ids:
        deal = await store.deal_of_order(order_id)
        assert deal is not None, order_id
        out[order_id] = (deal.stage, str(deal.amount), deal.customer_id)
    return out


async def test_each_pulled_deal_is_one_deal_in_our_store_following_the_portals_amount_and_loss(
        store: CrmStore, bitrix: FakeBitrix24, portal: Portal) -> None:
    await our_catalogue(store)
    assert (await sync(store, bitrix)).ok
    assert await _deals(store, "B24-D100", "B24-D101", "B24-D105") == {
        "B24-D100": ("new", "1050.00", "B24-1"),  # won in the portal: an accepted order, where imports start it
        "B24-D101": ("new", "1400.00", "B24-1"),
        "B24-D105": ("cancelled", "5900.00", "B24-1"),  # lost
    }
    assert await count(store, Deal) == 3
    assert (await sync(store, bitrix, full=True)).ok
    assert await count(store, Deal) == 3  # a second run makes no second deal

    portal.tick(60)
    portal.rows[101][0]["QUANTITY"] = "5.00"
    portal.touch(portal.deals, 101)
    portal.touch(portal.deals, 100, STAGE_ID="LOSE", STAGE_SEMANTIC_ID="F")
    portal.touch(portal.deals, 105, STAGE_ID="NEW", STAGE_SEMANTIC_ID="P")  # reopened by a manager
    portal.tick(60)
    report = await sync(store, bitrix, entities=(Entity.DEAL,))
    assert report.ok and report.of("deal").updated == 3
    assert await _deals(store, "B24-D100", "B24-D101", "B24-D105") == {
        "B24-D100": ("cancelled", "1050.00", "B24-1"),
        "B24-D101": ("new", "1750.00", "B24-1"),
        "B24-D105": ("new", "5900.00", "B24-1"),
    }
    assert await count(store, Deal) == 3
    lost = await store.deal_of_order("B24-D100")
    moves = [e.data for e in await store.deal_timeline(lost.deal_id) if e.kind == "deal.stage_changed"]
    assert [(m["by"], m["previous_stage"], m["stage"]) for m in moves] == [("bitrix24", "new", "cancelled")]
