"""Performs a flow's RequestCallback: one callback task, under a deadline, on the call's timeline.

Both scripts that promise a callback (the repeat order outside business hours, the queue's
"press 1") do it here, filed under the call's id so that the store counts one request per call
however often it is asked (an AGI retry, the AMI tracker seeing the same call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Protocol

from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import Reason
from crm_bridge.dto import CallbackTaskView
from ivr.calls.identity import CallIdentity
from ivr.calls.notifier import CallEvents, CallNotifier
from ivr.flows.model import CallbackRecorded, Event, RequestCallback, StepFailed


class CallbackStore(Protocol):
    async def open_callback_task(
        self, *, customer_id: str | None, number: str | None, reason: str, due_at: datetime, call_id: str | None
    ) -> tuple[CallbackTaskView, bool]: ...


async def save_callback(
    action: RequestCallback,
    call: CallIdentity,
    *,
    store: CallbackStore,
    notifier: CallNotifier,
    events: CallEvents,
    due_at: datetime,
    deadline: float,
    log: Any,
    bounded: Callable[[Coroutine[Any, Any, Any], float], Awaitable[Any]] | None = None,
) -> Event:
    """CallbackRecorded(created=False) when there is nobody to call back; StepFailed when the store
    failed or missed ``deadline`` (on the timeline as ``step.failed``). ``bounded(work, deadline)``
    runs the write (the repeat-order call's, which also keeps the caller's silence budget);
    asyncio.wait_for by default."""
    if call.number is None and action.customer_id is None:
        return CallbackRecorded(created=False)
    try:
        task, created = await (bounded or asyncio.wait_for)(
            store.open_callback_task(
                customer_id=action.customer_id, number=call.number, reason=action.reason, due_at=due_at,
                call_id=call.call_id,
            ),
            deadline,
        )
    except TimeoutError:
        return _failed(notifier, events, Reason.DATABASE_TIMEOUT)
    except Exception as exc:
        log.error("callback_failed", error=repr(exc))
        return _failed(notifier, events, Reason.DATABASE_ERROR)
    notifier.emit(
        events, EventKind.CALLBACK_CREATED, task_id=task.task_id, reason=action.reason,
        due_at=task.due_at.isoformat(), created=created, attempts=task.attempts, number=call.number,
    )
    return CallbackRecorded(created=True)


def _failed(notifier: CallNotifier, events: CallEvents, reason: str) -> StepFailed:
    notifier.emit(events, EventKind.STEP_FAILED, step="callback", reason=reason)
    return StepFailed(reason)
