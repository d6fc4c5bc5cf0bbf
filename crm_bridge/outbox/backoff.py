"""When to try a failed delivery again, and how fast a target may be called.

Both take their clock (and the jitter its random source) from the caller, so tests step time by
hand instead of sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Attempt n (1-based) failed: wait ``min(retry_max, retry_min * 2**(n-1))``, jittered down to
    half of it, so that a target back after an outage is not hit by every row at the same second."""

    retry_min: float
    retry_max: float

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.retry_max, self.retry_min * 2 ** max(0, attempts - 1))
        return base * (0.5 + 0.5 * rand())


class TokenBucket:
    """``rate`` calls per second on average, ``burst`` at once; ``wait_time(now)`` says how long the
    next call must wait (0 = go, and the token is taken)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.ceiling = rate  # the configured rate: recover() never goes above it
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._at = now

    def slow_down(self) -> None:
        """The target said "too fast" although we kept to ``rate``: it counts differently (another
        client on the same webhook, a clock of its own, a rate set too high). Halve the rate and
        start from an empty bucket; a delivery with several requests (an order's deal) would
        otherwise meet the limit at the same request of every attempt, for ever."""
        self.rate = max(0.05, self.rate / 2)
        self._tokens = 0.0

    def recover(self) -> None:
        """A delivery went through: creep back towards the configured rate."""
        self.rate = min(self.ceiling, self.rate * 1.1)

    def wait_time(self, now: float) -> float:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
