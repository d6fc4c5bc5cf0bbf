"""Stopping the service (SIGTERM) with calls in progress, through the composition root itself.

The order of events is explicit: the fake Asterisk holds a command until the test (or the server's
cut) releases it, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
import structlog

from crm_bridge.contract.outcomes import Reason
from crm_bridge.demo import load_demo_data
from ivr.app import Seams, StartupError, start_service
from tests.calls.harness import database_url, harness_settings, wait_for
from tests.fakeasterisk import TIMEOUT, FakeAsterisk
from tests.feeds import next_card, next_message

BOUND = 30.0  # a bound on waits for explicit events, never a pause
STOP_WITH_A_PAGE = 3.0  # issue 10: a stop took 48 s with an operator page open; it must take seconds


@pytest.fixture
def prompts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prompts")


def failures(logs: list[dict]) -> list[dict]:
    """Lines that would show a traceback or an error in production."""
    return [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical", "exception")]


async def ended_call(store, call_id: str):
    async def ended():
        call = await store.get_call(call_id)
        return call if call is not None and call.outcome else None

    return await wait_for(ended)


async def test_a_call_still_running_when_the_drain_ends_goes_to_an_operator_with_reason_shutdown(store, prompts_dir):
    await load_demo_data(store.sessions)
    service = await start_service(harness_settings(database_url(store), prompts_dir, agi={"drain_seconds": 0.0}),
                                  migrate=False)
    in_menu = asyncio.Event()

    async def menu(_command):
        in_menu.set()
        await service.shutdown.cut.wait()  # Asterisk plays the menu until the server gives up on the call
        return TIMEOUT

    fake = FakeAsterisk({"GET DATA": menu}, check_files=True)
    with structlog.testing.capture_logs() as logs:
        await fake.connect("127.0.0.1", service.agi.port, caller_id="+79161234567")
        await asyncio.wait_for(in_menu.wait(), BOUND)
        await service.stop()
    assert fake.closed_by_server
    # The dialplan queues the caller and knows why.
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", Reason.SHUTDOWN)
    call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
    assert (call.outcome, call.reason) == ("operator", Reason.SHUTDOWN)
    assert [e["step"] for e in logs if e["event"] == "call.cut_at_shutdown"] == ["menu"]
    assert failures(logs) == []


async def test_a_call_that_finishes_during_the_drain_is_not_cut(store, prompts_dir):
    await load_demo_data(store.sessions)
    service = await start_service(harness_settings(database_url(store), prompts_dir, agi={"drain_seconds": 60.0}),
                                  migrate=False)
    in_menu, stopping = asyncio.Event(), asyncio.Event()

    async def menu(_command):
        in_menu.set()
        await stopping.wait()  # the caller presses 1 after SIGTERM, while the service drains
        return "200 result=1"

    fake = FakeAsterisk({"GET DATA": menu}, check_files=True)
    with structlog.testing.capture_logs() as logs:
        await fake.connect("127.0.0.1", service.agi.port, caller_id="+79161234567")
        await asyncio.wait_for(in_menu.wait(), BOUND)
        stop = asyncio.ensure_future(service.stop())
        await wait_for(lambda: any(e["event"] == "agi_draining" for e in logs), BOUND)
        # Draining: a new call is not taken (Asterisk's AGI() fails and the dialplan queues that caller).
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", service.agi.port)
        stopping.set()
        await asyncio.wait_for(stop, BOUND)
    assert not service.shutdown.cut.is_set()
    assert fake.variables["IVR_RESULT"] == "done"
    call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
    assert call.outcome == "order_placed" and call.order_id
    assert not [e for e in logs if e["event"] == "call.cut_at_shutdown"]
    assert failures(logs) == []


async def test_an_open_operator_page_does_not_hold_up_the_stop(store, prompts_dir):
    settings = harness_settings(database_url(store), prompts_dir,
                                web={"enabled": True, "host": "127.0.0.1", "port": 0, "api_token": "t0ken"})
    service = await start_service(settings, migrate=False)
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{service.web_port}/api/v1/operators/101/feed?token=t0ken"
        async with http.ws_connect(url) as ws:
            first = await next_card(ws, BOUND)
            assert first["state"] == "free"
            link = await next_message(ws, BOUND)
            assert (link["type"], link["ami"]) == ("link", "disabled")  # the harness runs without AMI
            # aiohttp would wait a minute for this handler; the feed is closed instead ("going away"),
            # and the page (reading, as a browser does) reconnects to the next process.
            stop = asyncio.ensure_future(service.stop())
            closing = await asyncio.wait_for(ws.receive(), BOUND)
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY)
            await asyncio.wait_for(stop, STOP_WITH_A_PAGE)


async def test_a_page_that_never_answers_the_close_does_not_hold_up_the_stop(store, prompts_dir):
    """A laptop gone to sleep, a frozen tab: the close is sent, its answer never comes. The stop
    waits for it no longer than FEED_CLOSE_SECONDS (aiohttp's own default is 10 s per socket)."""
    settings = harness_settings(database_url(store), prompts_dir,
                                web={"enabled": True, "host": "127.0.0.1", "port": 0, "api_token": "t0ken"})
    service = await start_service(settings, migrate=False)
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{service.web_port}/api/v1/operators/101/feed?token=t0ken"
        async with http.ws_connect(url, autoclose=False, autoping=False) as ws:
            assert (await next_card(ws, BOUND))["state"] == "free"
            # nothing reads the socket from now on: the server's close is never answered
            started = time.monotonic()
            await asyncio.wait_for(service.stop(), BOUND)
            took = time.monotonic() - started
    assert took < STOP_WITH_A_PAGE, f"the stop took {took:.2f} s"


async def test_a_taken_web_port_stops_everything_started_with_one_clear_error(store, prompts_dir):
    with socket.socket() as taken, socket.socket() as probe:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        probe.bind(("127.0.0.1", 0))
        agi_port = probe.getsockname()[1]
        probe.close()
        web_port = taken.getsockname()[1]
        settings = harness_settings(database_url(store), prompts_dir, agi={"port": agi_port},
                                    web={"enabled": True, "host": "127.0.0.1", "port": web_port})
        with structlog.testing.capture_logs() as logs, pytest.raises(StartupError) as raised:
            await start_service(settings, migrate=False)
    assert str(raised.value).startswith(f"web console: cannot listen on 127.0.0.1:{web_port}: ")
    # Nothing is left listening for calls: Asterisk's AGI() fails at once and the dialplan queues.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", agi_port)
    assert not [e for e in logs if e["event"] == "service_started"]
    assert failures(logs) == []


class _StuckLookup:
    """The calls' store with a caller look-up that never returns (a database that went quiet)."""

    def __init__(self, inner, entered: asyncio.Event):
        self.inner, self.entered = inner, entered

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def lookup_caller(self, raw):
        self.entered.set()
        await asyncio.Event().wait()


@pytest.mark.parametrize("where", ["STREAM FILE", "database"])
async def test_a_call_cut_in_a_prompt_or_a_database_call_is_handed_over_before_the_socket_closes(
    store, prompts_dir, where
):
    """Whatever the call waits on when the drain ends (Asterisk playing a prompt, the database), the
    dialplan gets IVR_RESULT=operator / IVR_REASON=shutdown on the wire, then the socket closes."""
    await load_demo_data(store.sessions)
    waiting = asyncio.Event()
    seams = Seams(call_store=lambda inner: _StuckLookup(inner, waiting)) if where == "database" else Seams()
    service = await start_service(harness_settings(database_url(store), prompts_dir, agi={"drain_seconds": 0.0}),
                                  migrate=False, seams=seams)

    async def prompt(command):
        waiting.set()
        await service.shutdown.cut.wait()  # Asterisk plays on until the server gives up on the call
        return "200 result=0 endpos=8000"

    fake = FakeAsterisk({"STREAM FILE": prompt} if where == "STREAM FILE" else None, check_files=True)
    with structlog.testing.capture_logs() as logs:
        await fake.connect("127.0.0.1", service.agi.port, caller_id="+79161234567")
        await asyncio.wait_for(waiting.wait(), BOUND)
        await service.stop()
    assert fake.closed_by_server
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", Reason.SHUTDOWN)
    # The hand-over is the last command the fake answered before the close.
    assert "IVR_REASON" in fake.commands[-1] and "shutdown" in fake.commands[-1], fake.commands[-3:]
    call = await ended_call(store, fake.channel_vars["CHANNEL(linkedid)"])
    assert (call.outcome, call.reason) == ("operator", Reason.SHUTDOWN)
    assert len([e for e in logs if e["event"] == "call.cut_at_shutdown"]) == 1
    assert failures(logs) == []


class _StuckCallbacks(_StuckLookup):
    """The calls' store with a callback task write that never returns."""

    async def open_callback_task(self, **kwargs):
        self.entered.set()
        await asyncio.Event().wait()


async def test_a_queue_callback_request_cut_in_its_database_write_goes_back_to_the_queue(store, prompts_dir):
    """The queue's "press 1" script obeys the cut too: IVR_RESULT=operator, IVR_REASON=shutdown, then
    the socket closes (the dialplan keeps the caller in the queue)."""
    await load_demo_data(store.sessions)
    entered = asyncio.Event()
    service = await start_service(harness_settings(database_url(store), prompts_dir, agi={"drain_seconds": 0.0}),
                                  migrate=False, seams=Seams(call_store=lambda inner: _StuckCallbacks(inner, entered)))
    fake = FakeAsterisk(check_files=True, variables={"IVR_CUSTOMER_ID": "C001"})
    with structlog.testing.capture_logs() as logs:
        await fake.connect("127.0.0.1", service.agi.port, caller_id="+79161234567", script="callback-request")
        await asyncio.wait_for(entered.wait(), BOUND)
        await service.stop()
    assert fake.closed_by_server
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", Reason.SHUTDOWN)
    assert len([e for e in logs if e["event"] == "call.cut_at_shutdown"]) == 1
    assert failures(logs) == []
