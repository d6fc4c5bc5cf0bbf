"""CallTracker fed with the captured AMI transcripts, in order, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import struct
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from crm_bridge.contract.dialplan import IvrResult
from crm_bridge.contract.outcomes import CallFacts, QueueFate, facts_implying
from crm_bridge.phones import normalize_phone
from crm_bridge.services import CrmStore
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallEvents
from ivr.calls.tracker import TrackedCall, who_hung_up
from tests.ami_tracker.conftest import OPEN_HOURS, REAL_WAV, Clock, Rig, make_rig
from tests.ami_tracker.traces import CALL_IDS, events
from tests.db.seed import IVANOV_PHONE, seed

MENU = "menu_operator_senddtmf"
SIPP = "sipp_menu_operator"


def in_order(kinds: list[str], wanted: list[str]) -> bool:
    """``wanted`` appears in ``kinds`` as a subsequence."""
    rest = iter(kinds)
    return all(any(k == w for k in rest) for w in wanted)


def renumbered(messages: list[dict[str, str]], old: str, new: str) -> list[dict[str, str]]:
    """The same call under other Asterisk ids (a second call from the same caller)."""
    return [{k: v.replace(old, new) for k, v in m.items()} for m in messages]


def var_set(template: dict[str, str], name: str, value: str) -> dict[str, str]:
    keep = ("Channel", "ChannelState", "CallerIDNum", "Uniqueid", "Linkedid")
    return {"Event": "VarSet", **{k: template[k] for k in keep if k in template}, "Variable": name, "Value": value}


async def ivr_row(store: CrmStore, call_id: str, outcome: str, reason: str) -> None:
    """What the IVR runner writes for the call before the AMI tracker refines it."""
    await store.record_call_start(
        call_id=call_id,
        caller_number=IVANOV_PHONE,
        normalized_number=IVANOV_PHONE,
        customer_id=None,
        channel="Local/start@ivr-inbound",
        script="repeat-order",
        started_at=OPEN_HOURS - timedelta(seconds=30),
    )
    await store.record_call_end(call_id, facts=facts_implying(outcome), reason=reason,
                                ended_at=OPEN_HOURS - timedelta(seconds=5))


# --- an escalated call answered by an operator ---------------------------------------------------


@pytest.mark.parametrize(
    ("trace", "queue", "wait", "interface", "name", "talk"),
    [
        (MENU, "operators", 0.0, "Local/101@operator-agent/n", "Анна Смирнова", 6.0),
        (SIPP, "operators-sip", 1.0, "PJSIP/operator1", "Олег Кузнецов", 5.0),
    ],
)
async def test_escalated_call_answered_by_an_operator(
    rig: Rig, trace: str, queue: str, wait: float, interface: str, name: str, talk: float
) -> None:
    await seed(rig.store)
    call_id = CALL_IDS[trace]
    await ivr_row(rig.store, call_id, "operator", "menu_0")
    await rig.feed(events(trace))

    call = await rig.store.get_call(call_id)
    assert call is not None
    assert (call.outcome, call.reason, call.queue, call.wait_seconds) == ("operator_answered", "menu_0", queue, wait)
    assert (call.operator_interface, call.operator_name, call.talk_seconds) == (interface, name, talk)
    assert (call.hangup_by, call.customer_id, call.transfers) == ("operator", "C1", 0)
    assert call.answered_at == OPEN_HOURS and call.queue_entered_at == OPEN_HOURS
    assert call.ended_at == OPEN_HOURS
    assert call.started_at == OPEN_HOURS - timedelta(seconds=30)  # the IVR's start is kept

    kinds = await rig.kinds(call_id)
    assert in_order(kinds, ["queue.entered", "operator.ringing", "operator.answered", "call.hungup"])
    assert "queue.abandoned" not in kinds and "callback.created" not in kinds
    assert in_order(kinds, ["call.hungup", "cdr"])  # a Cdr after the last hang-up still lands on the call
    assert await rig.store.list_tasks() == []

    # The screen pop: live listeners get who rings / answers, for which call and customer.
    pops = [e for e in rig.heard if e.kind in ("operator.ringing", "operator.answered")]
    assert [e.kind for e in pops] == ["operator.ringing", "operator.answered"]
    for event in pops:
        assert (event.call_id, event.customer_id) == (call_id, "C1")
        assert (event.data["operator_interface"], event.data["operator_name"]) == (interface, name)
    hungup = next(e for e in rig.heard if e.kind == "call.hungup")
    assert (hungup.data["who"], hungup.data["outcome"]) == ("operator", "operator_answered")

    assert rig.tracker.live_calls() == []
    assert rig.tracker.operator_state()[interface]["state"] == "free"


async def test_live_views_follow_the_call(rig: Rig) -> None:
    messages = events(MENU)
    call_id = CALL_IDS[MENU]
    seen: dict[str, tuple] = {}
    for message in messages:
        await rig.tracker.handle(message)
        name = message["Event"]
        if name in ("MixMonitorStart", "QueueCallerJoin", "AgentCalled", "AgentConnect") and name not in seen:
            live = rig.tracker.live_calls()
            op = rig.tracker.operator_state()["Local/101@operator-agent/n"]
            seen[name] = (
                [(c["call_id"], c["state"], c["queue"], c["operator"]) for c in live],
                op["state"],
                op["call_id"],
            )
    await rig.tracker.drain()
    # No call and no word from app_queue on the member yet: "unknown", never "free" by default.
    assert seen["MixMonitorStart"] == ([(call_id, "ivr", None, None)], "unknown", None)
    assert seen["QueueCallerJoin"] == ([(call_id, "queue", "operators", None)], "unknown", None)
    assert seen["AgentCalled"] == ([(call_id, "queue", "operators", None)], "ringing", call_id)
    assert seen["AgentConnect"] == (
        [(call_id, "operator", "operators", "Local/101@operator-agent/n")],
        "talking",
        call_id,
    )
    assert rig.tracker.live_calls() == []
    # Free because app_queue said so (QueueMemberStatus Status 1 after the hang-up).
    assert rig.tracker.operator_state()["Local/101@operator-agent/n"] == {
        "state": "free",
        "call_id": None,
        "name": "Анна Смирнова",
        "since": OPEN_HOURS.isoformat(),
        "paused_reason": None,
    }


async def test_caller_hanging_up_on_the_operator(rig: Rig) -> None:
    await rig.feed(events("hangup_queue"))
    call = await rig.store.get_call(CALL_IDS["hangup_queue"])
    assert call is not None
    assert (call.outcome, call.hangup_by, call.talk_seconds) == ("operator_answered", "caller", 2.0)


# --- abandoned in the queue -> one callback task -----------------------------------------------


async def test_queue_abandon_opens_one_callback_task_even_for_a_second_call(rig: Rig) -> None:
    await seed(rig.store)
    call_id = CALL_IDS["queue_abandon"]
    await ivr_row(rig.store, call_id, "operator", "unknown_caller")
    with capture_logs() as logs:
        await rig.feed(events("queue_abandon"))

    call = await rig.store.get_call(call_id)
    assert call is not None
    assert (call.outcome, call.queue, call.wait_seconds, call.hangup_by) == (
        "abandoned_in_queue",
        "operators-noanswer",
        7.0,
        "caller",
    )
    assert call.answered_at is None and call.operator_interface is None
    kinds = await rig.kinds(call_id)
    assert in_order(
        kinds,
        [
            "queue.entered",
            "operator.ringing",
            "operator.no_answer",
            "operator.ringing",
            "queue.abandoned",
            "call.hungup",
            "callback.created",
        ],
    )
    abandoned = next(e for e in rig.heard if e.kind == "queue.abandoned")
    assert abandoned.data["wait_seconds"] == 7.0
    no_answer = next(e for e in rig.heard if e.kind == "operator.no_answer")
    assert no_answer.data["ring_seconds"] == 3.0
    assert not [entry for entry in logs if entry["log_level"] == "error"]

    (task,) = await rig.store.list_tasks()
    assert (task.customer_id, task.number, task.reason, task.call_id) == (
        "C1",
        IVANOV_PHONE,
        "abandoned_in_queue",
        call_id,
    )
    assert (task.status, task.attempts, task.due_at) == ("open", 1, OPEN_HOURS)  # inside hours: due now
    assert rig.tracker.operator_state()["Local/102@operator-noanswer/n"]["state"] == "free"

    # The same caller gives up again a few minutes later: still one open task, two attempts.
    rig.clock.now = OPEN_HOURS + timedelta(minutes=5)
    await rig.feed(renumbered(events("queue_abandon"), "17957510", "27957510"))
    second = await rig.store.get_call("2795751049.18")
    assert second is not None and second.outcome == "abandoned_in_queue"
    (task,) = await rig.store.list_tasks()
    assert (task.attempts, task.call_id) == (2, call_id)
    created = [e.data["created"] for e in rig.heard if e.kind == "callback.created"]
    assert created == [True, False]


async def test_unknown_caller_abandoning_gets_a_task_by_number(rig: Rig) -> None:
    await rig.feed(events("queue_abandon"))  # nobody seeded: the number is all we have
    (task,) = await rig.store.list_tasks()
    assert (task.customer_id, task.number) == (None, normalize_phone("+79161234567"))


async def test_abandon_outside_business_hours_is_due_after_the_next_opening(store: CrmStore, recordings) -> None:
    # Saturday 2026-11-28 21:00 Moscow: closed; Sunday is not a working day -> Monday 09:00 + 30 min.
    rig = make_rig(store, recordings, Clock(datetime(2026, 11, 28, 18, 0, tzinfo=UTC)))
    await rig.feed(events("queue_abandon"))
    await rig.records.drain(5.0)
    (task,) = await rig.store.list_tasks()
    assert task.due_at == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)


def test_callback_due_time_rules() -> None:
    hours = BusinessHours(holidays=(datetime(2026, 11, 30).date(),))
    assert hours.callback_due(OPEN_HOURS) == OPEN_HOURS
    early = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)  # 07:00 Moscow, same day opening at 09:00
    assert hours.callback_due(early) == datetime(2026, 11, 26, 6, 30, tzinfo=UTC)
    saturday_night = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)  # Monday is a holiday -> Tuesday
    assert hours.callback_due(saturday_night) == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


# --- the IVR's own outcomes, refined --------------------------------------------------------------


async def test_hangup_during_the_ivr_is_abandoned_in_ivr(rig: Rig) -> None:
    call_id = CALL_IDS["hangup_getdata"]
    await ivr_row(rig.store, call_id, "abandoned", "hangup_at_menu")
    await rig.feed(events("hangup_getdata"))
    call = await rig.store.get_call(call_id)
    assert call is not None
    assert (call.outcome, call.reason, call.hangup_by, call.queue) == (
        "abandoned_in_ivr",
        "hangup_at_menu",
        "caller",
        None,
    )
    assert await rig.store.list_tasks() == []
    # Both Cdr (sent before the hang-ups, one even before the call showed it was ours) are kept.
    assert await rig.kinds(call_id) == ["cdr", "cdr", "call.hungup"]


async def test_hangup_during_the_ivr_before_the_runner_wrote_its_row(rig: Rig) -> None:
    call_id = CALL_IDS["hangup_getdata"]
    await rig.feed(events("hangup_getdata"))
    # The runner's end of call arrives late: it must not undo the refined outcome.
    await rig.store.record_call_end(call_id, facts=facts_implying("abandoned"), reason="hangup_at_menu",
                                    ended_at=OPEN_HOURS)
    call = await rig.store.get_call(call_id)
    assert call is not None and (call.outcome, call.reason) == ("abandoned_in_ivr", "hangup_at_menu")


async def test_order_placed_by_the_ivr_is_kept(rig: Rig) -> None:
    call_id = "1795751100.34"
    await ivr_row(rig.store, call_id, "order_placed", "done")
    await rig.feed(events("menu_repeat_order_senddtmf"))
    call = await rig.store.get_call(call_id)
    assert call is not None
    assert (call.outcome, call.hangup_by, call.order_id) == ("order_placed", "system", "A-1002")
    assert await rig.store.list_tasks() == []


async def test_a_callback_saved_by_the_script_is_counted_once(rig: Rig) -> None:
    """The queue's callback key: the script saved the task and set IVR_CALLBACK; the dialplan hung up."""
    call_id = CALL_IDS["menu_repeat_order_senddtmf"]
    saved, _ = await rig.store.open_callback_task(
        customer_id=None, number=IVANOV_PHONE, reason="callback_requested", due_at=OPEN_HOURS, call_id=call_id
    )
    messages = events("menu_repeat_order_senddtmf")
    at = next(i for i, m in enumerate(messages) if m.get("Variable") == "IVR_RESULT")
    messages.insert(at, var_set(messages[at], "IVR_CALLBACK", "1"))
    await rig.feed(messages)
    call = await rig.store.get_call(call_id)
    assert call is not None and (call.outcome, call.hangup_by) == ("callback_requested", "system")
    (task,) = await rig.store.list_tasks()
    assert (task.task_id, task.attempts, task.reason) == (saved.task_id, 1, "callback_requested")


