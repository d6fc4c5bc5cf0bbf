"""The caller's quiet time: how long they have heard nothing, against the most they may.

A caller who hears nothing for a few seconds hangs up or presses keys at random; one who hears
"connecting you to an operator" waits. So every step the robot takes between two sounds (the
caller lookup, an order write, a callback, synthesizing the next prompt) shares one budget,
``flow.max_silence`` (1.5 s by default), counted from the moment the caller last heard or pressed
something: the call was answered, a prompt ended, a key was pressed, a question timed out. A step
still running when the budget is spent is abandoned and the caller goes to an operator at once.

``reserve`` is kept back from every step for what follows a failure: the hand-over's own prompt
(a cached file, read in microseconds, or a synthesis that may itself be slow) and one round trip to
Asterisk, so that the operator's words start within the budget, not after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

HANDOVER_RESERVE = 0.3  # seconds kept for the hand-over prompt and its round trip to Asterisk


class SilenceBudget:
    def __init__(self, limit: float, clock: Callable[[], float] | None = None) -> None:
        self.limit = limit
        self._clock = clock or asyncio.get_running_loop().time
        self._since = self._clock()

    def heard(self) -> None:
        """The caller just heard (or pressed) something: the quiet starts again."""
        self._since = self._clock()

    def left(self, reserve: float = HANDOVER_RESERVE) -> float:
        """Seconds a step may still take, keeping ``reserve`` for the hand-over (never below 0)."""
        return max(0.0, self._since + self.limit - reserve - self._clock())

    def quiet_for(self) -> float:
        return self._clock() - self._since


# Steps abandoned at their budget, referenced until they have unwound (a task nobody references may
# be collected mid-flight).
_abandoned: set[asyncio.Future] = set()


async def within(work: Coroutine[Any, Any, T], seconds: float) -> T:
    """``work`` for at most ``seconds``; past it (or when the waiting call is itself cancelled) the
    work is cancelled and abandoned, never awaited: a statement on a stalled connection may take
    long to unwind, and the caller must hear a human now. Raises TimeoutError."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        abandon(task)
        raise
    if not done:
        abandon(task)
        raise TimeoutError(f"abandoned after {seconds:.2f} s")
    return task.result()


def abandon(task: asyncio.Future) -> None:
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_unwound)


def _unwound(task: asyncio.Future) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # collected: an abandoned step's error is not "never retrieved"
