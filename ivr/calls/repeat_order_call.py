"""Runs the pure repeat-order flow on a live FastAGI channel.

The runner is the only place where the flow meets I/O: it performs each action (CRM lookup, a
question, an order) under a deadline, turns the outcome into an event for the flow, records the call
and its timeline, and finally hands the result to the dialplan through channel variables.
Whatever fails, the caller ends up with ``IVR_RESULT=operator`` and a reason, never in silence:
the work between two sounds shares the caller's silence budget (ivr/calls/silence.py), and a step
past it is abandoned, not awaited (a stalled database connection can take its time to unwind; the
store discards it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

import structlog

from crm_bridge.contract.dialplan import IvrResult, Var
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import CallFacts, Reason, decide_outcome, hangup_at
from crm_bridge.dto import CallbackTaskView, CallerLookup, OrderLineView, OrderView, PlacedOrder
from crm_bridge.errors import CrmError, IdempotencyConflict, StoreUnavailable
from crm_bridge.views import line_payload
from ivr.agi.channel import AgiChannel
from ivr.agi.errors import AgiError, AgiHangup, AgiPlaybackFailed, AgiProtocolError
from ivr.agi.shutdown import CallCut, Shutdown
from ivr.calls.callback_task import save_callback
from ivr.calls.hours import BusinessHours
from ivr.calls.identity import CallIdentity
from ivr.calls.notifier import CallEvents, CallNotifier
from ivr.calls.silence import SilenceBudget, within
from ivr.calls.voice import CallSpeech, line_wants_speech
from ivr.flows.model import (
    Action,
    Ask,
    CallbackRecorded,
    CallerLooked,
    Customer,
    Digits,
    Event,
    Finish,
    Item,
    LookupCaller,
    OrderAlreadyPlaced,
    OrderPlaced,
    PlaceOrder,
    PromptRef,
    RequestCallback,
    StepFailed,
)
from ivr.flows.repeat_order import RepeatOrderFlow, State
from ivr.speech.speaker import Speaker, SpeechError, Utterance
from prompts.phrasebook import NAMELESS, PROMPT_PARAMS

log = structlog.get_logger("ivr.calls")
T = TypeVar("T")
_LAST_WORDS_MINIMUM = 0.1  # seconds a closing prompt may take to prepare when the budget is spent
# Of the silence budget, what a greeting keeps back for its nameless variant when the name is slow:
# the variant is made of shared units (numbers, products, literals) already in memory, a millisecond.
_NAMELESS_RESERVE = 0.3


class CallRecords(Protocol):
    """The process's record writer (``ivr.calls.record_writer.RecordWriter``): queued, never lost."""

    async def record_call_start(self, **kwargs) -> None: ...

    async def record_call_end(self, call_id: str, **kwargs) -> None: ...


class CallStore(Protocol):
    async def lookup_caller(self, raw_number: str | None) -> CallerLookup: ...

    async def place_order(
        self, *, idempotency_key: str, customer_id: str, lines: Sequence[tuple[str, int]], source: str,
        call_id: str | None = None, now: datetime | None = None,
    ) -> PlacedOrder: ...

    async def order_for_key(self, idempotency_key: str, customer_id: str) -> PlacedOrder | None: ...

    async def open_callback_task(
        self, *, customer_id: str | None, number: str | None, reason: str, due_at: datetime, call_id: str | None
    ) -> tuple[CallbackTaskView, bool]: ...


@dataclass(frozen=True)
class CallConfig:
    db_deadline: float = 3.0
    # The caller has pressed 1 and waits for the confirmation: an order write gets longer.
    order_deadline: float = 6.0
    default_language: str = "ru"
    timezone: str = "Europe/Moscow"
    window_start: int = 9
    window_end: int = 14
    # Slack on top of a prompt's own length before we consider Asterisk gone silent.
    media_slack: float = 30.0
    hours: BusinessHours = BusinessHours()
    # The most the caller hears nothing while the robot works (flow.max_silence, ivr/calls/silence.py).
    max_silence: float = 1.5


@dataclass(frozen=True)
class CallServices:
    """What a call needs from the process, handed to each call explicitly (one instance for all)."""

    flow: RepeatOrderFlow
    store: CallStore
    records: CallRecords
    speaker: Speaker
    notifier: CallNotifier
    config: CallConfig
    clock: Callable[[], datetime]
    keep_books: Callable[[Coroutine[None, None, None]], None]
    shutdown: Shutdown | None  # the service's stop: at its cut a call hands over at once
    speech: CallSpeech | None = None  # voice answers over AudioSocket (None: every question by GET DATA)