@pytest.mark.parametrize("reason", ["server_lost", "server_unreachable"])
async def test_a_call_our_server_left_without_a_result_keeps_the_dialplans_reason(rig: Rig, reason: str) -> None:
    messages = events(MENU)
    at = next(i for i, m in enumerate(messages) if m.get("Event") == "QueueCallerJoin")
    messages.insert(at, var_set(messages[at], "IVR_REASON", reason))
    await rig.feed(messages)
    call = await rig.store.get_call(CALL_IDS[MENU])
    assert call is not None and (call.outcome, call.reason) == ("operator_answered", reason)


# Who ended each captured call, as the people on the line saw it.
WHO_HUNG_UP = [
    ("sipp_hangup_getdata", "caller"),  # SIP BYE during GET DATA: HangupRequest on the trunk leg
    ("hangup_getdata", "caller"),  # Local caller: its ;1 half soft-hung-up first
    ("hangup_idle", "caller"),
    ("hangup_stream", "caller"),
    ("queue_abandon", "caller"),  # an unanswered operator leg hung up before: it says nothing
    ("menu_repeat_order_senddtmf", "system"),  # Hangup() after the robot's goodbye
    ("hangup_queue", "caller"),  # AgentComplete Reason: caller
    ("full", "operator"),  # AgentComplete Reason: agent
    ("sipp_menu_operator", "operator"),
]


