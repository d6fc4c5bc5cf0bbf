"""Whole calls through the real server, store and speech, driven by a fake Asterisk over TCP.

Demo data: C001 Алексей Сергеевич (+79161234567, last order 4 × WATER-19), C002 Мария Ивановна
(+79031112233, two lines), C003 John Smith (English), C004/C005 share +74951234567, C006 has no
orders.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_bridge.demo import load_demo_data
from crm_bridge.models import Invoice, Order
from tests.calls.harness import start_harness, wait_for
from tests.fakeasterisk import HANGUP, TIMEOUT, FakeAsterisk


async def count(store, model) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def ended_call(store, call_id: str):
    async def ended():
        call = await store.get_call(call_id)
        return call if call is not None and call.outcome else None

    return await wait_for(ended)


def prompt_texts(events) -> list[str]:
    return [e.data["text"] for e in events if e.kind == "prompt.played"]


async def test_known_caller_repeats_last_order_with_1(calls):
    fake = await calls.call("+79161234567", ["1"])
    assert fake.variables["IVR_RESULT"] == "done"
    assert fake.variables["IVR_REASON"] == "order_placed"
    assert fake.variables["IVR_CUSTOMER_ID"] == "C001"
    order_id = fake.variables["IVR_ORDER_ID"]
    call = await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    assert (call.outcome, call.order_id, call.customer_id) == ("order_placed", order_id, "C001")

    card = await calls.store.get_customer_card("C001")
    placed = next(o for o in card.orders if o.order_id == order_id)
    assert [(line.sku, line.quantity) for line in placed.lines] == [("WATER-19", 4)]
    assert placed.source == "ivr" and placed.invoice is not None
    assert placed.invoice.total == Decimal("1400.00")  # 4 × 350 at today's price
    assert placed.delivery_date is not None

    events = await calls.store.call_timeline(call.call_id)
    texts = prompt_texts(events)
    assert texts[0].startswith("Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки воды")
    assert "Чтобы повторить заказ, нажмите 1" in texts[0]
    assert "одна тысяча четыреста рублей" in texts[1] and "Доставка" in texts[1]
    kinds = [e.kind for e in events]
    assert kinds.index("prompt.played") < kinds.index("dtmf.received") < kinds.index("order.created")
    assert kinds[-1] == "call.ended"
    assert [e.data["digits"] for e in events if e.kind == "dtmf.received"] == ["1"]
    # barge-in: the menu is a GET DATA, so a key typed during the greeting is taken
    assert any(c.startswith("GET DATA ") for c in fake.commands)
    # the result is on the channel before the read-back plays (a hang-up during it keeps the order)
    mset = next(i for i, c in enumerate(fake.commands) if c.startswith('EXEC "MSet" ') and "IVR_ORDER_ID" in c)
    read_back = max(i for i, c in enumerate(fake.commands) if c.startswith("STREAM FILE "))
    assert mset < read_back


async def test_every_prompt_asterisk_is_asked_to_play_exists_as_8khz_wav(calls):
    fake = await calls.call("+79031112233", ["2", "3#", "#", "1"])
    assert fake.variables["IVR_RESULT"] == "done"
    assert fake.played, "prompts were played"
    # The fake Asterisk (check_files=True) answers result=-1 for a missing file, which would have
    # sent the caller to an operator: every file existed when it was played. Afterwards the
    # composed per-call files are gone; the static prompts stay in the cache.
    for path in fake.played:
        wav = Path(path + ".wav")
        if Path(path).parent.name == "calls":
            assert not wav.exists() and not Path(path + ".txt").exists(), path
        else:
            assert wav.read_bytes()[:4] == b"RIFF", path
    assert any(Path(path).parent.name == "calls" for path in fake.played)


async def test_change_quantity_then_confirm(calls):
    fake = await calls.call("+79031112233", ["2", "5#", "0#", "1"])
    assert fake.variables["IVR_RESULT"] == "done"
    await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    card = await calls.store.get_customer_card("C002")
    placed = next(o for o in card.orders if o.order_id == fake.variables["IVR_ORDER_ID"])
    assert [(line.sku, line.quantity) for line in placed.lines] == [("WATER-19", 5)]
    events = await calls.store.call_timeline(fake.channel_vars["CHANNEL(linkedid)"])
    texts = prompt_texts(events)
    assert any(t.startswith("Ваш новый заказ: пять бутылок") for t in texts)


async def test_same_call_never_places_two_orders(calls):
    linkedid = "1795750999.77"
    history = await count(calls.store, Order)
    first = await calls.call("+79161234567", ["1"], uniqueid=linkedid)
    # Asterisk re-runs the AGI on the same call (same linkedid): the caller presses 1 again
    second = await calls.call("+79161234567", ["1"], uniqueid=linkedid)
    assert first.variables["IVR_ORDER_ID"] == second.variables["IVR_ORDER_ID"]
    assert await count(calls.store, Order) == history + 1
    assert await count(calls.store, Invoice) == 1


async def test_concurrent_calls_from_different_customers_all_get_orders(calls):
    fakes = await asyncio.gather(
        calls.call("+79161234567", ["1"]), calls.call("+79031112233", ["1"]), calls.call("+79265554433", ["1"])
    )
    assert [f.variables["IVR_RESULT"] for f in fakes] == ["done"] * 3
    assert len({f.variables["IVR_ORDER_ID"] for f in fakes}) == 3
    assert await count(calls.store, Invoice) == 3


@pytest.mark.parametrize(
    ("caller_id", "inputs", "reason", "customer"),
    [
        ("+79161234567", ["0"], "caller_request", "C001"),
        ("+79990001122", [], "unknown_number", None),
        ("", [], "no_caller_id", None),
        ("anonymous", [], "no_caller_id", None),
        ("+74951234567", [], "shared_number", None),
        ("+79857778899", [], "no_previous_order", "C006"),
        ("+79161234567", [TIMEOUT, TIMEOUT], "no_input", "C001"),
        ("+79161234567", ["7", "9"], "invalid_input", "C001"),
        ("+79031112233", ["2", "0#", "0#"], "order_emptied", "C002"),
        ("+79031112233", ["2", "#", "#", "0"], "caller_request", "C002"),
    ],
)
async def test_calls_the_robot_cannot_finish_go_to_an_operator(calls, caller_id, inputs, reason, customer):
    fake = await calls.call(caller_id, inputs)
    assert fake.variables["IVR_RESULT"] == "operator"
    assert fake.variables["IVR_REASON"] == reason
    assert fake.variables.get("IVR_CUSTOMER_ID") == customer
    assert "IVR_ORDER_ID" not in fake.variables
    call = await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    assert (call.outcome, call.reason) == ("operator", reason)
    events = await calls.store.call_timeline(call.call_id)
    assert prompt_texts(events), "nobody is handed over in silence"
    assert "call.escalated" in [e.kind for e in events]
    assert await count(calls.store, Invoice) == 0


async def test_russian_number_formats_reach_the_same_customer(calls):
    for raw in ("89161234567", "79161234567", "+7 (916) 123-45-67", "9161234567"):
        fake = await calls.call(raw, ["0"])
        assert fake.variables["IVR_CUSTOMER_ID"] == "C001", raw


async def test_english_customer_hears_the_english_catalogue(calls):
    fake = await calls.call("+79265554433", ["1"])
    await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    events = await calls.store.call_timeline(fake.channel_vars["CHANNEL(linkedid)"])
    greeting = prompt_texts(events)[0]
    assert greeting.startswith("Hello, John.")
    assert "three bottles" in greeting


async def test_lang_option_in_the_script_name_overrides(calls):
    fake = await calls.call("+79161234567", ["0"], script="repeat-order?lang=en")
    await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    events = await calls.store.call_timeline(fake.channel_vars["CHANNEL(linkedid)"])
    assert prompt_texts(events)[0].startswith("Hello, Alexey.")


@pytest.mark.parametrize(
    ("caller_id", "inputs", "script", "language"),
    [
        ("+79161234567", ["0"], "repeat-order", "ru"),  # a Russian customer asks for an operator
        ("+79265554433", ["0"], "repeat-order", "en"),  # the customer card says English
        ("+79161234567", ["0"], "repeat-order?lang=en", "en"),  # an English line
        ("+79990000000", [], "repeat-order", "ru"),  # unknown number: flow.default_language
        ("+79161234567", ["1"], "repeat-order", "ru"),  # order placed: the dialplan hangs up
    ],
)
async def test_the_callers_language_is_handed_to_the_dialplan(calls, caller_id, inputs, script, language):
    """IVR_LANGUAGE on the wire: the dialplan makes it the channel language, so Asterisk's own queue
    prompts ("you are next…") and the queue's callback offer are in the caller's language."""
    fake = await calls.call(caller_id, inputs, script=script)
    assert fake.variables["IVR_LANGUAGE"] == language
    await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])


@pytest.mark.parametrize(
    ("inputs", "hangup_at", "step"),
    [
        ([HANGUP], None, "menu"),
        (["2", HANGUP], None, "quantity:WATER-19"),
        (["2", "#", HANGUP], None, "quantity:CUPS-100"),
        (["2", "#", "#", HANGUP], None, "confirm"),
        ([], ("ANSWER", 1), "start"),
        (["0"], ("STREAM FILE", 1), "handover"),
    ],
)
async def test_hangup_at_every_step_is_recorded_and_closed(calls, inputs, hangup_at, step):
    fake = FakeAsterisk(inputs=inputs, check_files=True)
    if hangup_at:
        fake.hangup_at(*hangup_at)
    fake = await calls.call("+79031112233", fake=fake, timeout=5)
    call = await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    assert (call.outcome, call.reason) == ("abandoned_in_ivr", f"hangup_at_{step}")
    assert await count(calls.store, Invoice) == 0


async def test_hangup_during_the_goodbye_keeps_the_order(calls):
    fake = FakeAsterisk(inputs=["1"], check_files=True).hangup_at("STREAM FILE", 1)
    fake = await calls.call("+79161234567", fake=fake)
    call = await ended_call(calls.store, fake.channel_vars["CHANNEL(linkedid)"])
    assert call.outcome == "order_placed" and call.order_id
    assert await count(calls.store, Invoice) == 1


async def test_hangup_while_idle_closes_the_socket_at_once(store, prompts_dir):
    """The caller hangs up while we wait for a slow CRM: Asterisk sends HANGUP, we must close."""
    await load_demo_data(store.sessions)

    class SlowLookup:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def lookup_caller(self, raw):
            await asyncio.sleep(2.5)
            return await self.inner.lookup_caller(raw)

    harness = await start_harness(SlowLookup(store), prompts_dir, db_deadline=5.0)
    try:
        fake = FakeAsterisk(check_files=True)
        await fake.connect("127.0.0.1", harness.server.port)
        await fake.wait_for_command("GET VARIABLE")
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        await fake.hangup()
        assert await fake.wait_closed(1.0)
        assert asyncio.get_running_loop().time() - started < 0.5
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.reason) == ("abandoned_in_ivr", "hangup_at_lookup")
    finally:
        await harness.stop()


async def test_database_slower_than_its_deadline_sends_the_caller_to_an_operator(store, prompts_dir):
    class StuckStore:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        async def lookup_caller(self, raw):
            await asyncio.sleep(30)

    harness = await start_harness(StuckStore(store), prompts_dir, db_deadline=0.3)
    try:
        fake = await harness.call("+79161234567", timeout=5)
        assert fake.variables["IVR_RESULT"] == "operator"
        assert fake.variables["IVR_REASON"] == "database_timeout"
    finally:
        await harness.stop()


async def test_database_down_still_reaches_a_human(store, prompts_dir, tmp_path):
    """The database went away after the start: every CRM step fails, the caller is queued. (Down
    since the start, calls are handed over before a word: tests/calls/test_database_at_start.py.)"""
    from crm_bridge.db import create_engine, session_factory
    from crm_bridge.services import CrmStore

    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    harness = await start_harness(store, prompts_dir, db_deadline=2.0,
                                  call_store=CrmStore(session_factory(engine)))
    try:
        fake = await harness.call("+79161234567", timeout=10)
        assert fake.variables["IVR_RESULT"] == "operator"
        assert fake.variables["IVR_REASON"] in {"database_error", "database_timeout"}
        assert fake.played, "the caller heard why"
    finally:
        await harness.stop()
        await engine.dispose()


async def test_speech_failure_never_plays_a_missing_file(store, tmp_path):
    from ivr.speech.tts import TtsError

    class BrokenEngine:
        name = "broken"

        async def synthesize(self, text, voice):
            raise TtsError("no voice")

    await load_demo_data(store.sessions)
    harness = await start_harness(store, tmp_path / "prompts", engine=BrokenEngine())
    try:
        fake = await harness.call("+79161234567", ["1"])
        assert fake.variables["IVR_RESULT"] == "operator"
        assert fake.variables["IVR_REASON"] == "tts_error"
        assert fake.played == []  # never asked Asterisk to play a file that does not exist
    finally:
        await harness.stop()


async def test_live_listeners_get_every_event_in_order(calls):
    fake = await calls.call("+79161234567", ["1"])
    linkedid = fake.channel_vars["CHANNEL(linkedid)"]
    await ended_call(calls.store, linkedid)
    kinds = [e.kind for e in calls.live_events if e.call_id == linkedid]
    assert kinds[0] == "call.started" and kinds[-1] == "call.ended"
    assert "order.created" in kinds


class SlowOrders:
    """The real store, but order writes wait first (a database under load). ``cancelled`` is set
    when a write was cancelled while it waited."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.cancelled = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def place_order(self, **kwargs):
        try:
            await asyncio.sleep(self.delay)  # the database's slowness, not a test's wait
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return await self.inner.place_order(**kwargs)


