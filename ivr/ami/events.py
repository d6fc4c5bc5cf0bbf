"""AMI message -> call event: a pure table, no I/O, no state.

``translate(message)`` takes one AMI event as Asterisk sent it (header -> value, as the AMI client
parses it) and returns:

- a ``CallEvent`` for the events the call tracker cares about,
- ``None`` for everything else (responses, CEL, Newexten, uninteresting variables…),
- ``Rejected(event, reason)`` when an interesting event is malformed (no Linkedid, a non-numeric
  HoldTime…): the caller logs the reason and skips it. Nothing raises.

``call_id`` is the Asterisk ``Linkedid`` (shared by every channel of a call; the IVR records calls
under it too). One exception: ``Cdr`` events carry no Linkedid, so a ``cdr`` event's ``call_id`` is
the channel's ``UniqueID`` (also in ``data["uniqueid"]``); the tracker maps it to its call.

Times: AMI durations are whole seconds except ``AgentRingNoAnswer.RingTime`` (milliseconds); every
``*_time`` in ``data`` is converted to seconds. ``at`` comes from the ``Timestamp`` header when the
manager user has ``timestampevents = yes``, else it is None (the tracker uses its own clock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crm_bridge.contract.dialplan import TRACKED
from crm_bridge.phones import caller_number

# VarSet of these variables becomes "variable.set"; every other VarSet (dozens per call) is dropped.
# Ours are those the contract says the tracker reads (crm_bridge.contract.dialplan), plus Asterisk's.
TRACKED_VARIABLES = frozenset({*TRACKED, "MIXMONITOR_FILENAME", "QUEUESTATUS"})


@dataclass(frozen=True)
class CallEvent:
    kind: str
    call_id: str  # Linkedid (for "cdr": the channel's UniqueID, see the module doc)
    at: datetime | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """An event we care about that could not be read; ``reason`` is for the log."""

    event: str
    reason: str


class _Malformed(Exception):
    pass


class _Fields:
    """Case-insensitive access to one message's headers (Asterisk spells Uniqueid / UniqueID)."""

    def __init__(self, message: Mapping[str, str]) -> None:
        self._lower = {str(k).lower(): v for k, v in message.items()}

    def get(self, name: str) -> str | None:
        value = self._lower.get(name.lower())
        return None if value is None else str(value)

    def text(self, name: str) -> str:
        """Required header; empty is allowed."""
        value = self.get(name)
        if value is None:
            raise _Malformed(f"missing {name}")
        return value

    def ident(self, name: str) -> str:
        """Required, non-empty identifier (Linkedid, Uniqueid, Queue…)."""
        value = (self.get(name) or "").strip()
        if not value:
            raise _Malformed(f"missing {name}")
        return value

    def number(self, name: str, *, required: bool = True, scale: float = 1.0) -> float | None:
        value = self.get(name)
        if value is None or value.strip() == "":
            if required:
                raise _Malformed(f"missing {name}")
            return None
        try:
            number = float(value.strip())
        except ValueError:
            raise _Malformed(f"non-numeric {name}: {value[:40]!r}") from None
        if number != number or number in (float("inf"), float("-inf")) or number < 0:
            raise _Malformed(f"out of range {name}: {value[:40]!r}")
        return number * scale

    def integer(self, name: str, *, required: bool = True) -> int | None:
        number = self.number(name, required=required)
        if number is None:
            return None
        if not number.is_integer():
            raise _Malformed(f"non-integer {name}: {number}")
        return int(number)

    def caller(self) -> str | None:
        return caller_number(self.get("CallerIDNum"))

    def at(self) -> datetime | None:
        stamp = self.get("Timestamp")
        if not stamp:
            return None
        try:
            return datetime.fromtimestamp(float(stamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise _Malformed(f"bad Timestamp: {stamp[:40]!r}") from None


Builder = Callable[[_Fields], tuple[str, dict[str, Any]] | None]


def _channel(f: _Fields) -> dict[str, Any]:
    return {"channel": f.get("Channel"), "uniqueid": f.ident("Uniqueid"), "caller": f.caller()}


def _linked(f: _Fields) -> str:
    return f.ident("Linkedid")


def _new_channel(f: _Fields) -> tuple[str, dict[str, Any]]:
    return _linked(f), {**_channel(f), "context": f.get("Context"), "exten": f.get("Exten")}


def _hangup(f: _Fields) -> tuple[str, dict[str, Any]]:
    return _linked(f), {**_channel(f), "cause": f.integer("Cause", required=False), "cause_txt": f.get("Cause-txt")}


def _hangup_requested(source: str) -> Builder:
    """``HangupRequest``: the channel's far end hung up (a SIP BYE, the other half of a Local
    channel). ``SoftHangupRequest``: Asterisk itself ended it (the dialplan's Hangup(), the end of
    an AGI, a bridge breaking up). Which of the two reaches the call's legs first says who ended it."""

    def build(f: _Fields) -> tuple[str, dict[str, Any]]:
        return _linked(f), {**_channel(f), "source": source, "context": f.get("Context")}

    return build


def _queue_joined(f: _Fields) -> tuple[str, dict[str, Any]]:
    return _linked(f), {
        **_channel(f),
        "queue": f.ident("Queue"),
        "position": f.integer("Position", required=False),
        "count": f.integer("Count", required=False),
    }


def _queue_abandoned(f: _Fields) -> tuple[str, dict[str, Any]]:
    return _linked(f), {
        **_channel(f),
        "queue": f.ident("Queue"),
        "position": f.integer("Position", required=False),
        "original_position": f.integer("OriginalPosition", required=False),
        "hold_time": f.number("HoldTime"),
    }


def _agent(f: _Fields) -> dict[str, Any]:
    return {
        **_channel(f),
        "queue": f.get("Queue"),
        "interface": f.ident("Interface"),
        "member_name": f.get("MemberName") or None,
        "dest_channel": f.get("DestChannel"),
        "dest_uniqueid": f.get("DestUniqueid"),
    }


def _agent_called(f: _Fields) -> tuple[str, dict[str, Any]]:
    return _linked(f), _agent(f)


def _agent_no_answer(f: _Fields) -> tuple[str, dict[str, Any]]:
    # The only AMI duration in milliseconds.
    return _linked(f), {**_agent(f), "ring_time": f.number("RingTime", required=False, scale=0.001)}


def _agent_connect(f: _Fields) -> tuple[str, dict[str, Any]]:
    return _linked(f), {
        **_agent(f),
        "hold_time": f.number("HoldTime"),
        "ring_time": f.number("RingTime", required=False),
    }


def _agent_complete(f: _Fields) -> tuple[str, dict[str, Any]]:
    reason = (f.get("Reason") or "").strip().lower() or None
    return _linked(f), {
        **_agent(f),
        "hold_time": f.number("HoldTime", required=False),
        "talk_time": f.number("TalkTime"),
        "reason": reason,  # agent | caller | transfer
    }


def _blind_transfer(f: _Fields) -> tuple[str, dict[str, Any]]:
    call_id = (f.get("TransfereeLinkedid") or f.get("TransfererLinkedid") or "").strip()
    if not call_id:
        raise _Malformed("missing TransfereeLinkedid/TransfererLinkedid")
    return call_id, {
        "type": "blind",
        "result": f.get("Result"),
        "transferer_channel": f.get("TransfererChannel"),
        "transferee_channel": f.get("TransfereeChannel"),
        "extension": f.get("Extension"),
        "context": f.get("Context"),
    }


def _attended_transfer(f: _Fields) -> tuple[str, dict[str, Any]]:
    call_id = (
        f.get("OrigTransfererLinkedid") or f.get("TransfereeLinkedid") or f.get("SecondTransfererLinkedid") or ""
    ).strip()
    if not call_id:
        raise _Malformed("missing OrigTransfererLinkedid")
    return call_id, {
        "type": "attended",
        "result": f.get("Result"),
        "transferer_channel": f.get("OrigTransfererChannel"),
        "transferee_channel": f.get("TransfereeChannel"),
        "target_channel": f.get("TransferTargetChannel") or f.get("SecondTransfererChannel"),
        "dest_type": f.get("DestType"),
    }


def _mixmonitor(f: _Fields) -> tuple[str, dict[str, Any]]:
    # Asterisk 22 sends no file name here (MIXMONITOR_FILENAME comes as a VarSet just before);
    # take one if a future version or a custom event adds it.
    file = f.get("Filename") or f.get("File") or None
    return _linked(f), {**_channel(f), "file": file}


def _var_set(f: _Fields) -> tuple[str, dict[str, Any]] | None:
    name = (f.get("Variable") or "").strip()
    if name.upper() not in TRACKED_VARIABLES:
        return None
    return _linked(f), {**_channel(f), "variable": name.upper(), "value": f.text("Value")}


def _cdr(f: _Fields) -> tuple[str, dict[str, Any]]:
    uniqueid = f.ident("UniqueID")
    return uniqueid, {
        "uniqueid": uniqueid,
        "channel": f.get("Channel"),
        "dest_channel": f.get("DestinationChannel") or None,
        "source": f.get("Source"),
        "destination": f.get("Destination"),
        "last_app": f.get("LastApplication"),
        "duration": f.integer("Duration"),
        "billsec": f.integer("BillableSeconds"),
        "disposition": f.get("Disposition"),
        "start": f.get("StartTime") or None,
        "answer": f.get("AnswerTime") or None,
        "end": f.get("EndTime") or None,
    }


# AMI event name (lower case) -> (our kind, builder returning (call_id, data) or None to skip).
TABLE: dict[str, tuple[str, Builder]] = {
    "newchannel": ("channel.created", _new_channel),
    "hangup": ("channel.hungup", _hangup),
    "hanguprequest": ("channel.hangup_requested", _hangup_requested("far_end")),
    "softhanguprequest": ("channel.hangup_requested", _hangup_requested("asterisk")),
    "queuecallerjoin": ("queue.joined", _queue_joined),
    "queuecallerleave": ("queue.left", _queue_joined),
    "queuecallerabandon": ("queue.abandoned", _queue_abandoned),
    "agentcalled": ("operator.ringing", _agent_called),
    "agentringnoanswer": ("operator.no_answer", _agent_no_answer),
    "agentconnect": ("operator.answered", _agent_connect),
    "agentcomplete": ("operator.completed", _agent_complete),
    "blindtransfer": ("call.transferred", _blind_transfer),
    "attendedtransfer": ("call.transferred", _attended_transfer),
    "mixmonitorstart": ("recording.started", _mixmonitor),
    "mixmonitorstop": ("recording.stopped", _mixmonitor),
    "varset": ("variable.set", _var_set),
    "cdr": ("cdr", _cdr),
}


def translate(message: Mapping[str, str]) -> CallEvent | Rejected | None:
    """One AMI message -> a CallEvent, None (not ours) or Rejected (ours but unreadable)."""
    try:
        fields = _Fields(message)
    except Exception as exc:  # not a mapping of strings: never let it escape into the AMI loop
        return Rejected("?", f"unreadable message: {exc!r}"[:200])
    name = (fields.get("Event") or "").strip()
    entry = TABLE.get(name.lower())
    if entry is None:
        return None
    kind, build = entry
    try:
        built = build(fields)
        if built is None:
            return None
        call_id, data = built
        return CallEvent(kind=kind, call_id=call_id, at=fields.at(), data=data)
    except _Malformed as exc:
        return Rejected(name, str(exc))
