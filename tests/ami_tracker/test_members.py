"""Queue members in the wallboard's words, from the bytes a real Asterisk 22 sent (actions.txt: the
QueueStatus answer and QueueMemberPause; menu_operator_senddtmf.txt: QueueMemberStatus around a call)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from ivr.ami import MessageParser
from ivr.calls.members import MEMBER_STATES, QueueMembers, member_state, parse_member
from ivr.web.console.labels import MEMBER_STATE_LABELS, member_state_text
from tests.fakeami import TRACES, load_trace_messages

OP = "Local/101@operator-agent/n"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def wire(trace: str) -> list[dict[str, str]]:
    """The trace's Asterisk side as bytes, read back by the AMI client's own parser."""
    raw = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(
        b"".join(f"{k}: {v}\r\n".encode() for k, v in m.items()) + b"\r\n"
        for m in load_trace_messages(TRACES / trace)
    )
    return MessageParser().feed(raw)


def named(messages: list[dict[str, str]], event: str) -> list[dict[str, str]]:
    return [m for m in messages if m.get("Event") == event]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("status", "paused", "in_call", "state"),
    [
        (0, False, False, "unknown"),  # AST_DEVICE_UNKNOWN
        (1, False, False, "free"),  # NOT_INUSE
        (1, True, False, "paused"),
        (1, False, True, "talking"),  # a queue call the device state has not caught up with
        (2, False, False, "talking"),  # INUSE
        (2, True, False, "talking"),  # paused during a call: still on the call
        (3, False, False, "talking"),  # BUSY
        (4, False, False, "unavailable"),  # INVALID
        (5, False, False, "unavailable"),  # UNAVAILABLE
        (5, True, False, "unavailable"),  # paused, but nobody could take a call there anyway
        (6, False, False, "ringing"),  # RINGING
        (7, False, False, "ringing"),  # RINGINUSE
        (8, False, False, "talking"),  # ONHOLD
        (9, False, False, "unknown"),  # a code this table does not know
        (None, False, False, "unknown"),
        (None, True, False, "paused"),
    ],
)
def test_member_state_table(status, paused, in_call, state):
    assert member_state(status, paused=paused, in_call=in_call) == state


def test_every_member_state_has_words():
    assert set(MEMBER_STATE_LABELS) == set(MEMBER_STATES)
    assert member_state_text("paused", "lunch") == "на паузе: lunch"
    assert member_state_text("paused") == "на паузе"
    assert member_state_text("free", "lunch") == "свободен"


def test_the_queue_status_snapshot_and_the_pause_from_captured_bytes():
    messages = wire("actions.txt")
    (item, *_) = named(messages, "QueueMember")  # an item of the QueueStatus answer
    member = parse_member(item)
    assert member is not None
    assert (member.interface, member.queue, member.name) == (OP, "operators", "Operator 101")
    assert (member.status, member.paused, member.in_call, member.state) == (1, False, False, "free")

    def answer(action_id: str) -> list[dict[str, str]]:
        return [m for m in messages if m.get("ActionID") == action_id]

    clock = Clock()
    members = QueueMembers(clock)
    members.resync(answer("act-5"))  # QueueParams, QueueMember, QueueStatusComplete: members count
    assert members.view()[OP]["state"] == "free"
    (pause, unpause) = named(messages, "QueueMemberPause")
    clock.now += timedelta(seconds=5)
    assert members.apply(pause)
    assert members.view()[OP] == {"state": "paused", "name": "Operator 101", "paused_reason": "lunch",
                                  "since": (T0 + timedelta(seconds=5)).isoformat()}
    members.resync(answer("act-13"))  # the snapshot says the same: the pause keeps its start
    assert members.view()[OP]["since"] == (T0 + timedelta(seconds=5)).isoformat()
    assert members.apply(unpause)
    assert members.view()[OP]["state"] == "free"
    members.resync(answer("act-17"))  # in a queue call (InCall 1, Status 2 INUSE)
    assert members.view()[OP]["state"] == "talking"


def test_member_status_around_a_call_from_captured_bytes():
    clock = Clock()
    members = QueueMembers(clock)
    seen = []
    for message in named(wire("menu_operator_senddtmf.txt"), "QueueMemberStatus"):
        clock.now += timedelta(seconds=10)
        assert members.apply(message)
        seen.append((members.view()[OP]["state"], members.view()[OP]["since"]))
    assert seen == [("talking", (T0 + timedelta(seconds=10)).isoformat()),
                    ("free", (T0 + timedelta(seconds=20)).isoformat())]


def test_several_queues_removal_snapshot_and_bad_input():
    members = QueueMembers(Clock())
    base = {"Event": "QueueMemberStatus", "Interface": OP, "MemberName": "Operator 101", "Status": "1",
            "Paused": "0", "InCall": "0"}
    members.apply({**base, "Queue": "operators", "Paused": "1", "PausedReason": "lunch"})
    members.apply({**base, "Queue": "vip"})
    assert members.view()[OP]["state"] == "free"  # paused in one queue, taking calls from the other
    members.apply({**base, "Queue": "vip", "Paused": "1", "PausedReason": "training"})
    assert members.view()[OP]["state"] == "paused"
    assert members.view()[OP]["paused_reason"] == "lunch, training"
    members.apply({**base, "Event": "QueueMemberRemoved", "Queue": "vip"})
    members.apply({**base, "Event": "QueueMemberRemoved", "Queue": "operators"})
    assert members.view() == {}
    with capture_logs() as logs:
        assert not members.apply({"Event": "QueueMemberStatus", "Status": "1"})  # no interface, no queue
    assert [e["event"] for e in logs] == ["queue_member_unreadable"]
    members.apply({**base, "Queue": "operators"})
    members.resync([])  # a snapshot without members: nothing known any more
    assert members.view() == {}
    members.apply({**base, "Queue": "operators"})
    members.forget()
    assert members.view() == {}
