"""dialplans/*.conf load on Asterisk 22 without a warning: every option is one Asterisk 22 reads,
none is obsolete (issue 8: eventwhencalled/eventmemberstatus logged two WARNINGs at every start).

The vocabularies below were read from Asterisk 22.10.1's source: apps/app_queue.c
(queue_set_param(), the Queue application's options), apps/app_mixmonitor.c (MixMonitor's
options), main/manager.c (the per-user options of manager.conf, perms[], manager_add_filter()).
When Asterisk changes, re-read them there, not from memory.
"""

from __future__ import annotations

import re

import pytest

from tests.dialplans.asterisk_conf import DIALPLANS, Entry, entries, priorities

QUEUES = DIALPLANS / "queues_ivr.conf"
EXTENSIONS = DIALPLANS / "extensions_ivr.conf"
MANAGER = DIALPLANS / "manager_ivr.conf"

# Keys of a queue section (queue_set_param(), plus "member"); anything else: "Unknown keyword in queue".
QUEUE_KEYS_22 = frozenset({
    "announce", "announce-frequency", "announce-holdtime", "announce-position", "announce-position-limit",
    "announce-position-only-up", "announce-round-seconds", "announce-to-first-user", "autofill", "autopause",
    "autopausebusy", "autopausedelay", "autopauseunavail", "context", "defaultrule", "joinempty",
    "leavewhenempty", "log-restricted-caller-id", "maxlen", "member", "memberdelay", "membergosub",
    "min-announce-frequency", "monitor-format", "music", "musicclass", "musiconhold", "penaltymemberslimit",
    "periodic-announce", "periodic-announce-frequency", "periodic-announce-startdelay", "queue-callerannounce",
    "queue-callswaiting", "queue-holdtime", "queue-minute", "queue-minutes", "queue-quantity1",
    "queue-quantity2", "queue-reporthold", "queue-seconds", "queue-thankyou", "queue-thereare",
    "queue-youarenext", "random-periodic-announce", "relative-periodic-announce", "reportholdtime", "retry",
    "ringinuse", "servicelevel", "setinterfacevar", "setqueueentryvar", "setqueuevar", "strategy", "timeout",
    "timeoutpriority", "timeoutrestart", "weight", "wrapuptime",
})
STRATEGIES_22 = frozenset({"ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "rrordered", "linear",
                           "wrandom"})
# parse_empty_options(): a comma list of these, or a boolean.
EMPTY_CONDITIONS_22 = frozenset({"paused", "penalty", "inuse", "ringing", "invalid", "wrapup", "unavailable",
                                 "unknown", "loose", "strict", "yes", "no", "true", "false", "on", "off", "1", "0"})
QUEUE_BOOLEANS = frozenset({"ringinuse", "setinterfacevar", "setqueuevar", "setqueueentryvar", "announce-holdtime",
                            "autofill", "reportholdtime", "timeoutrestart", "random-periodic-announce",
                            "relative-periodic-announce", "announce-to-first-user", "announce-position-only-up",
                            "log-restricted-caller-id"})
QUEUE_NUMBERS = frozenset({"timeout", "retry", "wrapuptime", "announce-frequency", "periodic-announce-frequency",
                           "min-announce-frequency", "announce-round-seconds", "maxlen", "servicelevel", "weight",
                           "memberdelay", "penaltymemberslimit", "periodic-announce-startdelay",
                           "announce-position-limit", "autopausedelay"})
BOOLEAN_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "1", "0"})

# Option letters of the applications our dialplan runs, in Asterisk 22.
QUEUE_APP_OPTIONS_22 = frozenset("bBCcdFhHiIkKmnrRtTxX")
MIXMONITOR_OPTIONS_22 = frozenset("abBcdvVWrtDnipPms")
# The applications the dialplan may run (each checked to exist in Asterisk 22).
APPLICATIONS_22 = frozenset({"noop", "answer", "set", "mixmonitor", "agi", "gotoif", "queue", "hangup", "goto"})

# Per-user keys of manager.conf (main/manager.c); others are ignored (a debug line only): a typo
# there silently drops a permission or a fence.
MANAGER_USER_KEYS_22 = frozenset({"secret", "deny", "permit", "acl", "read", "write", "writetimeout",
                                  "displayconnects", "allowmultiplelogin", "setvar", "channelvars"})
MANAGER_CLASSES_22 = frozenset({"system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
                                "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test",
                                "security", "message", "all", "none"})

# Known-obsolete spellings, with when and why they went: a config that brings one back fails here.
OBSOLETE_QUEUE_KEYS = {
    "eventwhencalled": "removed in Asterisk 12: queue AMI events are always sent",
    "eventmemberstatus": "removed in Asterisk 12: QueueMemberStatus is always sent",
    "updatecdr": "removed in Asterisk 19",
    "monitor-join": "removed in Asterisk 1.6: use MixMonitor",
    "monitor-type": "Asterisk 21+ reads it only in [general] (Monitor() is gone); in a queue: Unknown keyword",
    "membermacro": "removed in Asterisk 21 with app_macro: use membergosub",
}
OBSOLETE_APPLICATIONS = {
    "macro": "app_macro removed in Asterisk 21: use Gosub",
    "macroexclusive": "app_macro removed in Asterisk 21",
    "macroexit": "app_macro removed in Asterisk 21: use Return",
    "macroif": "app_macro removed in Asterisk 21",
    "monitor": "res_monitor removed in Asterisk 21: use MixMonitor",
    "stopmonitor": "res_monitor removed in Asterisk 21: use StopMixMonitor",
    "changemonitor": "res_monitor removed in Asterisk 21",
    "pausemonitor": "res_monitor removed in Asterisk 21: use MixMonitorMute",
    "unpausemonitor": "res_monitor removed in Asterisk 21",
}


