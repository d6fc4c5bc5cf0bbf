"""The queue's "press 1 to be called back" as a pure state machine.

A caller waiting in the operators queue pressed 1; the queue's exit context runs this script.

    start ─► a customer or a number to call back? ─no─► Finish(operator, callback_without_number)
                │ yes                                    "your number is withheld, please hold"
                ▼                                        (the dialplan puts them back in the queue)
          RequestCallback ─► CallbackRecorded ─► Finish(done, callback_requested, callback_saved)
                │                                 "we will call you back" (the dialplan hangs up)
                └─► StepFailed ─► Finish(operator, <why>)  back to the queue, nothing promised

Whoever cannot be promised a callback keeps waiting for a human: nobody is dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from crm_bridge.contract.dialplan import IvrResult
from crm_bridge.contract.outcomes import Reason
from ivr.flows.model import Action, CallbackRecorded, Event, Finish, PromptRef, RequestCallback, StepFailed

# The reason the task is filed under and the dialplan's reason of a saved request (one word for
# both: the tracker, the console and the supervisor read the same thing).
CALLBACK_REQUESTED = Reason.CALLBACK_REQUESTED
WITHOUT_NUMBER = Reason.CALLBACK_WITHOUT_NUMBER

_PROMISED = (PromptRef("callback_promised"),)
_IMPOSSIBLE = (PromptRef("callback_impossible"),)


class Stage(enum.Enum):
    SAVING = "saving"
    DONE = "done"


@dataclass(frozen=True)
class State:
    stage: Stage
    customer_id: str | None


class FlowError(RuntimeError):
    """The runner fed an event the flow cannot take in its current stage (a runner bug)."""


class CallbackRequestFlow:
    def start(self, *, customer_id: str | None, has_number: bool) -> tuple[State, Action]:
        """``customer_id``: the customer the robot recognised earlier in the call, if any;
        ``has_number``: the caller's number is usable (not withheld)."""
        if customer_id is None and not has_number:
            return self._without_number(State(Stage.DONE, None))
        return State(Stage.SAVING, customer_id), RequestCallback(customer_id, CALLBACK_REQUESTED)

    def step(self, state: State, event: Event) -> tuple[State, Action]:
        if state.stage is not Stage.SAVING:
            raise FlowError(f"no event expected in stage {state.stage.value}")
        done = State(Stage.DONE, state.customer_id)
        if isinstance(event, StepFailed):  # not saved: the caller keeps waiting, promised nothing
            return done, Finish(IvrResult.OPERATOR, event.reason, state.customer_id)
        if not isinstance(event, CallbackRecorded):
            raise FlowError(f"saving expects CallbackRecorded, got {type(event).__name__}")
        if not event.created:  # the runner found nobody to call back after all
            return self._without_number(done)
        return done, Finish(IvrResult.DONE, CALLBACK_REQUESTED, state.customer_id, _PROMISED, callback_saved=True)

    @staticmethod
    def _without_number(state: State) -> tuple[State, Action]:
        return state, Finish(IvrResult.OPERATOR, WITHOUT_NUMBER, state.customer_id, _IMPOSSIBLE)