class RepeatOrderCall:
    """The FastAGI handler for ``agi://…/repeat-order``; one instance serves every call."""

    def __init__(
        self,
        *,
        flow: RepeatOrderFlow,
        store: CallStore,
        records: CallRecords,
        speaker: Speaker,
        notifier: CallNotifier,
        config: CallConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shutdown: Shutdown | None = None,
        speech: CallSpeech | None = None,
    ) -> None:
        """``shutdown``: the service's stop (ivr.agi.shutdown); at its cut a call hands over at once.
        ``speech``: voice answers (ivr/calls/voice.py), None = keys only."""
        self._services = CallServices(
            flow=flow, store=store, records=records, speaker=speaker, notifier=notifier, config=config,
            clock=clock, keep_books=self.keep_books, shutdown=shutdown, speech=speech,
        )
        self._bookkeeping: set[asyncio.Task[None]] = set()

    async def __call__(self, channel: AgiChannel) -> None:
        await RepeatOrderRun(self._services, channel).run()

    def keep_books(self, coro: Coroutine[None, None, None]) -> None:
        """Run a call's final submit beside the server: the caller is gone, nothing waits on it
        (it may wait for room in the record writer's queue), and the server's hang-up watchdog
        (which cancels handlers) must not cut it short."""
        task = asyncio.get_running_loop().create_task(coro)
        self._bookkeeping.add(task)
        task.add_done_callback(self._bookkeeping.discard)

    async def drain(self, grace: float = 30.0) -> None:
        """At shutdown: let the last calls' rows and timelines reach the record writer."""
        if self._bookkeeping:
            await asyncio.wait(set(self._bookkeeping), timeout=grace)


