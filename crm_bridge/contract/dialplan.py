"""The ``IVR_*`` channel variables: the contract between ``dialplans/`` and the service.

Each variable is declared once, with who sets it and who reads it; ``tests/test_call_contract.py``
reads ``dialplans/*.conf`` and checks both directions: every ``IVR_*`` the dialplan reads is set by
the dialplan or by the service, and every variable the service sets is read by the dialplan or
declared here for another reader (the AMI tracker, a later script, the admin's CRM).

Readers over AMI see a variable only through ``VarSet`` events, which ``manager_ivr.conf`` lets
through for ``IVR_*`` names only. Queue AMI events (AgentCalled…) do not carry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Var(StrEnum):
    # Set by the service (FastAGI), at the end of the robot's part of the call.
    RESULT = "IVR_RESULT"
    REASON = "IVR_REASON"
    CUSTOMER_ID = "IVR_CUSTOMER_ID"
    ORDER_ID = "IVR_ORDER_ID"
    LANGUAGE = "IVR_LANGUAGE"
    # Set by the service's callback-request script (the queue's "press 1").
    CALLBACK = "IVR_CALLBACK"
    # Set by the dialplan for itself (and for the tracker: IVR_RECORDING).
    CALL_ID = "IVR_CALL_ID"
    RECORDING = "IVR_RECORDING"
    # [globals] of extensions_ivr.conf: the admin's settings.
    AGI_BASE = "IVR_AGI_BASE"
    RECORDINGS_DIR = "IVR_RECORDINGS_DIR"
    OPERATOR_QUEUE = "IVR_OPERATOR_QUEUE"
    QUEUE_TIMEOUT = "IVR_QUEUE_TIMEOUT"
    DEFAULT_LANGUAGE = "IVR_DEFAULT_LANGUAGE"
    # Per line (issue 12): callers may answer by voice. Set before Goto(ivr-inbound,start,1).
    SPEECH = "IVR_SPEECH"


class Side(StrEnum):
    SERVICE = "service"  # our FastAGI scripts, with SET VARIABLE / MSet
    DIALPLAN = "dialplan"  # extensions_ivr.conf (Set(), [globals])
    SCRIPT = "script"  # a later FastAGI script on the same channel reads it with GET VARIABLE
    TRACKER = "tracker"  # the AMI call tracker, from VarSet events
    CRM = "crm"  # for the admin's own dialplan or CRM integration (nothing of ours reads it)


@dataclass(frozen=True)
class VarUse:
    set_by: frozenset[Side]
    read_by: frozenset[Side]
    meaning: str


def _use(set_by: set[Side], read_by: set[Side], meaning: str) -> VarUse:
    return VarUse(frozenset(set_by), frozenset(read_by), meaning)


S, D, SC, T, C = Side.SERVICE, Side.DIALPLAN, Side.SCRIPT, Side.TRACKER, Side.CRM

VARIABLES: dict[Var, VarUse] = {
    Var.RESULT: _use({S, D}, {D, T}, "what the dialplan does next: IvrResult; the dialplan clears it before AGI()"),
    Var.REASON: _use({S, D}, {D, T, C}, "why (a Reason); the dialplan writes server_unreachable / server_lost "
                      "when we said nothing"),
    Var.CUSTOMER_ID: _use({S}, {SC, T, C}, "the customer the robot recognised (external id)"),
    Var.ORDER_ID: _use({S}, {T, C}, "the order the robot placed in this call"),
    Var.LANGUAGE: _use({S, D}, {D, SC}, "the caller's language: the channel language (Asterisk's queue prompts) "
                        "and the queue's callback script; the dialplan clears it before AGI()"),
    Var.CALLBACK: _use({S}, {T}, "1 when the caller asked for a callback from the queue"),
    Var.CALL_ID: _use({D}, {D}, "the call's linkedid, digits and dots only: recording file names"),
    Var.RECORDING: _use({D}, {D, T}, "the MixMonitor file of the call"),
    Var.AGI_BASE: _use({D}, {D}, "where our FastAGI server listens"),
    Var.RECORDINGS_DIR: _use({D}, {D}, "where MixMonitor writes (settings: recordings.dir)"),
    Var.OPERATOR_QUEUE: _use({D}, {D}, "the operators' queue"),
    Var.QUEUE_TIMEOUT: _use({D}, {D}, "seconds a caller waits in the queue before Queue() gives up"),
    Var.DEFAULT_LANGUAGE: _use({D}, {D}, "the channel language when the service said none (flow.default_language)"),
    Var.SPEECH: _use({D}, {D}, "1: this line's callers may answer by voice (AudioSocket + vosk), 0: keys only, "
                     "empty: speech.enabled; passed to the robot as its AGI argument speech=…"),
}

# The AMI tracker follows these (VarSet of any other variable is dropped, see ivr.ami.events).
TRACKED: frozenset[Var] = frozenset(v for v, use in VARIABLES.items() if T in use.read_by)


class IvrResult(StrEnum):
    """``IVR_RESULT``: empty (the service never answered) sends the caller to the queue too."""

    DONE = "done"  # the robot finished: the dialplan hangs up after the goodbye
    OPERATOR = "operator"  # a human takes over: Queue()
    ERROR = "error"  # the robot failed: Queue(), like operator


# What the dialplan wrote when IVR_REASON was empty after AGI() before it named its reasons
# (Reason.SERVER_UNREACHABLE / SERVER_LOST): agi_SUCCESS, agi_FAILURE. Old rows still read so.
AGI_STATUS_REASON_PREFIX = "agi_"

# The contexts of dialplans/extensions_ivr.conf: a channel found in one is the caller's leg of our call.
IVR_CONTEXTS = frozenset({"ivr-inbound", "ivr-queue-exit"})
