"""The pure AMI -> CallEvent table, over real messages from the captured transcripts."""

from datetime import UTC, datetime

import pytest

from ivr.ami.events import CallEvent, Rejected, translate
from tests.ami_tracker.traces import events, first

MENU = "menu_operator_senddtmf"
ABANDON = "queue_abandon"

CASES = [
    (
        first(MENU, "Newchannel"),
        "channel.created",
        "1795751090.30",
        {"channel": "Local/start@ivr-inbound-0000000f;1", "uniqueid": "1795751090.30", "caller": None},
    ),
    (
        first("sipp_menu_operator", "Newchannel"),
        "channel.created",
        "1795751112.36",
        {"channel": "PJSIP/trunk-00000000", "caller": "+79161234567"},
    ),
    (
        first(MENU, "Hangup", Uniqueid="1795751092.33"),
        "channel.hungup",
        "1795751090.30",
        {"uniqueid": "1795751092.33", "cause": 16, "cause_txt": "Normal Clearing"},
    ),
    (
        first("sipp_hangup_getdata", "HangupRequest"),
        "channel.hangup_requested",
        "1795751123.38",
        {"uniqueid": "1795751123.38", "source": "far_end", "context": "ivr-inbound"},
    ),
    (
        first("menu_repeat_order_senddtmf", "SoftHangupRequest"),
        "channel.hangup_requested",
        "1795751100.34",
        {"uniqueid": "1795751100.35", "source": "asterisk", "context": "ivr-inbound"},
    ),
    (
        first(MENU, "QueueCallerJoin"),
        "queue.joined",
        "1795751090.30",
        {"queue": "operators", "position": 1, "count": 1, "caller": "+79161234567", "uniqueid": "1795751090.31"},
    ),
    (first(MENU, "QueueCallerLeave"), "queue.left", "1795751090.30", {"queue": "operators", "count": 0}),
    (
        first(ABANDON, "QueueCallerAbandon"),
        "queue.abandoned",
        "1795751049.18",
        {"queue": "operators-noanswer", "position": 1, "original_position": 1, "hold_time": 7.0},
    ),
    (
        first(MENU, "AgentCalled"),
        "operator.ringing",
        "1795751090.30",
        {
            "interface": "Local/101@operator-agent/n",
            "member_name": "Operator 101",
            "dest_channel": "Local/101@operator-agent-00000010;1",
            "dest_uniqueid": "1795751092.32",
        },
    ),
    (
        first(ABANDON, "AgentRingNoAnswer"),
        "operator.no_answer",
        "1795751049.18",
        {"interface": "Local/102@operator-noanswer/n", "ring_time": 3.0},  # 3000 ms on the wire
    ),
    (
        first("sipp_menu_operator", "AgentConnect"),
        "operator.answered",
        "1795751112.36",
        {"interface": "PJSIP/operator1", "member_name": "SIP Operator 1", "hold_time": 1.0, "ring_time": 0.0},
    ),
    (
        first(MENU, "AgentComplete"),
        "operator.completed",
        "1795751090.30",
        {"talk_time": 6.0, "hold_time": 0.0, "reason": "agent", "interface": "Local/101@operator-agent/n"},
    ),
    (first("hangup_queue", "AgentComplete"), "operator.completed", "1795751023.10", {"reason": "caller"}),
    (first(MENU, "MixMonitorStart"), "recording.started", "1795751090.30", {"uniqueid": "1795751090.31"}),
    (first("full", "MixMonitorStop"), "recording.stopped", "1795750923.0", {"file": None}),
    (
        first(MENU, "VarSet", Variable="MIXMONITOR_FILENAME"),
        "variable.set",
        "1795751090.30",
        {"variable": "MIXMONITOR_FILENAME", "value": "/var/spool/asterisk/monitor/menu-1795751090_31.wav"},
    ),
    (first(MENU, "VarSet", Variable="IVR_RESULT"), "variable.set", "1795751090.30", {"value": "operator"}),
    (first("full", "VarSet", Variable="IVR_CUSTOMER_ID"), "variable.set", "1795750923.0", {"value": "4711"}),
    (first("queue_continue", "VarSet", Variable="QUEUESTATUS"), "variable.set", "1795751034.14", {"value": "CONTINUE"}),
    (
        first("sipp_menu_operator", "Cdr"),
        "cdr",
        "1795751112.36",  # Cdr has no Linkedid: the channel's UniqueID
        {
            "uniqueid": "1795751112.36",
            "duration": 8,
            "billsec": 8,
            "disposition": "ANSWERED",
            "start": "2026-11-27 03:45:12",
            "answer": "2026-11-27 03:45:12",
            "end": "2026-11-27 03:45:21",
            "last_app": "Queue",
        },
    ),
    (first(ABANDON, "Cdr", UniqueID="1795751049.21"), "cdr", "1795751049.21", {"answer": None, "billsec": 0}),
]


