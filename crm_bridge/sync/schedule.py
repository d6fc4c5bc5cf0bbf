"""The sync on an interval inside ``ivr serve``: one run at a time, the last one's outcome kept for
/healthz and the console. On PostgreSQL the composition root starts it only in the process that
holds the sync lock (ivr/app.py), so two processes never pull at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from crm_bridge.sync.report import SyncReport
from crm_bridge.sync.runner import SyncRunner
from crm_bridge.sync.store import CursorView

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SyncStatus:
    source: str
    interval: float
    running: bool
    last_started: datetime | None
    last_finished: datetime | None
    last_ok: bool | None
    last_failure: str | None
    issues: int
    cursors: tuple[CursorView, ...]  # this source's, as the last run left them

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "interval_seconds": self.interval, "running": self.running,
                "last_started": self.last_started.isoformat() if self.last_started else None,
                "last_finished": self.last_finished.isoformat() if self.last_finished else None,
                "last_ok": self.last_ok, "last_failure": self.last_failure, "issues": self.issues,
                "cursors": {c.entity: {"since": c.since, "resume_at_page": c.run_page, "last_error": c.last_error,
                                       "finished_at": c.finished_at.isoformat() if c.finished_at else None}
                            for c in self.cursors}}


class SyncSchedule:
    def __init__(self, runner: SyncRunner, interval: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.runner = runner
        self.interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.last: SyncReport | None = None
        self.last_started: datetime | None = None
        self.last_finished: datetime | None = None
        self.runs = 0
        self.cursors: tuple[CursorView, ...] = ()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="crm-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runner.source.close()

    def run_now(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self.last_started is not None and (self.last_finished is None or self.last_finished < self.last_started)

    def status(self) -> SyncStatus:
        return SyncStatus(self.runner.source.name, self.interval, self.running, self.last_started,
                          self.last_finished, None if self.last is None else self.last.ok,
                          None if self.last is None else self.last.failure,
                          0 if self.last is None else len(self.last.issues), self.cursors)

    async def _loop(self) -> None:
        while True:
            self.last_started = self._clock()
            try:
                self.last = await self.runner.run()
            except Exception:  # a bug must not end the schedule: logged, tried again next time
                log.exception("sync.crashed", source=self.runner.source.name)
            with contextlib.suppress(Exception):  # the database may be the reason the run stopped
                name = self.runner.source.name
                self.cursors = tuple(c for c in await self.runner.store.cursors() if c.source == name)
            self.last_finished = self._clock()
            self.runs += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
