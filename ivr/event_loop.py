"""Which asyncio event loop runs the process: uvloop (libuv) by default, the standard one on request.

The service is I/O glue: per call a few AGI round trips, three SQL statements, timers and log lines.
Measured with bench/agi_load.py on this 2-core machine (40 calls/s, PostgreSQL), uvloop took the
server's CPU per repeat-order call from 8.3 to 6.8 ms and the echo floor's from 1.3 to 0.75 ms: the
loop, its transports and its timers were a fifth of a call. Nothing of ours depends on the loop's
implementation; ``agi.event_loop = "asyncio"`` (or ``IVR_AGI__EVENT_LOOP=asyncio``) runs the standard
loop, and so does a platform uvloop does not support (Windows), with one log line saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
CHOICES = ("uvloop", "asyncio")

log = structlog.get_logger(__name__)


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    if choice not in CHOICES:
        main.close()
        raise ValueError(f"agi.event_loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("event_loop.uvloop_missing", fallback="asyncio")
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def name_of_running() -> str:
    """The running loop's implementation, for the start-up log line and the bench's report."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