@pytest.mark.parametrize(("trace", "who"), WHO_HUNG_UP)
async def test_who_hung_up_comes_from_the_hangup_requests(rig: Rig, trace: str, who: str) -> None:
    await rig.feed(events(trace))
    call = await rig.store.get_call(CALL_IDS[trace])
    assert call is not None and call.hangup_by == who


# who_hung_up: one rule, Asterisk's word first, the call's facts only when Asterisk said nothing.
# (queue's word, [(uniqueid, request source)], facts) -> who
_LEG, _ORIGIN = "1.2", "1.1"  # our dialplan's leg of call "1.1", and the call's originating channel
WHO_RULE = [
    ("operator", [(_LEG, "far_end")], CallFacts(queue=QueueFate.ANSWERED), "operator"),  # AgentComplete wins
    (None, [(_LEG, "asterisk")], CallFacts(hung_up_in_ivr=True), "system"),  # Asterisk's request beats the facts
    (None, [(_LEG, "far_end")], CallFacts(ivr_result=IvrResult.DONE), "caller"),  # hung up during the goodbye
    (None, [("9.9", "far_end"), (_ORIGIN, "asterisk")], CallFacts(), "caller"),  # an operator leg says nothing
    (None, [(_ORIGIN, "far_end")], CallFacts(), "system"),  # our leg went first
    (None, [], CallFacts(ivr_result=IvrResult.DONE), "system"),  # no request: the dialplan's Hangup()
    (None, [], CallFacts(queue=QueueFate.TIMED_OUT), "system"),  # no request: Queue() gave up
    (None, [], CallFacts(hung_up_in_ivr=True), "caller"),
]