async def test_order_past_its_deadline_is_rolled_back_not_left_behind_the_operator(store, prompts_dir):
    # The write outlives the order deadline (the silence budget is not spent yet): it is cancelled
    # and looked up by its key, and the caller goes over knowing there is no order.
    await load_demo_data(store.sessions)
    slow = SlowOrders(store, 30.0)
    harness = await start_harness(slow, prompts_dir, db_deadline=0.3)
    try:
        fake = await harness.call("+79161234567", ["1"], timeout=10)
        assert fake.variables["IVR_RESULT"] == "operator"
        assert fake.variables["IVR_REASON"] == "database_timeout"
        assert slow.cancelled.is_set()
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.reason, call.order_id) == ("database_timeout", None)
        assert await count(store, Invoice) == 0
    finally:
        await harness.stop()


async def test_caller_who_hangs_up_right_after_pressing_1_still_gets_the_order(store, prompts_dir):
    await load_demo_data(store.sessions)
    harness = await start_harness(SlowOrders(store, 0.5), prompts_dir, db_deadline=3.0)
    try:
        fake = FakeAsterisk(inputs=["1"], check_files=True)
        await fake.connect("127.0.0.1", harness.server.port)
        await fake.wait_for_command("GET DATA")
        await asyncio.sleep(0.1)  # the key was sent; the order write is under way
        await fake.hangup()
        assert await fake.wait_closed(2.0)
        call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.reason) == ("order_placed", "hangup_after_order")
        assert call.order_id
        assert await count(store, Invoice) == 1
    finally:
        await harness.stop()


