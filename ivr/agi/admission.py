"""Admission control: above capacity a new call goes to an operator at once, never into seconds of silence.

Measured before this existed (bench/agi_load.py, one process, 2 cores): nothing limited admission,
so at 15 calls/s only 81 % of orders were placed with a first-prompt p99 of 3.2 s, and a 1,000-call
burst placed ~10 %: every call queued for the same CPU and most missed their deadlines after the
caller had already waited. Refusing the surplus at the door keeps the admitted calls fast and gives
the refused ones a human within a few milliseconds (``IVR_REASON=overloaded``).

Three independent limits, each a cause in the log and in ``ivr_calls_rejected_total{cause}``:

``call_rate``
    New calls per second (a token bucket: ``max_call_rate`` tokens a second, ``call_burst`` deep).
    The robot's CPU cost is per call, not per second of audio, so the arrival rate is what the CPU
    has to keep up with; a burst is absorbed up to the bucket's depth.
``max_calls``
    Calls in the robot at once (memory, sockets); a real call sits in prompts for tens of seconds,
    so this is high (thousands).
``loop_lag``
    The event loop is already late: a probe that wakes every ``probe_interval`` measured it late
    by more than ``max_loop_lag`` (smoothed). Whatever the cause (CPU starvation by a neighbour, a
    slow disk, a burst that slipped past the bucket), a new call would only wait.
``record_backlog``
    The call-record writer's queue is above ``max_record_backlog``: the database is not keeping up,
    and every admitted call adds more records to write.

The decision is a pure function of what it is told (``check``), so tests drive it with explicit
numbers and a controllable clock; the lag probe is the only part that runs by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

CAUSES = ("call_rate", "max_calls", "loop_lag", "record_backlog")


@dataclass(frozen=True)
class AdmissionLimits:
    # 0 disables a limit.
    max_call_rate: float = 0.0
    call_burst: int = 100
    max_calls: int = 2000
    max_loop_lag: float = 0.1
    max_record_backlog: int = 0
    probe_interval: float = 0.02
    # Weight of the newest lag sample in the smoothed lag: one bad sample (a GC pause) does not
    # refuse calls, three in a row do.
    lag_smoothing: float = 0.4


class Admission:
    def __init__(
        self,
        limits: AdmissionLimits,
        *,
        record_backlog: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._record_backlog = record_backlog
        self._clock = clock
        self._tokens = float(limits.call_burst)
        self._refilled_at = clock()
        self.loop_lag = 0.0  # smoothed, seconds
        self.rejected: Counter[str] = Counter()
        self.admitted = 0
        self._probe: asyncio.Task[None] | None = None

    def bind_record_backlog(self, backlog: Callable[[], int]) -> None:
        self._record_backlog = backlog

    # --- the decision ---------------------------------------------------------------------------

    def check(self, active_calls: int) -> str | None:
        """None to admit one more call (and take its token), else the cause of the refusal.

        ``active_calls``: calls in the robot now, not counting the one asking.
        """
        limits = self.limits
        cause: str | None = None
        if limits.max_calls and active_calls >= limits.max_calls:
            cause = "max_calls"
        elif limits.max_loop_lag and self.loop_lag > limits.max_loop_lag:
            cause = "loop_lag"
        elif limits.max_record_backlog and self._record_backlog() > limits.max_record_backlog:
            cause = "record_backlog"
        elif limits.max_call_rate and not self._take_token():
            cause = "call_rate"
        if cause is None:
            self.admitted += 1
        else:
            self.rejected[cause] += 1
        return cause

    def _take_token(self) -> bool:
        now = self._clock()
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = now
        self._tokens = min(float(self.limits.call_burst), self._tokens + elapsed * self.limits.max_call_rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def observe_lag(self, lag: float) -> None:
        """One probe sample: how late the loop woke the probe (seconds, >= 0)."""
        weight = self.limits.lag_smoothing
        self.loop_lag = (1 - weight) * self.loop_lag + weight * max(0.0, lag)

    # --- the probe ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._probe is None and self.limits.max_loop_lag:
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop(), name="admission-lag-probe")

    async def stop(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.limits.probe_interval
        while True:
            asked = loop.time()
            await asyncio.sleep(interval)
            self.observe_lag(loop.time() - asked - interval)
