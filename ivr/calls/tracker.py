"""Follows every call through AMI events: queue wait, operator, hang-up, recording, callback.

The AMI client calls ``handle(message)`` for every event, in order. Each message goes through the
pure table in ``ivr.ami.events`` and is applied to a small in-memory state per call (Linkedid):
channels alive, queue, operator, the IVR's variables, the recording path. Facts go to three places:

- the timeline (``CallNotifier``: log + timeline table + live listeners, e.g. the operator's
  screen pop on ``operator.ringing`` / ``operator.answered``),
- the call row (``records.update_call``, queued in the process's record writer; the row is created
  for calls the IVR never saw),
- callback tasks, for callers who gave up in the queue (or asked for a call-back).

Queue members' own states (QueueMember items of the resync snapshot, QueueMember* events) are
kept apart (``ivr.calls.members``) for the wallboard: ``operator_state()`` says ringing/talking from
the call it follows, else what app_queue said, else "unknown".

A call ends when the last of its channels hangs up (the Cdr may come after; it is mapped back to
its call). Finished calls leave memory; a call silent for ``idle_hours`` is evicted. After an AMI
reconnect, ``resync`` reconciles with the channels Asterisk still has (CoreShowChannels).

Nothing here raises into the AMI loop: malformed or unknown events are logged and skipped, store
failures are logged and the tracking goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import structlog

from crm_bridge.contract.dialplan import IVR_CONTEXTS, IvrResult, Var
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import (
    CALLBACK_OUTCOMES,
    DIALPLAN_REASONS,
    CallFacts,
    HangupBy,
    QueueFate,
    Reason,
    decide_outcome,
)
from crm_bridge.dto import CallbackTaskView, CallView, CustomerView
from crm_bridge.phones import caller_number, normalize_phone
from ivr.ami.events import CallEvent, Rejected, translate
from ivr.calls.hours import BusinessHours
from ivr.calls.members import MEMBER_EVENTS, QueueMembers
from ivr.calls.notifier import CallEvents, CallNotifier
from ivr.calls.recordings import RecordingInfo, RecordingLocator

log = structlog.get_logger("ivr.calls.tracker")

# How many finished calls we remember (late Cdr events, stray hang-ups of a finished call).
FINISHED_MEMORY = 10_000


class TrackerRecords(Protocol):
    """The process's record writer (``ivr.calls.record_writer.RecordWriter``)."""

    async def update_call(self, call_id: str, **fields: Any) -> None: ...

    async def sync(self) -> None: ...


class TrackerStore(Protocol):
    async def get_call(self, call_id: str) -> CallView | None: ...

    async def customer_by_number(self, number: str) -> CustomerView | None: ...

    async def open_callback_task(
        self, *, customer_id: str | None, number: str | None, reason: str, due_at: datetime, call_id: str | None
    ) -> tuple[CallbackTaskView, bool]: ...


@dataclass
class _Operator:
    state: str = "free"  # ringing | talking | free
    call_id: str | None = None
    name: str | None = None
    since: datetime | None = None


