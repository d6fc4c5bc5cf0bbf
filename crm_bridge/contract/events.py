"""The call timeline's event kinds and the fields each one carries, whoever sends it.

A timeline row is ``(kind, data)``; ``data`` is JSON. Every kind has one payload type below: a
sender may leave a field out (unknown yet) but never invent one, and the same field means the same
thing from every sender (the runner, the refused-call path, the callback script, the AMI tracker).
``CallNotifier.emit`` checks each event against ``PAYLOADS`` (``unexpected_fields``) and logs a
violation; the tests make it fail. Renderers (call page, customer timeline, operator screen) and
the statistics' SQL name kinds only through ``EventKind``.

Kinds are dotted nouns (``order.created``); ``EventKind`` values are what the database stores.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class EventKind(StrEnum):
    # The robot (FastAGI runner; the refused-call path writes call.started / call.ended too).
    CALL_STARTED = "call.started"
    CALL_AFTER_HOURS = "call.after_hours"
    CALLER_IDENTIFIED = "caller.identified"
    PROMPT_PLAYED = "prompt.played"
    DTMF_RECEIVED = "dtmf.received"
    ORDER_CREATED = "order.created"
    ORDER_UNCERTAIN = "order.uncertain"
    ORDER_ALREADY_PLACED = "order.already_placed"  # the call's key holds another order: it stands
    STEP_FAILED = "step.failed"
    CALL_ESCALATED = "call.escalated"
    CALL_ERROR = "call.error"
    CALL_ENDED = "call.ended"  # the robot's part is over (the call may go on in the queue)
    # The robot or the tracker.
    CALLBACK_CREATED = "callback.created"
    # Timelines written before the callback script became a flow; it now says call.escalated with
    # reason callback_without_number (kept so that old calls still read).
    CALLBACK_IMPOSSIBLE = "callback.impossible"
    # Asterisk, through the AMI tracker.
    QUEUE_ENTERED = "queue.entered"
    QUEUE_ABANDONED = "queue.abandoned"
    OPERATOR_RINGING = "operator.ringing"
    OPERATOR_NO_ANSWER = "operator.no_answer"
    OPERATOR_ANSWERED = "operator.answered"
    CALL_TRANSFERRED = "call.transferred"
    CALL_HUNGUP = "call.hungup"  # the last channel of the call hung up
    CDR = "cdr"
    RECORDING_READY = "recording.ready"
    RECORDING_MISSING = "recording.missing"
    RECORDING_REFUSED = "recording.refused"
    # The transcription worker (ivr/speech/transcriber.py), once a recording was transcribed or failed.
    TRANSCRIPT_READY = "transcript.ready"
    # The console (an operator correcting the store, issue 10): no call, the customer's timeline.
    ORDER_CANCELLED = "order.cancelled"
    ORDER_CHANGED = "order.changed"
    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_CHANGED = "customer.changed"
    PHONE_ATTACHED = "phone.attached"
    CALLBACK_NOTE = "callback.note"
    # Deals (issue 11): written with the order that makes the deal (robot, operator, import) or by
    # an operator's stage change / an order's cancel; timeline_events.deal_id names the deal.
    DEAL_CREATED = "deal.created"
    DEAL_STAGE_CHANGED = "deal.stage_changed"
    # Not stored: built by the store for a customer's timeline (CrmStore.customer_timeline).
    ORDER_PLACED = "order.placed"
    CALL_RECORDED = "call.recorded"


class CallStarted(TypedDict, total=False):
    caller: str | None  # raw caller id
    channel: str | None
    script: str | None
    language: str


class CallAfterHours(TypedDict, total=False):
    pass


class CallerIdentified(TypedDict, total=False):
    status: str  # found | unknown | shared | invalid
    number: str | None  # normalized
    candidates: list[str]
    last_order: str | None


class PromptPlayed(TypedDict, total=False):
    step: str
    text: str
    prompts: list[str]


class DtmfReceived(TypedDict, total=False):
    """A question's answer, by key or by voice (issue 12): the keys it stands for either way."""

    step: str
    digits: str  # the keys pressed, or those a spoken answer stands for ("" with timed_out=False: keep)
    timed_out: bool  # True: no answer the flow can take (silence, or words not understood)
    source: str  # "key" or "voice"
    text: str  # the recognized words (voice; absent when nothing was heard)
    status: str  # voice only, when no answer: "no_input" or "not_understood"
    fallback: str  # "audiosocket_failed": asked by keys because Asterisk's AudioSocket() did not connect


