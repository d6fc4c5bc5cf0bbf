"""Board events between processes over the real PostgreSQL LISTEN/NOTIFY (two fan-outs = two processes)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest

from crm_bridge.db import create_engine, session_factory
from crm_bridge.dto import TimelineEventIn
from crm_bridge.services import CrmStore, StoreConfig
from ivr.calls.screen_pop import OperatorBoard
from ivr.cluster.fanout import PAYLOAD_LIMIT, EventFanout, encode_event, pack
from tests.cluster.conftest import wait_until


def event(kind: str, call_id: str = "call-1", **data) -> TimelineEventIn:
    return TimelineEventIn(at=datetime.now(UTC), call_id=call_id, customer_id=None, kind=kind, data=data)


# --- packing (no database) -------------------------------------------------------------------------------


def test_batches_fit_the_payload_limit_keep_order_and_drop_only_the_impossible():
    events = [encode_event(event("prompt.played", text="Здравствуйте, " * 20 + str(i))) for i in range(100)]
    huge = encode_event(event("prompt.played", text="я" * PAYLOAD_LIMIT))
    payloads, dropped = pack("origin-1", [*events[:50], huge, *events[50:]])
    assert dropped == 1 and len(payloads) > 1
    assert all(len(p.encode()) <= PAYLOAD_LIMIT for p in payloads)
    decoded = [item for p in payloads for item in json.loads(p)["e"]]
    assert [d["d"]["text"] for d in decoded] == [json.loads(e)["d"]["text"] for e in events]


def test_only_what_a_board_reads_is_sent():
    sent = json.loads(encode_event(event("operator.ringing", operator_interface="PJSIP/101", secret="x", n=1)))
    assert sent["k"] == "operator.ringing" and sent["d"] == {"operator_interface": "PJSIP/101"}


# --- two processes on PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
async def board_store(pg_url):
    engine = create_engine(pg_url, pool_size=2)
    try:
        yield CrmStore(session_factory(engine), StoreConfig())
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_screen_pop_built_from_events_of_another_process(pg_dsn, board_store):
    own_echo: list[TimelineEventIn] = []
    board_b = OperatorBoard(board_store, {"PJSIP/101": "Анна"})
    a = EventFanout(pg_dsn, own_echo.append)
    b = EventFanout(pg_dsn, board_b.on_event)
    feed = board_b.subscribe("101")
    await a.start()
    await b.start()
    try:
        await asyncio.wait_for(asyncio.gather(a.wait_listening(), b.wait_listening()), 10)
        # The worker that ran the IVR part (A) and the AMI owner (also A here) publish; B has the WebSocket.
        for e in (
            event("call.started", caller="+79161234567"),
            event("prompt.played", step="greeting", text="Здравствуйте, Алексей Сергеевич."),
            event("dtmf.received", digits="0"),
            event("call.escalated", reason="caller_asked"),
            event("timeline.only", note="not a board event"),
            event("operator.ringing", operator_interface="PJSIP/101"),
        ):
            a.publish(e)
        card = await asyncio.wait_for(feed.get(), 10)
        assert card["state"] == "ringing" and card["operator_name"] == "Анна"
        assert card["call"]["caller_number"] == "+79161234567" and card["call"]["ivr_reason"] == "caller_asked"
        assert [(p["kind"], p.get("text") or p.get("digits")) for p in card["ivr_path"]] == [
            ("call.started", None),
            ("prompt.played", "Здравствуйте, Алексей Сергеевич."),
            ("dtmf.received", "0"),
            ("call.escalated", None),
        ]
        assert b.received == 5 and a.sent == 5
        assert own_echo == []  # A hears its own notifications and drops them: never twice
    finally:
        await a.stop()
        await b.stop()
        await board_b.close()


@pytest.mark.postgres
async def test_the_listener_reconnects_after_its_session_is_killed(pg_dsn):
    got: list[TimelineEventIn] = []
    a, b = EventFanout(pg_dsn, list().append), EventFanout(pg_dsn, got.append, reconnect_interval=0.05)
    await a.start()
    await b.start()
    admin = await asyncpg.connect(pg_dsn)
    try:
        await asyncio.wait_for(asyncio.gather(a.wait_listening(), b.wait_listening()), 10)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            f"ivr-events {b.origin}",
        )
        assert killed == 1
        await wait_until(lambda: not b.listening, what="b noticed the loss")
        await asyncio.wait_for(b.wait_listening(), 10)
        a.publish(event("operator.answered", operator_interface="PJSIP/102"))
        await wait_until(lambda: len(got) == 1, what="b got the event after reconnecting")
        assert got[0].kind == "operator.answered" and got[0].data == {"operator_interface": "PJSIP/102"}
    finally:
        await admin.close()
        await a.stop()
        await b.stop()