@dataclass
class TrackedCall:
    """One call as AMI shows it (all its channels, by Linkedid), from its first event to its end."""

    call_id: str
    events: CallEvents
    since: datetime
    last_seen: datetime
    channels: dict[str, str | None] = field(default_factory=dict)  # uniqueid -> channel name
    gone: set[str] = field(default_factory=set)  # uniqueids that hung up
    caller: str | None = None  # as Asterisk shows it; set once through learn_caller()
    number: str | None = None  # the caller's E.164, normalized once with the caller
    first_channel: str | None = None
    relevant: bool = False  # touched our IVR, a queue or a recording: worth a call row
    row_checked: bool = False
    row_facts: CallFacts = CallFacts()  # what the call row knew when we first read it
    variables: dict[str, str] = field(default_factory=dict)
    queue: str | None = None
    queue_entered_at: datetime | None = None
    in_queue: bool = False
    queue_abandoned: bool = False
    queue_left_unanswered: bool = False
    wait_seconds: float | None = None
    ringing: set[str] = field(default_factory=set)
    answered_at: datetime | None = None
    operator_interface: str | None = None
    operator_name: str | None = None
    talk_seconds: float | None = None
    hangup_by: str | None = None  # the queue's own word (AgentComplete), when it gave one
    # The caller's leg(s) in our dialplan (ran our AGI, joined the queue, seen in our contexts) and
    # every hang-up request in wire order as (uniqueid, "far_end" | "asterisk"): who_hung_up() reads them.
    ivr_legs: set[str] = field(default_factory=set)
    hangup_requests: list[tuple[str, str]] = field(default_factory=list)
    transfers: int = 0
    recording: str | None = None  # as Asterisk reported it
    cdrs: list[dict[str, Any]] = field(default_factory=list)  # Cdr seen before we knew the call is ours

    @property
    def customer_id(self) -> str | None:
        return self.events.customer_id

    def learn_caller(self, raw: str | None) -> None:
        """The first caller id seen wins; its E.164 form is computed here, once per call."""
        if self.caller is None and (raw := caller_number(raw)) is not None:
            self.caller = raw
            self.number = normalize_phone(raw)

    @property
    def state(self) -> str:
        if self.answered_at is not None:
            return "operator"
        if self.in_queue:
            return "queue"
        return "ivr"


