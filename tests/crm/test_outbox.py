"""The outbox on both databases: enqueued with the call's records, once, delivered in order per call,
backing off by a clock the test holds, dead letters and their retry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select

from crm_bridge.call_log import CallLog
from crm_bridge.contract.crm import OutboxState
from crm_bridge.models import OutboxRow
from tests.calls.harness import wait_for
from tests.crm.rig import Clock, call_events, drain, enqueue, make_worker, start_of, webhook_target


async def outbox_rows(store) -> int:
    async with store.sessions() as session:
        return (await session.execute(select(func.count()).select_from(OutboxRow))).scalar_one()


async def test_the_same_event_twice_is_one_row_per_target(store, webhook, bitrix) -> None:
    first, second = webhook_target(webhook, "webhook"), webhook_target(webhook, "second")
    records = [start_of("c1"), *call_events("c1")]
    await enqueue(store, [first, second], records)
    await enqueue(store, [first, second], records)  # a replayed batch (its COMMIT reply was lost)
    assert await outbox_rows(store) == 6  # three events × two targets


async def test_events_commit_with_the_timeline_and_only_the_kinds_a_target_wants(store, webhook) -> None:
    target = webhook_target(webhook)
    target.kinds = frozenset({"call.ended"})
    await enqueue(store, [target], call_events("c1", ("call.started", "prompt.played", "call.ended")))
    worker = make_worker(store, [target], Clock())
    assert [i.kind for i in await worker.store.items()] == ["call.ended"]


async def test_without_targets_a_batch_runs_no_outbox_statement(store) -> None:
    statements: list[str] = []
    engine = store.sessions.kw["bind"].sync_engine

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        await CallLog(store.sessions).write([start_of("c1"), *call_events("c1")])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements and not [s for s in statements if "outbox" in s]
    assert await outbox_rows(store) == 0


async def test_a_call_is_delivered_in_order_even_when_its_first_event_is_retried(store, webhook) -> None:
    target = webhook_target(webhook)
    await enqueue(store, [target], [*call_events("a"), *call_events("b", ("call.started",))])
    clock = Clock()
    worker = make_worker(store, [target], clock)
    webhook.fail_with(503)
    assert await worker.run_once("webhook") == 2  # a's start and b's start: a's end waits behind a's start
    assert webhook.received == []
    webhook.fail_with(None)
    await drain(worker, clock)
    kinds_of_a = [e["kind"] for e in webhook.received if e["call_id"] == "a"]
    assert kinds_of_a == ["call.started", "call.ended", "recording.ready"]
    assert sorted(webhook.event_ids()) == sorted({i.event_id for i in await worker.store.items()})


async def test_failures_back_off_exponentially_by_the_clock_then_die(store, webhook) -> None:
    target = webhook_target(webhook)
    await enqueue(store, [target], call_events("c1", ("call.started",)))
    clock = Clock()
    worker = make_worker(store, [target], clock, max_attempts=3, retry_min=5.0)
    webhook.fail_with(500)
    start = clock.now
    assert await worker.run_once("webhook") == 1
    [item] = await worker.store.items()
    assert (item.attempts, item.next_attempt_at) == (1, start + timedelta(seconds=5))
    clock.advance(4.9)
    assert await worker.run_once("webhook") == 0  # not due yet
    clock.now = item.next_attempt_at
    assert await worker.run_once("webhook") == 1
    [item] = await worker.store.items()
    assert item.next_attempt_at == clock.now + timedelta(seconds=10)  # doubled
    clock.now = item.next_attempt_at
    assert await worker.run_once("webhook") == 1
    [item] = await worker.store.items()
    assert (item.state, item.attempts) == (OutboxState.DEAD, 3)
    assert "HTTP 500" in (item.last_error or "")
    assert [d.id for d in await worker.store.dead_letters()] == [item.id]

    webhook.fail_with(None)
    assert await worker.store.retry(item.id, clock.now)
    assert await worker.store.retry(item.id, clock.now) is False  # no longer dead
    await drain(worker, clock)
    assert [e["kind"] for e in webhook.received] == ["call.started"]


async def test_a_refusal_is_a_dead_letter_at_once_and_does_not_hold_the_call_back(store, webhook) -> None:
    target = webhook_target(webhook)
    await enqueue(store, [target], call_events("c1", ("call.started", "call.ended")))
    clock = Clock()
    worker = make_worker(store, [target], clock)
    webhook.fail_with(422)
    await worker.run_once("webhook")
    webhook.fail_with(None)
    await drain(worker, clock)
    states = [(i.kind, i.state, i.attempts) for i in await worker.store.items()]
    assert states == [("call.started", "dead", 1), ("call.ended", "delivered", 1)]


async def test_a_wrong_signature_is_refused_by_the_receiver(store, webhook) -> None:
    target = webhook_target(webhook)
    target._secret = "another-secret-0123456789"  # what a receiver sees from an impostor
    await enqueue(store, [target], call_events("c1", ("call.started",)))
    worker = make_worker(store, [target], Clock())
    await worker.run_once("webhook")
    assert webhook.refused == 1 and webhook.received == []
    [item] = await worker.store.items()
    assert item.state == OutboxState.DEAD  # 401: the receiver will not take it as it is


async def test_a_stopped_worker_marks_what_arrived_and_puts_the_rest_back_in_line(store, webhook) -> None:
    target = webhook_target(webhook)
    await enqueue(store, [target], [r for c in "abc" for r in call_events(c, ("call.started",))])
    worker = make_worker(store, [target], Clock())
    webhook.admit = 1  # the first request is answered, the second hangs: the worker stops in the middle of it
    task = asyncio.create_task(worker.run_once("webhook"))
    await wait_for(lambda: len(webhook.received) == 1 and webhook.held == 1, timeout=10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    webhook.release()
    await worker.stop()
    items = await worker.store.items()
    assert [i.state for i in items] == ["delivered", "pending", "pending"]
    now = datetime.now(UTC)
    assert all(i.next_attempt_at <= now for i in items[1:])  # back in line at once, not after the lease
