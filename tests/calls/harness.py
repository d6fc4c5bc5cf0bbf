"""A real FastAGI server running the real repeat-order handler on a real store, for call-through tests.

Only the caller side is fake (tests/fakeasterisk.py speaks Asterisk's exact bytes); the database,
the speech synthesis (espeak-ng) and the prompt files are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from crm_bridge.call_log import CallLog
from crm_bridge.phones import normalize_phone
from crm_bridge.services import CrmStore
from ivr.agi.server import FastAgiServer
from ivr.calls.callback_request_call import CallbackRequestCall
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.calls.record_spool import RecordSpool
from ivr.calls.record_writer import RecordWriter
from ivr.calls.repeat_order_call import CallConfig, RepeatOrderCall
from ivr.flows.repeat_order import FlowConfig, RepeatOrderFlow
from ivr.speech.prompt_cache import PromptCache
from ivr.speech.speaker import Speaker
from ivr.speech.tts import EspeakEngine
from tests.fakeasterisk import FakeAsterisk

VOICES = {"ru": "ru", "en": "en-us"}
# Operators on duty around the clock, so that tests do not depend on when they run.
ALWAYS_OPEN = BusinessHours(open=time(0, 0), close=time(23, 59, 59, 999999), days=(1, 2, 3, 4, 5, 6, 7))


@dataclass
class CallHarness:
    server: FastAgiServer
    store: Any
    notifier: CallNotifier
    records: RecordWriter
    prompts_dir: Path
    live_events: list = field(default_factory=list)
    handler: RepeatOrderCall | None = None

    async def stop(self) -> None:
        """Stop serving and let the last calls' rows reach the database (before it is disposed)."""
        await self.server.stop(1.0)
        if self.handler is not None:
            await self.handler.drain(5.0)
        await self.records.drain(5.0)

    async def call(self, caller_id: str = "+79161234567", inputs: list | None = None, *, script: str = "repeat-order",
                   fake: FakeAsterisk | None = None, uniqueid: str | None = None, timeout: float = 30.0,
                   **connect: Any) -> FakeAsterisk:
        """Place one call and wait until our server closes the socket (Asterisk never does)."""
        fake = fake or FakeAsterisk(inputs=inputs or [], check_files=True)
        await fake.connect("127.0.0.1", self.server.port, script=script, caller_id=caller_id, uniqueid=uniqueid,
                           **connect)
        assert await fake.wait_closed(timeout), "the server must close the socket at the end of every call"
        return fake


async def start_harness(
    store: Any,
    prompts_dir: Path,
    *,
    engine: Any = None,
    flow: FlowConfig | None = None,
    db_deadline: float = 3.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    hangup_grace: float = 5.0,
    hours: BusinessHours = ALWAYS_OPEN,
) -> CallHarness:
    cache = PromptCache(prompts_dir, engine or EspeakEngine(), VOICES)
    # The real record writer over the same database (its spool beside the prompts).
    records = RecordWriter(CallLog(store.sessions), RecordSpool(prompts_dir.parent / "spool"))
    notifier = CallNotifier(records, strict=True)
    handler_speaker = Speaker(cache)
    handler = RepeatOrderCall(
        flow=RepeatOrderFlow(flow or FlowConfig(menu_timeout=1.0, quantity_timeout=1.0)),
        store=store,
        records=records,
        speaker=handler_speaker,
        notifier=notifier,
        config=CallConfig(db_deadline=db_deadline, order_deadline=db_deadline, hours=hours),
        normalize=normalize_phone,
        clock=clock,
    )
    callback = CallbackRequestCall(store=store, speaker=handler_speaker, notifier=notifier, hours=hours,
                                   normalize=normalize_phone, db_deadline=db_deadline, clock=clock)
    routes = {"repeat-order": handler, "callback-request": callback}
    server = FastAgiServer(routes, host="127.0.0.1", port=0, env_timeout=2.0,
                           command_timeout=5.0, hangup_grace=hangup_grace)
    await server.start()
    harness = CallHarness(server=server, store=store, notifier=notifier, records=records, prompts_dir=prompts_dir,
                          handler=handler)
    notifier.subscribe(harness.live_events.append)
    return harness


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until predicate() is truthy (call rows are written right after the socket closes)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


__all__ = ["CallHarness", "CrmStore", "start_harness", "wait_for"]
