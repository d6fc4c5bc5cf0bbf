"""Issue 9, points 1, 2 and 3: what the caller hears, what the store holds and what the operator sees agree.

Faults are injected for real: an order write that commits and then fails (a reset after the commit,
a lost connection, a cancelled statement) on both databases, a TCP proxy in front of PostgreSQL that
forwards the order's statement and resets before its reply, a fake Asterisk that answers the
read-back's STREAM FILE with ``result=-1``, and a TTS that cannot speak the read-back. Point 2: the
same call (one linkedid) back in the robot asking for another order.
"""

from __future__ import annotations

import asyncio

import pytest

from crm_bridge.db import session_factory
from crm_bridge.demo import load_demo_data
from crm_bridge.errors import ConnectionLost, StoreUnavailable
from crm_bridge.models import Invoice, Order
from crm_bridge.services import CrmStore
from ivr.settings import default_settings
from ivr.speech.tts import TtsError, engine_by_name
from tests.calls.harness import start_harness, wait_for
from tests.calls.test_call_through import count, ended_call
from tests.db.tcp_proxy import proxied_engine
from tests.fakeasterisk import FakeAsterisk

ALEXEY = "+79161234567"  # C001, last order 4 × WATER-19 (demo data)



class CommitsThenFails:
    """The real store, but after the order has committed the write reports ``error`` (the reply was
    lost: a reset, a dead connection, a statement cancelled on its way back)."""

    def __init__(self, inner, error: BaseException):
        self.inner, self.error = inner, error

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def place_order(self, **kwargs):
        await self.inner.place_order(**kwargs)
        raise self.error


class FailsBeforeWriting(CommitsThenFails):
    """The write fails before anything reached the database."""

    async def place_order(self, **kwargs):
        raise self.error


