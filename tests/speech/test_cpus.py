"""speech.recognizer_cpus: which CPUs the decoding threads run on (ivr/speech/cpus.py)."""

from __future__ import annotations

import os
import threading

import pytest

from ivr.settings import SettingsError, load_settings
from ivr.speech.cpus import (
    check_spec,
    confine_this_thread,
    decoding_cpus,
    format_cpus,
    lower_this_thread,
    parse_cpu_list,
)
from ivr.speech.transcriber import NICE, transcribing_thread

USABLE = sorted(os.sched_getaffinity(0))
several_cpus = pytest.mark.skipif(len(USABLE) < 2, reason="confinement needs a machine with two CPUs or more")


@pytest.mark.parametrize(("spec", "cpus"), [
    ("1", {1}),
    ("0-3", {0, 1, 2, 3}),
    ("1-3,6", {1, 2, 3, 6}),
    (" 2 , 4-5 ", {2, 4, 5}),
    ("3-3", {3}),
])
def test_cpu_lists_are_read_as_taskset_writes_them(spec, cpus):
    assert parse_cpu_list(spec) == cpus
    check_spec(spec)


@pytest.mark.parametrize("spec", ["", "one", "1-", "-1", "3-1", "1,,2", "1.5", "auto,1", "0x1"])
def test_a_spec_that_is_no_cpu_list_is_refused_with_what_was_wrong(spec):
    with pytest.raises(ValueError, match="is not a CPU list"):
        check_spec(spec)


@pytest.mark.parametrize(("spec", "usable", "cpus"), [
    ("auto", {0, 1}, {1}),  # this machine: the calls keep CPU 0
    ("auto", {0, 1, 2, 3}, {1, 2, 3}),
    ("auto", {2, 5, 7}, {5, 7}),  # a process already confined (taskset, systemd CPUAffinity): its first is kept
    ("auto", {3}, None),  # one CPU: nothing to leave
    ("all", {0, 1, 2, 3}, None),
    ("2-3", {0, 1, 2, 3}, {2, 3}),
    ("1-5", {0, 1, 2}, {1, 2}),  # CPUs the process may not use are dropped
    ("6-7", {0, 1, 2}, None),  # none usable: not confined (the service warns at start)
    ("0", {0}, {0}),  # a list is taken as given, even on one CPU
])
def test_decoding_cpus_by_spec_and_usable_cpus(spec, usable, cpus):
    assert decoding_cpus(spec, usable) == (frozenset(cpus) if cpus is not None else None)


@pytest.mark.parametrize(("cpus", "text"), [
    ({1}, "1"), ({1, 2, 3, 6}, "1-3,6"), ({0, 2, 4}, "0,2,4"), ({5, 4, 3}, "3-5"), (None, "all"),
])
def test_the_cpus_are_shown_as_a_cpu_list(cpus, text):
    assert format_cpus(cpus) == text
    if cpus is not None:
        assert parse_cpu_list(text) == cpus


def test_a_bad_setting_is_a_settings_error_naming_the_key():
    assert load_settings(environ={}).speech.recognizer_cpus == "auto"
    assert load_settings(environ={"IVR_SPEECH__RECOGNIZER_CPUS": "1-3"}).speech.recognizer_cpus == "1-3"
    with pytest.raises(SettingsError, match="speech.recognizer_cpus"):
        load_settings(environ={"IVR_SPEECH__RECOGNIZER_CPUS": "the fast ones"})


def _in_a_thread(setup, *args) -> tuple[set[int], int, int]:
    """A thread's affinity, scheduling policy and nice after ``setup`` ran in it (a pool's initializer)."""
    seen: list[tuple[set[int], int, int]] = []

    def run() -> None:
        setup(*args)
        tid = threading.get_native_id()
        seen.append((os.sched_getaffinity(tid), os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0]


@several_cpus
def test_a_confined_thread_runs_on_its_cpus_and_the_others_are_untouched():
    last = frozenset({USABLE[-1]})
    assert _in_a_thread(confine_this_thread, last)[0] == last
    assert os.sched_getaffinity(0) == set(USABLE)  # the calling (event loop's) thread keeps every CPU
    assert _in_a_thread(confine_this_thread, None)[0] == set(USABLE)


@several_cpus
def test_transcription_threads_run_nicer_on_every_cpu():
    # Not confined nor idle like the answers' recognizers: they share the calls' GIL (transcriber.py).
    own = os.getpriority(os.PRIO_PROCESS, 0)
    cpus, policy, nice = _in_a_thread(transcribing_thread)
    assert (cpus, policy, nice) == (set(USABLE), os.sched_getscheduler(0), min(19, own + NICE))
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


def test_a_nice_step_is_counted_from_the_thread_that_starts_the_pool():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert _in_a_thread(lower_this_thread, 7)[2] == min(19, own + 7)
    assert _in_a_thread(lower_this_thread, 0)[2] == own
