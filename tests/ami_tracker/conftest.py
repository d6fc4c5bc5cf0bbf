"""A CallTracker over the real store (SQLite and PostgreSQL) with a recording directory and a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_bridge.dto import TimelineEventIn
from crm_bridge.services import CrmStore
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.calls.recordings import RecordingLocator
from ivr.calls.tracker import CallTracker
from tests.shared_traces import TRACES as SHARED_TRACES

# Thursday 2026-11-26 10:00 Moscow (07:00 UTC): inside business hours.
OPEN_HOURS = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
ASTERISK_DIR = "/var/spool/asterisk/monitor"
REAL_WAV = SHARED_TRACES / "recordings" / "mixmonitor-sip-call.wav"
OPERATORS = {"Local/101@operator-agent/n": "Анна Смирнова", "PJSIP/operator1": "Олег Кузнецов"}


@dataclass
class Clock:
    now: datetime = OPEN_HOURS

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    store: CrmStore
    tracker: CallTracker
    heard: list[TimelineEventIn]
    recordings: Path
    clock: Clock
    extra: dict = field(default_factory=dict)

    async def feed(self, messages: list[dict[str, str]]) -> None:
        for message in messages:
            await self.tracker.handle(message)
        await self.tracker.drain()

    async def kinds(self, call_id: str) -> list[str]:
        return [e.kind for e in await self.store.call_timeline(call_id)]


def make_rig(store: CrmStore, recordings: Path, clock: Clock | None = None) -> Rig:
    clock = clock or Clock()
    notifier = CallNotifier(store, clock=clock)
    heard: list[TimelineEventIn] = []
    notifier.subscribe(heard.append)
    tracker = CallTracker(
        store,
        notifier,
        recordings=RecordingLocator(recordings, ASTERISK_DIR),
        operator_names=OPERATORS,
        hours=BusinessHours(),
        clock=clock,
        recording_retry_delay=0.05,
    )
    return Rig(store=store, tracker=tracker, heard=heard, recordings=recordings, clock=clock)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
def rig(store: CrmStore, recordings: Path) -> Rig:
    return make_rig(store, recordings)