@pytest.mark.parametrize(("queue_word", "requests", "facts", "who"), WHO_RULE)
def test_who_hung_up_rule(queue_word, requests, facts, who) -> None:
    call = TrackedCall(call_id=_ORIGIN, events=CallEvents(_ORIGIN), since=OPEN_HOURS, last_seen=OPEN_HOURS,
                       hangup_by=queue_word, ivr_legs={_LEG}, hangup_requests=list(requests))
    assert who_hung_up(call, facts) == who


async def test_unrelated_calls_leave_no_row(rig: Rig) -> None:
    internal = [
        {
            "Event": "Newchannel",
            "Channel": "PJSIP/101-00000001",
            "CallerIDNum": "101",
            "Uniqueid": "9.1",
            "Linkedid": "9.1",
            "Context": "internal",
        },
        {
            "Event": "Hangup",
            "Channel": "PJSIP/101-00000001",
            "CallerIDNum": "101",
            "Uniqueid": "9.1",
            "Linkedid": "9.1",
            "Cause": "16",
            "Cause-txt": "Normal Clearing",
        },
    ]
    await rig.feed(internal)
    assert await rig.store.get_call("9.1") is None
    assert await rig.store.call_timeline("9.1") == []


# --- robustness ------------------------------------------------------------------------------------


