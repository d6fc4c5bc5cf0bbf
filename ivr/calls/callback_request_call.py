"""`agi://…/callback-request`: runs the pure callback-request flow on a live FastAGI channel.

The queue's exit context (dialplans/extensions_ivr.conf, [ivr-queue-exit]) runs this script when a
caller waiting in the queue presses 1. What to do is ``ivr.flows.callback_request``'s decision; this
runner only reads the call's facts from the channel, saves the task, speaks and hands the result to
the dialplan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog

from crm_bridge.contract.dialplan import IvrResult, Var
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import Reason
from ivr.agi.channel import AgiChannel
from ivr.agi.errors import AgiError, AgiHangup, AgiPlaybackFailed
from ivr.agi.shutdown import Shutdown
from ivr.calls.callback_task import CallbackStore, save_callback
from ivr.calls.hours import BusinessHours
from ivr.calls.identity import CallIdentity
from ivr.calls.notifier import CallEvents, CallNotifier
from ivr.calls.silence import SilenceBudget, abandon, within
from ivr.flows.callback_request import CallbackRequestFlow
from ivr.flows.model import Event, Finish, RequestCallback
from ivr.speech.speaker import Speaker, SpeechError

log = structlog.get_logger("ivr.calls")


class CallbackRequestCall:
    """The FastAGI handler for ``agi://…/callback-request``; one instance serves every call."""

    def __init__(
        self,
        *,
        store: CallbackStore,
        speaker: Speaker,
        notifier: CallNotifier,
        hours: BusinessHours,
        db_deadline: float = 3.0,
        max_silence: float = 1.5,
        media_slack: float = 30.0,
        default_language: str = "ru",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shutdown: Shutdown | None = None,
    ) -> None:
        self._flow = CallbackRequestFlow()
        self._store = store
        self._speaker = speaker
        self._notifier = notifier
        self._hours = hours
        self._db_deadline = db_deadline
        self._max_silence = max_silence
        self._media_slack = media_slack
        self._default_language = default_language
        self._clock = clock
        self._shutdown = shutdown

    async def __call__(self, channel: AgiChannel) -> None:
        call = await self._identify(channel)
        quiet = SilenceBudget(self._max_silence)
        events = self._notifier.open(call.call_id)
        events.customer_id = call.customer_id
        bound = log.bind(call_id=call.call_id, customer_id=call.customer_id)
        try:
            state, action = self._flow.start(customer_id=call.customer_id, has_number=call.number is not None)
            while not isinstance(action, Finish):
                assert isinstance(action, RequestCallback)  # the only action this flow asks for
                # The caller pressed 1 in the queue and hears nothing until the thanks.
                saving = save_callback(
                    action, call, store=self._store, notifier=self._notifier, events=events,
                    due_at=self._hours.callback_due(self._clock()), deadline=self._db_deadline, log=bound,
                    bounded=lambda work, deadline: within(work, min(deadline, quiet.left())),
                )
                event = await self._unless_cut(saving)
                if event is None:  # the service's drain time is over: back to the queue at once
                    bound.warning("call.cut_at_shutdown", step="callback")
                    with contextlib.suppress(AgiError):
                        await channel.set_variables({Var.RESULT: IvrResult.OPERATOR, Var.REASON: Reason.SHUTDOWN})
                    return
                state, action = self._flow.step(state, event)
            await self._finish(channel, call, events, action)
        finally:
            await channel.close()
            await self._notifier.flush(events)

    async def _unless_cut(self, work: Coroutine[Any, Any, Event]) -> Event | None:
        """``work``'s event, or None when the service cuts its calls first (the work is abandoned:
        the callback task is idempotent per call, a later request of the same call finds it)."""
        if self._shutdown is None:
            return await work
        task = asyncio.ensure_future(work)
        cut = asyncio.ensure_future(self._shutdown.cut.wait())
        try:
            await asyncio.wait({task, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
        if task.done():
            return task.result()
        abandon(task)
        return None

    async def _identify(self, channel: AgiChannel) -> CallIdentity:
        env = channel.env
        call_id = await channel.get_variable("CHANNEL(linkedid)") or env.uniqueid
        # Left on this same channel by the repeat-order script earlier in the call, when it knew them.
        customer_id = await channel.get_variable(Var.CUSTOMER_ID) or None
        language = None if env.options.get("lang") else await channel.get_variable(Var.LANGUAGE)
        return CallIdentity.of(env, call_id, default_language=self._default_language, language=language,
                               customer_id=customer_id)

    async def _finish(self, channel: AgiChannel, call: CallIdentity, events: CallEvents, finish: Finish) -> None:
        if finish.result != IvrResult.DONE:
            # Back in the queue: the operator who answers sees why on the screen pop.
            self._notifier.emit(events, EventKind.CALL_ESCALATED, reason=finish.reason)
        values: dict[str, str] = {Var.RESULT: finish.result, Var.REASON: finish.reason}
        if finish.callback_saved:
            # The AMI tracker files the call as "callback_requested" (and opens no second task).
            values[Var.CALLBACK] = "1"
        # Before the closing words: a caller who hangs up during them still leaves the dialplan and
        # the tracker the right answer.
        await channel.set_variables(values)
        await self._say(channel, finish, call.language, events)

    async def _say(self, channel: AgiChannel, finish: Finish, language: str, events: CallEvents) -> None:
        if not finish.prompts:
            return
        try:
            utterance = await self._speaker.prepare(finish.prompts, language)
        except SpeechError as exc:
            log.error("prompt_failed", error=str(exc))
            return
        self._notifier.emit(events, EventKind.PROMPT_PLAYED, step="callback", text=utterance.text,
                            prompts=[p.prompt_id for p in finish.prompts])
        try:
            with contextlib.suppress(AgiPlaybackFailed, AgiHangup):  # the answer is already handed over
                await channel.stream_file(utterance.asterisk_path, "", timeout=utterance.seconds + self._media_slack)
        finally:
            self._speaker.release(utterance)
