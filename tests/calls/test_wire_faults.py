"""Whole calls against a fake Asterisk that misbehaves on the wire (issue 9, points 5 and 6), on
SQLite and PostgreSQL: what the caller gets, what the store holds and what the dialplan is told agree."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from sqlalchemy import func, select

from crm_bridge.models import Order
from tests.calls.harness import wait_for
from tests.fakeasterisk import R510, FakeAsterisk, usage_520

pytestmark = pytest.mark.timeout(60)

KNOWN = "+79161234567"  # C001 in the demo data: "press 1" repeats four bottles
HAND_OVER = 0.5  # from the bad line to the closed socket: a resync round trip and one MSet




async def orders(store) -> int:
    async with store.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Order))


def linkedid_reply(fake: FakeAsterisk) -> str:
    return f"200 result=1 ({fake.channel_vars['CHANNEL(linkedid)']})"


# What reaches the robot around the menu's GET DATA (the caller presses nothing, or "1" after junk).
FAULTS = {
    # the linkedid reply twice: the second one is no reply to anything
    "duplicate linkedid reply": ("GET VARIABLE CHANNEL(linkedid)", lambda f: [linkedid_reply(f)] * 2),
    # a stray linkedid reply ahead of the menu's own: once read as the key "1", an order
    "stray line before GET DATA's reply": ("GET DATA", lambda f: [linkedid_reply(f), "200 result= (timeout)"]),
    # an unparseable line, then the menu's reply: once 10 s of silence
    "garbage before GET DATA's reply": ("GET DATA", lambda f: ["\x1b[2J garbage", "200 result=1"]),
    "second reply to GET DATA": ("GET DATA", lambda f: ["200 result= (timeout)", "200 result=1"]),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_wire_out_of_step_sends_the_caller_to_an_operator_and_places_no_order(calls, fault):
    loop = asyncio.get_running_loop()
    command, lines = FAULTS[fault]
    faulted_at: list[float] = []

    def misbehave(cmd):
        if not faulted_at:
            faulted_at.append(loop.time())
            return lines(fake)
        return None  # the built-in Asterisk: the resync marker, the hand-over

    fake = FakeAsterisk({command: misbehave}, inputs=[], check_files=True)
    before = await orders(calls.store)
    with structlog.testing.capture_logs() as logs:
        await calls.call(KNOWN, fake=fake)
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "protocol_error")
    assert fake.variables["IVR_CUSTOMER_ID"] == "C001" or command != "GET DATA"
    assert "IVR_ORDER_ID" not in fake.variables
    assert fake.closed_at - faulted_at[0] < HAND_OVER + 1.0  # the duplicate waits for the next command
    if command == "GET DATA":
        assert fake.closed_at - faulted_at[0] < HAND_OVER
    assert await orders(calls.store) == before

    call = await wait_for(lambda: ended(calls.store, fake))
    assert (call.reason, call.order_id) == ("protocol_error", None)
    events = await calls.store.call_timeline(call.call_id)
    keys = [e.data.get("digits") for e in events if e.kind == "dtmf.received"]
    assert "1" not in keys, "nothing on a wire out of step is the caller's key"
    assert "call.error" in [e.kind for e in events]
    assert len([e for e in logs if e["event"] == "agi_protocol_error"]) == 1
    assert [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical")] == []


async def ended(store, fake: FakeAsterisk):
    call = await store.get_call(fake.channel_vars["CHANNEL(linkedid)"])
    return call if call is not None and call.outcome else None


@pytest.mark.parametrize(
    "raw",
    ["Алексей Сергеевич".encode("cp1251"), "Aleksêj Sergéevič".encode("latin-1", "replace")],
    ids=["cp1251", "latin-1"],
)
async def test_a_known_caller_with_a_non_utf8_name_is_served(calls, raw):
    before = await orders(calls.store)
    fake = await calls.call(KNOWN, ["1"], caller_name=raw)
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("done", "order_placed")
    assert fake.variables["IVR_CUSTOMER_ID"] == "C001"
    call = await wait_for(lambda: ended(calls.store, fake))
    assert (call.outcome, call.order_id) == ("order_placed", fake.variables["IVR_ORDER_ID"])
    assert await orders(calls.store) == before + 1


async def _reset(fake: FakeAsterisk):
    """The connection is reset while Asterisk plays the menu (a crash, a NAT that forgot us)."""
    fake._writer.transport.abort()
    await asyncio.Event().wait()  # this fake channel says nothing more


# What the peer does wrong, not a bug of ours: the log gets one line for it, never a traceback.
PEER_FAULTS = {
    "510 to ANSWER": ({"ANSWER": R510}, ["call.agi_failed"]),
    "520 usage block to GET DATA": ({"GET DATA": lambda cmd: usage_520("GET DATA")}, ["call.agi_failed"]),
    "garbage instead of the linkedid": ({"GET VARIABLE CHANNEL(linkedid)": "\x00\xff garbage"},
                                        ["agi_protocol_error"]),
    "reset during GET DATA": (None, []),
}


@pytest.mark.parametrize("fault", list(PEER_FAULTS))
async def test_a_peer_fault_is_one_log_line_never_a_traceback(calls, fault):
    rules, lines = PEER_FAULTS[fault]
    fake = FakeAsterisk(rules or {"GET DATA": lambda cmd: _reset(fake)}, inputs=[], check_files=True)
    with structlog.testing.capture_logs() as logs:
        await fake.connect("127.0.0.1", calls.server.port, caller_id=KNOWN)
        call = await wait_for(lambda: ended(calls.store, fake), 20)
        await fake.close()
    assert [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical", "exception")] == []
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == lines, logs
    if rules is not None:
        # Handed over; the row says the robot failed, and why.
        assert (fake.variables["IVR_RESULT"], call.outcome) == ("operator", "error")
        assert call.reason == fake.variables["IVR_REASON"] in ("agi_error", "protocol_error")
