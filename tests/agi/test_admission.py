"""Admission control: the surplus of a burst goes to an operator at once, the admitted calls stay fast."""

from __future__ import annotations

import asyncio
import time

import pytest

from crm_bridge.contract.outcomes import Reason
from ivr.agi.admission import Admission, AdmissionLimits
from ivr.agi.channel import AgiChannel
from tests.fakeasterisk import FakeAsterisk

OVERLOADED = Reason.OVERLOADED


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admission(clock: Clock | None = None, backlog: int = 0, **limits) -> Admission:
    defaults = {"max_call_rate": 0.0, "max_calls": 0, "max_loop_lag": 0.0, "max_record_backlog": 0}
    return Admission(AdmissionLimits(**{**defaults, **limits}), record_backlog=lambda: backlog,
                     clock=clock or Clock())


@pytest.mark.parametrize(
    ("limits", "active", "lag", "backlog", "expected"),
    [
        ({}, 10_000, 5.0, 10**6, None),  # every limit off: always admitted
        ({"max_calls": 100}, 99, 0.0, 0, None),
        ({"max_calls": 100}, 100, 0.0, 0, "max_calls"),
        ({"max_loop_lag": 0.1}, 0, 0.09, 0, None),
        ({"max_loop_lag": 0.1}, 0, 0.2, 0, "loop_lag"),
        ({"max_record_backlog": 500}, 0, 0.0, 500, None),
        ({"max_record_backlog": 500}, 0, 0.0, 501, "record_backlog"),
        # the first limit that says no is the cause
        ({"max_calls": 1, "max_loop_lag": 0.1}, 5, 1.0, 0, "max_calls"),
    ],
)
def test_each_limit_refuses_above_its_threshold(limits, active, lag, backlog, expected):
    gate = admission(backlog=backlog, **limits)
    gate.loop_lag = lag
    assert gate.check(active) == expected
    assert gate.rejected.get(expected or "", 0) == (1 if expected else 0)


def test_rate_takes_a_burst_then_refills_at_the_rate():
    clock = Clock()
    gate = admission(clock, max_call_rate=8.0, call_burst=3)
    assert [gate.check(0) for _ in range(4)] == [None, None, None, "call_rate"]
    clock.now += 0.0625  # half a token
    assert gate.check(0) == "call_rate"
    clock.now += 0.0625  # one token
    assert gate.check(0) is None
    assert gate.check(0) == "call_rate"
    clock.now += 60  # a long quiet spell refills no more than the burst
    assert [gate.check(0) for _ in range(4)] == [None, None, None, "call_rate"]
    assert gate.admitted == 7 and gate.rejected["call_rate"] == 4


def test_one_late_wakeup_is_not_overload_but_a_late_loop_is():
    gate = admission(max_loop_lag=0.1)
    gate.observe_lag(0.2)  # one GC pause
    assert gate.check(0) is None
    for _ in range(3):
        gate.observe_lag(0.2)
    assert gate.check(0) == "loop_lag"
    for _ in range(10):
        gate.observe_lag(0.0)
    assert gate.check(0) is None


async def test_burst_beyond_capacity_goes_to_operator_at_once(serve):
    """A burst above the rate: the first calls run, the rest hear nothing and go to an operator."""

    async def robot(ch: AgiChannel) -> None:
        await ch.answer()
        await ch.set_variable("IVR_RESULT", "done")

    rejected: list[tuple[str, str]] = []
    clock = Clock()  # frozen: no token comes back during the test
    gate = admission(clock, max_call_rate=1.0, call_burst=2)
    server = await serve(robot, admission=gate, on_rejected=lambda env, cause: rejected.append((env.uniqueid, cause)))
    calls = []
    for _ in range(5):
        fake = await FakeAsterisk().connect("127.0.0.1", server.port)
        assert await fake.wait_closed(3)
        calls.append(fake)
    assert [c.variables.get("IVR_REASON") for c in calls] == [None, None, OVERLOADED, OVERLOADED, OVERLOADED]
    for refused in calls[2:]:
        # the robot never answered or played anything: straight to the dialplan's queue
        assert refused.commands == [f'EXEC "MSet" "IVR_RESULT=operator,IVR_REASON={OVERLOADED}"']
    assert [cause for _, cause in rejected] == ["call_rate"] * 3
    assert gate.rejected["call_rate"] == 3


async def test_lag_probe_measures_a_blocked_loop(serve):
    gate = Admission(AdmissionLimits(max_loop_lag=0.05, probe_interval=0.01, lag_smoothing=1.0, max_call_rate=0))
    await serve(lambda ch: None, admission=gate)
    await asyncio.sleep(0)  # the probe starts its first nap
    time.sleep(0.2)  # block the loop, as a CPU-bound burst would
    for _ in range(50):  # the probe records it on its next wake-up
        if gate.loop_lag > 0.05:
            break
        await asyncio.sleep(0.01)
    assert gate.loop_lag > 0.05
    assert gate.check(0) == "loop_lag"
