"""The vocabulary of call flows: what a flow knows, what it asks for, and what it is told back.

Flows are pure: they never touch a socket, a database or a clock. They return one action at a time
and the runner feeds the outcome of that action back in as an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

# --- what the flow knows -------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    customer_id: str
    last_name: str
    first_name: str
    patronymic: str
    language: str


@dataclass(frozen=True)
class Item:
    """One order line as the caller hears it."""

    sku: str
    quantity: int
    unit: str
    name: str
    unit_en: str | None = None
    name_en: str | None = None

    def with_quantity(self, quantity: int) -> Item:
        return Item(self.sku, quantity, self.unit, self.name, self.unit_en, self.name_en)


@dataclass(frozen=True)
class PromptRef:
    """A prompt of the catalogue and its parameters; the runner turns it into text and audio."""

    prompt_id: str
    params: Mapping[str, Any] = field(default_factory=dict)


# --- actions: what the flow asks the runner to do ---------------------------------------------------


@dataclass(frozen=True)
class LookupCaller:
    """Find the caller in the CRM by the caller id of the call."""


@dataclass(frozen=True)
class Ask:
    """Play the prompts (interruptible: the caller may type over them) and collect digits.

    ``max_digits=1`` is a menu choice; more digits end with ``#``.
    """

    prompts: tuple[PromptRef, ...]
    max_digits: int
    timeout: float
    step: str  # where in the flow this happens, for the timeline and the drop-out funnel


@dataclass(frozen=True)
class PlaceOrder:
    customer_id: str
    lines: tuple[tuple[str, int], ...]  # (sku, quantity)


@dataclass(frozen=True)
class RequestCallback:
    """Leave a callback task for the caller (the customer, else the caller's number): operators
    are off duty, or the caller asked for it while waiting in the queue."""

    customer_id: str | None
    reason: str


# IVR_RESULT (crm_bridge.contract.dialplan.IvrResult); spelled out so the type checker sees the values.
Result = Literal["done", "operator", "error"]


@dataclass(frozen=True)
class Finish:
    """End of the flow: say the closing prompts, then hand the result to the dialplan."""

    result: Result
    reason: str
    customer_id: str | None
    prompts: tuple[PromptRef, ...] = ()
    order_id: str | None = None
    callback_saved: bool = False  # this call left a callback task (the call is "callback_requested")
    # The prompts confirm an order that stands: when they cannot be played (speech or playback
    # failure, not a hang-up) the runner tells the flow (StepFailed) instead of ending in silence.
    confirms_order: bool = False


Action = LookupCaller | Ask | PlaceOrder | RequestCallback | Finish


# --- events: what the runner tells the flow back ----------------------------------------------------

LookupStatus = Literal["found", "unknown", "shared", "invalid"]


@dataclass(frozen=True)
class CallerLooked:
    status: LookupStatus
    customer: Customer | None = None
    last_order: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Digits:
    digits: str
    timed_out: bool  # True when the caller stopped typing (or never started) before a terminator


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    total: Decimal
    delivery_date: date
    today: date
    window_start: int
    window_end: int


@dataclass(frozen=True)
class OrderAlreadyPlaced:
    """The call's idempotency key already holds another order (placed on an earlier visit to the
    robot in the same call): that order stands, the one asked for now was not placed."""

    order_id: str


@dataclass(frozen=True)
class StepFailed:
    """An external step (database, speech) failed or missed its deadline."""

    reason: str


@dataclass(frozen=True)
class CallbackRecorded:
    """The outcome of RequestCallback: False when there is nobody to call back (withheld number)."""

    created: bool


Event = CallerLooked | Digits | OrderPlaced | OrderAlreadyPlaced | CallbackRecorded | StepFailed
