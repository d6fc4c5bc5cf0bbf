"""The delivery worker: one task per target takes due outbox rows and delivers them, never a call's.

Per target, in a loop: claim up to ``batch`` due rows (``OutboxStore.claim``: per-call order, leased),
deliver them one at a time, settle each. The target's token bucket is taken per HTTP request (the
target calls ``context.pace()`` before each): an order's deal is several requests, and a limit
counted per row let those bursts past the CRM's own limit (Bitrix24 then refused the third request
of every attempt, for ever).

- delivered → ``delivered`` (with what the target answered, e.g. Bitrix24's CALL_ID), marked for the
  whole batch in one transaction at its end, or before a failure is settled;
- ``Retry`` → pending again after ``Backoff.delay(attempts)``, or dead at ``max_attempts``; the rest
  of the batch goes back untried (not counted) at the same time: a target that is down is asked
  once per backoff step, not once per row;
- ``Throttled`` → the row and the rest of the batch wait ``after`` seconds, not counted;
- ``Refused`` → dead at once.

A short batch (the outbox nearly drained) is followed by ``poll_interval`` of rest, so that at a
steady call rate one claim and one settle serve many rows: each is a write transaction, and on
SQLite the calls' own writes queue behind the same writer lock (measured: bench/README.md).

Nothing here runs on a call's path: calls only add rows (``crm_bridge.call_log``). The database
being down stops deliveries (logged once per failure, retried every ``poll_interval``), never calls.
``clock`` (wall, for the rows' times), ``monotonic`` and ``sleep`` (the token bucket) and ``rand``
(the jitter) are parameters, so tests step ``run_once`` with a clock of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from crm_bridge.connectors.base import DeliveryContext, DeliveryError, Refused, Target, Throttled
from crm_bridge.contract.events import EventKind
from crm_bridge.dto import CallView, OutboxItem
from crm_bridge.outbox.backoff import Backoff, TokenBucket
from crm_bridge.outbox.store import OutboxStore
from crm_bridge.transcripts import TranscriptView

log = structlog.get_logger("crm_bridge.outbox")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker:
    def __init__(
        self,
        store: OutboxStore,
        targets: Sequence[Target],
        *,
        max_attempts: int,
        backoff: Backoff,
        batch: int = 50,
        lease: float = 120.0,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.targets = {t.name: t for t in targets}
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.batch, self.lease, self.poll_interval = batch, lease, poll_interval
        self._clock, self._monotonic, self._sleep, self._rand = clock, monotonic, sleep, rand
        self._buckets = {t.name: TokenBucket(t.rate, t.burst, monotonic()) for t in targets}
        self._tasks: list[asyncio.Task[None]] = []
        self.delivered = 0  # counters for /metrics and tests
        self.failures = 0

    async def context(self, target: str, items: Sequence[OutboxItem]) -> DeliveryContext:
        """What the batch's deliveries may look up, read once for the whole batch."""
        calls, refs = await self.store.batch_context(target, [i.call_id for i in items if i.call_id])
        subjects = await self.store.subject_refs(target, [i.subject for i in items if i.subject])
        transcripts = await self.store.transcripts([
            tid for i in items if i.kind == EventKind.TRANSCRIPT_READY
            and isinstance(tid := (i.payload.get("data") or {}).get("transcript_id"), int)])

        async def call(call_id: str) -> CallView | None:
            return calls.get(call_id)

        async def remote_ref(call_id: str, kind: str) -> str | None:
            return refs.get((call_id, kind))

        async def subject_ref(subject: str) -> str | None:
            return subjects.get(subject)

        async def pace() -> None:
            await self._take_token(target)

        async def transcript(transcript_id: int) -> TranscriptView | None:
            return transcripts.get(transcript_id)

        return DeliveryContext(call=call, remote_ref=remote_ref, subject_ref=subject_ref, pace=pace,
                               transcript=transcript)

    # --- the loop -------------------------------------------------------------------------------

    def start(self) -> None:
        for name in self.targets:
            self._tasks.append(asyncio.get_running_loop().create_task(self._run(name), name=f"outbox-{name}"))
        log.info("crm.outbox_started", targets=sorted(self.targets))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for target in self.targets.values():
            with contextlib.suppress(Exception):
                await target.close()

    async def _run(self, name: str) -> None:
        while True:
            try:
                done = await self.run_once(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database, not a target: deliveries wait, calls do not
                log.warning("crm.outbox_unavailable", target=name, error=type(exc).__name__)
                done = 0
            if done < self.batch:
                # A short batch: the outbox is (nearly) drained. Waiting lets rows gather, so one claim
                # and one settle serve many rows (each is a write transaction, on SQLite the writer lock
                # the calls' own writes queue on); a full batch means a backlog: go on at once.
                await asyncio.sleep(self.poll_interval)

    # --- one step -------------------------------------------------------------------------------

    async def run_once(self, name: str) -> int:
        """Claim and settle one batch of ``name``'s due rows; returns how many were claimed."""
        target = self.targets[name]
        items = await self.store.claim(name, self._clock(), limit=self.batch, lease=self.lease)
        if not items:
            return 0
        context = await self.context(name, items)
        done: list[tuple[int, str | None]] = []  # settled together: one transaction per batch
        settled = 0  # items[:settled] are delivered (in done) or settled as failures
        try:
            for i, item in enumerate(items):
                held_back = await self._deliver(target, item, context, done)
                settled = i + 1
                if held_back is not None:  # the target is failing: the rest of the batch waits as long
                    await self.store.hold_back([rest.id for rest in items[i + 1:]], held_back)
                    settled = len(items)
                    break
        except asyncio.CancelledError:
            # Stopping (SIGTERM): what was delivered is marked, what was not goes back in line now
            # rather than when its lease runs out. The row in flight may have arrived: at least once.
            await asyncio.shield(self._settle_on_stop(done, [i.id for i in items[settled:]]))
            raise
        await self.store.delivered(done, self._clock())
        return len(items)

    async def _settle_on_stop(self, done: list[tuple[int, str | None]], untried: list[int]) -> None:
        try:
            await self.store.delivered(done, self._clock())
            await self.store.hold_back(untried, self._clock())
        except Exception as exc:  # the database is gone too: the leases will run out
            log.warning("crm.outbox_unsettled_at_stop", rows=len(done) + len(untried), error=type(exc).__name__)

    async def _take_token(self, name: str) -> None:
        bucket = self._buckets[name]
        wait = bucket.wait_time(self._monotonic())
        while wait > 0:
            await self._sleep(wait)
            wait = bucket.wait_time(self._monotonic())

    async def _deliver(self, target: Target, item: OutboxItem, context: DeliveryContext,
                       done: list[tuple[int, str | None]]) -> datetime | None:
        """Deliver one row: a success joins ``done``; a failure is settled at once, after the batch's
        successes so far (a crash after a failure never leaves an answered row unmarked). Returns when
        to try the batch's other rows if the target is failing."""
        bound = log.bind(target=target.name, event_id=item.event_id, kind=item.kind, call_id=item.call_id,
                         attempts=item.attempts)
        try:
            remote = await target.deliver(item, context)
        except Exception as exc:  # a target's DeliveryError, or a bug (named by its type only)
            await self.store.delivered(done, self._clock())
            done.clear()
            return await self._failed(item, exc, bound)
        done.append((item.id, remote))
        self._buckets[target.name].recover()
        self.delivered += 1
        bound.debug("crm.delivered")
        return None

    async def _failed(self, item: OutboxItem, exc: Exception, bound: Any) -> datetime | None:
        if isinstance(exc, Throttled):
            self._buckets[item.target].slow_down()
            later = self._clock() + timedelta(seconds=exc.after)
            await self.store.failed(item.id, str(exc), later, dead=False, count_attempt=False)
            bound.info("crm.delivery_throttled", after=exc.after)
            return later
        self.failures += 1
        if isinstance(exc, Refused):
            await self.store.failed(item.id, str(exc), self._clock(), dead=True)
            bound.warning("crm.delivery_dead", error=str(exc))
            return None
        # A target's own errors are scrubbed; anything else is named by its type only.
        error = str(exc) if isinstance(exc, DeliveryError) else f"unexpected {type(exc).__name__}"
        dead = item.attempts >= self.max_attempts
        later = self._clock() + timedelta(seconds=self.backoff.delay(item.attempts, self._rand))
        await self.store.failed(item.id, error, later, dead=dead)
        if dead:
            bound.warning("crm.delivery_dead", error=error)
            return None
        bound.info("crm.delivery_retry", error=error, next_attempt_at=later.isoformat())
        return later
