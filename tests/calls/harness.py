"""The real service (``ivr.app.start_service``, the one ``ivr serve`` runs) for call-through tests.

Only the caller side is fake (tests/fakeasterisk.py speaks Asterisk's exact bytes); the database,
the speech synthesis (espeak-ng) and the prompt files are real, and the handlers, deadlines, hours,
record writer and FastAGI server are wired by ivr/app.py itself: a wiring mistake there fails here.
What a test changes goes through settings or ``ivr.app.Seams`` (a slow store, a broken TTS, a clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

from crm_bridge.services import CrmStore
from ivr.agi.server import FastAgiServer
from ivr.app import Seams, Service, start_service
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.calls.record_writer import RecordWriter
from ivr.calls.repeat_order_call import RepeatOrderCall
from ivr.settings import Settings, default_settings
from tests.fakeasterisk import FakeAsterisk

# Operators on duty around the clock, so that tests do not depend on when they run.
ALWAYS_OPEN = BusinessHours(open=time(0, 0), close=time(23, 59, 59, 999999), days=(1, 2, 3, 4, 5, 6, 7))


@dataclass
class CallHarness:
    service: Service
    store: Any
    prompts_dir: Path
    live_events: list = field(default_factory=list)

    @property
    def server(self) -> FastAgiServer:
        return self.service.agi

    @property
    def notifier(self) -> CallNotifier:
        return self.service.notifier

    @property
    def records(self) -> RecordWriter:
        return self.service.records

    @property
    def handler(self) -> RepeatOrderCall:
        return self.service.calls

    async def stop(self) -> None:
        """Stop as ``ivr serve`` does: drain the calls, then the last rows reach the database."""
        await self.service.stop()

    async def call(self, caller_id: str = "+79161234567", inputs: list | None = None, *, script: str = "repeat-order",
                   fake: FakeAsterisk | None = None, uniqueid: str | None = None, timeout: float = 30.0,
                   **connect: Any) -> FakeAsterisk:
        """Place one call and wait until our server closes the socket (Asterisk never does)."""
        fake = fake or FakeAsterisk(inputs=inputs or [], check_files=True)
        await fake.connect("127.0.0.1", self.server.port, script=script, caller_id=caller_id, uniqueid=uniqueid,
                           **connect)
        assert await fake.wait_closed(timeout), "the server must close the socket at the end of every call"
        return fake


def harness_settings(database_url: str, prompts_dir: Path, **sections: dict[str, Any]) -> Settings:
    """``ivr serve``'s defaults with what a call-through test needs: an ephemeral FastAGI port, no web
    console, no AMI, no background synthesis, short questions, operators always on duty."""
    base = {
        # No refusal for a late event loop: on a loaded machine it refused a test's call ("overloaded");
        # admission control has its own tests (tests/agi/test_admission.py, tests/agi/test_server.py).
        "agi": {"host": "127.0.0.1", "port": 0, "env_timeout": 2.0, "command_timeout": 5.0, "drain_seconds": 1.0,
                "max_loop_lag": 0.0},
        "web": {"enabled": False},
        "ami": {"username": ""},
        "database": {"url": database_url},
        "prompts": {"dir": str(prompts_dir), "warm_at_start": False},
        "call_records": {"spool_dir": str(prompts_dir.parent / "spool"), "write_timeout": 2.0},
        # A generous silence budget: a loaded machine's slow first synthesis must not send a test's
        # caller to an operator; the tests of the budget set their own (and stall for real).
        "flow": {"menu_timeout": 1.0, "quantity_timeout": 1.0, "max_silence": 10.0},
        "hours": hours_section(ALWAYS_OPEN),
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return default_settings().replace(**base)


def hours_section(hours: BusinessHours) -> dict[str, Any]:
    return {"timezone": hours.timezone, "open": hours.open, "close": hours.close, "days": hours.days,
            "holidays": hours.holidays, "callback_delay_minutes": hours.callback_delay_minutes}


def database_url(store: Any) -> str:
    """The URL of the database a store (or a test's wrapper around one, ``.inner``) works on."""
    while not isinstance(store, CrmStore):
        store = store.inner
    return store.sessions.kw["bind"].url.render_as_string(hide_password=False)


async def start_harness(
    store: Any,
    prompts_dir: Path,
    *,
    engine: Any = None,
    db_deadline: float = 3.0,
    order_deadline: float | None = None,
    clock: Callable[[], datetime] | None = None,
    hours: BusinessHours = ALWAYS_OPEN,
    call_store: Any = None,
    max_silence: float = 10.0,
) -> CallHarness:
    """The service on the store's database. A store that is not a plain CrmStore (a test's slow or
    stuck wrapper) becomes the calls' view of the store; the service's own store serves the rest.
    ``call_store``: the calls' view of the store when it is another CrmStore on the same database
    (e.g. through a TCP proxy that injects faults), the rest of the service keeping ``store``'s.
    ``max_silence``: see harness_settings."""
    settings = harness_settings(
        database_url(store), prompts_dir,
        database={"call_deadline": db_deadline, "order_deadline": order_deadline or db_deadline},
        hours=hours_section(hours), flow={"max_silence": max_silence},
    )
    calls_view = call_store if call_store is not None else None if isinstance(store, CrmStore) else store
    seams = Seams(call_store=None if calls_view is None else (lambda _own: calls_view), tts=engine, clock=clock,
                  strict_events=True)
    service = await start_service(settings, migrate=False, seams=seams)
    harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
    service.notifier.subscribe(harness.live_events.append)
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