async def test_a_call_never_seen_begin_is_created_from_ami(rig: Rig) -> None:
    messages = events(MENU)
    start = next(i for i, m in enumerate(messages) if m["Event"] == "QueueCallerJoin")
    await rig.feed(messages[start:])  # the tracker (re)started while the caller was in the IVR
    call_id = CALL_IDS[MENU]
    call = await rig.store.get_call(call_id)
    assert call is not None
    assert (call.outcome, call.queue, call.operator_interface, call.talk_seconds) == (
        "operator_answered",
        "operators",
        "Local/101@operator-agent/n",
        6.0,
    )
    assert (call.caller_number, call.normalized_number, call.started_at) == ("+79161234567", IVANOV_PHONE, OPEN_HOURS)
    assert [c.call_id for c in await rig.store.list_calls()] == [call_id]
    kinds = await rig.kinds(call_id)
    assert kinds.count("call.hungup") == 1
    assert in_order(kinds, ["queue.entered", "operator.ringing", "operator.answered", "call.hungup"])


GARBAGE = [
    {"Event": "QueueCallerJoin", "Channel": "x", "Uniqueid": "1.1", "Queue": "operators"},  # no Linkedid
    {
        "Event": "AgentConnect",
        "Linkedid": "1795751090.30",
        "Uniqueid": "1795751090.31",
        "Interface": "PJSIP/9",
        "HoldTime": "abc",
    },
    {
        "Event": "QueueCallerAbandon",
        "Linkedid": "1795751090.30",
        "Uniqueid": "1795751090.31",
        "Queue": "operators",
        "HoldTime": "",
    },
    {"Event": "SomethingNew", "Linkedid": "1795751090.30"},
    {"Event": "Cdr", "UniqueID": "0.0", "Duration": "1", "BillableSeconds": "1"},  # unknown channel
    {"Response": "Success", "ActionID": "42"},
    {},
    {"Event": "Hangup"},
]


async def test_malformed_and_unknown_events_are_logged_and_skipped(rig: Rig) -> None:
    messages = events(MENU)
    mixed = []
    for i, message in enumerate(messages):
        mixed.append(message)
        if i % 25 == 0:
            mixed.extend(GARBAGE)
    with capture_logs() as logs:
        await rig.feed(mixed)
    rejected = [entry for entry in logs if entry["event"] == "ami_event_rejected"]
    assert rejected and all(entry["reason"] for entry in rejected)
    assert {entry["ami_event"] for entry in rejected} >= {"QueueCallerJoin", "AgentConnect", "QueueCallerAbandon"}
    assert not [entry for entry in logs if entry["event"] == "ami_event_failed"]
    call = await rig.store.get_call(CALL_IDS[MENU])
    assert call is not None
    assert (call.outcome, call.operator_interface, call.wait_seconds) == (
        "operator_answered",
        "Local/101@operator-agent/n",
        0.0,
    )


