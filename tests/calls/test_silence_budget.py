"""Issue 9, point 4: deadlines are deadlines. The work between two sounds shares the caller's
silence budget (``flow.max_silence``); past it the caller is put through to an operator at once.

Faults are real: a TCP proxy in front of PostgreSQL that holds every reply (a hung database), a
lock held by another transaction on the order tables (both databases), and a TTS program that
never exits. The budget's clock is the event loop's: these tests check what the caller gets and
what was abandoned, not how fast (bench/fault_handover.py measures that).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from crm_bridge.db import session_factory
from crm_bridge.demo import load_demo_data
from crm_bridge.models import Invoice
from crm_bridge.services import CrmStore
from ivr.speech.tts import EspeakEngine
from tests.calls.harness import start_harness
from tests.calls.test_call_through import count, ended_call
from tests.db.tcp_proxy import proxied_engine

ALEXEY = "+79161234567"  # C001, last order 4 × WATER-19 (demo data)


@pytest.fixture
async def proxied_store(db_url: str, store):
    """The calls' store on the same PostgreSQL database, through a TCP proxy that injects faults."""
    async with proxied_engine(db_url) as (proxy, engine):
        yield proxy, CrmStore(session_factory(engine), store.config)


async def test_a_hung_database_at_the_lookup_puts_the_caller_through_and_drops_the_connection(
    store, proxied_store, prompts_dir
):
    proxy, calls_store = proxied_store
    await load_demo_data(store.sessions)
    await _greeted_once(store, prompts_dir)
    harness = await start_harness(store, prompts_dir, call_store=calls_store, max_silence=0.8, db_deadline=30.0)
    try:
        await calls_store.lookup_caller(ALEXEY)  # a warm pool: the stall hits a pooled connection
        connections = proxy.accepted
        proxy.stall()
        fake = await harness.call(ALEXEY, [], timeout=10)
        # The call is over while the database still holds the lookup's reply: abandoned, not awaited.
        assert proxy.replies_held.is_set()
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "database_timeout")
        assert fake.commands[-1].startswith("EXEC") and "IVR_RESULT=operator" in fake.commands[-1]
        proxy.unstall()
        # The stalled connection was aborted, never pooled again: the next lookup opens a new one.
        found = await calls_store.lookup_caller(ALEXEY)
        assert found.status == "found"
        assert proxy.accepted == connections + 1
    finally:
        proxy.unstall()
        await harness.stop()


async def _greeted_once(store, prompts_dir: Path) -> None:
    """One call with time to spare first, so that the greeting is in the prompt cache: a loaded
    machine's first synthesis must not be what spends a short budget."""
    warm = await start_harness(store, prompts_dir)
    try:
        await warm.call(ALEXEY, [], timeout=30)
    finally:
        await warm.stop()


async def _hold_order_tables(db_url: str, tmp_path: Path):
    """Another transaction holds the write lock the order needs (SQLite: BEGIN IMMEDIATE on the file;
    PostgreSQL: an exclusive lock on the orders table). Returns its release()."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, timeout=0, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")

        async def release_sqlite() -> None:
            conn.execute("ROLLBACK")
            conn.close()

        return release_sqlite
    conn = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("LOCK TABLE orders IN EXCLUSIVE MODE")

    async def release_pg() -> None:
        await transaction.rollback()
        await conn.close()

    return release_pg


async def test_an_order_write_past_the_budget_puts_the_caller_through_and_the_row_learns_the_order(
    store, db_url, prompts_dir, tmp_path
):
    await load_demo_data(store.sessions)
    await _greeted_once(store, prompts_dir)
    harness = await start_harness(store, prompts_dir, max_silence=0.8, db_deadline=30.0)
    release = await _hold_order_tables(db_url, tmp_path)
    try:
        fake = await harness.call(ALEXEY, ["1"], timeout=10)
        # The caller went over while the write waited on the lock: nobody knows yet if it lands.
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "order_outcome_unknown")
        assert "IVR_ORDER_ID" not in fake.variables
        live = [e for e in harness.live_events if e.kind == "order.uncertain"]
        assert len(live) == 1
        await release()
        release = None
        # The write then went through: the row, the timeline and the operator know the order.
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        call = await ended_call(store, call_id)
        assert call.reason == "order_outcome_unknown"
        assert call.order_id is not None
        created = [e.data for e in await store.call_timeline(call_id) if e.kind == "order.created"]
        assert len(created) == 1 and created[0]["after_handover"] is True
        assert created[0]["order_id"] == call.order_id
        assert await count(store, Invoice) == 1
        card = await harness.service.board.build_card(call_id, "PJSIP/101", "C001")
        assert card["call"]["order_id"] == call.order_id
    finally:
        if release is not None:
            await release()
        await harness.stop()


async def test_a_tts_that_hangs_puts_the_caller_through_and_is_killed(store, prompts_dir, tmp_path):
    # A customer whose name was never synthesized: the greeting needs the TTS, which never answers.
    hangs = tmp_path / "tts-that-hangs"
    started = tmp_path / "started"
    hangs.write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 600\n")
    hangs.chmod(0o755)
    await load_demo_data(store.sessions)
    harness = await start_harness(store, tmp_path / "empty-prompts", engine=EspeakEngine(binary=str(hangs)),
                                  max_silence=0.8)
    try:
        fake = await harness.call(ALEXEY, [], timeout=10)
        assert fake.variables["IVR_RESULT"] == "operator"
        assert fake.variables["IVR_REASON"] == "tts_error"
        assert fake.played == []  # no half-made file was ever given to Asterisk
        assert started.exists()  # the hung program did run
    finally:
        await harness.stop()


async def test_a_name_the_tts_cannot_say_in_time_is_left_out_of_the_greeting(store, tmp_path):
    """A first-time caller on a loaded machine: the name's synthesis takes longer than the caller may
    wait in silence. The greeting is said without the name (its other words are shared units already
    made) and the caller orders as usual, instead of being handed over with tts_error."""
    from ivr.calls.repeat_order_call import _item
    from ivr.flows.model import PromptRef
    from ivr.speech.speaker import Speaker

    started = tmp_path / "name-started"
    slow_on_name = tmp_path / "tts-slow-on-names"
    slow_on_name.write_text(
        "#!/bin/sh\ntext=$(cat)\n"
        f'case "$text" in *Алексей*) echo $$ > {started}; exec sleep 600;; esac\n'
        'printf "%s" "$text" | exec espeak-ng "$@"\n'
    )
    slow_on_name.chmod(0o755)
    await load_demo_data(store.sessions)
    harness = await start_harness(store, tmp_path / "prompts", engine=EspeakEngine(binary=str(slow_on_name)),
                                  max_silence=1.0)
    try:
        last = (await store.lookup_caller(ALEXEY)).last_order
        assert last is not None
        # The shared words are made (as the start-up warm-up and earlier calls make them); the name is not.
        nameless = PromptRef("greeting_menu_nameless", {"order": tuple(_item(line) for line in last.lines)})
        await Speaker(harness.service.prompt_cache).prepare((nameless,), "ru")  # its units land on disk
        fake = await harness.call(ALEXEY, ["1"], timeout=20)
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("done", "order_placed")
        assert started.exists()  # the name's synthesis was asked for, and never answered
        greeting = next(e.data for e in harness.live_events if e.kind == "prompt.played" and e.data["step"] == "menu")
        assert greeting["prompts"] == ["greeting_menu_nameless"]
        assert greeting["text"].startswith("Здравствуйте! Ваш прошлый заказ: четыре бутылки")
        assert "Алексей" not in greeting["text"]
    finally:
        await harness.stop()
