"""Queue members as app_queue reports them: device state, pause, "in a queue call".

Two sources, same fields (``tests/data/asterisk-traces/ami/actions.txt`` and the call traces):

- the ``QueueMember`` items of a ``QueueStatus`` answer (the snapshot after every AMI login, read by
  the tracker's resync): the member is ``Location``, its name ``Name``;
- the events ``QueueMemberStatus`` (device state changed), ``QueueMemberPause``, ``QueueMemberAdded``
  and ``QueueMemberRemoved``: the member is ``Interface``, its name ``MemberName``.

``Status`` is Asterisk's ``AST_DEVICE_*`` (0 unknown, 1 not in use, 2 in use, 3 busy, 4 invalid,
5 unavailable, 6 ringing, 7 ringing while in use, 8 on hold); ``Paused`` 0/1 with ``PausedReason``;
``InCall`` 1 while the member has a queue call. ``member_state`` puts that in the wallboard's words:
free | talking | ringing | unavailable | paused | unknown. A member AMI never told us about is
"unknown", never "free".

``QueueMembers`` keeps the latest per (interface, queue); an interface in several queues is free
only when no queue says otherwise (paused in every queue is "paused", paused in one is not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

log = structlog.get_logger("ivr.calls.members")

MEMBER_EVENTS = frozenset({"queuememberstatus", "queuememberpause", "queuememberadded", "queuememberremoved"})
MEMBER_STATES = ("free", "talking", "ringing", "unavailable", "paused", "unknown")

# AST_DEVICE_* -> what the operator is doing (include/asterisk/devicestate.h).
_DEVICE: dict[int, str] = {
    0: "unknown",  # AST_DEVICE_UNKNOWN
    1: "free",  # AST_DEVICE_NOT_INUSE
    2: "talking",  # AST_DEVICE_INUSE
    3: "talking",  # AST_DEVICE_BUSY
    4: "unavailable",  # AST_DEVICE_INVALID (no such device)
    5: "unavailable",  # AST_DEVICE_UNAVAILABLE (not registered)
    6: "ringing",  # AST_DEVICE_RINGING
    7: "ringing",  # AST_DEVICE_RINGINUSE
    8: "talking",  # AST_DEVICE_ONHOLD: on a call, holding it
}
# When one interface is in several queues, the busiest word wins.
_RANK = {"talking": 0, "ringing": 1, "unavailable": 2, "paused": 3, "free": 4, "unknown": 5}


@dataclass(frozen=True)
class Member:
    """One queue member in one queue, as the last message about it said."""

    interface: str
    queue: str
    name: str | None
    status: int | None  # AST_DEVICE_*; None when the message had no readable Status
    paused: bool
    paused_reason: str | None
    in_call: bool

    @property
    def state(self) -> str:
        return member_state(self.status, paused=self.paused, in_call=self.in_call)


def member_state(status: int | None, *, paused: bool, in_call: bool) -> str:
    """free | talking | ringing | unavailable | paused | unknown (see the module docstring)."""
    device = _DEVICE.get(status, "unknown") if status is not None else "unknown"
    if device in ("talking", "ringing"):
        return device
    if in_call:  # a queue call the device state has not caught up with
        return "talking"
    if device == "unavailable":
        return device  # paused or not, nobody can take a call there
    if paused:
        return "paused"
    return device


def parse_member(message: Mapping[str, str]) -> Member | None:
    """A QueueMember item or a QueueMember* event -> Member; None without an interface or a queue."""
    fields = {str(k).lower(): (v or "").strip() for k, v in message.items()}
    interface = fields.get("interface") or fields.get("location") or ""
    queue = fields.get("queue") or ""
    if not interface or not queue:
        return None
    status_text = fields.get("status", "")
    status = int(status_text) if status_text.isdigit() else None
    return Member(
        interface=interface,
        queue=queue,
        name=fields.get("membername") or fields.get("name") or None,
        status=status,
        paused=fields.get("paused") == "1",
        paused_reason=fields.get("pausedreason") or None,
        in_call=fields.get("incall") == "1",
    )


class QueueMembers:
    """The members' latest states, from the QueueStatus snapshot and the QueueMember* events."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._members: dict[str, dict[str, Member]] = {}  # interface -> queue -> member
        self._since: dict[str, tuple[str, datetime]] = {}  # interface -> (state, since)

    def apply(self, message: Mapping[str, str]) -> bool:
        """One QueueMember* event; False (and one log line) when it cannot be read."""
        event = str(message.get("Event") or "").strip().lower()
        member = parse_member(message)
        if member is None:
            log.warning("queue_member_unreadable", ami_event=message.get("Event"))
            return False
        queues = self._members.setdefault(member.interface, {})
        if event == "queuememberremoved":
            queues.pop(member.queue, None)
            if not queues:
                self._members.pop(member.interface, None)
        else:
            queues[member.queue] = member
        self._note(member.interface)
        return True

    def resync(self, items: Iterable[Mapping[str, str]]) -> None:
        """A QueueStatus snapshot replaces what we knew (events were missed while away)."""
        fresh: dict[str, dict[str, Member]] = {}
        for item in items:
            if str(item.get("Event") or "").strip().lower() != "queuemember":
                continue
            member = parse_member(item)
            if member is not None:
                fresh.setdefault(member.interface, {})[member.queue] = member
        gone = set(self._members) - set(fresh)
        self._members = fresh
        for interface in [*fresh, *gone]:
            self._note(interface)

    def forget(self) -> None:
        """AMI is gone: what we knew is no longer true."""
        self._members.clear()
        self._since.clear()

    def view(self) -> dict[str, dict[str, Any]]:
        """interface -> {state, name, paused_reason, since (ISO)} for every member we know."""
        out: dict[str, dict[str, Any]] = {}
        for interface, queues in self._members.items():
            members = list(queues.values())
            state = self._state(members)
            reasons = sorted({m.paused_reason for m in members if m.paused and m.paused_reason})
            since = self._since.get(interface)
            out[interface] = {
                "state": state,
                "name": next((m.name for m in members if m.name), None),
                "paused_reason": (", ".join(reasons) or None) if state == "paused" else None,
                "since": since[1].isoformat() if since else None,
            }
        return out

    @staticmethod
    def _state(members: list[Member]) -> str:
        if not members:
            return "unknown"
        states = [m.state for m in members]
        if all(s == "paused" for s in states):
            return "paused"
        # paused in one queue but taking calls from another: not "paused"
        return min((s for s in states if s != "paused"), key=_RANK.__getitem__)

    def _note(self, interface: str) -> None:
        state = self._state(list(self._members.get(interface, {}).values()))
        previous = self._since.get(interface)
        if previous is None or previous[0] != state:
            self._since[interface] = (state, self._clock())