async def test_store_failures_do_not_stop_the_tracking(rig: Rig) -> None:
    class Broken:
        def __getattr__(self, name):
            async def fail(*args, **kwargs):
                raise RuntimeError("database down")

            return fail

    real = rig.tracker._store
    rig.tracker._store = Broken()
    with capture_logs() as logs:
        for message in events(MENU)[:120]:
            await rig.tracker.handle(message)
    assert [e for e in logs if e["event"] == "tracker_store_failed"]
    rig.tracker._store = real
    await rig.feed(events(MENU)[120:])
    call = await rig.store.get_call(CALL_IDS[MENU])
    assert call is not None and call.outcome == "operator_answered"


# --- resync after an AMI reconnect ----------------------------------------------------------------


def _actions_items(action_id: str) -> list[dict[str, str]]:
    return [m for m in events("actions") if m["Event"] == "CoreShowChannel" and m.get("ActionID") == action_id]


async def test_resync_finalizes_a_call_that_vanished(rig: Rig) -> None:
    messages = events(MENU)
    cut = next(i for i, m in enumerate(messages) if m["Event"] == "AgentConnect") + 1
    await rig.feed(messages[:cut])
    assert [c["state"] for c in rig.tracker.live_calls()] == ["operator"]
    rig.clock.now = OPEN_HOURS + timedelta(seconds=40)
    with capture_logs() as logs:
        await rig.tracker.resync([])  # reconnected: Asterisk has no channel of that call any more
    assert [e for e in logs if e["event"] == "call_ended_while_disconnected"]
    assert rig.tracker.live_calls() == []
    # off the call; the snapshot lists no queue member, so nothing says the operator is free
    op = rig.tracker.operator_state()["Local/101@operator-agent/n"]
    assert (op["state"], op["call_id"]) == ("unknown", None)
    await rig.records.sync()
    call = await rig.store.get_call(CALL_IDS[MENU])
    assert call is not None
    assert (call.outcome, call.reason, call.talk_seconds, call.hangup_by) == (
        "operator_answered",
        "ended_while_disconnected",
        40.0,
        None,
    )
    assert call.ended_at == OPEN_HOURS + timedelta(seconds=40)
    # Late events of that call (replayed or stray) change nothing.
    await rig.feed(messages[cut:])
    assert (await rig.kinds(CALL_IDS[MENU])).count("call.hungup") == 1


async def test_resync_keeps_live_calls_and_adopts_unknown_ones(rig: Rig) -> None:
    await rig.tracker.resync(_actions_items("act-7"))  # a caller in our IVR we never heard of
    (live,) = rig.tracker.live_calls()
    assert (live["call_id"], live["state"], live["caller"]) == ("1795751132.39", "ivr", "+79161234567")
    await rig.tracker.resync(_actions_items("act-16"))  # later: bridged to an operator inside Queue()
    (live,) = rig.tracker.live_calls()
    assert (live["state"], live["queue"]) == ("operator", "operators")
    hangups = [
        {
            "Event": "Hangup",
            "Channel": item["Channel"],
            "Uniqueid": item["Uniqueid"],
            "Linkedid": item["Linkedid"],
            "CallerIDNum": item["CallerIDNum"],
            "Cause": "16",
            "Cause-txt": "Normal Clearing",
        }
        for item in _actions_items("act-16")
    ]
    await rig.feed(hangups)
    assert rig.tracker.live_calls() == []
    call = await rig.store.get_call("1795751132.39")
    assert call is not None and call.outcome == "operator_answered" and call.queue == "operators"


async def test_idle_calls_are_evicted(rig: Rig) -> None:
    messages = events(MENU)
    cut = next(i for i, m in enumerate(messages) if m["Event"] == "QueueCallerJoin") + 1
    await rig.feed(messages[:cut])
    assert len(rig.tracker.live_calls()) == 1
    rig.clock.now = OPEN_HOURS + timedelta(hours=7)
    await rig.tracker.handle({"Event": "Newchannel", "Channel": "PJSIP/x-1", "Uniqueid": "5.5", "Linkedid": "5.5"})
    assert rig.tracker.live_calls() == []
    assert list(rig.tracker._calls) == ["5.5"]


