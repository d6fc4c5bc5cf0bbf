"""Table-driven tests of the pure repeat-order flow: every branch, no I/O, no mocks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ivr.flows.model import (
    Ask,
    CallbackRecorded,
    CallerLooked,
    Customer,
    Digits,
    Finish,
    Item,
    LookupCaller,
    OrderAlreadyPlaced,
    OrderPlaced,
    PlaceOrder,
    RequestCallback,
    StepFailed,
)
from ivr.flows.repeat_order import FlowConfig, FlowError, RepeatOrderFlow, Stage, State

ALEXEY = Customer("C-1", "Иванов", "Алексей", "Сергеевич", "ru")
WATER = Item("W19", 4, "бутылка", "воды «Жемчужная роса» 19 л")
CUPS = Item("CUP", 2, "упаковка", "стаканчиков")
FOUND = CallerLooked("found", ALEXEY, (WATER, CUPS))
PLACED = OrderPlaced("A-1002", Decimal("1920.00"), date(2026, 11, 28), date(2026, 11, 27), 9, 14)
# The call's key already holds this order (placed on an earlier visit to the robot in the same call).
ALREADY_PLACED = OrderAlreadyPlaced("A-1002")


def key(k: str) -> Digits:
    return Digits(k, timed_out=False)


SILENCE = Digits("", timed_out=True)
HASH = Digits("", timed_out=False)


def drive(events, config: FlowConfig | None = None):
    """Feed events in order; return every action the flow asked for."""
    flow = RepeatOrderFlow(config or FlowConfig())
    state, action = flow.start()
    actions = [action]
    for event in events:
        # Only a read-back that confirms an order may be reported back (as a StepFailed).
        assert not isinstance(action, Finish) or action.confirms_order, f"flow already finished, cannot take {event}"
        state, action = flow.step(state, event)
        actions.append(action)
    return state, actions


# (name, events, expected result, expected reason, expected order lines or None)
CASES = [
    ("repeat_with_1", [FOUND, key("1"), PLACED], "done", "order_placed", (("W19", 4), ("CUP", 2))),
    ("operator_with_0", [FOUND, key("0")], "operator", "caller_request", None),
    ("unknown_number", [CallerLooked("unknown")], "operator", "unknown_number", None),
    ("shared_number", [CallerLooked("shared")], "operator", "shared_number", None),
    ("withheld_number", [CallerLooked("invalid")], "operator", "no_caller_id", None),
    ("no_previous_order", [CallerLooked("found", ALEXEY, ())], "operator", "no_previous_order", None),
    ("two_timeouts", [FOUND, SILENCE, SILENCE], "operator", "no_input", None),
    ("two_invalid_keys", [FOUND, key("7"), key("9")], "operator", "invalid_input", None),
    ("invalid_then_silence", [FOUND, key("7"), SILENCE], "operator", "no_input", None),
    ("timeout_then_repeat", [FOUND, SILENCE, key("1"), PLACED], "done", "order_placed", (("W19", 4), ("CUP", 2))),
    ("lookup_failed", [StepFailed("database_timeout")], "operator", "database_timeout", None),
    ("order_failed", [FOUND, key("1"), StepFailed("database_error")], "operator", "database_error", None),
    ("order_outcome_unknown", [FOUND, key("1"), StepFailed("order_outcome_unknown")], "operator",
     "order_outcome_unknown", None),
    # The order stands but the caller could not hear it: a human confirms it, the order on the card.
    ("readback_not_played", [FOUND, key("1"), PLACED, StepFailed("playback_failed")], "operator", "readback_failed",
     (("W19", 4), ("CUP", 2))),
    ("readback_not_synthesized", [FOUND, key("2"), HASH, HASH, key("1"), PLACED, StepFailed("tts_error")], "operator",
     "readback_failed", (("W19", 4), ("CUP", 2))),
    (
        "change_both_quantities",
        [FOUND, key("2"), key("6"), key("10"), key("1"), PLACED],
        "done",
        "order_placed",
        (("W19", 6), ("CUP", 10)),
    ),
    ("hash_keeps_quantity", [FOUND, key("2"), HASH, key("3"), key("1"), PLACED], "done", "order_placed",
     (("W19", 4), ("CUP", 3))),
    ("zero_removes_line", [FOUND, key("2"), key("0"), HASH, key("1"), PLACED], "done", "order_placed",
     (("CUP", 2),)),
    ("partial_digits_count", [FOUND, key("2"), Digits("5", timed_out=True), HASH, key("1"), PLACED], "done",
     "order_placed", (("W19", 5), ("CUP", 2))),
    ("all_lines_removed", [FOUND, key("2"), key("0"), key("0")], "operator", "order_emptied", None),
    ("too_large_twice", [FOUND, key("2"), key("99"), key("51")], "operator", "invalid_input", None),
    ("too_large_then_ok", [FOUND, key("2"), key("99"), key("50"), HASH, key("1"), PLACED], "done",
     "order_placed", (("W19", 50), ("CUP", 2))),
    ("silence_at_quantity", [FOUND, key("2"), SILENCE, SILENCE], "operator", "no_input", None),
    ("star_at_quantity_is_invalid", [FOUND, key("2"), key("*"), key("*")], "operator", "invalid_input", None),
    ("operator_at_confirm", [FOUND, key("2"), HASH, HASH, key("0")], "operator", "caller_request", None),
    ("invalid_twice_at_confirm", [FOUND, key("2"), HASH, HASH, key("5"), key("5")], "operator", "invalid_input",
     None),
    # Issue 9: back in the same call, 4 changed to 9: the first order stands, a human changes it.
    ("changed_on_a_second_visit", [FOUND, key("2"), key("9"), HASH, key("1"), ALREADY_PLACED], "operator",
     "order_already_placed", (("W19", 9), ("CUP", 2))),
    ("repeat_on_a_second_visit_after_a_change", [FOUND, key("1"), ALREADY_PLACED], "operator",
     "order_already_placed", (("W19", 4), ("CUP", 2))),
]


@pytest.mark.parametrize(("name", "events", "result", "reason", "lines"), CASES, ids=[c[0] for c in CASES])
def test_flow_branches(name, events, result, reason, lines):
    _state, actions = drive(events)
    final = actions[-1]
    assert isinstance(final, Finish)
    assert (final.result, final.reason) == (result, reason)
    placed = [a for a in actions if isinstance(a, PlaceOrder)]
    if lines is None:
        assert not any(isinstance(e, OrderPlaced | OrderAlreadyPlaced) for e in events)
    else:
        assert [p.lines for p in placed] == [lines]
        assert placed[0].customer_id == "C-1"
        assert final.order_id == "A-1002"
    assert final.prompts, "the caller always hears something before the call moves on"


def test_starts_with_lookup():
    assert isinstance(RepeatOrderFlow().start()[1], LookupCaller)


def test_greeting_carries_customer_and_last_order_and_is_a_one_key_menu():
    _s, actions = drive([FOUND])
    ask = actions[-1]
    assert isinstance(ask, Ask) and ask.max_digits == 1 and ask.step == "menu"
    (greeting,) = ask.prompts
    assert greeting.prompt_id == "greeting_menu"
    assert greeting.params["customer"] is ALEXEY
    assert greeting.params["order"] == (WATER, CUPS)


def test_no_input_is_explained_and_the_menu_repeated():
    _s, actions = drive([FOUND, SILENCE])
    assert [p.prompt_id for p in actions[-1].prompts] == ["no_input", "menu"]
    _s, actions = drive([FOUND, key("8")])
    assert [p.prompt_id for p in actions[-1].prompts] == ["invalid_input", "menu"]


def test_valid_input_resets_the_failure_count():
    # one silence at the menu, then one at the first quantity: neither question failed twice
    state, actions = drive([FOUND, SILENCE, key("2"), SILENCE])
    assert isinstance(actions[-1], Ask) and state.stage is Stage.EDIT and state.failures == 1


def test_quantity_question_names_the_line_and_allows_enough_digits():
    _s, actions = drive([FOUND, key("2")], FlowConfig(max_quantity=120))
    ask = actions[-1]
    assert ask.prompts[-1].prompt_id == "ask_quantity"
    assert ask.prompts[-1].params["item"] == WATER
    assert ask.max_digits >= 3


def test_confirm_reads_back_only_kept_lines():
    _s, actions = drive([FOUND, key("2"), key("0"), key("7")])
    confirm = actions[-1].prompts[-1]
    assert confirm.prompt_id == "confirm_order"
    assert confirm.params["order"] == (CUPS.with_quantity(7),)


def test_readback_carries_number_total_and_delivery():
    _s, actions = drive([FOUND, key("1"), PLACED])
    (readback,) = actions[-1].prompts
    assert readback.prompt_id == "order_placed"
    assert readback.params["number"] == "A-1002"
    assert readback.params["total"] == Decimal("1920.00")
    assert readback.params["delivery_date"] == date(2026, 11, 28)


def test_failures_say_why_to_the_caller():
    _s, actions = drive([FOUND, key("1"), StepFailed("database_timeout")])
    assert [p.prompt_id for p in actions[-1].prompts] == ["technical_problem"]
    assert actions[-1].customer_id == "C-1"


def test_wrong_event_for_stage_is_a_runner_bug():
    flow = RepeatOrderFlow()
    with pytest.raises(FlowError):
        flow.step(State(), key("1"))
    with pytest.raises(FlowError):
        flow.step(State(stage=Stage.DONE), key("1"))
    with pytest.raises(FlowError):  # only a read-back in progress can still fail
        flow.step(State(stage=Stage.DONE), StepFailed("playback_failed"))
    with pytest.raises(FlowError):
        flow.step(State(stage=Stage.READBACK, order_id="A-1002"), key("1"))


def test_only_the_order_readback_reports_that_it_was_not_heard():
    _s, actions = drive([FOUND, key("1"), PLACED])
    assert actions[-1].confirms_order
    _s, actions = drive([FOUND, key("0")])
    assert not actions[-1].confirms_order
    assert not drive_closed([CallerLooked("unknown"), CallbackRecorded(created=True)])[-1].confirms_order


def test_unheard_readback_hands_over_with_the_order_and_says_so():
    _s, actions = drive([FOUND, key("1"), PLACED, StepFailed("playback_failed")])
    final = actions[-1]
    assert (final.result, final.reason, final.order_id, final.customer_id) == (
        "operator", "readback_failed", "A-1002", "C-1")
    assert [p.prompt_id for p in final.prompts] == ["to_operator"]
    assert not final.confirms_order


def test_an_order_already_placed_in_the_call_is_named_and_handed_over_never_read_back():
    _s, actions = drive([FOUND, key("2"), key("9"), HASH, key("1"), ALREADY_PLACED])
    final = actions[-1]
    assert (final.result, final.reason, final.order_id, final.customer_id) == (
        "operator", "order_already_placed", "A-1002", "C-1")
    assert [(p.prompt_id, dict(p.params)) for p in final.prompts] == [
        ("order_already_placed", {"number": "A-1002"}), ("to_operator", {})]
    assert "order_placed" not in [p.prompt_id for p in final.prompts]  # no read-back of the old order
    assert not final.confirms_order


def test_flow_is_deterministic_and_does_not_mutate_state():
    flow = RepeatOrderFlow()
    state, _ = flow.start()
    s1, a1 = flow.step(state, FOUND)
    s2, a2 = flow.step(state, FOUND)
    assert (s1, a1) == (s2, a2)
    assert state == State()


# --- outside business hours -------------------------------------------------------------------------


def drive_closed(events):
    flow = RepeatOrderFlow(FlowConfig(open_hour=9, close_hour=20))
    state, action = flow.start(operators_open=False)
    actions = [action]
    for event in events:
        state, action = flow.step(state, event)
        actions.append(action)
    return actions


@pytest.mark.parametrize(
    ("events", "reason", "customer"),
    [
        ([FOUND, key("0")], "caller_request", "C-1"),
        ([CallerLooked("unknown")], "unknown_number", None),
        ([FOUND, SILENCE, SILENCE], "no_input", "C-1"),
        ([FOUND, key("1"), StepFailed("database_timeout")], "database_timeout", "C-1"),
    ],
)
def test_after_hours_a_request_for_a_human_becomes_a_callback(events, reason, customer):
    actions = drive_closed([*events, CallbackRecorded(created=True)])
    request = actions[-2]
    assert isinstance(request, RequestCallback)
    assert (request.customer_id, request.reason) == (customer, reason)
    final = actions[-1]
    assert (final.result, final.reason, final.callback_saved) == ("done", f"after_hours:{reason}", True)
    (said,) = final.prompts
    assert said.prompt_id == "after_hours_callback"
    assert said.params == {"open_hour": 9, "close_hour": 20}


def test_after_hours_withheld_number_is_told_the_hours_without_a_promise():
    actions = drive_closed([CallerLooked("invalid"), CallbackRecorded(created=False)])
    assert actions[-1].prompts[0].prompt_id == "after_hours_no_number"
    assert (actions[-1].result, actions[-1].callback_saved) == ("done", False)


def test_after_hours_callback_that_cannot_be_saved_still_ends_politely():
    actions = drive_closed([CallerLooked("unknown"), StepFailed("database_error")])
    assert actions[-1].prompts[0].prompt_id == "after_hours_no_number"
    assert not actions[-1].callback_saved


def test_after_hours_unheard_readback_leaves_a_callback_with_the_order():
    actions = drive_closed([FOUND, key("1"), PLACED, StepFailed("tts_error"), CallbackRecorded(created=True)])
    request = actions[-2]
    assert isinstance(request, RequestCallback)
    assert (request.customer_id, request.reason) == ("C-1", "readback_failed")
    final = actions[-1]
    assert (final.result, final.reason, final.order_id, final.callback_saved) == (
        "done", "after_hours:readback_failed", "A-1002", True)
    assert not final.confirms_order


def test_after_hours_an_order_already_placed_is_named_before_the_callback():
    actions = drive_closed([FOUND, key("2"), key("9"), HASH, key("1"), ALREADY_PLACED, CallbackRecorded(created=True)])
    request = actions[-2]
    assert isinstance(request, RequestCallback)
    assert (request.customer_id, request.reason) == ("C-1", "order_already_placed")
    final = actions[-1]
    assert (final.result, final.reason, final.order_id, final.callback_saved) == (
        "done", "after_hours:order_already_placed", "A-1002", True)
    assert [p.prompt_id for p in final.prompts] == ["order_already_placed", "after_hours_callback"]
    assert final.prompts[0].params == {"number": "A-1002"}


def test_after_hours_repeat_orders_still_work():
    actions = drive_closed([FOUND, key("1"), PLACED])
    assert (actions[-1].result, actions[-1].reason) == ("done", "order_placed")
