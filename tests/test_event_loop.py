"""The process's event loop: uvloop by default (ivr/event_loop.py), the standard loop on request."""

from __future__ import annotations

import asyncio

import pytest

from ivr import event_loop
from ivr.settings import SettingsError, load_settings


async def _which() -> str:
    await asyncio.sleep(0)
    return event_loop.name_of_running()


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_run_uses_the_chosen_loop(choice: str) -> None:
    assert event_loop.run(_which(), choice) == choice


def test_uvloop_is_the_default() -> None:
    assert load_settings(environ={}).agi.event_loop == "uvloop"


def test_an_unknown_loop_is_a_configuration_error() -> None:
    with pytest.raises(SettingsError, match=r"agi\.event_loop.*'trio' is not one of uvloop, asyncio"):
        load_settings(environ={"IVR_AGI__EVENT_LOOP": "trio"})


def test_run_refuses_an_unknown_loop_without_leaking_the_coroutine() -> None:
    main = _which()
    with pytest.raises(ValueError, match="agi.event_loop"):
        event_loop.run(main, "trio")
    assert main.cr_frame is None  # closed: no "never awaited" warning
