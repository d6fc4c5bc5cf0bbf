"""The service's stop as the calls in progress see it.

SIGTERM closes the FastAGI listener at once (Asterisk's next ``AGI()`` fails and the dialplan queues
that caller). Calls in progress get ``agi.drain_seconds`` to finish on their own; then the server
*cuts* the rest: every handler stops where it is, hands its caller to an operator with
``IVR_REASON=shutdown`` and records the call with that reason, one log line per call. What still runs
``CUT_GRACE`` seconds later is cancelled. The whole sequence must end before the orchestrator's kill
(Docker 10 s, systemd 90 s, Kubernetes 30 s by default): see the README's "Stopping" section.
"""

from __future__ import annotations

import asyncio

# After the cut: how long handlers have to hand their callers over. Asterisk answers our SET VARIABLE
# only after the command it is running (a prompt, a GET DATA), so this is a bound, not a wait.
CUT_GRACE = 1.0


class CallCut(Exception):
    """Raised inside a handler when the drain time is over: hand the caller over and return."""


class Shutdown:
    """Shared by the server (which declares the cut) and the handlers (which obey it)."""

    def __init__(self) -> None:
        self.cut = asyncio.Event()

    def cut_calls(self) -> None:
        self.cut.set()