class CommitsThenStalls:
    """The order commits, but the reply never comes back (a COMMIT that landed while the caller's task
    was being cancelled): the order must be read back, not reported as failed.

    Deterministic whatever the machine's load: the COMMIT is shielded from the deadline's cancel and
    always lands before the cancelled write finishes unwinding (as a COMMIT already on the wire does),
    and the stall is an event that is never set, not a sleep that might end first."""

    def __init__(self, inner):
        self.inner = inner
        self.committed = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def place_order(self, **kwargs):
        commit = asyncio.ensure_future(self.inner.place_order(**kwargs))
        try:
            placed = await asyncio.shield(commit)
        except asyncio.CancelledError:
            await commit  # on the wire already: it lands whatever happens to the caller's task
            raise
        finally:
            self.committed.set()
        await asyncio.Event().wait()  # the reply is lost
        return placed


async def test_order_that_committed_past_its_deadline_is_read_back_to_the_caller(store, prompts_dir):
    await load_demo_data(store.sessions)
    stalls = CommitsThenStalls(store)
    # The lookup keeps the normal deadline (a slow lookup under load is not what this test is about);
    # only the order has a short one.
    harness = await start_harness(stalls, prompts_dir, db_deadline=5.0, order_deadline=1.0)
    try:
        fake = await harness.call("+79161234567", ["1"], timeout=20)
        assert stalls.committed.is_set()
        assert fake.variables["IVR_RESULT"] == "done"
        assert fake.variables["IVR_REASON"] == "order_placed"
        assert await count(store, Invoice) == 1
    finally:
        await harness.stop()
