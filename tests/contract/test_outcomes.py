"""decide_outcome as a table: one row per kind of call, the witnesses' facts -> the outcome."""

from __future__ import annotations

import pytest

from crm_bridge.contract.dialplan import IvrResult
from crm_bridge.contract.outcomes import CallFacts, Outcome, QueueFate, decide_outcome, facts_implying

DONE, OPERATOR, ERROR = IvrResult.DONE, IvrResult.OPERATOR, IvrResult.ERROR

# (what happened, the robot's facts, the tracker's facts, the call's outcome)
CALLS = [
    ("repeat order, goodbye heard, the dialplan hangs up",
     CallFacts(ivr_result=DONE, order_id="A-1"), CallFacts(ivr_result=DONE, order_id="A-1"), Outcome.ORDER_PLACED),
    # Defect 1: the caller hangs up during the goodbye, before the robot sets IVR_RESULT/IVR_ORDER_ID.
    ("order, then a hang-up during the goodbye",
     CallFacts(order_id="A-1", hung_up_in_ivr=True), CallFacts(hung_up_in_ivr=True), Outcome.ORDER_PLACED),
    ("hang-up while the order was being written, the write went through",
     CallFacts(order_id="A-1", hung_up_in_ivr=True), CallFacts(), Outcome.ORDER_PLACED),
    # Issue 9, point 3: the order stands, its read-back could not be played, the caller was handed over
    # with IVR_ORDER_ID. The order is the truth while they wait; a human's answer (or its absence) wins.
    ("order placed, read-back failed, waiting in the queue",
     CallFacts(ivr_result=OPERATOR, order_id="A-1"), CallFacts(ivr_result=OPERATOR, order_id="A-1",
                                                             queue=QueueFate.WAITING), Outcome.ORDER_PLACED),
    ("order placed, read-back failed, hang-up during 'connecting you'",
     CallFacts(ivr_result=OPERATOR, order_id="A-1"), CallFacts(ivr_result=OPERATOR, hung_up_in_ivr=True),
     Outcome.ORDER_PLACED),
    ("order placed, read-back failed, an operator confirmed it",
     CallFacts(ivr_result=OPERATOR, order_id="A-1"), CallFacts(queue=QueueFate.ANSWERED), Outcome.OPERATOR_ANSWERED),
    ("order placed, read-back failed, gave up waiting: a callback confirms it",
     CallFacts(ivr_result=OPERATOR, order_id="A-1"), CallFacts(queue=QueueFate.ABANDONED),
     Outcome.ABANDONED_IN_QUEUE),
    ("hang-up at the menu",
     CallFacts(hung_up_in_ivr=True), CallFacts(hung_up_in_ivr=True), Outcome.ABANDONED_IN_IVR),
    ("hang-up during the 'connecting you' prompt, before the queue",
     CallFacts(ivr_result=OPERATOR), CallFacts(ivr_result=OPERATOR, hung_up_in_ivr=True), Outcome.ABANDONED_IN_IVR),
    ("pressed 0, an operator answered",
     CallFacts(ivr_result=OPERATOR), CallFacts(ivr_result=OPERATOR, queue=QueueFate.ANSWERED),
     Outcome.OPERATOR_ANSWERED),
    ("pressed 0, gave up waiting",
     CallFacts(ivr_result=OPERATOR), CallFacts(queue=QueueFate.ABANDONED), Outcome.ABANDONED_IN_QUEUE),
    ("pressed 0, Queue() timed out", CallFacts(ivr_result=OPERATOR), CallFacts(queue=QueueFate.TIMED_OUT),
     Outcome.QUEUE_TIMEOUT),
    ("pressed 0, pressed 1 in the queue for a callback",
     CallFacts(ivr_result=OPERATOR), CallFacts(callback_requested=True, queue=QueueFate.WAITING),
     Outcome.CALLBACK_REQUESTED),
    ("handed over, AMI lost while waiting: only the robot's word is certain",
     CallFacts(ivr_result=OPERATOR), CallFacts(queue=QueueFate.WAITING, tracking_lost=True), Outcome.OPERATOR),
    ("handed over, no AMI at all", CallFacts(ivr_result=OPERATOR), CallFacts(), Outcome.OPERATOR),
    ("refused as overloaded, answered by an operator",
     CallFacts(refused=True), CallFacts(queue=QueueFate.ANSWERED), Outcome.OPERATOR_ANSWERED),
    ("refused as overloaded, no AMI", CallFacts(refused=True), CallFacts(), Outcome.OPERATOR),
    ("internal error, the caller hung up before the queue",
     CallFacts(ivr_result=ERROR), CallFacts(hung_up_in_ivr=True), Outcome.ERROR),
    ("internal error, then an operator answered",
     CallFacts(ivr_result=ERROR), CallFacts(queue=QueueFate.ANSWERED), Outcome.OPERATOR_ANSWERED),
    ("after hours, a callback recorded, goodbye heard",
     CallFacts(ivr_result=DONE, after_hours=True, callback_requested=True), CallFacts(ivr_result=DONE),
     Outcome.CALLBACK_REQUESTED),
    ("after hours, nobody to call back", CallFacts(ivr_result=DONE, after_hours=True), CallFacts(ivr_result=DONE),
     Outcome.AFTER_HOURS),
    ("after hours, a callback recorded, hang-up during the goodbye",
     CallFacts(after_hours=True, callback_requested=True, hung_up_in_ivr=True), CallFacts(hung_up_in_ivr=True),
     Outcome.CALLBACK_REQUESTED),
    ("our server down: AGI failed, the caller waited and gave up",
     CallFacts(), CallFacts(queue=QueueFate.ABANDONED), Outcome.ABANDONED_IN_QUEUE),
    ("in progress: nothing is known yet", CallFacts(), CallFacts(), None),
]


@pytest.mark.parametrize(("what", "robot", "tracker", "outcome"), CALLS, ids=[c[0] for c in CALLS])
def test_the_outcome_is_the_same_whichever_witness_speaks_first(what, robot, tracker, outcome):
    assert decide_outcome(robot.merged(tracker)) == outcome
    assert decide_outcome(tracker.merged(robot)) == outcome


def test_every_outcome_is_reachable_and_its_implied_facts_decide_it():
    reached = {outcome for *_, outcome in CALLS} - {None}
    assert reached == set(Outcome)
    for outcome in Outcome:
        assert decide_outcome(facts_implying(outcome, "A-1")) == outcome


def test_the_robots_old_word_abandoned_means_abandoned_in_the_ivr():
    assert decide_outcome(facts_implying("abandoned")) == Outcome.ABANDONED_IN_IVR


def test_a_witness_that_does_not_know_a_fact_never_erases_it():
    known = CallFacts(ivr_result=DONE, order_id="A-1", callback_requested=True, queue=QueueFate.ABANDONED)
    assert known.merged(CallFacts()) == known
    assert known.merged(CallFacts(queue=QueueFate.ANSWERED)).queue is QueueFate.ANSWERED  # the later fate


@pytest.mark.parametrize("facts", [CallFacts(), *(r for _, r, _, _ in CALLS), *(t for _, _, t, _ in CALLS)])
def test_facts_survive_json(facts):
    assert CallFacts.from_json(facts.to_json()) == facts


def test_facts_from_a_newer_version_are_read_as_far_as_they_are_known():
    assert CallFacts.from_json({"order_id": "A-1", "queue": "teleported", "mood": "happy"}) == CallFacts(order_id="A-1")
