"""What the CRM bridge says to the outside (issue 11): which call events leave, in which states.

An outbox row is one event for one target. The events are timeline kinds
(``crm_bridge.contract.events.EventKind``): a target names the kinds it wants, and only those are
enqueued for it. ``EXPORTED`` is every kind any target may ask for; the generic webhook sends them
all by default, Bitrix24 takes the call's start, its end, its recording and its transcript.
"""

from __future__ import annotations

from enum import StrEnum

from crm_bridge.contract.events import EventKind


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for its turn (or its next attempt)
    DELIVERED = "delivered"  # the target took it: never sent again
    DEAD = "dead"  # crm.max_attempts failed, or refused for good: an admin may retry it


class TargetKind(StrEnum):
    """The connectors (crm_bridge/connectors); a configured target is one of these."""

    WEBHOOK = "webhook"
    BITRIX24 = "bitrix24"
    AMOCRM = "amocrm"


# The call events a target may receive, in the order a call produces them.
EXPORTED: tuple[EventKind, ...] = (
    EventKind.CALL_STARTED,
    EventKind.ORDER_CREATED,
    EventKind.OPERATOR_ANSWERED,
    EventKind.CALL_ENDED,
    EventKind.CALL_HUNGUP,
    EventKind.RECORDING_READY,
    # An order's later life, from the console (no call): its deal in the CRM follows it.
    EventKind.ORDER_CHANGED,
    EventKind.ORDER_CANCELLED,
    EventKind.TRANSCRIPT_READY,
)
