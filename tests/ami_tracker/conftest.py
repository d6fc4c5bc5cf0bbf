"""A CallTracker over the real store (SQLite and PostgreSQL) with a recording directory and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_bridge.call_log import CallLog
from crm_bridge.dto import TimelineEventIn
from crm_bridge.services import CrmStore
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.calls.record_spool import RecordSpool
from ivr.calls.record_writer import RecordWriter
from ivr.calls.recordings import RecordingLocator
from ivr.calls.tracker import CallTracker
from tests.traces import TRACES as CAPTURED_TRACES

# Thursday 2026-11-26 10:00 Moscow (07:00 UTC): inside business hours.
OPEN_HOURS = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
ASTERISK_DIR = "/var/spool/asterisk/monitor"
REAL_WAV = CAPTURED_TRACES / "recordings" / "mixmonitor-sip-call.wav"
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
    records: RecordWriter
    extra: dict = field(default_factory=dict)

    async def feed(self, messages: list[dict[str, str]]) -> None:
        for message in messages:
            await self.tracker.handle(message)
        await self.tracker.drain()
        await self.records.sync()  # the call rows and timelines are in the database now

    async def kinds(self, call_id: str) -> list[str]:
        return [e.kind for e in await self.store.call_timeline(call_id)]


def make_rig(store: CrmStore, recordings: Path, clock: Clock | None = None) -> Rig:
    clock = clock or Clock()
    records = RecordWriter(CallLog(store.sessions), RecordSpool(recordings.parent / "spool"))
    notifier = CallNotifier(records, clock=clock, strict=True)
    heard: list[TimelineEventIn] = []
    notifier.subscribe(heard.append)
    tracker = CallTracker(
        store,
        notifier,
        records=records,
        recordings=RecordingLocator(recordings, ASTERISK_DIR),
        operator_names=OPERATORS,
        hours=BusinessHours(),
        clock=clock,
        recording_retry_delay=0.05,
    )
    return Rig(store=store, tracker=tracker, heard=heard, recordings=recordings, clock=clock, records=records)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
async def rig(store: CrmStore, recordings: Path) -> AsyncIterator[Rig]:
    rig = make_rig(store, recordings)
    yield rig
    await rig.records.drain(5.0)
