"""The real AMI traces replayed through a fake AMI server over TCP: AMI client -> call tracker ->
call rows, timeline, callback tasks and the operator's WebSocket feed, exactly as the service wires
them (ivr/app.py). The IVR part of the escalated call runs first through the real FastAGI server.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm_bridge.contract.outcomes import HangupBy, Outcome, Reason
from crm_bridge.demo import load_demo_data
from crm_bridge.stats import call_statistics
from ivr.ami.client import AmiClient
from ivr.calls.recordings import RecordingLocator
from ivr.calls.screen_pop import OperatorBoard
from ivr.calls.tracker import CallTracker
from ivr.settings import AmiSettings
from ivr.web.api import build_web_app
from tests.ami_tracker.conftest import REAL_WAV
from tests.ami_tracker.traces import CALL_IDS, TRACES
from tests.calls.harness import ALWAYS_OPEN, start_harness, wait_for
from tests.fakeami import FakeAmi, core_show_channel, load_trace_events
from tests.fakeasterisk import FakeAsterisk
from tests.feeds import next_card

TOKEN = "t"
OPERATOR = "Local/101@operator-agent/n"  # the queue member interface in the traces


class Rig:
    def __init__(self, store, tmp_path):
        self.store = store
        self.tmp_path = tmp_path

    async def start(self, *, secret: str = "ivrsecret") -> Rig:
        await load_demo_data(self.store.sessions)
        self.calls = await start_harness(self.store, self.tmp_path / "prompts")
        self.board = OperatorBoard(self.store, {OPERATOR: "Анна Смирнова"})
        self.calls.notifier.subscribe(self.board.on_event)
        self.recordings_dir = self.tmp_path / "monitor"
        self.recordings_dir.mkdir()
        self.tracker = CallTracker(
            self.store, self.calls.notifier, records=self.calls.records,
            recordings=RecordingLocator(self.recordings_dir, "/var/spool/asterisk/monitor"),
            operator_names={OPERATOR: "Анна Смирнова"}, hours=ALWAYS_OPEN, recording_retry_delay=0.05,
        )
        self.fake_ami = await FakeAmi().start()
        settings = AmiSettings(host="127.0.0.1", port=self.fake_ami.port, username="ivr", secret=secret,
                               ping_interval=5.0, action_timeout=1.0, reconnect_min=0.05, reconnect_max=0.2,
                               max_queued_events=10000)
        self.resyncs = 0
        self.ami = AmiClient(settings, self.tracker.handle, on_resync=self._resync)
        await self.ami.start()
        self.web = TestClient(TestServer(build_web_app(self.store, api_token=TOKEN, board=self.board)))
        await self.web.start_server()
        return self

    async def _resync(self, items) -> None:
        await self.tracker.resync(items)
        self.resyncs += 1

    async def stop(self) -> None:
        await self.ami.stop()
        await self.tracker.drain()
        await self.fake_ami.stop()
        await self.web.close()
        await self.board.close()
        await self.calls.stop()

    async def call_row(self, call_id: str, outcome: str):
        async def check():
            call = await self.store.get_call(call_id)
            return call if call is not None and call.outcome == outcome else None

        return await wait_for(check, timeout=5.0)


@pytest.fixture
async def rig(store, tmp_path):
    rig = await Rig(store, tmp_path).start()
    # Logged in and the first snapshot taken: events pushed now come after it, as in real life.
    await wait_for(lambda: rig.resyncs >= 1)
    yield rig
    await rig.stop()


async def test_escalated_call_is_tracked_and_popped_on_the_operator_screen(rig):
    call_id = CALL_IDS["menu_operator_senddtmf"]
    # The IVR part: the caller presses 0 (the AGI session has this call's linkedid).
    fake = await rig.calls.call("+79161234567", ["0"], uniqueid=call_id)
    assert fake.variables["IVR_RESULT"] == "operator"
    await rig.call_row(call_id, "operator")

    ws = await rig.web.ws_connect(f"/api/v1/operators/101/feed?token={TOKEN}")
    assert (await next_card(ws))["state"] == "free"

    # Asterisk's side of the same call, byte for byte from the trace: queue, ring, answer, hang-up.
    await rig.fake_ami.push(load_trace_events(TRACES / "menu_operator_senddtmf.txt"))
    ringing = (await next_card(ws, 2.0))
    assert ringing["state"] == "ringing"
    assert ringing["operator_name"] == "Анна Смирнова"
    assert ringing["customer"]["customer_id"] == "C001"
    assert ringing["call"]["ivr_reason"] == "caller_request"
    heard = [p["text"] for p in ringing["ivr_path"] if p["kind"] == "prompt.played"]
    assert heard[0].startswith("Здравствуйте, Алексей Сергеевич")
    assert ringing["last_orders"], "the operator sees the last orders"
    states = [ringing["state"]]
    while states[-1] != "free":
        states.append((await next_card(ws, 2.0))["state"])
    assert states == ["ringing", "talking", "free"]
    await ws.close()

    call = await rig.call_row(call_id, "operator_answered")
    assert call.operator_interface == OPERATOR and call.operator_name == "Анна Смирнова"
    assert call.queue == "operators"
    assert call.talk_seconds is not None and call.talk_seconds > 0
    assert call.wait_seconds is not None
    kinds = [e.kind for e in await rig.store.call_timeline(call_id)]
    for earlier, later in [("prompt.played", "call.escalated"), ("call.escalated", "queue.entered"),
                           ("queue.entered", "operator.ringing"), ("operator.ringing", "operator.answered"),
                           ("operator.answered", "call.hungup")]:
        assert kinds.index(earlier) < kinds.index(later), (earlier, later, kinds)


@pytest.mark.parametrize("first", ["robot", "asterisk"])
async def test_order_then_a_hang_up_during_the_goodbye_is_an_order_on_the_row_and_in_the_statistics(rig, first):
    """Issue 8, defect 1. The caller presses 1, the order is placed, and they hang up while the robot
    reads it back. The robot now sets IVR_RESULT/IVR_ORDER_ID before the read-back plays, but
    Asterisk's side of the call here is the capture made before that (hangup_stream.txt: a caller
    hanging up 1 s into STREAM FILE in ivr-inbound, no such VarSet), so the tracker alone sees a call
    that ended in the IVR. Whichever witness writes first, the row and the statistics say
    order_placed."""
    call_id = "1795751014.8"  # the Linkedid of hangup_stream.txt
    asterisk_side = load_trace_events(TRACES / "hangup_stream.txt")
    if first == "asterisk":  # the tracker closes the call before the robot's end is written
        await rig.fake_ami.push(asterisk_side)
        await wait_for(lambda: _row_with(rig.store, call_id, hangup_by=HangupBy.CALLER))
        assert (await rig.store.get_call(call_id)).outcome == Outcome.ABANDONED_IN_IVR  # all it knows
    fake = FakeAsterisk(inputs=["1"], check_files=True).hangup_at("STREAM FILE", 1)
    fake = await rig.calls.call("+79161234567", fake=fake, uniqueid=call_id)
    # Set before the read-back, so already on the channel when the caller hung up during it.
    assert fake.variables["IVR_RESULT"] == "done" and fake.variables["IVR_ORDER_ID"]
    if first == "robot":
        await rig.call_row(call_id, Outcome.ORDER_PLACED)
        await rig.fake_ami.push(asterisk_side)
        await wait_for(lambda: _row_with(rig.store, call_id, hangup_by=HangupBy.CALLER))

    call = await rig.call_row(call_id, Outcome.ORDER_PLACED)
    assert call.reason == Reason.HANGUP_AFTER_ORDER and call.order_id
    assert call.facts.order_id == call.order_id and call.facts.hung_up_in_ivr
    now = datetime.now(UTC)
    stats = await call_statistics(rig.store.sessions, min(call.started_at, now) - timedelta(minutes=1),
                                  now + timedelta(minutes=1))
    assert stats.outcome_count(Outcome.ORDER_PLACED) == 1
    assert stats.outcome_count(Outcome.ABANDONED_IN_IVR) == 0
    assert stats.ivr_orders == 1 and stats.automation_rate == 1.0
    assert dict((s.stage, s.count) for s in stats.funnel)["order_placed"] == 1


async def _row_with(store, call_id: str, **columns):
    call = await store.get_call(call_id)
    return call if call is not None and all(getattr(call, k) == v for k, v in columns.items()) else None


async def test_caller_who_gives_up_in_the_queue_gets_one_callback_task(rig):
    call_id = CALL_IDS["queue_abandon"]
    await rig.fake_ami.push(load_trace_events(TRACES / "queue_abandon.txt"))
    call = await rig.call_row(call_id, "abandoned_in_queue")
    assert call.wait_seconds is not None and call.wait_seconds >= 6
    response = await rig.web.get("/api/v1/tasks", headers={"Authorization": f"Bearer {TOKEN}"})
    (task,) = (await response.json())["tasks"]
    assert task["reason"] == "abandoned_in_queue" and task["call_id"] == call_id
    assert task["number"] == "+79161234567" and task["customer_id"] == "C001"


async def test_recording_is_attached_when_the_call_ends(rig):
    call_id = CALL_IDS["menu_operator_senddtmf"]
    events = load_trace_events(TRACES / "menu_operator_senddtmf.txt")
    # The dialplan names the file from the linkedid; the trace's recording is copied to that name.
    name = f"call-{call_id}.wav"
    shutil.copy(REAL_WAV, rig.recordings_dir / name)
    first_channel = next(e for e in events if e.get("Linkedid") == call_id)
    recording_var = {"Event": "VarSet", "Privilege": "dialplan,all", "Channel": first_channel["Channel"],
                     "Uniqueid": first_channel["Uniqueid"], "Linkedid": call_id, "Variable": "IVR_RECORDING",
                     "Value": f"/var/spool/asterisk/monitor/{name}"}
    await rig.fake_ami.push([events[0], recording_var, *events[1:]])
    call = await rig.call_row(call_id, "operator_answered")

    async def recorded():
        row = await rig.store.get_call(call_id)
        return row if row.recording_path else None

    row = await wait_for(recorded)
    assert row.recording_path.endswith(name) and row.recording_bytes == REAL_WAV.stat().st_size
    assert 6 < row.recording_seconds < 8
    assert "recording.ready" in [e.kind for e in await rig.store.call_timeline(call.call_id)]


async def test_disconnect_mid_call_then_resync_finishes_the_vanished_call(rig):
    call_id = CALL_IDS["menu_operator_senddtmf"]
    events = load_trace_events(TRACES / "menu_operator_senddtmf.txt")
    answered_at = next(i for i, e in enumerate(events) if e.get("Event") == "AgentConnect")
    await rig.fake_ami.push(events[: answered_at + 1])
    await wait_for(lambda: rig.tracker.operator_state().get(OPERATOR, {}).get("state") == "talking")
    # Asterisk restarts the connection; the call ends while we are away (no Hangup events for us).
    rig.fake_ami.channels = []
    await rig.fake_ami.drop_clients()
    await wait_for(lambda: rig.resyncs >= 2)
    call = await rig.call_row(call_id, "operator_answered")
    assert call.reason == "ended_while_disconnected"
    assert rig.tracker.live_calls() == []
    assert "CoreShowChannels" in rig.fake_ami.action_names()


async def test_resync_adopts_a_call_that_began_while_we_were_away(rig):
    rig.fake_ami.channels = [core_show_channel(Channel="PJSIP/trunk-00000042", Uniqueid="1795759999.1",
                                               Linkedid="1795759999.1", Application="Queue",
                                               ApplicationData="operators", CallerIDNum="+79031112233")]
    await rig.fake_ami.drop_clients()
    await wait_for(lambda: rig.resyncs >= 2)
    await wait_for(lambda: any(c["call_id"] == "1795759999.1" for c in rig.tracker.live_calls()))
    (live,) = [c for c in rig.tracker.live_calls() if c["call_id"] == "1795759999.1"]
    assert live["state"] == "queue"


async def test_garbage_and_unknown_events_do_not_stop_the_stream(rig):
    rig.fake_ami.send_raw(b"\x00\xff\xfe garbage without colon\r\n\r\n")
    await rig.fake_ami.push([{"Event": "SomethingNew", "Linkedid": "1.1", "Foo": "bar"},
                             {"Event": "QueueCallerAbandon", "Linkedid": "2.2", "HoldTime": "not-a-number"}])
    await rig.fake_ami.push(load_trace_events(TRACES / "queue_abandon.txt"))
    await rig.call_row(CALL_IDS["queue_abandon"], "abandoned_in_queue")
    assert rig.ami.status == "connected"


async def test_bad_secret_is_a_clear_health_status(store, tmp_path):
    rig = await Rig(store, tmp_path).start(secret="wrong")
    try:
        await wait_for(lambda: rig.ami.status == "auth_failed", timeout=3.0)
        health = rig.ami.health()
        assert "Authentication failed" in (health["last_error"] or "")
        await asyncio.sleep(0.5)
        assert rig.fake_ami.failed_logins <= 4, "no tight retry loop against Asterisk"
    finally:
        await rig.stop()


async def test_events_for_calls_we_never_saw_begin_create_their_row(rig):
    # hangup_queue: a call that went straight to the queue (our FastAGI never saw it)
    call_id = CALL_IDS["hangup_queue"]
    assert await rig.store.get_call(call_id) is None
    await rig.fake_ami.push(load_trace_events(TRACES / "hangup_queue.txt"))

    async def row():
        call = await rig.store.get_call(call_id)
        return call if call is not None and call.outcome else None

    call = await wait_for(row)
    assert call.outcome in {"abandoned_in_queue", "operator_answered", "queue_timeout"}
    assert call.queue is not None


async def test_the_service_itself_tracks_calls_from_ami(tmp_path):
    """ivr.app.start_service wires AMI -> tracker -> store -> API the same way."""
    import aiohttp

    from ivr.app import start_service
    from ivr.settings import default_settings

    fake_ami = await FakeAmi().start()
    settings = default_settings().replace(
        agi={"port": 0},
        web={"port": 0, "api_token": TOKEN},
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3"},
        prompts={"dir": str(tmp_path / "prompts"), "warm_at_start": False},
        recordings={"dir": str(tmp_path / "monitor")},
        ami={"port": fake_ami.port, "username": "ivr", "secret": "ivrsecret", "reconnect_min": 0.05},
    )
    service = await start_service(settings)
    try:
        await fake_ami.wait_for_logins(1)
        await wait_for(lambda: service.health()["ami"]["status"] == "connected")
        await fake_ami.push(load_trace_events(TRACES / "queue_abandon.txt"))
        url = f"http://127.0.0.1:{service.web_port}/api/v1/tasks"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:

            async def tasks():
                async with http.get(url) as response:
                    return (await response.json())["tasks"]

            (task,) = await wait_for(tasks)
        assert task["reason"] == "abandoned_in_queue"
    finally:
        await service.stop()
        await fake_ami.stop()
