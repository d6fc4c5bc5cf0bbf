"""What the dialplan makes Asterisk 22 do with a call, read from dialplans/extensions_ivr.conf
(issue 8): one recording from answer to hang-up in both directions, the channel language from the
caller's language before any queue prompt, and a caller back from the queue's exit key at their
place in the queue."""

from __future__ import annotations

from ivr.settings import default_settings
from ivr.speech.warmup import LANGUAGES
from tests.dialplans.asterisk_conf import Priority, entries, priorities
from tests.dialplans.test_asterisk22 import EXTENSIONS, QUEUES

STEPS = priorities(EXTENSIONS)
GLOBALS = {e.key: e.value for e in entries(EXTENSIONS) if e.section == "globals"}
# MixMonitor options that would leave part of the call out of the one file: b (only while bridged:
# the operator part), r/t (each direction to its own file), S (skip when nobody else is on the
# bridge), W/v/V are volumes and harmless but have no reason here either.
PARTIAL_RECORDING_OPTIONS = set("brtS")


def inbound() -> list[Priority]:
    return [s for s in STEPS if s.context == "ivr-inbound" and s.exten == "start"]


def index_of(steps: list[Priority], app: str, first_arg_startswith: str = "") -> int:
    return next(i for i, s in enumerate(steps)
                if s.app.lower() == app.lower() and (s.args[:1] or ("",))[0].startswith(first_arg_startswith))


def test_recording_starts_right_after_answer_before_the_robot() -> None:
    steps = inbound()
    answer, mixmonitor = index_of(steps, "Answer"), index_of(steps, "MixMonitor")
    robot = index_of(steps, "AGI", "${IVR_AGI_BASE}/repeat-order")
    assert answer < mixmonitor < robot
    # only the file name is computed in between: nothing the caller hears goes unrecorded
    assert {s.app for s in steps[answer + 1 : mixmonitor]} <= {"Set"}


def test_one_recording_per_call_of_both_directions_until_hang_up() -> None:
    monitors = [s for s in STEPS if s.app.lower() == "mixmonitor"]
    assert len(monitors) == 1, [m.where() for m in monitors]  # the queue-exit path keeps the same one
    (monitor,) = monitors
    assert monitor.args[0] == "${IVR_RECORDING}"
    options = monitor.args[1] if len(monitor.args) > 1 else ""
    assert not set(options) & PARTIAL_RECORDING_OPTIONS, monitor.where()
    assert not [s.where() for s in STEPS if s.app.lower() in ("stopmixmonitor", "pausemonitor")]
    name = next(s for s in inbound() if s.app == "Set" and s.args[0].startswith("IVR_RECORDING="))
    assert name.args[0].endswith(".wav") and "CALLERID" not in name.args[0]  # never the caller id in a path


def test_channel_language_comes_from_the_callers_language_before_the_queue() -> None:
    steps = inbound()
    robot = index_of(steps, "AGI", "${IVR_AGI_BASE}/repeat-order")
    queue = index_of(steps, "Queue")
    cleared = [i for i, s in enumerate(steps) if s.app == "Set" and s.args[0] == "IVR_LANGUAGE="]
    assert cleared and cleared[0] < robot  # a stale value of an earlier hop never counts
    language = [i for i, s in enumerate(steps) if s.app == "Set" and s.args[0].startswith("CHANNEL(language)=")]
    assert len(language) == 1 and robot < language[0] < queue
    expression = steps[language[0]].args[0]
    assert "${IVR_LANGUAGE}" in expression and "${IVR_DEFAULT_LANGUAGE}" in expression
    assert "FILTER(a-z_," in expression  # a language code, never a path, reaches the sound search
    # before the done/operator branch: the callback-request path runs with it too
    branch = index_of(steps, "GotoIf")
    assert language[0] < branch


def test_the_dialplans_default_language_is_the_services() -> None:
    assert GLOBALS["IVR_DEFAULT_LANGUAGE"] == default_settings().flow.default_language
    assert GLOBALS["IVR_DEFAULT_LANGUAGE"] in LANGUAGES


def test_a_caller_back_from_the_exit_key_rejoins_at_their_position() -> None:
    exit_steps = [s for s in STEPS if s.context == "ivr-queue-exit"]
    queues = [s for s in exit_steps if s.app.lower() == "queue"]
    assert queues, "the exit context must put the caller back into the queue itself"
    (inbound_queue,) = [s for s in inbound() if s.app.lower() == "queue"]
    for queue in queues:
        assert queue.args[0] == inbound_queue.args[0] == "${IVR_OPERATOR_QUEUE}"
        assert queue.args[4] == inbound_queue.args[4]  # the same wait limit
        assert queue.args[8] == "${QUEUEPOSITION}", queue.where()  # Queue()'s position argument
    # never back through ivr-inbound's Queue(): that one joins at the end
    assert not [s.where() for s in exit_steps if s.app.lower() == "goto" and "ivr-inbound" in s.args[0]]


def test_only_keys_the_exit_context_handles_leave_the_queue() -> None:
    (context,) = {e.value for e in entries(QUEUES) if e.key == "context"}
    keys = {s.exten for s in STEPS if s.context == context}
    assert keys == {"1"}  # any other key matches nothing: Queue() ignores it, the caller stays put
