"""Which lines answer by voice: the dialplan's IVR_SPEECH, passed as the AGI argument speech=…"""

from __future__ import annotations

import pytest

from ivr.agi.env import AgiEnv
from ivr.calls.voice import line_wants_speech


def _env(args: tuple[str, ...] = (), script: str = "repeat-order") -> AgiEnv:
    raw = {"network_script": script, **{f"arg_{i}": a for i, a in enumerate(args, start=1)}}
    return AgiEnv.from_raw(raw)


@pytest.mark.parametrize(("args", "script", "default", "wanted"), [
    (("speech=1",), "repeat-order", False, True),  # the line turns voice on
    (("speech=0",), "repeat-order", True, False),  # the line turns it off
    (("speech=",), "repeat-order", True, True),  # IVR_SPEECH empty: speech.enabled
    (("speech=",), "repeat-order", False, False),
    ((), "repeat-order", True, True),  # a dialplan of before this switch: speech.enabled
    ((), "repeat-order?lang=en&speech=1", False, True),  # the URL option works too
    (("speech=0",), "repeat-order?speech=1", False, False),  # the argument (the dialplan's variable) wins
    (("speech=maybe",), "repeat-order", True, True),  # not a yes/no: the default, never a guess
    (("SPEECH=on",), "repeat-order", False, True),
])
def test_the_line_decides_else_the_default(args, script, default, wanted):
    assert line_wants_speech(_env(args, script), default) is wanted
