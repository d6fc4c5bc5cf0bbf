"""The repeat-order call as a pure state machine.

    start ─► LookupCaller ─► found, has an order ─► MENU ─1─► PlaceOrder ─► READBACK: Finish(done, read-back)
                         └─► anyone else ─► Finish(operator)  ├─2─► EDIT each line ─► CONFIRM ─1─► PlaceOrder
                                                              └─0─► Finish(operator)
    READBACK ─ the read-back could not be played ─► Finish(operator, readback_failed, the order)
    PlaceOrder ─ the call's key already holds another order ─► Finish(operator, order_already_placed, that order)

Two failed inputs in a row (no input or a key that means nothing) hand the caller to an operator,
and so does every failed external step: nobody is ever left in silence. An order that stands but
whose confirmation the caller did not hear goes to an operator with the order, so that the caller
hears it from a human instead of ringing back and ordering twice.

One order per call (issue 9): the order is keyed by the call's linkedid, so a caller who comes back
to the robot in the same call (a transfer back, an AGI retry) and asks for something else (9 bottles
instead of 3) cannot get a second order. The rule: the first order stands. The caller hears that
their order <number>, placed earlier in this call, stands, and goes to an operator to change it,
with that order on the channel (IVR_ORDER_ID); after hours the same words, then the callback. The
old order is never read back as if it were the new one, and the new request is never dropped in
silence (the timeline's ``order.already_placed`` says what was asked). Why not place the change as a
second order: a caller who changed 3 to 9 wants 9 bottles, not 12; only a human can tell a change
from an addition, and can amend the first order before it is delivered.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass

from crm_bridge.contract.dialplan import IvrResult
from crm_bridge.contract.outcomes import Reason, after_hours
from ivr.flows.model import (
    Action,
    Ask,
    CallbackRecorded,
    CallerLooked,
    Customer,
    Digits,
    Event,
    Finish,
    Item,
    LookupCaller,
    OrderAlreadyPlaced,
    OrderPlaced,
    PlaceOrder,
    PromptRef,
    RequestCallback,
    Result,
    StepFailed,
)


@dataclass(frozen=True)
class FlowConfig:
    max_attempts: int = 2
    max_quantity: int = 50
    menu_timeout: float = 6.0
    quantity_timeout: float = 8.0
    # Operators' hours, read to callers who need a human when nobody is there.
    open_hour: int = 9
    close_hour: int = 20


class Stage(enum.Enum):
    LOOKUP = "lookup"
    MENU = "menu"
    EDIT = "edit"
    CONFIRM = "confirm"
    PLACING = "placing"
    READBACK = "readback"  # the order stands; its read-back is being played (Finish(done) already given)
    CALLBACK = "callback"
    DONE = "done"


@dataclass(frozen=True)
class State:
    stage: Stage = Stage.LOOKUP
    customer: Customer | None = None
    last_order: tuple[Item, ...] = ()
    draft: tuple[Item, ...] = ()  # the order being built by "change quantity"
    edit_index: int = 0
    failures: int = 0  # failed inputs in a row at the current question
    operators_open: bool = True  # inside business hours: a human can take over
    handover_reason: str = ""  # why the caller needs a human (kept while a callback is recorded)
    order_id: str | None = None  # the order placed in this call: every later Finish carries it

    @property
    def customer_id(self) -> str | None:
        return self.customer.customer_id if self.customer else None


class FlowError(RuntimeError):
    """The runner fed an event the flow cannot take in its current stage (a runner bug)."""


_TO_OPERATOR = (PromptRef("to_operator"),)
_TECHNICAL = (PromptRef("technical_problem"),)


def _already_placed(state: State) -> tuple[PromptRef, ...]:
    """"Your order <number>, placed earlier in this call, stands" (before the hand-over's words)."""
    return (PromptRef("order_already_placed", {"number": state.order_id}),)


# Why a caller we looked up cannot be served by the robot; the reason goes to IVR_REASON.
_LOOKUP_REASONS = {"unknown": Reason.UNKNOWN_NUMBER, "shared": Reason.SHARED_NUMBER, "invalid": Reason.NO_CALLER_ID}


class RepeatOrderFlow:
    def __init__(self, config: FlowConfig | None = None) -> None:
        self.config = config or FlowConfig()

    def start(self, *, operators_open: bool = True) -> tuple[State, Action]:
        return State(operators_open=operators_open), LookupCaller()

    def step(self, state: State, event: Event) -> tuple[State, Action]:
        if isinstance(event, StepFailed):
            if state.stage is Stage.CALLBACK:  # even the callback could not be saved: say the hours
                return self._after_hours(state, recorded=False)
            if state.stage is Stage.READBACK:  # the order stands, unheard: a human confirms it
                return self._to_operator(state, Reason.READBACK_FAILED, _TO_OPERATOR)
            if state.stage is Stage.DONE:
                raise FlowError("no event expected in stage done")
            return self._to_operator(state, event.reason, _TECHNICAL)
        handler = {
            Stage.LOOKUP: self._on_lookup,
            Stage.MENU: self._on_menu,
            Stage.EDIT: self._on_quantity,
            Stage.CONFIRM: self._on_confirm,
            Stage.PLACING: self._on_placed,
            Stage.CALLBACK: self._on_callback,
        }.get(state.stage)
        if handler is None:
            raise FlowError(f"no event expected in stage {state.stage.value}")
        return handler(state, event)

    # --- stages ---------------------------------------------------------------------------------

    def _on_lookup(self, state: State, event: Event) -> tuple[State, Action]:
        if not isinstance(event, CallerLooked):
            raise FlowError(f"lookup expects CallerLooked, got {type(event).__name__}")
        state = dataclasses.replace(state, customer=event.customer, last_order=event.last_order)
        if event.status != "found" or event.customer is None:
            reason = _LOOKUP_REASONS.get(event.status, Reason.UNKNOWN_NUMBER)
            return self._to_operator(state, reason, _TO_OPERATOR)
        if not event.last_order:
            return self._to_operator(state, Reason.NO_PREVIOUS_ORDER, _TO_OPERATOR)
        state = dataclasses.replace(state, stage=Stage.MENU)
        greeting = PromptRef("greeting_menu", {"customer": event.customer, "order": event.last_order})
        return state, self._menu_question((greeting,))

    def _on_menu(self, state: State, event: Event) -> tuple[State, Action]:
        digits = self._digits(event)
        if digits.digits == "1":
            return self._place(state, state.last_order)
        if digits.digits == "2":
            editing = dataclasses.replace(
                state, stage=Stage.EDIT, draft=state.last_order, edit_index=0, failures=0
            )
            return editing, self._quantity_question(editing, ())
        if digits.digits == "0":
            return self._to_operator(state, Reason.CALLER_REQUEST, _TO_OPERATOR)
        return self._retry(state, digits, lambda lead: self._menu_question((*lead, PromptRef("menu"))))

    def _on_quantity(self, state: State, event: Event) -> tuple[State, Action]:
        digits = self._digits(event)
        item = state.draft[state.edit_index]
        ask_again = lambda lead: self._quantity_question(state, lead)  # noqa: E731
        if digits.digits == "":
            if digits.timed_out:
                return self._retry(state, digits, ask_again)
            quantity = item.quantity  # a bare "#" keeps the line as it was
        elif digits.digits.isdigit():
            # Digits typed without "#" before the timeout still count: the caller meant them.
            quantity = int(digits.digits)
        else:
            return self._retry(state, digits, ask_again)
        if quantity > self.config.max_quantity:
            too_large = (PromptRef("quantity_too_large", {"max": self.config.max_quantity}),)
            return self._retry(state, digits, ask_again, lead=too_large)
        draft = tuple(
            line.with_quantity(quantity) if index == state.edit_index else line
            for index, line in enumerate(state.draft)
        )
        state = dataclasses.replace(state, draft=draft, edit_index=state.edit_index + 1, failures=0)
        if state.edit_index < len(draft):
            return state, self._quantity_question(state, ())
        kept = tuple(line for line in draft if line.quantity > 0)
        if not kept:
            return self._to_operator(state, Reason.ORDER_EMPTIED, (PromptRef("order_emptied"),))
        state = dataclasses.replace(state, stage=Stage.CONFIRM, draft=kept)
        return state, self._confirm_question(state, ())

    def _on_confirm(self, state: State, event: Event) -> tuple[State, Action]:
        digits = self._digits(event)
        if digits.digits == "1":
            return self._place(state, state.draft)
        if digits.digits == "0":
            return self._to_operator(state, Reason.CALLER_REQUEST, _TO_OPERATOR)
        return self._retry(state, digits, lambda lead: self._confirm_question(state, lead))

    def _on_placed(self, state: State, event: Event) -> tuple[State, Action]:
        if isinstance(event, OrderAlreadyPlaced):  # the first order of the call stands (see the docstring)
            state = dataclasses.replace(state, order_id=event.order_id)
            return self._to_operator(state, Reason.ORDER_ALREADY_PLACED, (*_already_placed(state), *_TO_OPERATOR))
        if not isinstance(event, OrderPlaced):
            raise FlowError(f"placing expects OrderPlaced, got {type(event).__name__}")
        readback = PromptRef(
            "order_placed",
            {
                "number": event.order_id,
                "total": event.total,
                "delivery_date": event.delivery_date,
                "today": event.today,
                "window_start": event.window_start,
                "window_end": event.window_end,
            },
        )
        state = dataclasses.replace(state, stage=Stage.READBACK, order_id=event.order_id)
        finish = Finish(IvrResult.DONE, Reason.ORDER_PLACED, state.customer_id, (readback,), order_id=event.order_id,
                        confirms_order=True)
        return state, finish

    def _on_callback(self, state: State, event: Event) -> tuple[State, Action]:
        if not isinstance(event, CallbackRecorded):
            raise FlowError(f"callback expects CallbackRecorded, got {type(event).__name__}")
        return self._after_hours(state, recorded=event.created)

    def _after_hours(self, state: State, *, recorded: bool) -> tuple[State, Action]:
        hours = {"open_hour": self.config.open_hour, "close_hour": self.config.close_hour}
        prompt = PromptRef("after_hours_callback" if recorded else "after_hours_no_number", hours)
        reason = after_hours(state.handover_reason)
        lead = _already_placed(state) if state.handover_reason == Reason.ORDER_ALREADY_PLACED else ()
        # "done": nobody is in the queue now, so the dialplan says goodbye instead of queueing.
        return self._finish(state, IvrResult.DONE, reason, (*lead, prompt), callback_saved=recorded)

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _digits(event: Event) -> Digits:
        if not isinstance(event, Digits):
            raise FlowError(f"expected Digits, got {type(event).__name__}")
        return event

    def _retry(
        self,
        state: State,
        digits: Digits,
        ask_again: Callable[[tuple[PromptRef, ...]], Ask],
        lead: tuple[PromptRef, ...] | None = None,
    ) -> tuple[State, Action]:
        """Count a failed input; the last allowed one goes to a human, otherwise explain and ask again."""
        no_input = digits.digits == "" and digits.timed_out
        failures = state.failures + 1
        if failures >= self.config.max_attempts:
            reason = Reason.NO_INPUT if no_input else Reason.INVALID_INPUT
            return self._to_operator(state, reason, _TO_OPERATOR)
        state = dataclasses.replace(state, failures=failures)
        if lead is None:
            lead = (PromptRef("no_input" if no_input else "invalid_input"),)
        return state, ask_again(lead)

    def _place(self, state: State, items: tuple[Item, ...]) -> tuple[State, Action]:
        assert state.customer is not None  # only reachable after a successful lookup
        state = dataclasses.replace(state, stage=Stage.PLACING, failures=0)
        lines = tuple((item.sku, item.quantity) for item in items if item.quantity > 0)
        return state, PlaceOrder(state.customer.customer_id, lines)

    def _to_operator(self, state: State, reason: str, prompts: tuple[PromptRef, ...]) -> tuple[State, Action]:
        """Hand the caller to a human, or outside business hours promise a callback instead."""
        if state.operators_open:
            return self._finish(state, IvrResult.OPERATOR, reason, prompts)
        waiting = dataclasses.replace(state, stage=Stage.CALLBACK, handover_reason=reason)
        return waiting, RequestCallback(state.customer_id, reason)

    def _finish(
        self, state: State, result: Result, reason: str, prompts: tuple[PromptRef, ...], *,
        callback_saved: bool = False,
    ) -> tuple[State, Action]:
        done = dataclasses.replace(state, stage=Stage.DONE)
        return done, Finish(result, reason, state.customer_id, prompts, order_id=state.order_id,
                            callback_saved=callback_saved)

    def _menu_question(self, prompts: tuple[PromptRef, ...]) -> Ask:
        return Ask(prompts, max_digits=1, timeout=self.config.menu_timeout, step="menu")

    def _quantity_question(self, state: State, lead: tuple[PromptRef, ...]) -> Ask:
        item = state.draft[state.edit_index]
        question = PromptRef("ask_quantity", {"item": item, "max": self.config.max_quantity})
        return Ask(
            (*lead, question),
            max_digits=len(str(self.config.max_quantity)) + 1,
            timeout=self.config.quantity_timeout,
            step=f"quantity:{item.sku}",
        )

    def _confirm_question(self, state: State, lead: tuple[PromptRef, ...]) -> Ask:
        confirm = PromptRef("confirm_order", {"order": state.draft})
        return Ask((*lead, confirm), max_digits=1, timeout=self.config.menu_timeout, step="confirm")
