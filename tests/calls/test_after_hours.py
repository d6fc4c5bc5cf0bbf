"""Outside business hours, and the queue's "press 1 to be called back"."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from crm_bridge.demo import load_demo_data
from ivr.calls.hours import BusinessHours
from tests.calls.harness import start_harness, wait_for
from tests.fakeasterisk import FakeAsterisk

# Friday 27 November 2026, 22:00 in Moscow: the operators went home at 20:00.
FRIDAY_NIGHT = datetime(2026, 11, 27, 19, 0, tzinfo=UTC)
HOURS = BusinessHours(open=time(9), close=time(20), days=(1, 2, 3, 4, 5), callback_delay_minutes=30)


@pytest.fixture
async def night(store, tmp_path_factory):
    await load_demo_data(store.sessions)
    harness = await start_harness(store, tmp_path_factory.mktemp("prompts"), hours=HOURS,
                                  clock=lambda: FRIDAY_NIGHT)
    yield harness
    await harness.stop()


async def ended(store, call_id):
    async def check():
        call = await store.get_call(call_id)
        return call if call and call.outcome else None

    return await wait_for(check)


async def test_unknown_caller_at_night_hears_the_hours_and_gets_one_callback_task(night):
    first = await night.call("+79990001122")
    assert first.variables["IVR_RESULT"] == "done"  # the dialplan hangs up: nobody is in the queue
    assert first.variables["IVR_REASON"] == "after_hours:unknown_number"
    call = await ended(night.store, first.channel_vars["CHANNEL(linkedid)"])
    assert call.outcome == "callback_requested"
    events = await night.store.call_timeline(call.call_id)
    said = [e.data["text"] for e in events if e.kind == "prompt.played"]
    assert said == [
        "Сейчас операторы не работают: мы отвечаем с девяти до двадцати часов. "
        "Мы перезвоним вам в рабочее время. Спасибо, до свидания."
    ]
    # the same caller tries again: still one open task
    await night.call("+79990001122")
    tasks = await night.store.list_tasks()
    assert len(tasks) == 1
    (task,) = tasks
    assert (task.number, task.customer_id, task.attempts) == ("+79990001122", None, 2)
    # due 30 minutes after Monday's opening (the weekend is closed)
    assert task.due_at.astimezone(UTC) == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)


async def test_known_customer_at_night_still_repeats_the_order(night):
    fake = await night.call("+79161234567", ["1"])
    assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("done", "order_placed")
    assert await night.store.list_tasks() == []


async def test_known_customer_asking_for_a_human_at_night_gets_a_callback(night):
    fake = await night.call("+79161234567", ["0"])
    assert fake.variables["IVR_REASON"] == "after_hours:caller_request"
    (task,) = await night.store.list_tasks()
    assert task.customer_id == "C001" and task.reason == "caller_request"


async def test_withheld_number_at_night_is_told_to_call_back_later(night):
    fake = await night.call("")
    assert fake.variables["IVR_RESULT"] == "done"
    assert fake.variables["IVR_REASON"] == "after_hours:no_caller_id"
    assert await night.store.list_tasks() == []


async def test_queue_callback_key_creates_a_task_and_ends_the_call(store, tmp_path_factory):
    await load_demo_data(store.sessions)
    harness = await start_harness(store, tmp_path_factory.mktemp("prompts"))
    try:
        # the caller went through the IVR (IVR_CUSTOMER_ID is on the channel), waited, pressed 1
        fake = FakeAsterisk(check_files=True, variables={"IVR_CUSTOMER_ID": "C002", "IVR_LANGUAGE": "ru"})
        fake = await harness.call("+79031112233", script="callback-request", fake=fake)
        assert fake.variables["IVR_RESULT"] == "done"
        assert fake.variables["IVR_CALLBACK"] == "1"
        (task,) = await store.list_tasks()
        assert (task.customer_id, task.reason) == ("C002", "callback_requested")
        assert fake.played, "the caller heard the promise"
        again = await harness.call("+79031112233", script="callback-request",
                                   fake=FakeAsterisk(check_files=True, variables={"IVR_CUSTOMER_ID": "C002"}))
        assert again.variables["IVR_RESULT"] == "done"
        assert len(await store.list_tasks()) == 1
    finally:
        await harness.stop()


async def test_queue_callback_key_pressed_twice_in_one_call_is_counted_once(store, tmp_path_factory):
    await load_demo_data(store.sessions)
    harness = await start_harness(store, tmp_path_factory.mktemp("prompts"))
    try:
        for _ in range(2):  # the same channel (one linkedid) runs the script again
            fake = await harness.call("+79031112233", script="callback-request", uniqueid="1795751200.50",
                                      fake=FakeAsterisk(check_files=True, variables={"IVR_CUSTOMER_ID": "C002"}))
            assert (fake.variables["IVR_RESULT"], fake.variables["IVR_CALLBACK"]) == ("done", "1")
        (task,) = await store.list_tasks()
        assert (task.customer_id, task.attempts, task.reason, task.call_id) == (
            "C002", 1, "callback_requested", "1795751200.50",
        )
        events = await wait_for(lambda: _timeline_with(store, "1795751200.50", "prompt.played", 2))
        assert [e.data["prompts"] for e in events if e.kind == "prompt.played"] == [["callback_promised"]] * 2
    finally:
        await harness.stop()


async def _timeline_with(store, call_id, kind, count):
    events = await store.call_timeline(call_id)
    return events if sum(e.kind == kind for e in events) >= count else None


async def test_queue_callback_key_without_a_number_returns_to_the_queue(store, tmp_path_factory):
    harness = await start_harness(store, tmp_path_factory.mktemp("prompts"))
    try:
        fake = await harness.call("", script="callback-request")
        assert fake.variables["IVR_RESULT"] == "operator"
        assert fake.variables["IVR_REASON"] == "callback_without_number"
        assert "IVR_CALLBACK" not in fake.variables
        assert await store.list_tasks() == []
    finally:
        await harness.stop()