class CallTracker:
    def __init__(
        self,
        store: TrackerStore,
        notifier: CallNotifier,
        *,
        records: TrackerRecords,
        recordings: RecordingLocator,
        operator_names: Mapping[str, str],
        hours: BusinessHours,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        logger: Any = None,
        db_deadline: float = 5.0,
        idle_hours: float = 6.0,
        recording_retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._records = records
        self._notifier = notifier
        self._recordings = recordings
        self._names = dict(operator_names)
        self._hours = hours
        self._clock = clock
        self._log = logger or log
        self._db_deadline = db_deadline
        self._idle = timedelta(hours=idle_hours)
        self._retry_delay = recording_retry_delay
        self._calls: dict[str, TrackedCall] = {}
        self._finished: OrderedDict[str, CallEvents | None] = OrderedDict()  # call_id -> events if ours
        self._uniqueids: OrderedDict[str, str] = OrderedDict()  # uniqueid -> call_id (for Cdr)
        self._operators: dict[str, _Operator] = {i: _Operator(name=n) for i, n in self._names.items()}
        # What app_queue says of each member (device state, pause): the wallboard's "free" comes
        # only from there, never from "no call seen".
        self._members = QueueMembers(clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_sweep: datetime | None = None

    # --- the AMI side ----------------------------------------------------------------------------

    async def handle(self, message: Mapping[str, str]) -> None:
        """Translate one AMI message and apply it; never raises."""
        try:
            if str(message.get("Event") or "").strip().lower() in MEMBER_EVENTS:
                self._members.apply(message)
                return
            event = translate(message)
            if event is None:
                return
            if isinstance(event, Rejected):
                self._log.warning("ami_event_rejected", ami_event=event.event, reason=event.reason)
                return
            await self._apply(event)
            self._sweep_idle()
        except Exception:
            self._log.exception("ami_event_failed", ami_event=_event_name(message))

    async def resync(self, items: list[dict[str, str]]) -> None:
        """Reconcile with CoreShowChannel items after a reconnect (events were lost meanwhile)."""
        try:
            self._members.resync(items)
            await self._resync(items)
        except Exception:
            self._log.exception("resync_failed")

    async def drain(self) -> None:
        """Wait for the background work (late recordings); for tests and shutdown."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- views for the console -------------------------------------------------------------------

    def live_calls(self) -> list[dict[str, Any]]:
        """Calls in progress for the wallboard (JSON-ready: times are ISO strings)."""
        out = []
        for call in sorted(self._calls.values(), key=lambda c: c.since):
            if not call.relevant:
                continue
            since = {"operator": call.answered_at, "queue": call.queue_entered_at}.get(call.state) or call.since
            out.append(
                {
                    "call_id": call.call_id,
                    "state": call.state,
                    "since": since.isoformat(),
                    "queue": call.queue,
                    "operator": call.operator_interface,
                    "operator_name": call.operator_name,
                    "customer_id": call.customer_id,
                    "caller": call.caller,
                }
            )
        return out

    def operator_state(self) -> dict[str, dict[str, Any]]:
        """Per queue-member interface: free | talking | ringing | unavailable | paused | unknown.

        A call we follow (AgentCalled/AgentConnect) says ringing/talking with its call; otherwise
        the queue's own word on the member (ivr.calls.members); a member AMI never reported is
        "unknown"."""
        members = self._members.view()
        out: dict[str, dict[str, Any]] = {}
        for interface in sorted(set(self._operators) | set(members)):
            op = self._operators.get(interface) or _Operator(name=self._names.get(interface))
            member = members.get(interface) or {}
            on_call = op.state in ("ringing", "talking")
            out[interface] = {
                "state": op.state if on_call else member.get("state", "unknown"),
                "call_id": op.call_id if on_call else None,
                "name": op.name or member.get("name"),
                "since": (op.since.isoformat() if op.since else None) if on_call else member.get("since"),
                "paused_reason": None if on_call else member.get("paused_reason"),
            }
        return out

    def forget_members(self) -> None:
        """AMI is down: the members' states we knew are stale (the wallboard says "unknown")."""
        self._members.forget()

    # --- applying events -------------------------------------------------------------------------

    async def _apply(self, event: CallEvent) -> None:
        if event.kind == "cdr":
            await self._cdr(event)
            return
        if event.call_id in self._finished:
            return  # a stray event of a call we already closed (e.g. the last Local half hanging up)
        at = event.at or self._clock()
        call = self._call(event.call_id, at)
        call.last_seen = at
        data = event.data
        self._note_channel(call, data)
        handler = getattr(self, "_on_" + event.kind.replace(".", "_"))
        await handler(call, data, at)

    def _call(self, call_id: str, at: datetime) -> TrackedCall:
        call = self._calls.get(call_id)
        if call is None:
            call = TrackedCall(call_id=call_id, events=self._notifier.open(call_id), since=at, last_seen=at)
            self._calls[call_id] = call
        return call

    def _note_channel(self, call: TrackedCall, data: dict[str, Any]) -> None:
        """Every event names a live channel: also how calls first seen mid-call learn theirs."""
        uniqueid = data.get("uniqueid")
        if uniqueid and uniqueid not in call.gone:
            call.channels.setdefault(uniqueid, data.get("channel"))
            self._remember_uniqueid(uniqueid, call.call_id)
            if call.first_channel is None:
                call.first_channel = data.get("channel")
        dest = data.get("dest_uniqueid")
        if dest and dest not in call.gone:
            call.channels.setdefault(dest, data.get("dest_channel"))
            self._remember_uniqueid(dest, call.call_id)
        caller = data.get("caller")
        # The caller's number: from the call's own first channel or the channel waiting in the queue.
        if caller and (uniqueid == call.call_id or data.get("queue")):
            call.learn_caller(caller)

    def _remember_uniqueid(self, uniqueid: str, call_id: str) -> None:
        self._uniqueids[uniqueid] = call_id
        self._uniqueids.move_to_end(uniqueid)
        while len(self._uniqueids) > FINISHED_MEMORY * 4:
            self._uniqueids.popitem(last=False)

    async def _on_channel_created(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        if data.get("context") == "ivr-inbound":
            call.relevant = True

    async def _on_channel_hungup(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        uniqueid = data["uniqueid"]
        call.channels.pop(uniqueid, None)
        call.gone.add(uniqueid)
        if not call.channels:
            await self._finalize(call, at, cause=data.get("cause_txt"))

    async def _on_channel_hangup_requested(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        if data.get("context") in IVR_CONTEXTS:  # in our dialplan: our call, and the caller's leg
            call.relevant = True
            call.ivr_legs.add(data["uniqueid"])
        call.hangup_requests.append((data["uniqueid"], data["source"]))

    async def _on_queue_joined(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.relevant = True
        call.ivr_legs.add(data["uniqueid"])
        call.queue = data["queue"]
        call.queue_entered_at = at
        call.in_queue = True
        call.queue_abandoned = call.queue_left_unanswered = False
        await self._ensure_row(call)
        self._notifier.emit(call.events, EventKind.QUEUE_ENTERED, queue=call.queue, position=data.get("position"),
                            count=data.get("count"))
        await self._update(call, queue=call.queue, queue_entered_at=at)
        await self._flush(call)

    async def _on_queue_left(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        # Sent before AgentConnect when answered, after QueueCallerAbandon when not: decide later.
        call.in_queue = False
        if call.answered_at is None and not call.queue_abandoned:
            call.queue_left_unanswered = True

    async def _on_queue_abandoned(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.relevant = True
        call.queue = call.queue or data["queue"]
        call.in_queue = False
        call.queue_abandoned = True
        call.wait_seconds = data["hold_time"]
        await self._ensure_row(call)
        self._notifier.emit(call.events, EventKind.QUEUE_ABANDONED, queue=call.queue, wait_seconds=call.wait_seconds,
                            position=data.get("position"), original_position=data.get("original_position"))
        await self._update(call, queue=call.queue, wait_seconds=call.wait_seconds)

    async def _on_operator_ringing(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.relevant = True
        await self._ensure_row(call)
        interface = data["interface"]
        name = self._operator_name(interface, data.get("member_name"))
        call.ringing.add(interface)
        self._set_operator(interface, "ringing", call.call_id, name, at)
        self._notifier.emit(
            call.events, EventKind.OPERATOR_RINGING, operator_interface=interface, operator_name=name,
            queue=data.get("queue") or call.queue, caller=call.caller,
        )

    async def _on_operator_no_answer(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        interface = data["interface"]
        name = self._operator_name(interface, data.get("member_name"))
        call.ringing.discard(interface)
        self._free_operator(interface, call.call_id, at)
        self._notifier.emit(call.events, EventKind.OPERATOR_NO_ANSWER, operator_interface=interface, operator_name=name,
                            ring_seconds=data.get("ring_time"))

    async def _on_operator_answered(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.relevant = True
        await self._ensure_row(call)
        interface = data["interface"]
        name = self._operator_name(interface, data.get("member_name"))
        call.in_queue = False
        call.queue_left_unanswered = False
        call.queue = call.queue or data.get("queue")
        call.answered_at = at
        call.operator_interface, call.operator_name = interface, name
        call.wait_seconds = data["hold_time"]
        for other in call.ringing - {interface}:  # ringall: the others stop ringing
            self._free_operator(other, call.call_id, at)
        call.ringing.clear()
        self._set_operator(interface, "talking", call.call_id, name, at)
        self._notifier.emit(
            call.events, EventKind.OPERATOR_ANSWERED, operator_interface=interface, operator_name=name,
            hold_time=data["hold_time"], ring_time=data.get("ring_time"), queue=call.queue, caller=call.caller,
        )
        await self._flush(call)
        await self._update(call, queue=call.queue, answered_at=at, operator_interface=interface,
                           operator_name=name, wait_seconds=call.wait_seconds)

    async def _on_operator_completed(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.talk_seconds = data["talk_time"]
        reason = data.get("reason")
        if reason == "agent":
            call.hangup_by = HangupBy.OPERATOR
        elif reason == "caller":
            call.hangup_by = HangupBy.CALLER
        self._free_operator(data["interface"], call.call_id, at)

    async def _on_call_transferred(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.transfers += 1
        self._notifier.emit(call.events, EventKind.CALL_TRANSFERRED, **{k: v for k, v in data.items() if v is not None})
        if call.relevant:
            await self._update(call, transfers=call.transfers)

    async def _on_recording_started(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        call.relevant = True
        if data.get("file") and call.recording is None:
            call.recording = data["file"]

    async def _on_recording_stopped(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        if data.get("file") and call.recording is None:
            call.recording = data["file"]

    async def _on_variable_set(self, call: TrackedCall, data: dict[str, Any], at: datetime) -> None:
        name, value = data["variable"], data["value"]
        call.relevant = True
        if name.startswith("IVR_"):  # set by our AGI or our dialplan: on the caller's leg
            call.ivr_legs.add(data["uniqueid"])
        call.variables[name] = value
        if name == Var.CUSTOMER_ID and value:
            call.events.customer_id = value
        elif name == Var.RECORDING and value:
            call.recording = value  # our dialplan's own name wins over MixMonitor's
        elif name == "MIXMONITOR_FILENAME" and value and Var.RECORDING not in call.variables:
            call.recording = value

    async def _cdr(self, event: CallEvent) -> None:
        call_id = self._uniqueids.get(event.call_id)
        if call_id is None:
            return  # a channel we never saw: not worth a guess
        live = self._calls.get(call_id)
        events = live.events if live is not None else self._finished.get(call_id)
        if events is None:
            return
        if live is not None and not live.relevant:
            live.cdrs.append(event.data)  # Local channels end (with a Cdr) before the call is known as ours
            return
        self._notifier.emit(events, EventKind.CDR, **event.data)
        if live is None:  # the call is over: its timeline was flushed already
            await self._notifier.flush(events)

    # --- the end of a call -----------------------------------------------------------------------

    async def _finalize(self, call: TrackedCall, at: datetime, *, cause: str | None = None,
                        reason: str | None = None) -> None:
        self._calls.pop(call.call_id, None)
        for interface, op in self._operators.items():
            if op.call_id == call.call_id:
                self._free_operator(interface, call.call_id, at)
        if not call.relevant:
            row = await self._read_row(call.call_id)
            if row is None:
                self._remember_finished(call.call_id, None)
                return  # not a call of ours (internal, other contexts): no row, no timeline
            call.relevant = True
        self._remember_finished(call.call_id, call.events)
        await self._ensure_row(call)
        for cdr in call.cdrs:
            self._notifier.emit(call.events, EventKind.CDR, **cdr)
        vanished = reason == Reason.ENDED_WHILE_DISCONNECTED
        if reason is None and call.variables.get(Var.REASON) in DIALPLAN_REASONS:
            reason = call.variables[Var.REASON]
        seen = self._facts(call, vanished=vanished)
        # The call row decides the call's outcome from every witness's facts (the robot's end may
        # land after this); this view, with what the row knew, is for the timeline and the log.
        known = call.row_facts.merged(seen)
        outcome = decide_outcome(known)
        hangup_by = None if vanished else who_hung_up(call, known)
        talk = call.talk_seconds
        if talk is None and call.answered_at is not None:
            talk = round((at - call.answered_at).total_seconds(), 3)
        wait = call.wait_seconds
        if wait is None and call.queue_entered_at is not None:
            wait = round(((call.answered_at or at) - call.queue_entered_at).total_seconds(), 3)
        self._notifier.emit(call.events, EventKind.CALL_HUNGUP, who=hangup_by, outcome=outcome, cause=cause,
                            talk_seconds=talk, wait_seconds=wait, reason=reason)
        # Only for what Asterisk showed us: a callback the robot recorded has its task already.
        witnessed = decide_outcome(seen)
        if witnessed in CALLBACK_OUTCOMES:
            await self._open_callback(call, witnessed, at)
        await self._flush(call)
        fields: dict[str, Any] = {
            "ended_at": at, "hangup_by": hangup_by, "talk_seconds": talk, "wait_seconds": wait,
            "transfers": call.transfers, "queue": call.queue, "queue_entered_at": call.queue_entered_at,
            "answered_at": call.answered_at, "operator_interface": call.operator_interface,
            "operator_name": call.operator_name,
        }
        if reason is not None:
            fields["reason"] = reason
        if call.customer_id:
            fields["customer_id"] = call.customer_id
        if seen.order_id:
            fields["order_id"] = seen.order_id
        await self._update(call, facts=seen, **{k: v for k, v in fields.items() if v is not None})
        self._log.info("call_tracked", call_id=call.call_id, outcome=outcome, hangup_by=hangup_by,
                       wait_seconds=wait, talk_seconds=talk, operator=call.operator_interface)
        if call.recording:
            await self._recording(call)

    @staticmethod
    def _facts(call: TrackedCall, *, vanished: bool) -> CallFacts:
        """What Asterisk showed of the call when its last channel went (the robot's own variables
        included, as far as their VarSet arrived before the hang-up)."""
        text = call.variables.get(Var.RESULT, "").strip()
        result = IvrResult(text) if text in IvrResult.__members__.values() else None
        if call.answered_at is not None:
            queue = QueueFate.ANSWERED
        elif call.queue is None or vanished:  # vanished while queued: how it ended is unknown
            queue = QueueFate.WAITING if call.queue is not None else None
        elif call.queue_abandoned or not call.queue_left_unanswered:  # abandoned, or hung up while waiting
            queue = QueueFate.ABANDONED
        else:
            queue = QueueFate.TIMED_OUT  # Queue() gave up (timeout, empty…): the caller did not
        return CallFacts(
            ivr_result=result,
            order_id=call.variables.get(Var.ORDER_ID) or None,
            callback_requested=call.variables.get(Var.CALLBACK, "").strip() in ("1", "yes", "true"),
            # Never reached the queue, and not hung up by the dialplan after the robot's goodbye.
            hung_up_in_ivr=call.queue is None and not vanished and result is not IvrResult.DONE,
            queue=queue,
            tracking_lost=vanished,
        )

    async def _open_callback(self, call: TrackedCall, outcome: str, at: datetime) -> None:
        customer_id = call.customer_id
        number = call.number
        if customer_id is None and number is not None:
            customer = await self._db(self._store.customer_by_number(number), "customer_by_number")
            if customer is not None:
                customer_id = call.events.customer_id = customer.customer_id
        if customer_id is None and number is None:
            self._log.warning("callback_without_number", call_id=call.call_id, caller=call.caller)
            return
        due = self._hours.callback_due(at)
        opened = await self._db(
            self._store.open_callback_task(customer_id=customer_id, number=number, reason=outcome, due_at=due,
                                           call_id=call.call_id),
            "open_callback_task",
        )
        if opened is None:
            return
        task, created = opened
        self._notifier.emit(call.events, EventKind.CALLBACK_CREATED, task_id=task.task_id, created=created,
                            due_at=task.due_at.isoformat(), attempts=task.attempts, reason=outcome,
                            number=number)

    async def _recording(self, call: TrackedCall) -> None:
        reported = call.recording
        local = self._recordings.local_path(reported)
        if local is None:
            self._log.warning("recording_path_refused", call_id=call.call_id, path=(reported or "")[:300])
            self._notifier.emit(call.events, EventKind.RECORDING_REFUSED, path=(reported or "")[:300])
            await self._flush(call)
            return
        info = await self._recordings.describe(local)
        if info is not None and not info.empty:
            await self._recording_ready(call, info)
            return
        # MixMonitor closes (and flushes) the file after the channel goes: look again shortly, off
        # the event stream.
        task = asyncio.get_running_loop().create_task(self._recording_later(call, local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recording_later(self, call: TrackedCall, local: Path) -> None:
        await asyncio.sleep(self._retry_delay)
        info = await self._recordings.describe(local)
        if info is None:
            self._log.warning("recording_missing", call_id=call.call_id, path=str(local))
            self._notifier.emit(call.events, EventKind.RECORDING_MISSING, path=str(local))
            await self._flush(call)
            return
        if info.empty:
            # A header without audio: announcing it would put a 0.0 s player on the call. The call
            # simply has no recording; say why once, for the admin (MixMonitor options, disk).
            self._log.warning("recording_empty", call_id=call.call_id, path=str(local), bytes=info.bytes)
            return
        await self._recording_ready(call, info)

    async def _recording_ready(self, call: TrackedCall, info: RecordingInfo) -> None:
        self._notifier.emit(call.events, EventKind.RECORDING_READY, path=str(info.path), seconds=info.seconds,
                            bytes=info.bytes)
        await self._flush(call)
        await self._update(call, recording_path=str(info.path), recording_seconds=info.seconds,
                           recording_bytes=info.bytes)

    def _remember_finished(self, call_id: str, events: CallEvents | None) -> None:
        self._finished[call_id] = events
        while len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)

    # --- resync and eviction ---------------------------------------------------------------------

    async def _resync(self, items: list[dict[str, str]]) -> None:
        now = self._clock()
        alive: dict[str, list[dict[str, str]]] = {}
        for item in items:
            linkedid = (item.get("Linkedid") or "").strip()
            if linkedid:
                alive.setdefault(linkedid, []).append(item)
        for call_id in [c for c in self._calls if c not in alive]:
            call = self._calls[call_id]
            self._log.warning("call_ended_while_disconnected", call_id=call_id)
            await self._finalize(call, now, reason=Reason.ENDED_WHILE_DISCONNECTED)
        for call_id, channels in alive.items():
            if call_id in self._finished:
                continue
            known = call_id in self._calls
            call = self._call(call_id, now)
            call.channels = {}
            for item in channels:
                uniqueid = (item.get("Uniqueid") or "").strip()
                if uniqueid:
                    call.channels[uniqueid] = item.get("Channel")
                    self._remember_uniqueid(uniqueid, call_id)
                if uniqueid == call_id:
                    call.learn_caller(item.get("CallerIDNum"))
                if item.get("Context") == "ivr-inbound":
                    call.relevant = True
                if (item.get("Application") or "").lower() == "queue" and call.answered_at is None:
                    call.relevant = True
                    call.queue = call.queue or (item.get("ApplicationData") or "").split(",")[0] or None
                    if item.get("BridgeId"):  # bridged inside Queue(): an operator has it
                        call.answered_at = call.answered_at or now
                        call.in_queue = False
                    else:
                        call.in_queue = True
                        call.queue_entered_at = call.queue_entered_at or now
            if not known:
                self._log.info("call_found_on_resync", call_id=call_id, channels=len(call.channels))

    def _sweep_idle(self) -> None:
        now = self._clock()
        if self._last_sweep is not None and now - self._last_sweep < timedelta(minutes=1):
            return
        self._last_sweep = now
        for call_id in [c.call_id for c in self._calls.values() if now - c.last_seen > self._idle]:
            self._calls.pop(call_id)
            self._remember_finished(call_id, None)
            for interface, op in self._operators.items():
                if op.call_id == call_id:
                    self._free_operator(interface, call_id, now)
            self._log.warning("call_evicted_idle", call_id=call_id)

    # --- helpers ---------------------------------------------------------------------------------

    def _operator_name(self, interface: str, member_name: str | None) -> str:
        return self._names.get(interface) or member_name or interface

    def _set_operator(self, interface: str, state: str, call_id: str, name: str, at: datetime) -> None:
        self._operators[interface] = _Operator(state=state, call_id=call_id, name=name, since=at)

    def _free_operator(self, interface: str, call_id: str, at: datetime) -> None:
        op = self._operators.get(interface)
        if op is not None and op.call_id not in (None, call_id):
            return  # already busy with another call
        name = op.name if op is not None else self._names.get(interface)
        self._operators[interface] = _Operator(state="free", call_id=None, name=name, since=at)

    async def _ensure_row(self, call: TrackedCall) -> None:
        """Once per call: learn the IVR's row (customer, outcome), or create it for AMI-only calls."""
        if call.row_checked:
            return
        call.row_checked = True
        row = await self._read_row(call.call_id)
        if row is not None:
            call.row_facts = row.facts
            if call.events.customer_id is None and row.customer_id:
                call.events.customer_id = row.customer_id
            call.learn_caller(row.caller_number)
        else:
            await self._update(call, started_at=call.since, caller_number=call.caller,
                               normalized_number=call.number, channel=call.first_channel)
        if call.events.customer_id is None and call.number is not None:
            customer = await self._db(self._store.customer_by_number(call.number), "customer_by_number")
            if customer is not None:
                call.events.customer_id = customer.customer_id

    async def _read_row(self, call_id: str) -> CallView | None:
        async def read() -> CallView | None:
            # The IVR's start of this call may still sit in the writer's queue: let it land first.
            await self._records.sync()
            return await self._store.get_call(call_id)

        return await self._db(read(), "get_call")

    async def _update(self, call: TrackedCall, **fields: Any) -> None:
        # Not bounded by db_deadline: the writer queues (and spools) it, it only waits for room.
        try:
            await self._records.update_call(call.call_id, **fields)
        except Exception as exc:  # a bad field name is a bug: say so, keep tracking
            self._log.error("tracker_store_failed", operation="update_call", error=repr(exc)[:300])

    async def _flush(self, call: TrackedCall) -> None:
        await self._notifier.flush(call.events)

    async def _db(self, work: Any, what: str) -> Any:
        try:
            return await asyncio.wait_for(work, self._db_deadline)
        except Exception as exc:  # the tracking goes on; the row is refined at the next write
            self._log.error("tracker_store_failed", operation=what, error=repr(exc)[:300])
            return None


def who_hung_up(call: TrackedCall, facts: CallFacts) -> HangupBy | None:
    """Who ended the call (``calls.hangup_by``): what Asterisk reported first, else the call's facts.

    The queue's AgentComplete says it for a bridged call. Otherwise the first hang-up request on the
    caller's side decides (captured in tests/data/asterisk-traces/ami: sipp_hangup_getdata,
    hangup_getdata, menu_repeat_order_senddtmf, queue_abandon):

    - on the caller's leg in our dialplan, HangupRequest means its far end (the caller's phone, or
      the originating half of a Local channel) went: the caller; SoftHangupRequest means Asterisk
      ended it (Hangup() after the robot's goodbye or a saved callback, the end of the queue): system;
    - on the call's originating channel when that is not our leg (the ;1 half of a Local channel
      that dialled into ivr-inbound), the roles swap: its SoftHangupRequest is the caller hanging up,
      its HangupRequest means our leg went first.

    Requests on operator channels that rang and were not answered say nothing about the call. When
    Asterisk reported no request at all (an AMI filter that drops them, a call picked up mid-way),
    the facts say what the dialplan does: it hangs up after the robot's "done" and when Queue()
    gives up; any other call was ended by the caller.
    """
    if call.hangup_by is not None:
        return HangupBy(call.hangup_by)
    for uniqueid, source in call.hangup_requests:
        if uniqueid in call.ivr_legs:
            return HangupBy.CALLER if source == "far_end" else HangupBy.SYSTEM
        if uniqueid == call.call_id:
            return HangupBy.CALLER if source == "asterisk" else HangupBy.SYSTEM
    by_dialplan = facts.ivr_result is IvrResult.DONE or facts.queue is QueueFate.TIMED_OUT
    return HangupBy.SYSTEM if by_dialplan else HangupBy.CALLER


def _event_name(message: Mapping[str, str]) -> str | None:
    with contextlib.suppress(Exception):
        return str(message.get("Event"))
    return None
