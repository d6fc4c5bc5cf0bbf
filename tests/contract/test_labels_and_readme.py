"""Every declared word has its Russian words on the console, and the README lists the reasons."""

from __future__ import annotations

import re
from pathlib import Path

from crm_bridge.contract.dialplan import IvrResult
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import IN_PROGRESS, HangupBy, Outcome, Reason
from ivr.web.console.labels import EVENT_LABELS, HANGUP_LABELS, OUTCOME_LABELS, REASON_LABELS, reason_text

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_outcome_reason_event_and_hangup_side_has_words_and_nothing_else_does():
    assert set(OUTCOME_LABELS) == {*Outcome, IN_PROGRESS}
    assert set(REASON_LABELS) == set(Reason)
    assert set(EVENT_LABELS) == set(EventKind)
    assert set(HANGUP_LABELS) == set(HangupBy)


def test_composite_reasons_read_as_words():
    assert reason_text("after_hours:no_input") == "звонок в нерабочее время; клиент не нажимал кнопки"
    assert reason_text("hangup_at_menu") == "положил трубку (меню)"
    assert "FAILURE" in reason_text("agi_FAILURE") and reason_text("agi_FAILURE") != "agi_FAILURE"


def test_the_readme_lists_every_result_reason_and_outcome():
    section = README[README.index("## Results handed to the dialplan"):]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    quoted = set(re.findall(r"`([a-z_]+)(?::<reason>)?`", section))
    assert set(Reason) <= quoted, sorted(set(Reason) - quoted)
    assert set(IvrResult) <= quoted
    tracker = README[README.index("**One outcome per call"):]
    assert all(f"`{o}`" in tracker[:1200] for o in Outcome), "the README's outcome list"