class AndCannotLookUp:
    """Wraps a failing store: the look-up by idempotency key fails too (the database went away)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def order_for_key(self, idempotency_key, customer_id):
        raise StoreUnavailable("connection refused")


async def timeline_kinds(store, call_id: str) -> list[tuple[str, dict]]:
    return [(e.kind, e.data) for e in await store.call_timeline(call_id)]


# --- point 1: an order committed is never reported as failed ----------------------------------------


@pytest.mark.parametrize(
    "error",
    [StoreUnavailable("connection reset by peer"), ConnectionLost("server closed the connection"),
     ConnectionResetError(104, "Connection reset by peer"), asyncio.CancelledError()],
    ids=["store_unavailable", "connection_lost", "reset", "cancelled"],
)
async def test_an_order_that_committed_before_its_write_failed_is_read_back(store, prompts_dir, error):
    await load_demo_data(store.sessions)
    harness = await start_harness(CommitsThenFails(store, error), prompts_dir)
    try:
        fake = await harness.call(ALEXEY, ["1"])
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("done", "order_placed")
        order_id = fake.variables["IVR_ORDER_ID"]
        assert fake.commands[-1].startswith("STREAM FILE"), "the caller heard the read-back"
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.reason, call.order_id) == ("order_placed", "order_placed", order_id)
        assert await count(store, Invoice) == 1
    finally:
        await harness.stop()


async def test_a_write_that_failed_before_the_database_is_a_database_error(store, prompts_dir):
    await load_demo_data(store.sessions)
    harness = await start_harness(FailsBeforeWriting(store, StoreUnavailable("connection refused")), prompts_dir)
    try:
        fake = await harness.call(ALEXEY, ["1"])
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "database_error")
        assert "IVR_ORDER_ID" not in fake.variables
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.reason, call.order_id) == ("operator", "database_error", None)
        assert await count(store, Invoice) == 0
    finally:
        await harness.stop()


async def test_when_even_the_look_up_fails_the_operator_is_told_the_order_may_exist(store, prompts_dir):
    await load_demo_data(store.sessions)
    failing = AndCannotLookUp(CommitsThenFails(store, StoreUnavailable("connection reset by peer")))
    harness = await start_harness(failing, prompts_dir)
    try:
        fake = await harness.call(ALEXEY, ["1"])
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "order_outcome_unknown")
        assert "IVR_ORDER_ID" not in fake.variables  # nobody knows it: the operator checks
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        call = await ended_call(store, call_id)
        assert (call.outcome, call.reason) == ("operator", "order_outcome_unknown")
        kinds = dict(await timeline_kinds(store, call_id))
        assert kinds["order.uncertain"]["idempotency_key"]
        assert kinds["call.escalated"]["reason"] == "order_outcome_unknown"
        card = await harness.service.board.build_card(call_id, "PJSIP/101", "C001")
        assert card["call"]["ivr_reason"] == "order_outcome_unknown"
        assert "order.uncertain" in [step["kind"] for step in card["ivr_path"]]
    finally:
        await harness.stop()


@pytest.fixture
async def proxied_store(db_url: str, store):
    """A second CrmStore on the same PostgreSQL database, through a TCP proxy that injects faults."""
    async with proxied_engine(db_url) as (proxy, engine):
        yield proxy, CrmStore(session_factory(engine), store.config)


# The order's statement is the only one that binds the invoice prefix: its reply is the one lost.
ORDER_STATEMENT = "СЧ-".encode()


async def test_postgres_reset_after_the_order_committed_the_caller_hears_the_order(store, proxied_store, prompts_dir):
    proxy, through_proxy = proxied_store
    await load_demo_data(store.sessions)
    # The order's autocommit statement reaches the server, the connection resets before its reply,
    # and the store's own retry on a fresh connection is refused as well: the call settles by key.
    proxy.lose_reply_to(ORDER_STATEMENT, refuse_after=1)
    harness = await start_harness(store, prompts_dir, call_store=through_proxy)
    try:
        fake = await harness.call(ALEXEY, ["1"])
        assert proxy.reply_lost.is_set() and proxy.refused == 1
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("done", "order_placed")
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.order_id) == ("order_placed", fake.variables["IVR_ORDER_ID"])
        assert await count(store, Invoice) == 1
    finally:
        await harness.stop()


async def test_postgres_gone_after_the_order_committed_the_operator_is_warned(store, proxied_store, prompts_dir):
    proxy, through_proxy = proxied_store
    await load_demo_data(store.sessions)
    proxy.lose_reply_to(ORDER_STATEMENT, refuse_after=None)  # and the database stays unreachable
    harness = await start_harness(store, prompts_dir, call_store=through_proxy)
    try:
        fake = await harness.call(ALEXEY, ["1"])
        assert proxy.reply_lost.is_set()
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "order_outcome_unknown")
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert call.reason == "order_outcome_unknown"
        assert await count(store, Invoice) == 1  # it did commit: the operator checks before entering it
    finally:
        await harness.stop()


# --- point 3: an order the caller did not hear goes to an operator with the order ---------------------


async def assert_handed_over_with_the_order(harness, store, fake: FakeAsterisk) -> None:
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "readback_failed")
    order_id = fake.variables["IVR_ORDER_ID"]
    assert fake.variables["IVR_CUSTOMER_ID"] == "C001"
    call_id = fake.channel_vars["CHANNEL(linkedid)"]
    call = await ended_call(store, call_id)
    # The order stands (outcome) and the row says why a human has the caller (reason).
    assert (call.outcome, call.reason, call.order_id) == ("order_placed", "readback_failed", order_id)
    assert await count(store, Invoice) == 1
    timeline = await timeline_kinds(store, call_id)
    assert ("step.failed", {"step": "readback", "reason": "readback_failed"}) in timeline
    assert ("call.escalated", {"reason": "readback_failed"}) in timeline
    card = await harness.service.board.build_card(call_id, "PJSIP/101", None)
    assert (card["call"]["ivr_reason"], card["call"]["order_id"]) == ("readback_failed", order_id)
    assert card["customer"]["customer_id"] == "C001"


async def test_readback_that_asterisk_cannot_play_hands_the_caller_over_with_the_order(store, prompts_dir):
    await load_demo_data(store.sessions)
    harness = await start_harness(store, prompts_dir)
    try:
        # STREAM FILE is only the closing words here (the questions are GET DATA): the read-back, then
        # "connecting you" fail alike; the channel is alive (CHANNEL STATUS 6), so it is no hang-up.
        fake = FakeAsterisk({"STREAM FILE": "200 result=-1 endpos=0"}, inputs=["1"], check_files=True)
        fake = await harness.call(ALEXEY, fake=fake)
        await assert_handed_over_with_the_order(harness, store, fake)
        results = [value for name, value in fake.set_history if name == "IVR_RESULT"]
        assert results == ["done", "operator"]  # done before the read-back, operator once it failed
    finally:
        await harness.stop()


class CannotSayTheReadback:
    """The real TTS, except for the read-back sentence (a voice that fails on some text)."""

    def __init__(self, inner, word: str):
        self.inner, self.word = inner, word
        self.name = inner.name

    async def synthesize(self, text: str, voice: str) -> bytes:
        if self.word in text:
            raise TtsError("synthesis failed")
        return await self.inner.synthesize(text, voice)


async def test_readback_that_cannot_be_synthesized_hands_the_caller_over_with_the_order(store, tmp_path):
    await load_demo_data(store.sessions)
    real = engine_by_name(default_settings().prompts.engine)
    # Its own prompt directory: a read-back cached by another test would not need the TTS.
    harness = await start_harness(store, tmp_path / "prompts", engine=CannotSayTheReadback(real, "оформлен"))
    try:
        fake = await harness.call(ALEXEY, ["1"])
        await assert_handed_over_with_the_order(harness, store, fake)
        assert fake.played, "the caller heard 'connecting you' at least"
    finally:
        await harness.stop()


async def test_hangup_during_the_readback_is_not_a_failed_readback(store, prompts_dir):
    await load_demo_data(store.sessions)
    harness = await start_harness(store, prompts_dir)
    try:
        fake = FakeAsterisk(inputs=["1"], check_files=True).hangup_at("STREAM FILE", 1)
        fake = await harness.call(ALEXEY, fake=fake)
        assert fake.variables["IVR_RESULT"] == "done" and fake.variables["IVR_ORDER_ID"]
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.order_id) == ("order_placed", fake.variables["IVR_ORDER_ID"])
        assert call.reason != "readback_failed"
    finally:
        await harness.stop()


# --- point 2: the same call asking for another order keeps the first one --------------------------


class FailsAfterTheFirstOrder:
    """The real store for the first order; every later write fails before reaching the database, so
    the runner settles it by looking the key up (and finds the first visit's order)."""

    def __init__(self, inner):
        self.inner, self.orders = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def place_order(self, **kwargs):
        self.orders += 1
        if self.orders > 1:
            raise StoreUnavailable("connection refused")
        return await self.inner.place_order(**kwargs)


async def assert_the_first_order_stands(harness, store, first: FakeAsterisk, second: FakeAsterisk) -> None:
    order_id = first.variables["IVR_ORDER_ID"]
    assert (first.variables["IVR_RESULT"], first.variables["IVR_REASON"]) == ("done", "order_placed")
    # The second visit: told that the first order stands, then to an operator with that order.
    assert (second.variables["IVR_RESULT"], second.variables["IVR_REASON"]) == ("operator", "order_already_placed")
    assert (second.variables["IVR_ORDER_ID"], second.variables["IVR_CUSTOMER_ID"]) == (order_id, "C001")
    call_id = first.channel_vars["CHANNEL(linkedid)"]

    async def second_end_recorded():
        call = await store.get_call(call_id)
        return call if call is not None and call.reason == "order_already_placed" else None

    call = await wait_for(second_end_recorded)
    assert (call.outcome, call.order_id) == ("order_placed", order_id)  # the call did place that order
    # One order, as first asked (4 bottles), one invoice; the 9 bottles were not placed.
    assert await count(store, Invoice) == 1
    card = await store.get_customer_card("C001")
    (placed,) = [o for o in card.orders if o.source == "ivr"]
    assert placed.order_id == order_id and [(li.sku, li.quantity) for li in placed.lines] == [("WATER-19", 4)]
    events = await store.call_timeline(call_id)
    texts = [e.data["text"] for e in events if e.kind == "prompt.played"]
    assert sum("Сумма" in t for t in texts) == 1, "the order was read back once, on the first visit only"
    said = [t for t in texts if "уже оформлен" in t]
    assert len(said) == 1 and "Соединяю с оператором" in said[0]
    (already,) = [e.data for e in events if e.kind == "order.already_placed"]
    assert already["order_id"] == order_id
    assert already["lines"] == [{"sku": "WATER-19", "quantity": 9}]
    assert already["placed_lines"] == [{"sku": "WATER-19", "quantity": 4}]
    assert len([e for e in events if e.kind == "order.created"]) == 1
    card = await harness.service.board.build_card(call_id, "PJSIP/101", None)
    assert (card["call"]["ivr_reason"], card["call"]["order_id"]) == ("order_already_placed", order_id)
    assert "order.already_placed" in [step["kind"] for step in card["ivr_path"]]


async def test_a_second_visit_that_changes_the_quantity_keeps_the_first_order_and_hands_over(calls):
    """Issue 9, point 2: 4 bottles ordered, back in the robot in the same call, changed to 9."""
    linkedid = "1795751000.88"
    history = await count(calls.store, Order)
    first = await calls.call(ALEXEY, ["1"], uniqueid=linkedid)
    second = await calls.call(ALEXEY, ["2", "9#", "1"], uniqueid=linkedid)
    await assert_the_first_order_stands(calls, calls.store, first, second)
    assert await count(calls.store, Order) == history + 1


async def test_a_changed_order_whose_write_failed_is_not_settled_as_placed(store, prompts_dir):
    """The write of the changed order fails, and the look-up by key finds the first visit's order:
    that is not the order the caller asked for, so it is not read back as placed."""
    await load_demo_data(store.sessions)
    harness = await start_harness(FailsAfterTheFirstOrder(store), prompts_dir)
    try:
        linkedid = "1795751000.99"
        first = await harness.call(ALEXEY, ["1"], uniqueid=linkedid)
        second = await harness.call(ALEXEY, ["2", "9#", "1"], uniqueid=linkedid)
        await assert_the_first_order_stands(harness, store, first, second)
    finally:
        await harness.stop()
