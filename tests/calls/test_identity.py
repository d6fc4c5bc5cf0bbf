"""CallIdentity: one call's facts, computed once from the FastAGI env and the call's linkedid."""

from __future__ import annotations

import pytest

from ivr.agi.env import AgiEnv
from ivr.calls.identity import CallIdentity


def env(script: str = "repeat-order", callerid: str = "8 916 123-45-67") -> AgiEnv:
    return AgiEnv.from_raw(
        {"network_script": script, "callerid": callerid, "uniqueid": "1795751100.35", "channel": "PJSIP/trunk-1"}
    )


@pytest.mark.parametrize(
    ("callerid", "caller_id", "number"),
    [
        ("8 916 123-45-67", "8 916 123-45-67", "+79161234567"),
        ("anonymous", None, None),  # withheld: nobody to look up or to call back
        ("<unknown>", None, None),
        ("", None, None),
        ("101", "101", None),  # an internal extension: shown, not an E.164 number
    ],
)
def test_the_number_is_normalized_with_the_one_definition_of_no_number(callerid, caller_id, number) -> None:
    call = CallIdentity.of(env(callerid=callerid), "1795751100.34", default_language="ru")
    assert (call.caller_id, call.number) == (caller_id, number)


def test_orders_are_keyed_by_the_linkedid_not_the_channel() -> None:
    call = CallIdentity.of(env(), "1795751100.34", default_language="ru")
    assert (call.call_id, call.uniqueid, call.order_key) == ("1795751100.34", "1795751100.35", "ivr:1795751100.34")


@pytest.mark.parametrize(
    ("script", "channel_language", "language", "fixed"),
    [
        ("repeat-order", None, "ru", False),  # the default; a customer's own language may replace it
        ("repeat-order?lang=en", None, "en", True),  # the line chose it
        ("callback-request", "en", "en", False),  # what the robot spoke earlier on this channel
        ("callback-request?lang=ru", "en", "ru", True),
    ],
)
def test_language(script, channel_language, language, fixed) -> None:
    call = CallIdentity.of(env(script), "1.1", default_language="ru", language=channel_language)
    assert (call.language, call.language_fixed) == (language, fixed)