def queue_entries() -> list[Entry]:
    return [e for e in entries(QUEUES) if e.section != "general"]


def test_no_known_obsolete_option_or_application_anywhere() -> None:
    found = [f"{e.where()}: {OBSOLETE_QUEUE_KEYS[e.key.lower()]}"
             for path in sorted(DIALPLANS.glob("*.conf")) for e in entries(path)
             if e.key.lower() in OBSOLETE_QUEUE_KEYS]
    found += [f"{s.where()}: {OBSOLETE_APPLICATIONS[s.app.lower()]}"
              for s in priorities(EXTENSIONS) if s.app.lower() in OBSOLETE_APPLICATIONS]
    assert found == []


def test_the_obsolete_check_catches_what_issue_8_found(tmp_path) -> None:
    old = tmp_path / "queues_ivr.conf"
    old.write_text("[operators]\nstrategy = rrmemory\neventwhencalled = yes\neventmemberstatus = yes\n")
    keys = [e.key for e in entries(old) if e.key in OBSOLETE_QUEUE_KEYS]
    assert keys == ["eventwhencalled", "eventmemberstatus"]
    assert not set(keys) & QUEUE_KEYS_22


def test_every_queue_option_is_one_asterisk_22_reads() -> None:
    assert [e.where() for e in queue_entries() if e.key.lower() not in QUEUE_KEYS_22] == []


@pytest.mark.parametrize("entry", queue_entries(), ids=lambda e: e.key)
def test_queue_option_values_are_ones_asterisk_22_understands(entry: Entry) -> None:
    key, value = entry.key.lower(), entry.value.lower()
    if key == "strategy":
        assert value in STRATEGIES_22
    elif key in ("joinempty", "leavewhenempty"):
        assert set(value.split(",")) <= EMPTY_CONDITIONS_22
    elif key in QUEUE_BOOLEANS:
        assert value in BOOLEAN_WORDS
    elif key in QUEUE_NUMBERS:
        assert re.fullmatch(r"\d+", value)


def test_the_queue_exit_context_exists_in_the_dialplan() -> None:
    contexts = {s.context for s in priorities(EXTENSIONS)}
    assert {e.value for e in queue_entries() if e.key == "context"} <= contexts


def test_every_application_exists_in_asterisk_22_with_options_it_knows() -> None:
    steps = priorities(EXTENSIONS)
    assert sorted({s.app for s in steps if s.app.lower() not in APPLICATIONS_22}) == []
    for step in steps:
        if step.app.lower() == "queue" and len(step.args) > 1:
            assert set(step.args[1]) <= QUEUE_APP_OPTIONS_22, step.where()
            assert len(step.args) <= 9, f"{step.where()}: Queue takes 9 arguments in Asterisk 21+"
        if step.app.lower() == "mixmonitor" and len(step.args) > 1:
            letters = re.sub(r"\([^)]*\)", "", step.args[1])  # options with values: v(2), m(box)…
            assert set(letters) <= MIXMONITOR_OPTIONS_22, step.where()


def test_manager_user_options_and_classes_are_asterisk_22s() -> None:
    users = [e for e in entries(MANAGER) if e.section != "general"]
    unknown = [e.where() for e in users if e.key.lower() not in MANAGER_USER_KEYS_22
               and not e.key.lower().startswith("eventfilter")]
    assert unknown == []
    for entry in (e for e in users if e.key in ("read", "write")):
        assert set(entry.value.replace(" ", "").split(",")) <= MANAGER_CLASSES_22, entry.where()


@pytest.mark.parametrize(
    "entry", [e for e in entries(MANAGER) if e.key.startswith("eventfilter")], ids=lambda e: str(e.line)
)
def test_manager_event_filters_parse_as_asterisk_22_advanced_filters(entry: Entry) -> None:
    """The rules of manager_add_filter() that end in a WARNING and a filter silently not applied."""
    criteria = re.fullmatch(r"eventfilter(?:\((?P<options>.*)\))?", entry.key)
    assert criteria is not None, entry.where()
    if criteria["options"] is None:  # legacy: a regex over the whole event, "!" excludes
        assert entry.value.lstrip("!"), entry.where()
        re.compile(entry.value.lstrip("!"))
        return
    options = dict(re.findall(r"(\w+)\(([^)]*)\)", criteria["options"]))
    assert options and set(options) <= {"action", "name", "header", "method"}, entry.where()
    assert options.get("action", "exclude") in ("include", "exclude")
    method = options.get("method", "none")  # an advanced filter without method() matches "none"
    assert method in ("regex", "exact", "starts_with", "ends_with", "contains", "none")
    assert (method == "none") == (entry.value == ""), f"{entry.where()}: method {method} with pattern {entry.value!r}"
    assert "name" in options or "header" in options or method != "none"
    if method == "regex":
        re.compile(entry.value)
