"""`agi://…/callback-request`: a caller waiting in the queue pressed 1 to be called back.

The queue's exit context (dialplans/extensions_ivr.conf, [ivr-queue-exit]) runs this script. We
leave one callback task for the customer (or the number), tell the caller, and let the dialplan hang
up; with nobody to call back (withheld number) the caller goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import structlog

from crm_bridge.contract.dialplan import IvrResult, Var
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import Reason
from crm_bridge.dto import CallbackTaskView
from ivr.agi.channel import AgiChannel
from ivr.agi.errors import AgiPlaybackFailed
from ivr.calls.hours import BusinessHours
from ivr.calls.notifier import CallNotifier
from ivr.flows.model import PromptRef
from ivr.speech.speaker import Speaker, SpeechError

log = structlog.get_logger("ivr.calls")


class CallbackStore(Protocol):
    async def open_callback_task(
        self, *, customer_id: str | None, number: str | None, reason: str, due_at: datetime, call_id: str | None
    ) -> tuple[CallbackTaskView, bool]: ...


class CallbackRequestCall:
    def __init__(
        self,
        *,
        store: CallbackStore,
        speaker: Speaker,
        notifier: CallNotifier,
        hours: BusinessHours,
        normalize: Callable[[str | None], str | None],
        db_deadline: float = 3.0,
        media_slack: float = 30.0,
        default_language: str = "ru",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._speaker = speaker
        self._notifier = notifier
        self._hours = hours
        self._normalize = normalize
        self._db_deadline = db_deadline
        self._media_slack = media_slack
        self._default_language = default_language
        self._clock = clock

    async def __call__(self, channel: AgiChannel) -> None:
        env = channel.env
        call_id = await channel.get_variable("CHANNEL(linkedid)") or env.uniqueid
        # Set by the repeat-order script earlier on this same channel, when it knew the customer.
        customer_id = await channel.get_variable(Var.CUSTOMER_ID) or None
        language = env.options.get("lang") or await channel.get_variable(Var.LANGUAGE) or self._default_language
        number = self._normalize(env.caller_id)
        events = self._notifier.open(call_id)
        events.customer_id = customer_id
        bound = log.bind(call_id=call_id, customer_id=customer_id)
        try:
            if number is None and customer_id is None:
                self._notifier.emit(events, EventKind.CALLBACK_IMPOSSIBLE, reason=Reason.NO_CALLER_ID)
                await self._say(channel, "callback_impossible", language)
                await channel.set_variable(Var.RESULT, IvrResult.OPERATOR)
                await channel.set_variable(Var.REASON, Reason.CALLBACK_WITHOUT_NUMBER)
                return
            try:
                task, created = await asyncio.wait_for(
                    self._store.open_callback_task(
                        customer_id=customer_id, number=number, reason=Reason.CALLBACK_REQUESTED_IN_QUEUE,
                        due_at=self._hours.callback_due(self._clock()), call_id=call_id,
                    ),
                    self._db_deadline,
                )
            except Exception as exc:  # no task could be saved: back to the queue, never a lost caller
                bound.error("callback_not_saved", error=repr(exc))
                self._notifier.emit(events, EventKind.STEP_FAILED, step="callback", reason=Reason.DATABASE_ERROR)
                await channel.set_variable(Var.RESULT, IvrResult.OPERATOR)
                await channel.set_variable(Var.REASON, Reason.DATABASE_ERROR)
                return
            self._notifier.emit(
                events, EventKind.CALLBACK_CREATED, task_id=task.task_id, reason=Reason.CALLBACK_REQUESTED_IN_QUEUE,
                due_at=task.due_at.isoformat(), created=created, attempts=task.attempts, number=number,
            )
            # The AMI tracker sees this variable and files the call as "callback_requested".
            await channel.set_variable(Var.CALLBACK, "1")
            await self._say(channel, "callback_promised", language)
            await channel.set_variable(Var.RESULT, IvrResult.DONE)
            await channel.set_variable(Var.REASON, Reason.CALLBACK_REQUESTED)
        finally:
            await channel.close()
            await self._notifier.flush(events)

    async def _say(self, channel: AgiChannel, prompt_id: str, language: str) -> None:
        try:
            utterance = await self._speaker.prepare((PromptRef(prompt_id),), language)
        except SpeechError as exc:
            log.error("prompt_failed", error=str(exc))
            return
        try:
            with contextlib.suppress(AgiPlaybackFailed):
                await channel.stream_file(utterance.asterisk_path, "", timeout=utterance.seconds + self._media_slack)
        finally:
            self._speaker.release(utterance)

