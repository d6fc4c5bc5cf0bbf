"""Table-driven tests of the pure callback-request flow (the queue's "press 1"): no I/O, no mocks."""

from __future__ import annotations

import pytest

from ivr.flows.callback_request import CallbackRequestFlow, FlowError, Stage, State
from ivr.flows.model import CallbackRecorded, Digits, Finish, RequestCallback, StepFailed

SAVED = CallbackRecorded(created=True)

# (name, customer_id, has_number, events, result, reason, prompt, callback_saved)
CASES = [
    ("known_customer", "C-1", True, [SAVED], "done", "callback_requested", "callback_promised", True),
    ("known_customer_number_withheld", "C-1", False, [SAVED], "done", "callback_requested", "callback_promised",
     True),
    ("unknown_caller_with_a_number", None, True, [SAVED], "done", "callback_requested", "callback_promised", True),
    ("nobody_to_call_back", None, False, [], "operator", "callback_without_number", "callback_impossible", False),
    ("runner_found_nobody", None, True, [CallbackRecorded(created=False)], "operator", "callback_without_number",
     "callback_impossible", False),
    ("database_timeout", "C-1", True, [StepFailed("database_timeout")], "operator", "database_timeout", None, False),
    ("database_error", None, True, [StepFailed("database_error")], "operator", "database_error", None, False),
]


@pytest.mark.parametrize(
    ("customer_id", "has_number", "events", "result", "reason", "prompt", "saved"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_callback_request(customer_id, has_number, events, result, reason, prompt, saved):
    flow = CallbackRequestFlow()
    state, action = flow.start(customer_id=customer_id, has_number=has_number)
    for event in events:
        assert isinstance(action, RequestCallback)
        assert action == RequestCallback(customer_id, "callback_requested")
        state, action = flow.step(state, event)
    assert isinstance(action, Finish)
    assert (action.result, action.reason, action.customer_id, action.callback_saved) == (
        result, reason, customer_id, saved,
    )
    assert [p.prompt_id for p in action.prompts] == ([prompt] if prompt else [])
    assert state.stage is Stage.DONE


def test_a_finished_request_takes_no_more_events():
    flow = CallbackRequestFlow()
    state, _ = flow.start(customer_id=None, has_number=False)
    with pytest.raises(FlowError):
        flow.step(state, SAVED)


def test_saving_expects_the_outcome_of_the_request():
    with pytest.raises(FlowError):
        CallbackRequestFlow().step(State(Stage.SAVING, "C-1"), Digits("1", timed_out=False))
