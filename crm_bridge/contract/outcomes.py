"""How a call ended, why, and the one function that decides it from the call's facts.

Two witnesses see parts of a call and neither sees all of it: the robot (the FastAGI runner)
knows whether it placed an order, failed or was refused; Asterisk (through the AMI tracker) knows
whether the caller reached the queue, waited, was answered, and when the last channel went. Each
reports the *facts* it saw (``CallFacts``); the store merges them in the call row (``merged``) and
stores ``decide_outcome(merged facts)``. Which witness writes first does not matter: an order
followed by a hang-up during the goodbye is ``order_placed`` whether the tracker's hang-up or the
runner's end lands first (issue 8, defect 1).

The decision, first rule that matches (``tests/contract/test_outcomes.py`` is its table)::

    an operator answered                      -> operator_answered
    the caller asked for a callback           -> callback_requested
    hung up while waiting in the queue        -> abandoned_in_queue
    the queue gave up (timeout, empty)        -> queue_timeout
    the robot placed an order                 -> order_placed    (also when it then handed the
                                                                  caller over: readback_failed)
    the robot finished after hours            -> after_hours
    the robot failed                          -> error
    the caller hung up before the queue       -> abandoned_in_ivr
    handed over, or refused as overloaded     -> operator        (the queue's fate not known yet)
    anything else                             -> None            (in progress, or unknowable)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crm_bridge.contract.dialplan import IvrResult


class Outcome(StrEnum):
    """``calls.outcome``: how the whole call ended (written only by the store, from the facts)."""

    ORDER_PLACED = "order_placed"
    OPERATOR_ANSWERED = "operator_answered"
    OPERATOR = "operator"
    ABANDONED_IN_QUEUE = "abandoned_in_queue"
    ABANDONED_IN_IVR = "abandoned_in_ivr"
    QUEUE_TIMEOUT = "queue_timeout"
    CALLBACK_REQUESTED = "callback_requested"
    AFTER_HOURS = "after_hours"
    ERROR = "error"


# Not an outcome: how statistics and pages name a call whose outcome is not decided yet.
IN_PROGRESS = "in_progress"

# Outcomes for which the AMI tracker opens a callback task (its reason is the outcome): the caller
# left the queue without a human. Not callback_requested: the script that took the request saved its
# task itself, under the same call; opening it again counted one request twice (issue 8, defect 6).
CALLBACK_OUTCOMES = frozenset({Outcome.ABANDONED_IN_QUEUE, Outcome.QUEUE_TIMEOUT})


class Reason(StrEnum):
    """``IVR_REASON`` / ``calls.reason``: why the robot ended its part as it did."""

    # The robot finished.
    ORDER_PLACED = "order_placed"
    CALLBACK_REQUESTED = "callback_requested"
    # Tasks saved by the queue's "press 1" before its reason became callback_requested (old rows only).
    CALLBACK_REQUESTED_IN_QUEUE = "callback_requested_in_queue"
    # The caller needs a human.
    CALLER_REQUEST = "caller_request"
    UNKNOWN_NUMBER = "unknown_number"
    SHARED_NUMBER = "shared_number"
    NO_CALLER_ID = "no_caller_id"
    NO_PREVIOUS_ORDER = "no_previous_order"
    NO_INPUT = "no_input"
    INVALID_INPUT = "invalid_input"
    ORDER_EMPTIED = "order_emptied"
    ORDER_REJECTED = "order_rejected"  # the store refused the order (unknown product, …): nothing was written
    # The caller came back to the robot in the same call (same linkedid) and asked for another order:
    # the one placed earlier in the call stands (IVR_ORDER_ID), the caller was told so and goes to an
    # operator to change it (issue 9). Never read back as if it were the new one, never dropped.
    ORDER_ALREADY_PLACED = "order_already_placed"
    CALLBACK_WITHOUT_NUMBER = "callback_without_number"
    # Something of ours failed (the caller still reaches a human).
    DATABASE_TIMEOUT = "database_timeout"
    DATABASE_ERROR = "database_error"
    # The order write failed and looking it up by its idempotency key failed too: it may or may not
    # exist. The operator must check before entering it again.
    ORDER_OUTCOME_UNKNOWN = "order_outcome_unknown"
    # The order was placed (IVR_ORDER_ID is set) but its read-back could not be played (speech or
    # playback failure, not a hang-up): the caller did not hear the confirmation, a human gives it.
    READBACK_FAILED = "readback_failed"
    TTS_ERROR = "tts_error"
    PLAYBACK_FAILED = "playback_failed"
    INTERNAL_ERROR = "internal_error"
    AGI_ERROR = "agi_error"
    PROTOCOL_ERROR = "protocol_error"  # Asterisk's replies went out of step: nothing taken as input
    HANDLER_ERROR = "handler_error"
    UNKNOWN_SCRIPT = "unknown_script"
    OVERLOADED = "overloaded"
    # The database was not reachable since the service started (migrations not run yet): every call
    # goes straight to an operator until the start-up retry gets through (ivr.database_gate).
    DATABASE_UNAVAILABLE = "database_unavailable"
    SHUTDOWN = "shutdown"  # the service stopped while the call ran; the caller was cut to the queue
    # Set by the dialplan itself when our server gave no result (extensions_ivr.conf, after AGI()).
    SERVER_UNREACHABLE = "server_unreachable"  # nothing answered at IVR_AGI_BASE (AGISTATUS=FAILURE)
    SERVER_LOST = "server_lost"  # our server closed the call without a result: crashed or killed mid-call
    # The caller hung up after pressing 1 for the order (the order stands).
    HANGUP_AFTER_ORDER = "hangup_after_order"
    # The AMI tracker lost the call while disconnected.
    ENDED_WHILE_DISCONNECTED = "ended_while_disconnected"


# The dialplan's own reasons: the robot wrote no end for such a call, so the AMI tracker puts the
# dialplan's word on the row.
DIALPLAN_REASONS = frozenset({Reason.SERVER_UNREACHABLE, Reason.SERVER_LOST})

# Composite reasons, built only by these helpers (rows from before DIALPLAN_REASONS may also say
# agi_<AGISTATUS>, see crm_bridge.contract.dialplan).
AFTER_HOURS_PREFIX = "after_hours:"  # after_hours:<why the caller needed a human>
HANGUP_AT_PREFIX = "hangup_at_"  # hangup_at_<step>: the caller hung up while the robot was at <step>


def after_hours(reason: str) -> str:
    return f"{AFTER_HOURS_PREFIX}{reason}"


def hangup_at(step: str) -> str:
    return f"{HANGUP_AT_PREFIX}{step}"


class QueueFate(StrEnum):
    """What became of the caller in the operators' queue (the AMI tracker's word)."""

    WAITING = "waiting"  # joined; how it ends is not known (yet, or ever: AMI was lost)
    ANSWERED = "answered"
    ABANDONED = "abandoned"  # the caller hung up while waiting
    TIMED_OUT = "timed_out"  # Queue() returned without an operator; the caller did not hang up


class HangupBy(StrEnum):
    """``calls.hangup_by``."""

    CALLER = "caller"
    OPERATOR = "operator"
    SYSTEM = "system"


@dataclass(frozen=True)
class CallFacts:
    """What a witness saw of one call. Unknown is None/False; facts only ever add up (``merged``)."""

    ivr_result: IvrResult | None = None  # what the robot told (or would have told) the dialplan
    order_id: str | None = None  # the robot placed this order in the call
    callback_requested: bool = False  # a callback task was asked for (robot or queue key)
    after_hours: bool = False  # the robot answered outside the operators' hours
    refused: bool = False  # admission control sent the call to the queue before the robot spoke
    hung_up_in_ivr: bool = False  # the caller hung up before reaching the queue
    queue: QueueFate | None = None
    tracking_lost: bool = False  # the call ended while the AMI link was down: its end is unknown

    def merged(self, newer: CallFacts) -> CallFacts:
        """These facts plus ``newer``'s; a fact ``newer`` does not know never erases one we know."""
        return CallFacts(
            ivr_result=newer.ivr_result or self.ivr_result,
            order_id=newer.order_id or self.order_id,
            callback_requested=self.callback_requested or newer.callback_requested,
            after_hours=self.after_hours or newer.after_hours,
            refused=self.refused or newer.refused,
            hung_up_in_ivr=self.hung_up_in_ivr or newer.hung_up_in_ivr,
            queue=newer.queue or self.queue,
            tracking_lost=self.tracking_lost or newer.tracking_lost,
        )

    def to_json(self) -> dict[str, Any]:
        """Only the known facts (``calls.facts`` and the spool)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CallFacts:
        """Tolerant: an unknown key (written by a newer version) or value is ignored."""
        if not data:
            return cls()
        ivr_result = data.get("ivr_result")
        queue = data.get("queue")
        return cls(
            ivr_result=IvrResult(ivr_result) if ivr_result in IvrResult.__members__.values() else None,
            order_id=str(data["order_id"]) if data.get("order_id") else None,
            callback_requested=bool(data.get("callback_requested")),
            after_hours=bool(data.get("after_hours")),
            refused=bool(data.get("refused")),
            hung_up_in_ivr=bool(data.get("hung_up_in_ivr")),
            queue=QueueFate(queue) if queue in QueueFate.__members__.values() else None,
            tracking_lost=bool(data.get("tracking_lost")),
        )


def decide_outcome(facts: CallFacts) -> Outcome | None:
    """The call's outcome (see the module docstring for the rules and why in this order)."""
    if facts.queue is QueueFate.ANSWERED:
        return Outcome.OPERATOR_ANSWERED
    if facts.callback_requested:
        return Outcome.CALLBACK_REQUESTED
    if facts.queue is QueueFate.ABANDONED:
        return Outcome.ABANDONED_IN_QUEUE
    if facts.queue is QueueFate.TIMED_OUT:
        return Outcome.QUEUE_TIMEOUT
    if facts.order_id:
        return Outcome.ORDER_PLACED
    if facts.after_hours and facts.ivr_result is IvrResult.DONE:
        return Outcome.AFTER_HOURS
    if facts.ivr_result is IvrResult.ERROR:
        return Outcome.ERROR
    if facts.hung_up_in_ivr:
        return Outcome.ABANDONED_IN_IVR
    if facts.refused or facts.ivr_result is IvrResult.OPERATOR:
        return Outcome.OPERATOR
    return None