class OrderCreated(TypedDict, total=False):
    order_id: str
    invoice: str
    total: str  # decimal as text
    replayed: bool  # the idempotency key returned an order placed before
    delivery_date: str | None
    # {"sku", "quantity", "unit", "name", "price"} (crm_bridge.views.line_payload: what a CRM's deal
    # needs); events written before issue 11's deals carry sku and quantity only.
    lines: list[dict[str, Any]]
    after_hangup: bool  # the write finished after the caller hung up
    after_handover: bool  # known only after the caller went to an operator (order_outcome_unknown)


class OrderUncertain(TypedDict, total=False):
    idempotency_key: str


class OrderAlreadyPlaced(TypedDict, total=False):
    order_id: str  # the order placed earlier in the call, which stands
    idempotency_key: str
    lines: list[dict[str, Any]]  # {"sku", "quantity"}: what the caller asked for this time, not placed
    placed_lines: list[dict[str, Any]]  # {"sku", "quantity"}: the order that stands


class StepFailed(TypedDict, total=False):
    step: str
    reason: str  # a Reason


class CallEscalated(TypedDict, total=False):
    reason: str


class CallError(TypedDict, total=False):
    step: str
    error: str


class CallEnded(TypedDict, total=False):
    outcome: str | None  # the robot's view, decide_outcome of its own facts
    reason: str
    step: str
    cause: str  # refused calls: the admission limit that refused it


class CallbackCreated(TypedDict, total=False):
    task_id: int
    reason: str
    due_at: str
    created: bool  # False: the customer's open task was reused
    attempts: int
    number: str | None


class CallbackImpossible(TypedDict, total=False):
    reason: str


class QueueEntered(TypedDict, total=False):
    queue: str
    position: int | None
    count: int | None


class QueueAbandoned(TypedDict, total=False):
    queue: str
    wait_seconds: float | None
    position: int | None
    original_position: int | None


class OperatorRinging(TypedDict, total=False):
    operator_interface: str
    operator_name: str
    queue: str | None
    caller: str | None


class OperatorNoAnswer(TypedDict, total=False):
    operator_interface: str
    operator_name: str
    ring_seconds: float | None


class OperatorAnswered(TypedDict, total=False):
    operator_interface: str
    operator_name: str
    hold_time: float
    ring_time: float | None
    queue: str | None
    caller: str | None


class CallTransferred(TypedDict, total=False):
    type: str  # blind | attended
    result: str | None
    transferer_channel: str | None
    transferee_channel: str | None
    target_channel: str | None
    extension: str | None
    context: str | None
    dest_type: str | None


class CallHungup(TypedDict, total=False):
    who: str | None  # a HangupBy
    outcome: str | None  # the tracker's view at the hang-up; calls.outcome is the call's verdict
    cause: str | None
    talk_seconds: float | None
    wait_seconds: float | None
    reason: str | None


class Cdr(TypedDict, total=False):
    uniqueid: str
    channel: str | None
    dest_channel: str | None
    source: str | None
    destination: str | None
    last_app: str | None
    duration: int | None
    billsec: int | None
    disposition: str | None
    start: str | None
    answer: str | None
    end: str | None


class RecordingReady(TypedDict, total=False):
    path: str
    seconds: float
    bytes: int


class RecordingPath(TypedDict, total=False):
    path: str


class TranscriptReady(TypedDict, total=False):
    transcript_id: int
    state: str  # crm_bridge.transcripts.TranscriptState: done | empty | failed
    language: str | None
    model: str | None  # the model directory's name
    seconds: float | None  # length of the recording
    words: int  # number of words recognized
    speakers: list[str]  # "caller", "robot" (a stereo recording) or [] (mono: one track)
    text: str  # the words, cut at TRANSCRIPT_EVENT_TEXT characters (the whole is on the call)
    error: str  # failed: why, one line


class OrderPlacedEntry(TypedDict, total=False):
    order_id: str
    total: str
    source: str
    invoice: str | None
    delivery_date: str | None
    lines: int


class OrderCancelled(TypedDict, total=False):
    order_id: str
    by: str  # the signed-in console user who did it
    reason: str
    total: str  # decimal as text
    invoice: str | None  # its invoice, now marked cancelled
    delivery_date: str | None


class OrderChanged(TypedDict, total=False):
    order_id: str
    by: str
    reason: str
    revision: int  # the order's new revision (2 after the first edit)
    previous_total: str
    total: str
    invoice: str | None  # recomputed under the same number with the same revision
    lines: list[dict[str, Any]]  # line_payload's fields (as order.created's): the order now
    previous_lines: list[dict[str, Any]]  # the same: before the edit