@pytest.mark.parametrize(
    ("message", "kind", "call_id", "subset"), CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_real_messages_translate(message: dict, kind: str, call_id: str, subset: dict) -> None:
    event = translate(message)
    assert isinstance(event, CallEvent), event
    assert (event.kind, event.call_id, event.at) == (kind, call_id, None)
    assert {k: event.data.get(k) for k in subset} == subset


def test_transfers_translate() -> None:
    blind = translate(
        {
            "Event": "BlindTransfer",
            "Result": "Success",
            "TransfererChannel": "PJSIP/101-00000004",
            "TransfererLinkedid": "1795751112.36",
            "TransfereeChannel": "PJSIP/trunk-00000000",
            "TransfereeLinkedid": "1795751112.36",
            "Extension": "102",
            "Context": "operators",
        }
    )
    assert isinstance(blind, CallEvent) and blind.kind == "call.transferred" and blind.call_id == "1795751112.36"
    assert (blind.data["type"], blind.data["extension"]) == ("blind", "102")
    attended = translate(
        {"Event": "AttendedTransfer", "Result": "Success", "OrigTransfererLinkedid": "L1", "DestType": "Bridge"}
    )
    assert isinstance(attended, CallEvent) and (attended.call_id, attended.data["type"]) == ("L1", "attended")


def test_timestamp_header_gives_the_event_time() -> None:
    message = {**first(MENU, "QueueCallerJoin"), "Timestamp": "1795751090.500000"}
    event = translate(message)
    assert isinstance(event, CallEvent)
    assert event.at == datetime.fromtimestamp(1795751090.5, UTC)


def test_every_trace_message_translates_without_raising() -> None:
    kinds = set()
    for name in [
        "full",
        MENU,
        ABANDON,
        "hangup_queue",
        "queue_continue",
        "sipp_menu_operator",
        "server_down",
        "hangup_getdata",
        "actions",
        "close_early",
        "login_variants",
    ]:
        for message in events(name):
            result = translate(message)
            assert not isinstance(result, Rejected), (name, message, result)
            if result is not None:
                kinds.add(result.kind)
    assert kinds >= {
        "channel.created",
        "channel.hungup",
        "queue.joined",
        "queue.left",
        "queue.abandoned",
        "operator.ringing",
        "operator.no_answer",
        "operator.answered",
        "operator.completed",
        "recording.started",
        "recording.stopped",
        "variable.set",
        "cdr",
    }


@pytest.mark.parametrize(
    "message",
    [
        {"Event": "Response"},  # not an event of ours
        {"Response": "Success", "ActionID": "x"},
        first(MENU, "Newexten"),
        first(MENU, "CEL"),
        first(MENU, "VarSet", Variable="QUEUEWAIT"),  # a variable we do not track
        first(MENU, "VarSet", Variable="IVR_AGI_URL"),
        first(MENU, "BridgeEnter"),
        {},
    ],
)
def test_uninteresting_messages_are_none(message: dict) -> None:
    assert translate(message) is None


def _without(message: dict, key: str) -> dict:
    return {k: v for k, v in message.items() if k != key}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_without(first(MENU, "QueueCallerJoin"), "Linkedid"), "missing Linkedid"),
        ({**first(MENU, "Hangup"), "Linkedid": "  "}, "missing Linkedid"),
        ({**first(ABANDON, "QueueCallerAbandon"), "HoldTime": "soon"}, "non-numeric HoldTime"),
        ({**first(MENU, "AgentConnect"), "HoldTime": ""}, "missing HoldTime"),
        ({**first(MENU, "AgentComplete"), "TalkTime": "-3"}, "out of range TalkTime"),
        ({**first(MENU, "AgentComplete"), "TalkTime": "nan"}, "out of range TalkTime"),
        (_without(first(MENU, "AgentCalled"), "Interface"), "missing Interface"),
        (_without(first(MENU, "Cdr"), "UniqueID"), "missing UniqueID"),
        ({**first(MENU, "Cdr"), "Duration": "1.5"}, "non-integer Duration"),
        ({**first(MENU, "QueueCallerJoin"), "Timestamp": "yesterday"}, "bad Timestamp"),
        ({"Event": "BlindTransfer", "Result": "Success"}, "missing TransfereeLinkedid"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(message: dict, reason: str) -> None:
    result = translate(message)
    assert isinstance(result, Rejected)
    assert result.reason.startswith(reason), result.reason


def test_header_names_are_case_insensitive() -> None:
    message = {k.lower(): v for k, v in first(MENU, "QueueCallerJoin").items()}
    event = translate(message)
    assert isinstance(event, CallEvent) and event.kind == "queue.joined"


def test_garbage_never_raises() -> None:
    assert isinstance(translate(None), Rejected)  # type: ignore[arg-type]
    assert translate({"Event": None}) is None  # type: ignore[dict-item]