class RepeatOrderRun:
    """One repeat-order call while it runs: the flow's actions performed on its channel."""

    def __init__(self, services: CallServices, channel: AgiChannel) -> None:
        self.s = services
        self.channel = channel
        self.env = channel.env
        self.language = self.env.options.get("lang") or services.config.default_language
        self.identity: CallIdentity | None = None  # once the call's linkedid is known
        self.step = "start"  # where the caller is, for "abandoned at …"
        self.order_id: str | None = None
        self.callback_saved = False  # this call left a callback task
        self.after_hours = False
        self.start_write: asyncio.Future | None = None
        self.order_write: asyncio.Future | None = None
        self.order_customer_id: str | None = None  # whose order the write is (to look it up by key)
        # The caller went to an operator before the order write was settled: settled after the call.
        self.order_pending = False
        self.quiet = SilenceBudget(services.config.max_silence)
        self.events: CallEvents = services.notifier.open(self.env.uniqueid or "unknown")
        # Voice answers on this line (its IVR_SPEECH, else speech.enabled); off for the rest of the
        # call once AudioSocket failed (Asterisk could not connect): each question then by GET DATA.
        self.voice = services.speech is not None and line_wants_speech(self.env, services.speech.default_on)
        self.log = log.bind(uniqueid=self.env.uniqueid, script=self.env.script)

    # --- the call -------------------------------------------------------------------------------

    async def run(self) -> None:
        facts, reason = CallFacts(ivr_result=IvrResult.ERROR), Reason.INTERNAL_ERROR
        try:
            facts, reason = await self._run_until_hangup()
        except AgiHangup:
            if self.order_id or await self._order_in_flight():  # the caller pressed 1, then hung up
                reason = Reason.HANGUP_AFTER_ORDER
            else:
                reason = hangup_at(self.step)
            facts = self._facts(hung_up_in_ivr=True)
        except CallCut:
            # The service is stopping and the drain time is over: a human takes the caller now. The
            # outcome is settled before the hand-over, which the server may cut short.
            facts, reason = self._facts(ivr_result=IvrResult.OPERATOR), Reason.SHUTDOWN
            self.log.warning("call.cut_at_shutdown", step=self.step, order_id=self.order_id)
            with contextlib.suppress(AgiError):
                await self._hand_over(IvrResult.OPERATOR, reason, order_id=self.order_id)
        except AgiProtocolError as exc:
            # Asterisk's replies went out of step: the channel logged it (one line) and took nothing
            # as the caller's input; a human takes the caller, with the order if one was placed.
            facts, reason = self._facts(ivr_result=IvrResult.ERROR), Reason.PROTOCOL_ERROR
            self.s.notifier.emit(self.events, EventKind.CALL_ERROR, step=self.step, error=str(exc))
            with contextlib.suppress(AgiError):
                await self._hand_over(IvrResult.OPERATOR, reason, order_id=self.order_id)
        except AgiError as exc:
            # Asterisk refused a command (510, a 520 usage block) or let it time out: the peer's doing,
            # not a bug of ours, so one line and no traceback; a human takes the caller.
            facts, reason = self._facts(ivr_result=IvrResult.ERROR), Reason.AGI_ERROR
            self.log.warning("call.agi_failed", step=self.step, error=repr(exc)[:300])
            self.s.notifier.emit(self.events, EventKind.CALL_ERROR, step=self.step, error=str(exc))
            with contextlib.suppress(AgiError):
                await self._hand_over(IvrResult.OPERATOR, reason, order_id=self.order_id)
        except Exception as exc:  # any bug: log it, and the dialplan still queues the caller
            self.log.exception("call_failed", step=self.step)
            facts, reason = self._facts(ivr_result=IvrResult.ERROR), Reason.INTERNAL_ERROR
            self.s.notifier.emit(self.events, EventKind.CALL_ERROR, step=self.step, error=repr(exc))
            with contextlib.suppress(AgiError):
                await self._hand_over(IvrResult.OPERATOR, reason, order_id=self.order_id)
        finally:
            # Close first: Asterisk holds the channel, its CDR and the queue until we do.
            await self.channel.close()
            self.s.keep_books(self._record_end(facts, reason))

    def _facts(self, **seen) -> CallFacts:
        """What the robot saw of this call; the call's outcome is decided from these (and the
        tracker's) by ``decide_outcome``, never here."""
        return CallFacts(order_id=self.order_id, callback_requested=self.callback_saved,
                         after_hours=self.after_hours, **seen)

    async def _run_until_hangup(self) -> tuple[CallFacts, str]:
        """Run the call, but stop at once if Asterisk reports the caller gone while we are busy, or
        if the service's drain time is over (raises CallCut)."""
        work = asyncio.ensure_future(self._converse())
        hangup = asyncio.ensure_future(self.channel.hangup_event.wait())
        stops = {hangup}
        if self.s.shutdown is not None:
            stops.add(asyncio.ensure_future(self.s.shutdown.cut.wait()))
        try:
            await asyncio.wait({work, *stops}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()  # never leave the conversation running on a channel that is being closed
            raise
        finally:
            for stop in stops:
                stop.cancel()
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, AgiError):
            await work
        if self.channel.hangup_event.is_set():
            raise AgiHangup("caller hung up")
        raise CallCut("the service is stopping")

    async def _converse(self) -> tuple[CallFacts, str]:
        await self.channel.answer()
        self.quiet.heard()  # the caller is connected and hears nothing until the greeting
        call_id = await self._call_id()
        self.identity = call = CallIdentity.of(self.env, call_id, default_language=self.s.config.default_language)
        self.events.call_id = call_id
        self.log = self.log.bind(call_id=call_id)
        # The call row is written beside the conversation, not before it: the caller hears the
        # greeting one database round trip sooner.
        self.s.notifier.emit(self.events, EventKind.CALL_STARTED, caller=call.caller_id, channel=call.channel,
                             script=call.script, language=self.language)
        self.start_write = asyncio.ensure_future(self._record_start(call))
        flow = self.s.flow
        operators_open = self.s.config.hours.is_open(self.s.clock())
        self.after_hours = not operators_open
        if not operators_open:
            self.s.notifier.emit(self.events, EventKind.CALL_AFTER_HOURS)
        state, action = flow.start(operators_open=operators_open)
        while True:
            if isinstance(action, Finish):
                unheard = await self._finish(action)
                if unheard is None:
                    return self._facts(ivr_result=IvrResult(action.result)), action.reason
                event: Event = unheard  # the order's read-back was not played: the flow hands over
            else:
                event = await self._perform(state, action)
            state, action = flow.step(state, event)

    async def _call_id(self) -> str:
        """The Asterisk linkedid: shared by every channel of the call and stable across AGI retries."""
        try:
            linkedid = await self.channel.get_variable("CHANNEL(linkedid)")
        except (AgiHangup, AgiProtocolError):
            raise
        except AgiError:
            linkedid = None
        return linkedid or self.env.uniqueid or f"agi-{id(self)}"

    async def _bounded(self, work: Coroutine[Any, Any, T], limit: float) -> T:
        """``work`` within ``limit`` and what is left of the caller's silence budget (silence.within)."""
        return await within(work, min(limit, self.quiet.left()))

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
        if isinstance(action, RequestCallback):
            self.step = "callback"
            return await self._request_callback(action)
        raise TypeError(f"unknown action {action!r}")

    async def _lookup(self) -> Event:
        assert self.identity is not None  # the flow looks the caller up only after the start
        try:
            found = await self._bounded(self.s.store.lookup_caller(self.identity.caller_id), self.s.config.db_deadline)
        except TimeoutError:
            self.log.warning("lookup_timeout", quiet=round(self.quiet.quiet_for(), 3))
            return self._failed(Reason.DATABASE_TIMEOUT, "lookup")
        except Exception as exc:
            self.log.error("lookup_failed", error=repr(exc))
            return self._failed(Reason.DATABASE_ERROR, "lookup")
        customer = None
        if found.customer is not None and found.status == "found":
            c = found.customer
            customer = Customer(c.customer_id, c.last_name, c.first_name, c.patronymic, c.language)
            self.events.customer_id = c.customer_id
            if not self.identity.language_fixed and c.language:
                self.language = c.language
        last = found.last_order.lines if found.last_order else ()
        self.s.notifier.emit(
            self.events, EventKind.CALLER_IDENTIFIED, status=found.status, number=found.number,
            candidates=list(found.candidate_ids), last_order=found.last_order.order_id if found.last_order else None,
        )
        return CallerLooked(found.status, customer, tuple(_item(line) for line in last))

    async def _ask(self, ask: Ask) -> Event:
        try:
            utterance, prompts = await self._prepare_question(ask.prompts)
        except SpeechError as exc:
            self.log.error("prompt_failed", error=str(exc))
            return self._failed(Reason.TTS_ERROR, ask.step)
        self.s.notifier.emit(self.events, EventKind.PROMPT_PLAYED, step=ask.step, text=utterance.text,
                             prompts=[p.prompt_id for p in prompts])
        deadline = utterance.seconds + ask.timeout + self.s.config.media_slack
        fallback = False
        try:
            if self.voice and self.s.speech is not None and self.s.speech.usable(self.language):
                spoken = await self._ask_by_voice(self.s.speech, ask, utterance)
                if spoken is not None:
                    return spoken
                # Asterisk did not connect: this question by keys at once (the prompt is the next
                # sound the caller hears), and the rest of the call too.
                self.voice, fallback = False, True
            got = await self.channel.get_data(
                utterance.asterisk_path, int(ask.timeout * 1000), ask.max_digits, timeout=deadline
            )
        except AgiPlaybackFailed:
            return self._failed(Reason.PLAYBACK_FAILED, ask.step)
        finally:  # played, interrupted or the caller gone: the per-call file is no longer needed
            self.s.speaker.release(utterance)
        self.quiet.heard()  # a key, or the question's own timeout: the next silence starts now
        self.s.notifier.emit(self.events, EventKind.DTMF_RECEIVED, step=ask.step, digits=got.digits,
                             timed_out=got.timed_out, source="key",
                             **({"fallback": "audiosocket_failed"} if fallback else {}))
        return Digits(got.digits, got.timed_out)

    async def _prepare_question(self, prompts: tuple[PromptRef, ...]) -> tuple[Utterance, tuple[PromptRef, ...]]:
        """The question's audio within the silence budget. A greeting whose name cannot be said in
        time (a first call: the name is synthesized now, slowly on a loaded machine; a name the TTS
        refuses) is said without the name rather than handing the caller over: the name's synthesis
        goes on in the background for the next call (the caches shield it)."""
        nameless = tuple(replace(p, prompt_id=NAMELESS[p.prompt_id], params={
            k: v for k, v in p.params.items() if k in PROMPT_PARAMS[NAMELESS[p.prompt_id]]})
            if p.prompt_id in NAMELESS else p for p in prompts)
        if nameless == prompts:
            return await self.s.speaker.prepare(prompts, self.language, deadline=self.quiet.left()), prompts
        try:
            named_deadline = max(0.0, self.quiet.left() - _NAMELESS_RESERVE)
            return await self.s.speaker.prepare(prompts, self.language, deadline=named_deadline), prompts
        except SpeechError as exc:
            self.log.warning("greeting_without_name", error=str(exc))
        return await self.s.speaker.prepare(nameless, self.language, deadline=self.quiet.left()), nameless

    async def _ask_by_voice(self, speech: CallSpeech, ask: Ask, utterance: Utterance) -> Event | None:
        """The question over AudioSocket (ivr/calls/voice.py): the answer as the keys it stands for;
        None when Asterisk did not connect (the caller is then asked by GET DATA)."""
        prompt = utterance.local_path.with_name(utterance.local_path.name + ".wav")
        spoken = await speech.ask(self.channel, ask.step, self.language, prompt, max_digits=ask.max_digits,
                                  answer_timeout=ask.timeout, command_timeout=self.s.config.media_slack)
        if spoken is None:
            return None
        self.quiet.heard()  # the answer is decided (or the question timed out): the next silence starts now
        o = spoken.outcome
        self.s.notifier.emit(self.events, EventKind.DTMF_RECEIVED, step=ask.step, digits=spoken.digits,
                             timed_out=spoken.timed_out, source="voice" if o.spoken else "key",
                             **({"text": o.text} if o.text else {}),
                             **({"status": o.status} if o.status != "answered" else {}))
        return Digits(spoken.digits, spoken.timed_out)

    async def _place(self, action: PlaceOrder) -> Event:
        # Shielded from the caller's hang-up: once they pressed 1 the order goes through (run()
        # waits for it). Whatever went wrong, the caller is never told "failed" before the order was
        # looked up by its idempotency key (the call's linkedid, which also makes any retry return
        # the same order). A write still running when the silence budget is spent is not cut: the
        # caller goes to an operator with ``order_outcome_unknown`` at once, and the write goes on
        # in the background up to ``order_deadline``, then is settled by its key, so the call's row
        # and the operator's card learn the truth (``_settle_after_handover``).
        assert self.identity is not None
        self.order_customer_id = action.customer_id
        self.order_write = write = asyncio.ensure_future(
            self.s.store.place_order(
                idempotency_key=self.identity.order_key,
                customer_id=action.customer_id,
                lines=action.lines,
                source="ivr",
                call_id=self.events.call_id,
            )
        )
        # A cancel of this wait (hang-up, shutdown) leaves the write running: run() settles it.
        await asyncio.wait({write}, timeout=min(self.s.config.order_deadline, self.quiet.left()))
        placed: PlacedOrder | None
        if not write.done():
            if not self.quiet.left():
                return self._order_pending("write still running")
            # Past order_deadline with time left for the caller: cancel it and look it up.
            placed, reason = await self._settle_order(write, Reason.DATABASE_TIMEOUT, "past order_deadline")
        elif write.cancelled():  # a statement timeout, a pool giving up: a write error to settle
            placed, reason = await self._settle_order(write, Reason.DATABASE_ERROR, "write cancelled")
        elif (exc := write.exception()) is not None:
            if isinstance(exc, IdempotencyConflict) and exc.differs != "customer":
                return self._order_already_placed(exc.order, action)
            if _refused(exc):
                self.log.warning("order_rejected", error=repr(exc))
                return self._failed(Reason.ORDER_REJECTED, "order")
            failure = Reason.DATABASE_TIMEOUT if isinstance(exc, TimeoutError) else Reason.DATABASE_ERROR
            placed, reason = await self._settle_order(write, failure, repr(exc))
        else:
            placed = write.result()
        if placed is None:
            if reason == Reason.ORDER_OUTCOME_UNKNOWN:
                self.order_pending = True  # looked up again after the call, with time to spare
            return self._failed(reason, "order")
        if placed.order.difference(action.customer_id, action.lines, "ivr") is not None:
            return self._order_already_placed(placed.order, action)  # settled by key: an earlier visit's order
        order, invoice = placed.order, placed.invoice
        self.order_id = order.order_id
        self._order_created(placed, after_hangup=False)
        cfg = self.s.config
        return OrderPlaced(
            order_id=order.order_id,
            total=invoice.total,
            delivery_date=order.delivery_date or self._today(),
            today=self._today(),
            window_start=cfg.window_start,
            window_end=cfg.window_end,
        )

    def _order_pending(self, why: str) -> StepFailed:
        """The silence budget is spent and the order's fate is not known yet: the caller goes to a
        human now, who is told to check before entering it; the truth follows after the call."""
        assert self.identity is not None
        self.order_pending = True
        key = self.identity.order_key
        self.log.warning("order_pending_at_handover", why=why, quiet=round(self.quiet.quiet_for(), 3),
                         idempotency_key=key)
        self.s.notifier.emit(self.events, EventKind.ORDER_UNCERTAIN, idempotency_key=key)
        return self._failed(Reason.ORDER_OUTCOME_UNKNOWN, "order")

    def _order_already_placed(self, order: OrderView, action: PlaceOrder) -> Event:
        """The call's key already holds another order: the caller came back to the robot in the same
        call and asked for something else. That order stands and the caller is told so (the flow's
        rule, issue 9); what they asked for now goes on the timeline, not into an order."""
        assert self.identity is not None
        self.order_id = order.order_id
        placed_lines = [{"sku": line.sku, "quantity": line.quantity} for line in order.lines]
        asked = [{"sku": sku, "quantity": quantity} for sku, quantity in action.lines]
        self.log.warning("order_already_placed", order_id=order.order_id, asked=asked, placed=placed_lines)
        self.s.notifier.emit(self.events, EventKind.ORDER_ALREADY_PLACED, order_id=order.order_id,
                             idempotency_key=self.identity.order_key, lines=asked, placed_lines=placed_lines)
        return OrderAlreadyPlaced(order.order_id)

    async def _request_callback(self, action: RequestCallback) -> Event:
        assert self.identity is not None
        s = self.s
        event = await save_callback(
            action, self.identity, store=s.store, notifier=s.notifier, events=self.events,
            due_at=s.config.hours.callback_due(s.clock()), deadline=s.config.db_deadline, log=self.log,
            bounded=self._bounded,
        )
        if isinstance(event, CallbackRecorded) and event.created:
            self.callback_saved = True  # a fact of the call, whatever happens after
        return event

    async def _settle_order(self, write: asyncio.Future, failure: str, error: str, *,
                            caller_waits: bool = True) -> tuple[PlacedOrder | None, str]:
        """An order write that did not answer "placed": find out what really happened.

        "Failed" does not mean "not written": a COMMIT already on its way (PostgreSQL) or running in
        aiosqlite's thread lands after the write is cancelled at its deadline, and a connection that
        dropped or reset after the COMMIT reached the server reports an error for an order that
        exists. So a write still running is cancelled and allowed to unwind (only after the call:
        while the caller waits, ``_place`` never cancels it), then the order is looked up by its
        idempotency key, within the caller's silence budget while they wait. Found: the order
        stands and the caller hears it. Not found: nothing was written, the caller goes to an
        operator with ``failure``. The look-up failing or running out of time: nobody can tell yet,
        the caller goes to an operator with ``order_outcome_unknown`` (the timeline says to check
        before entering the order again) and the look-up is made again after the call. Returns
        (the order or None, reason).
        """
        deadline = self.s.config.order_deadline
        if not write.done():
            write.cancel()
            # Its unwind tells whether a COMMIT on its way landed (aiosqlite finishes it in its
            # thread first); the caller waits for it only within the silence budget.
            await asyncio.wait({write}, timeout=self.quiet.left() if caller_waits else deadline)
            if not write.done():
                self.log.error("order_outcome_unknown", write_error=error, error="write still unwinding")
                self.s.notifier.emit(self.events, EventKind.ORDER_UNCERTAIN, idempotency_key=self.identity.order_key)
                return None, Reason.ORDER_OUTCOME_UNKNOWN
        if write.done() and not write.cancelled() and write.exception() is None:
            placed: PlacedOrder = write.result()  # it finished while being cancelled
            self.log.warning("order_committed_after_deadline", order_id=placed.order.order_id)
            return placed, failure
        assert self.identity is not None and self.order_customer_id is not None  # set by _place
        key = self.identity.order_key
        look_up = self.s.store.order_for_key(key, self.order_customer_id)
        try:
            found = await (self._bounded(look_up, deadline) if caller_waits else asyncio.wait_for(look_up, deadline))
        except Exception as exc:  # cannot tell: say so in the log, the row and the operator's screen
            self.log.error("order_outcome_unknown", write_error=error, error=repr(exc), idempotency_key=key)
            if caller_waits:
                self.s.notifier.emit(self.events, EventKind.ORDER_UNCERTAIN, idempotency_key=key)
            return None, Reason.ORDER_OUTCOME_UNKNOWN
        if found is None:
            self.log.warning("order_not_placed", reason=failure, error=error)
        else:
            self.log.warning("order_placed_despite_error", order_id=found.order.order_id, error=error)
        return found, failure

    async def _order_in_flight(self, *, after_hangup: bool = True) -> bool:
        """After the call (a hang-up, or a hand-over before the write was settled): settle an
        order write that was under way; True if the order stands."""
        write = self.order_write
        self.order_pending = False  # settled here, once
        if write is None:
            return False
        placed: PlacedOrder | None
        try:
            placed = await asyncio.wait_for(asyncio.shield(write), self.s.config.order_deadline)
        except asyncio.CancelledError:
            if not _cancelled_alone(write):
                raise
            placed, _ = await self._settle_order(write, Reason.DATABASE_ERROR, "write cancelled", caller_waits=False)
        except Exception as exc:
            if _refused(exc):
                return False
            placed, _ = await self._settle_order(write, Reason.DATABASE_ERROR, repr(exc), caller_waits=False)
        if placed is None:
            return False
        self.order_id = placed.order.order_id
        self._order_created(placed, after_hangup=after_hangup, after_handover=not after_hangup)
        return True

    async def _settle_after_handover(self, facts: CallFacts) -> CallFacts:
        """The caller went to an operator while the order write was unsettled: wait for it (up to
        ``order_deadline``) or look it up by its key, so that the row, the timeline and the
        operator's card (the board republishes it) carry the order if it was placed."""
        if not self.order_pending or self.order_id:
            return facts
        try:
            placed = await self._order_in_flight(after_hangup=False)
        except Exception as exc:
            self.log.error("order_not_settled", error=repr(exc))
            return facts
        self.log.info("order_settled_after_handover", order_id=self.order_id, placed=placed)
        return replace(facts, order_id=self.order_id) if placed else facts

    def _order_created(self, placed: PlacedOrder, *, after_hangup: bool, after_handover: bool = False) -> None:
        """One shape of ``order.created``, whether the caller heard the read-back, had hung up, or
        was with an operator by the time the order was known."""
        order, invoice = placed.order, placed.invoice
        self.s.notifier.emit(
            self.events, EventKind.ORDER_CREATED, order_id=order.order_id, invoice=invoice.number,
            total=str(invoice.total), replayed=not placed.created,
            delivery_date=order.delivery_date.isoformat() if order.delivery_date else None,
            lines=[line_payload(line) for line in order.lines], after_hangup=after_hangup,
            **({"after_handover": True} if after_handover else {}),
        )

    def _failed(self, reason: str, step: str) -> StepFailed:
        self.s.notifier.emit(self.events, EventKind.STEP_FAILED, step=step, reason=reason)
        return StepFailed(reason)

    def _today(self) -> date:
        return self.s.clock().astimezone(ZoneInfo(self.s.config.timezone)).date()

    # --- the end of the call ---------------------------------------------------------------------

    async def _finish(self, finish: Finish) -> StepFailed | None:
        """Say the closing words and hand the result to the dialplan. None when the call is over;
        a StepFailed for the flow when an order's read-back could not be played (not a hang-up)."""
        result = IvrResult(finish.result)
        self.step = "goodbye" if result is IvrResult.DONE else "handover"
        if result is IvrResult.DONE:
            # The result is final before the read-back plays: a caller who hangs up during it leaves
            # IVR_RESULT/IVR_ORDER_ID already on the channel, so the AMI tracker sees the order
            # before the hang-up (issue 8, defect 1) at no extra round trip.
            await self._hand_over(result, finish.reason, finish.customer_id, finish.order_id)
            failure = await self._say(finish.prompts)
            if failure is not None and finish.confirms_order:
                # The order stands but the caller did not hear it: left so, they would ring back and
                # order twice. The flow hands them over with the order (one more MSet, only here).
                self.log.error("readback_failed", order_id=finish.order_id, failure=failure)
                return self._failed(Reason.READBACK_FAILED, "readback")
        else:
            self.s.notifier.emit(self.events, EventKind.CALL_ESCALATED, reason=finish.reason)
            await self._say(finish.prompts)
            await self._hand_over(result, finish.reason, finish.customer_id, finish.order_id)
        return None

    async def _say(self, prompts: tuple[PromptRef, ...]) -> str | None:
        """Closing words, not interruptible. Never raises for a speech or playback failure (the
        hand-over must go on): returns its reason (tts_error, playback_failed), None when played."""
        if not prompts:
            return None
        try:
            # Whatever the silence budget left, and a moment more: these words usually come from the
            # cache (microseconds); a hand-over whose words cannot be made in time goes without them.
            deadline = max(self.quiet.left(reserve=0.0), _LAST_WORDS_MINIMUM)
            utterance = await self.s.speaker.prepare(prompts, self.language, deadline=deadline)
        except SpeechError as exc:
            self.log.error("prompt_failed", error=str(exc))
            return Reason.TTS_ERROR
        self.s.notifier.emit(self.events, EventKind.PROMPT_PLAYED, step=self.step, text=utterance.text,
                             prompts=[p.prompt_id for p in prompts])
        try:
            await self.channel.stream_file(
                utterance.asterisk_path, "", timeout=utterance.seconds + self.s.config.media_slack
            )
        except AgiPlaybackFailed:  # Asterisk could not play the file (result=-1 on a live channel)
            self.log.error("playback_failed", path=utterance.asterisk_path)
            return Reason.PLAYBACK_FAILED
        finally:
            self.s.speaker.release(utterance)
        self.quiet.heard()
        return None

    async def _hand_over(self, result: str, reason: str, customer_id: str | None = None,
                         order_id: str | None = None) -> None:
        """Tell the dialplan what to do next; these variables also work after a hang-up."""
        # IVR_LANGUAGE lets later scripts on this channel (the queue's callback key) speak the same language.
        values = {Var.RESULT: result, Var.REASON: reason, Var.LANGUAGE: self.language}
        customer_id = customer_id or self.events.customer_id
        if customer_id:
            values[Var.CUSTOMER_ID] = customer_id
        if order_id:
            values[Var.ORDER_ID] = order_id
        try:
            await self.channel.set_variables(values)
        except AgiHangup:
            raise
        except AgiError as exc:
            self.log.error("handover_failed", error=repr(exc))

    async def _record_start(self, call: CallIdentity) -> None:
        try:
            await self.s.records.record_call_start(
                call_id=call.call_id, caller_number=call.caller_id, normalized_number=call.number,
                customer_id=None, channel=call.channel, script=call.script, started_at=self.s.clock(),
            )
        except Exception as exc:  # a bug, never the database: the writer queues, it does not fail
            self.log.error("call_start_not_recorded", error=repr(exc))

    async def _record_end(self, facts: CallFacts, reason: str) -> None:
        if self.start_write is not None:  # the start goes into the writer's queue before the end
            with contextlib.suppress(Exception):
                await self.start_write
        facts = await self._settle_after_handover(facts)
        notifier = self.s.notifier
        outcome = decide_outcome(facts)  # the robot's view; the row merges the tracker's facts too
        notifier.emit(self.events, EventKind.CALL_ENDED, outcome=outcome, reason=reason, step=self.step)
        # The row's end and the rest of the timeline as one group, committed together: a call row
        # with an outcome means its whole story is readable.
        events = notifier.take(self.events)
        try:
            await self.s.records.record_call_end(
                self.events.call_id, facts=facts, reason=reason, ended_at=self.s.clock(),
                customer_id=self.events.customer_id, order_id=self.order_id, events=events,
            )
        except Exception as exc:
            self.log.error("call_end_not_recorded", error=repr(exc), outcome=outcome)
            notifier.give_back(self.events, events)
            await notifier.flush(self.events)


def _item(line: OrderLineView) -> Item:
    return Item(line.sku, line.quantity, line.unit, line.name, line.unit_en, line.name_en)



def _refused(exc: BaseException) -> bool:
    """The store refused the order on purpose (unknown product, another customer's key, …): nothing
    was written. Any other error, StoreUnavailable included, may hide a COMMIT that reached the server."""
    return isinstance(exc, CrmError) and not isinstance(exc, StoreUnavailable)


def _cancelled_alone(write: asyncio.Future) -> bool:
    """The order write was cancelled (a statement timeout, a pool giving up) while this call's own
    task was not: a write error to settle, not the call being stopped."""
    task = asyncio.current_task()
    return write.cancelled() and (task is None or task.cancelling() == 0)
