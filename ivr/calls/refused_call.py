"""Calls that admission control sent straight to an operator still get their call row and timeline.

So do calls handed over because the database was not there since the start (ivr.database_gate):
the record writer spools their rows until the database answers.

Admission control (``ivr.agi.admission``) refuses a call before the robot says a word, exactly when
the service is busiest; the supervisor must still see that the call happened and why it skipped
the robot. Refusing has to stay cheap, so nothing is asked of Asterisk: the call id is the
channel's ``uniqueid``, which for the inbound channel that runs the IVR is also the call's linkedid
(the AMI tracker then completes the same row).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from crm_bridge.call_log import CallEnd, CallStart, TimelineRecord
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import CallFacts, Reason, decide_outcome
from crm_bridge.phones import normalize_phone
from ivr.agi.env import AgiEnv
from ivr.calls.record_writer import RecordWriter

REFUSED = CallFacts(refused=True)  # handed over like any call the robot gives up (IVR_RESULT=operator)


class RefusedCalls:
    """The FastAGI server's ``on_rejected`` hook."""

    def __init__(
        self, records: RecordWriter, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._records = records
        self._clock = clock
        self._submits: set[asyncio.Task[None]] = set()

    def __call__(self, env: AgiEnv, cause: str, reason: str = Reason.OVERLOADED, step: str = "admission") -> None:
        """``reason``: overloaded (admission), or database_unavailable (ivr.database_gate)."""
        # Straight to the records, not through the notifier: a refusal happens when the CPU is
        # scarcest, so it costs no log lines (the server logs refusals once a second) and no live
        # listeners (nothing is on an operator's screen yet; /metrics counts refusals by cause).
        now = self._clock()
        call_id = env.uniqueid or f"refused-{id(env):x}-{now.timestamp():.6f}"
        started = {"caller": env.caller_id, "channel": env.channel, "script": env.script}
        ended = {"outcome": decide_outcome(REFUSED), "reason": reason, "step": step, "cause": cause}
        records = [
            CallStart(call_id=call_id, started_at=now, caller_number=env.caller_id,
                      normalized_number=normalize_phone(env.caller_id), channel=env.channel, script=env.script),
            TimelineRecord(at=now, call_id=call_id, customer_id=None, kind=EventKind.CALL_STARTED, data=started),
            TimelineRecord(at=now, call_id=call_id, customer_id=None, kind=EventKind.CALL_ENDED, data=ended),
            CallEnd(call_id=call_id, facts=REFUSED, reason=reason, ended_at=now),
        ]
        task = asyncio.get_running_loop().create_task(self._records.submit(records))
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)

    async def drain(self, grace: float = 10.0) -> None:
        if self._submits:
            await asyncio.wait(set(self._submits), timeout=grace)