def facts_implying(outcome: str | None, order_id: str | None = None) -> CallFacts:
    """The least facts whose decision is ``outcome``: how rows and spooled records written before
    facts existed (they carry only an outcome) join the merge. ``decide_outcome`` of the result is
    ``outcome`` for every Outcome (tested); an unknown or old word ("abandoned") maps to its meaning."""
    match outcome:
        case Outcome.ORDER_PLACED:
            return CallFacts(ivr_result=IvrResult.DONE, order_id=order_id or "?")
        case Outcome.OPERATOR_ANSWERED:
            return CallFacts(queue=QueueFate.ANSWERED)
        case Outcome.OPERATOR:
            return CallFacts(ivr_result=IvrResult.OPERATOR)
        case Outcome.ABANDONED_IN_QUEUE:
            return CallFacts(queue=QueueFate.ABANDONED)
        case Outcome.ABANDONED_IN_IVR | "abandoned":
            return CallFacts(hung_up_in_ivr=True)
        case Outcome.QUEUE_TIMEOUT:
            return CallFacts(queue=QueueFate.TIMED_OUT)
        case Outcome.CALLBACK_REQUESTED:
            return CallFacts(callback_requested=True)
        case Outcome.AFTER_HOURS:
            return CallFacts(ivr_result=IvrResult.DONE, after_hours=True)
        case Outcome.ERROR:
            return CallFacts(ivr_result=IvrResult.ERROR)
    return CallFacts(order_id=order_id)