class CustomerCreated(TypedDict, total=False):
    by: str
    number: str | None  # E.164: the unknown caller's number the customer was made from
    name: str


class CustomerChanged(TypedDict, total=False):
    by: str
    address: str  # the new address
    previous_address: str


class PhoneAttached(TypedDict, total=False):
    by: str
    number: str  # E.164
    shared_with: list[str]  # other customers owning the number (a shared number now)


class CallbackNote(TypedDict, total=False):
    by: str
    task_id: int
    note: str


class DealCreated(TypedDict, total=False):
    deal_id: int
    order_id: str | None  # the order it is the thread of; None for a lead-like deal
    stage: str  # a pipeline stage code ([deals] stages)
    amount: str  # decimal as text
    source: str  # the order's source (ivr | operator | import), or "call" for a lead-like deal
    by: str | None  # the console user (operator orders); None: the robot or an import
    number: str | None  # E.164 of a lead-like deal's caller


class DealStageChanged(TypedDict, total=False):
    deal_id: int
    by: str  # the console user who moved it ("import" when an orders file set the stage)
    stage: str
    previous_stage: str
    reason: str  # why, when a change made it (the order's cancel reason)
    order_id: str | None


class CallRecordedEntry(TypedDict, total=False):
    outcome: str | None
    reason: str | None
    caller_number: str | None
    operator: str | None


# A transcript.ready event carries at most this much of the text (timelines and CRM payloads stay small).
TRANSCRIPT_EVENT_TEXT = 2000

PAYLOADS: dict[EventKind, type] = {
    EventKind.CALL_STARTED: CallStarted,
    EventKind.CALL_AFTER_HOURS: CallAfterHours,
    EventKind.CALLER_IDENTIFIED: CallerIdentified,
    EventKind.PROMPT_PLAYED: PromptPlayed,
    EventKind.DTMF_RECEIVED: DtmfReceived,
    EventKind.ORDER_CREATED: OrderCreated,
    EventKind.ORDER_UNCERTAIN: OrderUncertain,
    EventKind.ORDER_ALREADY_PLACED: OrderAlreadyPlaced,
    EventKind.STEP_FAILED: StepFailed,
    EventKind.CALL_ESCALATED: CallEscalated,
    EventKind.CALL_ERROR: CallError,
    EventKind.CALL_ENDED: CallEnded,
    EventKind.CALLBACK_CREATED: CallbackCreated,
    EventKind.CALLBACK_IMPOSSIBLE: CallbackImpossible,
    EventKind.QUEUE_ENTERED: QueueEntered,
    EventKind.QUEUE_ABANDONED: QueueAbandoned,
    EventKind.OPERATOR_RINGING: OperatorRinging,
    EventKind.OPERATOR_NO_ANSWER: OperatorNoAnswer,
    EventKind.OPERATOR_ANSWERED: OperatorAnswered,
    EventKind.CALL_TRANSFERRED: CallTransferred,
    EventKind.CALL_HUNGUP: CallHungup,
    EventKind.CDR: Cdr,
    EventKind.RECORDING_READY: RecordingReady,
    EventKind.RECORDING_MISSING: RecordingPath,
    EventKind.RECORDING_REFUSED: RecordingPath,
    EventKind.TRANSCRIPT_READY: TranscriptReady,
    EventKind.ORDER_CANCELLED: OrderCancelled,
    EventKind.ORDER_CHANGED: OrderChanged,
    EventKind.CUSTOMER_CREATED: CustomerCreated,
    EventKind.CUSTOMER_CHANGED: CustomerChanged,
    EventKind.PHONE_ATTACHED: PhoneAttached,
    EventKind.CALLBACK_NOTE: CallbackNote,
    EventKind.DEAL_CREATED: DealCreated,
    EventKind.DEAL_STAGE_CHANGED: DealStageChanged,
    EventKind.ORDER_PLACED: OrderPlacedEntry,
    EventKind.CALL_RECORDED: CallRecordedEntry,
}

FIELDS: dict[str, frozenset[str]] = {kind.value: frozenset(PAYLOADS[kind].__annotations__) for kind in EventKind}


def unexpected_fields(kind: str, data: dict[str, Any]) -> frozenset[str] | None:
    """None when ``(kind, data)`` keeps the contract; else the offending field names (all of
    them when the kind itself is unknown)."""
    allowed = FIELDS.get(kind)
    if allowed is None:
        return frozenset(data) or frozenset({"<kind>"})
    extra = data.keys() - allowed
    return frozenset(extra) if extra else None
