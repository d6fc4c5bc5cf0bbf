"""What the outbox tests share: a settable clock, events of calls, a worker over real targets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_bridge.call_log import CallLog, CallStart, TimelineRecord
from crm_bridge.connectors.base import Target
from crm_bridge.connectors.webhook import WebhookTarget
from crm_bridge.contract.crm import EXPORTED, OutboxState
from crm_bridge.outbox.backoff import Backoff
from crm_bridge.outbox.routing import OutboxRouting
from crm_bridge.outbox.store import OutboxStore
from crm_bridge.outbox.worker import DeliveryWorker
from tests.crm.fake_webhook import FakeWebhook

ALL = frozenset(k.value for k in EXPORTED)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)  # rows are enqueued due "now" by the real clock

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def call_events(call_id: str, kinds: Sequence[str] = ("call.started", "call.ended", "recording.ready"),
                t0: datetime | None = None) -> list[TimelineRecord]:
    t0 = t0 or datetime.now(UTC) - timedelta(minutes=5)
    return [TimelineRecord(at=t0 + timedelta(seconds=i), call_id=call_id, customer_id=None, kind=kind,
                           data={"path": f"/rec/{call_id}.wav"} if kind == "recording.ready" else {})
            for i, kind in enumerate(kinds)]


def webhook_target(fake: FakeWebhook, name: str = "webhook", rate: float = 1000.0) -> WebhookTarget:
    return WebhookTarget(name, fake.url, fake.secret, kinds=ALL, rate=rate, burst=int(rate), timeout=2.0)


def routing(*targets: Target) -> OutboxRouting:
    return OutboxRouting({t.name: t.kinds for t in targets})


async def enqueue(store: Any, targets: Sequence[Target], records: Sequence[Any]) -> None:
    """Through the call log, as the record writer does: the rows commit with the timeline."""
    await CallLog(store.sessions, outbox=routing(*targets)).write(list(records))


def start_of(call_id: str) -> CallStart:
    return CallStart(call_id=call_id, started_at=datetime.now(UTC) - timedelta(minutes=5),
                     caller_number="+79161234567", normalized_number="+79161234567")


def make_worker(store: Any, targets: Sequence[Target], clock: Clock, *, max_attempts: int = 5,
                retry_min: float = 5.0, retry_max: float = 300.0) -> DeliveryWorker:
    async def no_sleep(_seconds: float) -> None:
        return None

    return DeliveryWorker(OutboxStore(store.sessions), targets, max_attempts=max_attempts,
                          backoff=Backoff(retry_min, retry_max), clock=clock, sleep=no_sleep, rand=lambda: 1.0)


async def drain(worker: DeliveryWorker, clock: Clock, *, rounds: int = 200) -> None:
    """Run every target's rounds until nothing is pending, stepping the clock past each backoff.
    Closes the targets' HTTP clients at the end (the worker is not started in these tests)."""
    for _ in range(rounds):
        claimed = 0
        for name in worker.targets:
            claimed += await worker.run_once(name)
        pending = [i for i in await worker.store.items() if i.state == OutboxState.PENDING]
        if not pending:
            await worker.stop()
            return
        later = [i.next_attempt_at for i in pending if i.next_attempt_at > clock.now]
        if claimed == 0 and later:  # what is pending waits for a backoff (or behind a row that does)
            clock.now = min(later)
    stuck = [(i.target, i.kind, i.state, i.attempts, i.last_error) for i in await worker.store.items()
             if i.state == OutboxState.PENDING]
    raise AssertionError(f"the outbox did not drain: {stuck}")
