"""Store additions for the AMI call tracker: update_call upserts, callback tasks, customer_by_number."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.dto import CallView
from crm_bridge.models import CallbackTask
from crm_bridge.services import CrmStore
from tests.db.seed import IVANOV_PHONE, SHARED_PHONE, seed

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
async def seeded(store: CrmStore) -> CrmStore:
    await seed(store)
    return store


# --- update_call -------------------------------------------------------------------------------


async def test_update_call_creates_a_call_never_seen_begin(store: CrmStore) -> None:
    await store.update_call("1795751090.30", started_at=T0, queue="operators", queue_entered_at=T0)
    call = await store.get_call("1795751090.30")
    assert call is not None
    assert (call.started_at, call.queue, call.queue_entered_at) == (T0, "operators", T0)
    assert call.transfers == 0
    assert call.outcome is None


async def test_update_call_without_start_uses_now(store: CrmStore) -> None:
    before = datetime.now(UTC)
    await store.update_call("x1", facts=facts_implying("abandoned_in_queue"))
    call = await store.get_call("x1")
    assert call is not None and call.started_at >= before - timedelta(seconds=1)
    assert call.outcome == "abandoned_in_queue"


async def test_update_call_sets_every_tracking_column_and_keeps_the_ivr_start(seeded: CrmStore) -> None:
    await seeded.record_call_start(
        call_id="c1",
        caller_number="+79161234567",
        normalized_number=IVANOV_PHONE,
        customer_id=None,
        channel="PJSIP/trunk-1",
        script="repeat-order",
        started_at=T0,
    )
    await seeded.record_call_end("c1", facts=facts_implying("operator"), reason="menu_0",
                                 ended_at=T0 + timedelta(seconds=20))
    fields = dict(
        queue="operators",
        queue_entered_at=T0 + timedelta(seconds=21),
        wait_seconds=4.5,
        answered_at=T0 + timedelta(seconds=25),
        talk_seconds=61.0,
        operator_interface="PJSIP/101",
        operator_name="Анна Смирнова",
        hangup_by="operator",
        recording_path="/rec/call-c1.wav",
        recording_seconds=86.5,
        recording_bytes=1384044,
        transfers=1,
    )
    await seeded.update_call(
        "c1",
        started_at=T0 + timedelta(hours=1),
        customer_id="C1",
        facts=facts_implying("operator_answered"),
        ended_at=T0 + timedelta(seconds=90),
        **fields,
    )
    call = await seeded.get_call("c1")
    assert call is not None
    assert call.started_at == T0  # the IVR's start wins
    assert (call.customer_id, call.outcome, call.reason) == ("C1", "operator_answered", "menu_0")
    for name, value in fields.items():
        assert getattr(call, name) == value, name


async def test_update_call_with_an_unknown_customer_keeps_the_known_one(seeded: CrmStore) -> None:
    await seeded.update_call("c2", customer_id="C1")
    await seeded.update_call("c2", customer_id="NOPE", hangup_by="caller")
    call = await seeded.get_call("c2")
    assert call is not None and (call.customer_id, call.hangup_by) == ("C1", "caller")


async def test_update_call_refuses_unknown_fields(store: CrmStore) -> None:
    with pytest.raises(ValueError, match="operatr"):
        await store.update_call("c3", operatr="PJSIP/101")
    with pytest.raises(ValueError):
        await store.update_call("c3", id=1)
    assert await store.get_call("c3") is None


async def test_late_ivr_end_does_not_undo_a_refined_outcome(store: CrmStore) -> None:
    await store.update_call("c4", started_at=T0, facts=facts_implying("abandoned_in_ivr"),
                            ended_at=T0 + timedelta(seconds=9))
    await store.record_call_end("c4", facts=facts_implying("abandoned"), reason="hangup_at_menu",
                                ended_at=T0 + timedelta(seconds=8))
    call = await store.get_call("c4")
    assert call is not None
    assert (call.outcome, call.reason, call.ended_at) == (
        "abandoned_in_ivr",
        "hangup_at_menu",
        T0 + timedelta(seconds=9),
    )


async def test_concurrent_update_call_creates_one_row(store: CrmStore) -> None:
    await asyncio.gather(*(store.update_call("c5", queue="operators", wait_seconds=float(i)) for i in range(8)))
    assert len([c for c in await store.list_calls() if c.call_id == "c5"]) == 1


def test_call_view_positional_construction_still_works() -> None:
    view = CallView("c", None, None, None, T0, None, None, None, None)
    assert view.queue is None and view.recording_bytes is None and view.transfers is None


# --- customer_by_number --------------------------------------------------------------------------


async def test_customer_by_number_finds_only_a_single_owner(seeded: CrmStore) -> None:
    found = await seeded.customer_by_number("8 916 123-45-67")
    assert found is not None and found.customer_id == "C1"
    assert await seeded.customer_by_number(SHARED_PHONE) is None
    assert await seeded.customer_by_number("+79990001122") is None
    assert await seeded.customer_by_number("anonymous") is None


# --- callback tasks ------------------------------------------------------------------------------


async def test_second_request_for_the_same_customer_folds_into_the_open_task(store: CrmStore) -> None:
    first, created = await store.open_callback_task(
        customer_id="C1", number=IVANOV_PHONE, reason="abandoned_in_queue", due_at=T0, call_id="a"
    )
    assert created and (first.status, first.attempts, first.reason, first.call_id) == (
        "open",
        1,
        "abandoned_in_queue",
        "a",
    )
    again, created = await store.open_callback_task(
        customer_id="C1", number=IVANOV_PHONE, reason="abandoned_in_queue", due_at=T0 + timedelta(hours=2), call_id="b"
    )
    assert not created
    assert (again.task_id, again.attempts, again.reason, again.due_at) == (first.task_id, 2, "abandoned_in_queue", T0)
    third, _ = await store.open_callback_task(
        customer_id="C1", number=None, reason="callback_requested", due_at=T0, call_id="c"
    )
    assert (third.task_id, third.attempts, third.reason) == (first.task_id, 3, "abandoned_in_queue; callback_requested")
    assert [t.task_id for t in await store.list_tasks()] == [first.task_id]


async def test_the_same_call_asking_again_is_counted_once(store: CrmStore) -> None:
    first, created = await store.open_callback_task(
        customer_id="C1", number=IVANOV_PHONE, reason="callback_requested", due_at=T0, call_id="a"
    )
    again, created_again = await store.open_callback_task(
        customer_id="C1", number=IVANOV_PHONE, reason="abandoned_in_queue", due_at=T0 - timedelta(hours=1),
        call_id="a",
    )
    assert (created, created_again) == (True, False)
    assert (again.task_id, again.attempts, again.reason, again.due_at) == (
        first.task_id, 1, "callback_requested", T0,
    )


async def test_unknown_customers_are_keyed_by_number(store: CrmStore) -> None:
    a, created_a = await store.open_callback_task(
        customer_id=None, number="+79990001122", reason="r", due_at=T0, call_id=None
    )
    b, created_b = await store.open_callback_task(
        customer_id=None, number="+79990001122", reason="r", due_at=T0, call_id=None
    )
    c, created_c = await store.open_callback_task(
        customer_id=None, number="+79990003344", reason="r", due_at=T0, call_id=None
    )
    assert (created_a, created_b, created_c) == (True, False, True)
    assert a.task_id == b.task_id != c.task_id
    with pytest.raises(ValueError):
        await store.open_callback_task(customer_id=None, number=None, reason="r", due_at=T0, call_id=None)


async def test_concurrent_requests_open_exactly_one_task(store: CrmStore) -> None:
    results = await asyncio.gather(
        *(
            store.open_callback_task(
                customer_id="C9", number=None, reason="abandoned_in_queue", due_at=T0, call_id=f"k{i}"
            )
            for i in range(10)
        )
    )
    assert sum(created for _, created in results) == 1
    assert len({view.task_id for view, _ in results}) == 1
    async with store.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(CallbackTask))).scalar_one() == 1
    (task,) = await store.list_tasks()
    assert task.attempts == 10


async def test_close_done_then_a_new_request_opens_a_new_task(store: CrmStore) -> None:
    task, _ = await store.open_callback_task(customer_id="C1", number=None, reason="r", due_at=T0, call_id=None)
    closed = await store.close_task(task.task_id, "done", note="ordered 2 bottles")
    assert closed is not None and (closed.status, closed.note) == ("done", "ordered 2 bottles")
    assert await store.list_tasks() == []
    assert [t.task_id for t in await store.list_tasks(status="done")] == [task.task_id]
    again = await store.close_task(task.task_id, "cancelled")
    assert again is not None and again.status == "done"  # closing twice changes nothing
    new, created = await store.open_callback_task(customer_id="C1", number=None, reason="r", due_at=T0, call_id=None)
    assert created and new.task_id != task.task_id
    assert len(await store.list_tasks(status=None)) == 2


async def test_no_answer_keeps_the_task_open_an_hour_later(store: CrmStore) -> None:
    task, _ = await store.open_callback_task(customer_id="C1", number=None, reason="r", due_at=T0, call_id=None)
    before = datetime.now(UTC)
    retried = await store.close_task(task.task_id, "no_answer", note="no answer 1")
    assert retried is not None
    assert (retried.status, retried.attempts, retried.note) == ("open", 2, "no answer 1")
    assert retried.due_at >= before + timedelta(minutes=59)
    retried = await store.close_task(task.task_id, "no_answer", note="no answer 2")
    assert retried is not None and retried.note == "no answer 1\nno answer 2" and retried.attempts == 3


async def test_close_task_validates_status_and_id(store: CrmStore) -> None:
    assert await store.close_task(12345, "done") is None
    task, _ = await store.open_callback_task(customer_id="C1", number=None, reason="r", due_at=T0, call_id=None)
    with pytest.raises(ValueError):
        await store.close_task(task.task_id, "open")


async def test_list_tasks_is_due_first_and_pages(store: CrmStore) -> None:
    for i, hours in enumerate([3, 1, 2]):
        await store.open_callback_task(
            customer_id=f"C{i}", number=None, reason="r", due_at=T0 + timedelta(hours=hours), call_id=None
        )
    tasks = await store.list_tasks()
    assert [t.customer_id for t in tasks] == ["C1", "C2", "C0"]
    assert [t.customer_id for t in await store.list_tasks(limit=1, offset=1)] == ["C2"]