# --- recordings ---------------------------------------------------------------------------------------


def with_ivr_recording(trace: str, path: str) -> list[dict[str, str]]:
    """The trace as our dialplan would make it: IVR_RECORDING set before MixMonitor starts."""
    messages = events(trace)
    at = next(i for i, m in enumerate(messages) if m["Event"] == "MixMonitorStart")
    messages.insert(at, var_set(messages[at], "IVR_RECORDING", path))
    return messages


async def test_recording_ready_with_real_seconds_and_bytes(rig: Rig) -> None:
    call_id = CALL_IDS[SIPP]
    local = rig.recordings / "ivr" / "2026" / "11" / "27" / f"call-{call_id}.wav"
    local.parent.mkdir(parents=True)
    shutil.copy(REAL_WAV, local)
    await rig.feed(with_ivr_recording(SIPP, f"/var/spool/asterisk/monitor/ivr/2026/11/27/call-{call_id}.wav"))
    call = await rig.store.get_call(call_id)
    assert call is not None
    assert (call.recording_path, call.recording_seconds, call.recording_bytes) == (str(local), 6.8, 108844)
    ready = next(e for e in rig.heard if e.kind == "recording.ready")
    assert ready.data == {"path": str(local), "seconds": 6.8, "bytes": 108844}
    assert in_order(await rig.kinds(call_id), ["call.hungup", "recording.ready"])


async def test_mixmonitor_filename_is_used_without_ivr_recording(rig: Rig) -> None:
    shutil.copy(REAL_WAV, rig.recordings / "menu-1795751090_31.wav")
    await rig.feed(events(MENU))
    call = await rig.store.get_call(CALL_IDS[MENU])
    assert call is not None and call.recording_bytes == 108844


async def test_recording_written_late_is_found_on_the_retry(rig: Rig) -> None:
    target = rig.recordings / "menu-1795751090_31.wav"
    for message in events(MENU):
        await rig.tracker.handle(message)
    assert rig.tracker._tasks  # the first look found nothing: a retry is pending, the stream went on
    shutil.copy(REAL_WAV, target)
    await rig.tracker.drain()
    await rig.records.sync()
    call = await rig.store.get_call(CALL_IDS[MENU])
    assert call is not None and (call.recording_seconds, call.recording_bytes) == (6.8, 108844)


async def test_missing_recording_is_reported(rig: Rig) -> None:
    await rig.feed(events(SIPP))
    kinds = await rig.kinds(CALL_IDS[SIPP])
    assert "recording.missing" in kinds and "recording.ready" not in kinds
    call = await rig.store.get_call(CALL_IDS[SIPP])
    assert call is not None and call.recording_path is None


@pytest.mark.parametrize(
    "reported",
    ["../../etc/passwd", "/etc/passwd", "/var/spool/asterisk/monitor/../../../etc/passwd", "/tmp/elsewhere.wav"],
)
async def test_recording_paths_outside_the_directory_are_refused(rig: Rig, reported: str) -> None:
    await rig.feed(with_ivr_recording(SIPP, reported))
    call = await rig.store.get_call(CALL_IDS[SIPP])
    assert call is not None and call.recording_path is None
    refused = next(e for e in rig.heard if e.kind == "recording.refused")
    assert refused.data["path"] == reported


# A call the robot finished alone (repeat order, no queue): MixMonitor ran from answer to hang-up.
ROBOT = "menu_repeat_order_senddtmf"
ROBOT_CALL_ID = "1795751100.34"
ROBOT_RECORDING = "20261127-034501-+79161234567-1795751100.35.wav"  # MIXMONITOR_FILENAME in the trace


def header_only() -> bytes:
    """What MixMonitor leaves when no audio frame reached the file: the real recording's 44-byte
    header, closed with zero data (RIFF size 36, data size 0)."""
    header = bytearray(REAL_WAV.read_bytes()[:44])
    struct.pack_into("<I", header, 4, 36)
    struct.pack_into("<I", header, 40, 0)
    return bytes(header)


