"""Runs the pure repeat-order flow on a live FastAGI channel.

The runner is the only place where the flow meets I/O: it performs each action (CRM lookup, a
question, an order) under a deadline, turns the outcome into an event for the flow, records the call
and its timeline, and finally hands the result to the dialplan through channel variables.
Whatever fails, the caller ends up with ``IVR_RESULT=operator`` and a reason, never in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

import structlog

from crm_bridge.dto import CallerLookup, OrderLineView, PlacedOrder
from crm_bridge.errors import CrmError
from ivr.agi.channel import AgiChannel
from ivr.agi.errors import AgiError, AgiHangup, AgiPlaybackFailed
from ivr.calls.notifier import CallEvents, CallNotifier
from ivr.flows.model import (
    Action,
    Ask,
    CallerLooked,
    Customer,
    Digits,
    Event,
    Finish,
    Item,
    LookupCaller,
    OrderPlaced,
    PlaceOrder,
    PromptRef,
    StepFailed,
)
from ivr.flows.repeat_order import RepeatOrderFlow, State
from ivr.speech.speaker import Speaker, SpeechError

log = structlog.get_logger("ivr.calls")


class CallStore(Protocol):
    async def lookup_caller(self, raw_number: str | None) -> CallerLookup: ...

    async def place_order(
        self, *, idempotency_key: str, customer_id: str, lines: Sequence[tuple[str, int]], source: str,
        call_id: str | None = None, now: datetime | None = None,
    ) -> PlacedOrder: ...

    async def record_call_start(self, **kwargs) -> bool: ...

    async def record_call_end(self, call_id: str, **kwargs) -> None: ...


@dataclass(frozen=True)
class CallConfig:
    db_deadline: float = 3.0
    default_language: str = "ru"
    timezone: str = "Europe/Moscow"
    window_start: int = 9
    window_end: int = 14
    # Slack on top of a prompt's own length before we consider Asterisk gone silent.
    media_slack: float = 30.0


class RepeatOrderCall:
    """The FastAGI handler for ``agi://…/repeat-order``; one instance serves every call."""

    def __init__(
        self,
        *,
        flow: RepeatOrderFlow,
        store: CallStore,
        speaker: Speaker,
        notifier: CallNotifier,
        config: CallConfig,
        normalize: Callable[[str | None], str | None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._flow = flow
        self._store = store
        self._speaker = speaker
        self._notifier = notifier
        self._config = config
        self._normalize = normalize
        self._clock = clock

    async def __call__(self, channel: AgiChannel) -> None:
        await _Call(self, channel).run()


class _Call:
    """The state of one call while it runs."""

    def __init__(self, handler: RepeatOrderCall, channel: AgiChannel) -> None:
        self.h = handler
        self.channel = channel
        self.env = channel.env
        self.language = self.env.options.get("lang") or handler._config.default_language
        self.step = "start"  # where the caller is, for "abandoned at …"
        self.order_id: str | None = None
        self.events: CallEvents = handler._notifier.open(self.env.uniqueid or "unknown")
        self.log = log.bind(uniqueid=self.env.uniqueid, script=self.env.script)

    # --- the call -------------------------------------------------------------------------------

    async def run(self) -> None:
        outcome, reason = "error", "internal_error"
        try:
            outcome, reason = await self._run_until_hangup()
        except AgiHangup:
            if self.order_id:  # hung up during the goodbye: the order stands
                outcome, reason = "order_placed", "hangup_after_order"
            else:
                outcome, reason = "abandoned", f"hangup_at_{self.step}"
        except Exception as exc:  # any bug: log it, and the dialplan still queues the caller
            self.log.exception("call_failed", step=self.step)
            outcome, reason = "error", "internal_error"
            self.h._notifier.emit(self.events, "call.error", step=self.step, error=repr(exc))
            with contextlib.suppress(AgiError):
                await self._hand_over("operator", reason)
        finally:
            # Close first: Asterisk holds the channel, its CDR and the queue until we do.
            await self.channel.close()
            await self._record_end(outcome, reason)

    async def _run_until_hangup(self) -> tuple[str, str]:
        """Run the call, but stop at once if Asterisk reports the caller gone while we are busy."""
        work = asyncio.ensure_future(self._converse())
        hangup = asyncio.ensure_future(self.channel.hangup_event.wait())
        try:
            await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, AgiError):
            await work
        raise AgiHangup("caller hung up")

    async def _converse(self) -> tuple[str, str]:
        await self.channel.answer()
        call_id = await self._call_id()
        self.events.call_id = call_id
        self.log = self.log.bind(call_id=call_id)
        raw = self.env.caller_id
        await self._record_start(call_id, raw)
        flow = self.h._flow
        state, action = flow.start()
        while not isinstance(action, Finish):
            event = await self._perform(state, action)
            state, action = flow.step(state, event)
        return await self._finish(action)

    async def _call_id(self) -> str:
        """The Asterisk linkedid: shared by every channel of the call and stable across AGI retries."""
        try:
            linkedid = await self.channel.get_variable("CHANNEL(linkedid)")
        except AgiHangup:
            raise
        except AgiError:
            linkedid = None
        return linkedid or self.env.uniqueid or f"agi-{id(self)}"

    # --- actions --------------------------------------------------------------------------------

    async def _perform(self, state: State, action: Action) -> Event:
        if isinstance(action, LookupCaller):
            self.step = "lookup"
            return await self._lookup()
        if isinstance(action, Ask):
            self.step = action.step
            return await self._ask(action)
        if isinstance(action, PlaceOrder):
            self.step = "order"
            return await self._place(action)
        raise TypeError(f"unknown action {action!r}")

    async def _lookup(self) -> Event:
        raw = self.env.caller_id
        try:
            found = await asyncio.wait_for(self.h._store.lookup_caller(raw), self.h._config.db_deadline)
        except TimeoutError:
            return self._failed("database_timeout", "lookup")
        except Exception as exc:
            self.log.error("lookup_failed", error=repr(exc))
            return self._failed("database_error", "lookup")
        customer = None
        if found.customer is not None and found.status == "found":
            c = found.customer
            customer = Customer(c.customer_id, c.last_name, c.first_name, c.patronymic, c.language)
            self.events.customer_id = c.customer_id
            if "lang" not in self.env.options and c.language:
                self.language = c.language
        last = found.last_order.lines if found.last_order else ()
        self.h._notifier.emit(
            self.events, "caller.identified", status=found.status, number=found.number,
            candidates=list(found.candidate_ids), last_order=found.last_order.order_id if found.last_order else None,
        )
        return CallerLooked(found.status, customer, tuple(_item(line) for line in last))

    async def _ask(self, ask: Ask) -> Event:
        try:
            utterance = await self.h._speaker.prepare(ask.prompts, self.language)
        except SpeechError as exc:
            self.log.error("prompt_failed", error=str(exc))
            return self._failed("tts_error", ask.step)
        self.h._notifier.emit(self.events, "prompt.played", step=ask.step, text=utterance.text,
                              prompts=[p.prompt_id for p in ask.prompts])
        deadline = utterance.seconds + ask.timeout + self.h._config.media_slack
        try:
            got = await self.channel.get_data(
                utterance.asterisk_path, int(ask.timeout * 1000), ask.max_digits, timeout=deadline
            )
        except AgiPlaybackFailed:
            return self._failed("playback_failed", ask.step)
        self.h._notifier.emit(self.events, "dtmf.received", step=ask.step, digits=got.digits, timed_out=got.timed_out)
        return Digits(got.digits, got.timed_out)

    async def _place(self, action: PlaceOrder) -> Event:
        store = self.h._store
        # Shielded: once sent, the order either commits or not, even if the caller hangs up or the
        # deadline passes; the idempotency key makes any retry for this call return the same order.
        write = asyncio.ensure_future(
            store.place_order(
                idempotency_key=f"ivr:{self.events.call_id}",
                customer_id=action.customer_id,
                lines=action.lines,
                source="ivr",
                call_id=self.events.call_id,
            )
        )
        try:
            placed = await asyncio.wait_for(asyncio.shield(write), self.h._config.db_deadline)
        except TimeoutError:
            write.add_done_callback(self._late_order)
            return self._failed("database_timeout", "order")
        except CrmError as exc:
            self.log.warning("order_rejected", error=repr(exc))
            return self._failed("order_rejected", "order")
        except Exception as exc:
            self.log.error("order_failed", error=repr(exc))
            return self._failed("database_error", "order")
        order, invoice = placed.order, placed.invoice
        self.order_id = order.order_id
        self.h._notifier.emit(
            self.events, "order.created", order_id=order.order_id, invoice=invoice.number,
            total=str(invoice.total), replayed=not placed.created,
            delivery_date=order.delivery_date.isoformat() if order.delivery_date else None,
            lines=[{"sku": line.sku, "quantity": line.quantity} for line in order.lines],
        )
        await self.h._notifier.flush(self.events)
        cfg = self.h._config
        return OrderPlaced(
            order_id=order.order_id,
            total=invoice.total,
            delivery_date=order.delivery_date or self._today(),
            today=self._today(),
            window_start=cfg.window_start,
            window_end=cfg.window_end,
        )

    def _late_order(self, write: asyncio.Future) -> None:
        if write.cancelled() or write.exception() is not None:
            self.log.warning("late_order_not_placed", error=repr(write.exception()) if not write.cancelled() else None)
            return
        self.log.warning("late_order_placed_after_deadline", order_id=write.result().order.order_id)

    def _failed(self, reason: str, step: str) -> StepFailed:
        self.h._notifier.emit(self.events, "step.failed", step=step, reason=reason)
        return StepFailed(reason)

    def _today(self) -> date:
        return self.h._clock().astimezone(ZoneInfo(self.h._config.timezone)).date()

    # --- the end of the call ---------------------------------------------------------------------

    async def _finish(self, finish: Finish) -> tuple[str, str]:
        self.step = "goodbye" if finish.result == "done" else "handover"
        if finish.result != "done":
            self.h._notifier.emit(self.events, "call.escalated", reason=finish.reason)
        await self._say(finish.prompts)
        await self._hand_over(finish.result, finish.reason, finish.customer_id, finish.order_id)
        outcome = "order_placed" if finish.result == "done" else finish.result
        return outcome, finish.reason

    async def _say(self, prompts: tuple[PromptRef, ...]) -> None:
        """Closing words: not interruptible; a failure here must not stop the hand-over."""
        if not prompts:
            return
        try:
            utterance = await self.h._speaker.prepare(prompts, self.language)
        except SpeechError as exc:
            self.log.error("prompt_failed", error=str(exc))
            return
        self.h._notifier.emit(self.events, "prompt.played", step=self.step, text=utterance.text,
                              prompts=[p.prompt_id for p in prompts])
        with contextlib.suppress(AgiPlaybackFailed):
            await self.channel.stream_file(
                utterance.asterisk_path, "", timeout=utterance.seconds + self.h._config.media_slack
            )

    async def _hand_over(self, result: str, reason: str, customer_id: str | None = None,
                         order_id: str | None = None) -> None:
        """Tell the dialplan what to do next; these variables also work after a hang-up."""
        values = {"IVR_RESULT": result, "IVR_REASON": reason}
        customer_id = customer_id or self.events.customer_id
        if customer_id:
            values["IVR_CUSTOMER_ID"] = customer_id
        if order_id:
            values["IVR_ORDER_ID"] = order_id
        try:
            for name, value in values.items():
                await self.channel.set_variable(name, value)
        except AgiHangup:
            raise
        except AgiError as exc:
            self.log.error("handover_failed", error=repr(exc))

    async def _record_start(self, call_id: str, raw: str | None) -> None:
        self.h._notifier.emit(self.events, "call.started", caller=raw, channel=self.env.channel,
                              script=self.env.script, language=self.language)
        try:
            await asyncio.wait_for(
                self.h._store.record_call_start(
                    call_id=call_id, caller_number=raw, normalized_number=self.h._normalize(raw),
                    customer_id=None, channel=self.env.channel, script=self.env.script, started_at=self.h._clock(),
                ),
                self.h._config.db_deadline,
            )
        except Exception as exc:  # the call goes on; the lookup will fail open to a human if the DB is down
            self.log.error("call_start_not_recorded", error=repr(exc))

    async def _record_end(self, outcome: str, reason: str) -> None:
        self.h._notifier.emit(self.events, "call.ended", outcome=outcome, reason=reason, step=self.step)
        # The timeline first: a call row with an outcome means its whole story is readable.
        await self.h._notifier.flush(self.events)
        try:
            await asyncio.wait_for(
                self.h._store.record_call_end(
                    self.events.call_id, outcome=outcome, reason=reason, ended_at=self.h._clock(),
                    customer_id=self.events.customer_id, order_id=self.order_id,
                ),
                self.h._config.db_deadline,
            )
        except Exception as exc:
            self.log.error("call_end_not_recorded", error=repr(exc), outcome=outcome)


def _item(line: OrderLineView) -> Item:
    return Item(line.sku, line.quantity, line.unit, line.name, line.unit_en, line.name_en)