async def test_robot_only_call_has_its_recording(rig: Rig) -> None:
    await ivr_row(rig.store, ROBOT_CALL_ID, "order_placed", "done")
    shutil.copy(REAL_WAV, rig.recordings / ROBOT_RECORDING)
    await rig.feed(events(ROBOT))
    call = await rig.store.get_call(ROBOT_CALL_ID)
    assert call is not None and call.queue is None and call.outcome == "order_placed"
    assert (call.recording_path, call.recording_seconds) == (str(rig.recordings.resolve() / ROBOT_RECORDING), 6.8)
    assert "recording.ready" in await rig.kinds(ROBOT_CALL_ID)


async def test_a_header_without_audio_is_never_announced(rig: Rig) -> None:
    """The 44-byte WAV of a MixMonitor that recorded nothing: no recording.ready, no player on the
    call row, no timeline entry, one warning that says which file and why."""
    await ivr_row(rig.store, ROBOT_CALL_ID, "order_placed", "done")
    (rig.recordings / ROBOT_RECORDING).write_bytes(header_only())
    with capture_logs() as logs:
        await rig.feed(events(ROBOT))
    call = await rig.store.get_call(ROBOT_CALL_ID)
    assert call is not None and call.outcome == "order_placed"
    assert (call.recording_path, call.recording_seconds, call.recording_bytes) == (None, None, None)
    kinds = await rig.kinds(ROBOT_CALL_ID)
    assert not [k for k in kinds if k.startswith("recording.")], kinds
    assert not [e for e in rig.heard if e.kind.startswith("recording.")]
    empty = [entry for entry in logs if entry["event"] == "recording_empty"]
    assert [(e["call_id"], e["bytes"], e["log_level"]) for e in empty] == [(ROBOT_CALL_ID, 44, "warning")]
    assert empty[0]["path"] == str(rig.recordings.resolve() / ROBOT_RECORDING)


async def test_a_header_at_hang_up_then_flushed_audio_is_announced_on_the_retry(rig: Rig) -> None:
    """MixMonitor flushes and closes the file after the channel is gone: the first look may see
    the header alone; the retry finds the audio."""
    target = rig.recordings / ROBOT_RECORDING
    target.write_bytes(header_only())
    for message in events(ROBOT):
        await rig.tracker.handle(message)
    assert rig.tracker._tasks  # the header alone was not announced: a second look is pending
    shutil.copy(REAL_WAV, target)
    await rig.tracker.drain()
    await rig.records.sync()
    call = await rig.store.get_call(ROBOT_CALL_ID)
    assert call is not None and (call.recording_seconds, call.recording_bytes) == (6.8, 108844)


async def test_operator_state_is_the_queue_members_word_unless_a_call_says_more(rig: Rig) -> None:
    operator = "Local/101@operator-agent/n"
    member = {"Event": "QueueMember", "Queue": "operators", "Name": "Operator 101", "Location": operator,
              "StateInterface": operator, "InCall": "0", "Status": "1", "Paused": "1", "PausedReason": "обед"}
    await rig.tracker.resync([member])  # the QueueStatus snapshot after a login
    op = rig.tracker.operator_state()[operator]
    assert (op["state"], op["paused_reason"], op["name"]) == ("paused", "обед", "Анна Смирнова")
    messages = events(MENU)
    await rig.feed(messages[: next(i for i, m in enumerate(messages) if m["Event"] == "AgentCalled") + 1])
    assert rig.tracker.operator_state()[operator]["state"] == "ringing"  # the call decides
    rig.tracker.forget_members()  # AMI went away
    assert rig.tracker.operator_state()[operator]["state"] == "ringing"
    other = "PJSIP/199"
    await rig.tracker.handle({"Event": "QueueMemberStatus", "Queue": "operators", "Interface": other,
                              "MemberName": "Гость", "Status": "5", "Paused": "0", "InCall": "0"})
    assert rig.tracker.operator_state()[other] == {"state": "unavailable", "call_id": None, "name": "Гость",
                                                   "since": OPEN_HOURS.isoformat(), "paused_reason": None}
