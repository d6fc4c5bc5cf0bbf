"""The operator's screen pop: who is calling and why, the moment the operator's phone rings.

The board listens to every call event (CallNotifier listeners get them synchronously, before any
database write), keeps each recent call's IVR path in memory, and when the AMI tracker reports
``operator.ringing`` / ``operator.answered`` it builds the card (customer, last orders, the reason
the robot gave up, the prompts heard and keys pressed) and pushes it to that operator's feeds.

A feed carries cards (no ``type`` key, as ``current()`` returns them) and link messages
``{"type": "link", "ami": <status>, "since": <ISO>}``: the AMI state the card depends on
(connected | standby | connecting | disconnected | auth_failed | disabled, from ``watch_ami``), sent
to every feed when it changes, so an operator whose pop cannot come is told so on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from crm_bridge.contract.events import EventKind
from crm_bridge.dto import CallView, CustomerCard, TimelineEventIn

log = structlog.get_logger("ivr.screen_pop")

# The IVR path worth showing an operator: what the caller heard and pressed, and how it ended.
_PATH_KINDS = {
    EventKind.CALL_STARTED, EventKind.CALLER_IDENTIFIED, EventKind.PROMPT_PLAYED, EventKind.DTMF_RECEIVED,
    EventKind.ORDER_CREATED, EventKind.ORDER_UNCERTAIN, EventKind.ORDER_ALREADY_PLACED, EventKind.STEP_FAILED,
    EventKind.CALL_ESCALATED,
    EventKind.CALLBACK_CREATED, EventKind.QUEUE_ENTERED, EventKind.OPERATOR_NO_ANSWER,
}
_OPERATOR_KINDS = {
    EventKind.OPERATOR_RINGING, EventKind.OPERATOR_ANSWERED, EventKind.CALL_HUNGUP, EventKind.OPERATOR_NO_ANSWER,
}
# What the board reads, for whoever forwards events to a board in another process (ivr/cluster/fanout.py).
BOARD_KINDS = frozenset(_PATH_KINDS | _OPERATOR_KINDS)
# The fields the operator's IVR path shows (ivr/web/console/timeline_text.py puts them in words).
_SHOWN_KEYS = ("step", "text", "digits", "timed_out", "status", "reason", "order_id", "invoice", "queue", "position",
               "task_id", "due_at", "operator_name")
BOARD_DATA_KEYS = frozenset({*_SHOWN_KEYS, "caller", "candidates", "customer_id", "operator_interface"})
_RECENT_CALLS = 2000
_LAST_ORDERS = 3
LINK = "link"  # the "type" of a feed message that is not a card


class CardStore(Protocol):
    async def get_customer_card(self, customer_id: str) -> CustomerCard | None: ...

    async def get_call(self, call_id: str) -> CallView | None: ...


@dataclass
class BoardCall:
    """What the board remembers of one recent call: the IVR path and the facts a card shows."""

    path: list[dict[str, Any]] = field(default_factory=list)
    customer_id: str | None = None
    caller: str | None = None
    lookup: str | None = None
    candidates: list[str] = field(default_factory=list)
    ivr_reason: str | None = None
    order_id: str | None = None  # the order the robot placed in this call (the caller may not have heard it)


def operator_key(interface: str) -> str:
    """A short id for URLs: 'PJSIP/101' -> '101', 'Local/101@operator-agent/n' -> '101'."""
    rest = interface.split("/", 1)[1] if "/" in interface else interface
    return rest.split("@", 1)[0].split("/", 1)[0]


class OperatorBoard:
    def __init__(self, store: CardStore, operator_names: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._names = dict(operator_names or {})
        self._recent: OrderedDict[str, BoardCall] = OrderedDict()  # the last _RECENT_CALLS calls
        self._cards: dict[str, dict[str, Any]] = {}  # operator key -> current card
        self._feeds: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Cards are built (database reads) and published strictly in event order, so "talking"
        # never overtakes "ringing", nor "free" a card still being built. A build takes a few ms.
        self._order = asyncio.Lock()
        self._ami_source: Callable[[], str] = lambda: "disabled"
        self._ami: tuple[str, str] = ("disabled", _now())  # (status, since)

    @property
    def operator_names(self) -> dict[str, str]:
        """Queue-member interface -> name, as configured ([operators] names)."""
        return dict(self._names)

    # --- events in ------------------------------------------------------------------------------

    def on_event(self, event: TimelineEventIn) -> None:
        """Notifier listener: must be fast and never raise."""
        if event.call_id is None:
            return
        call_id = event.call_id
        data = event.data
        # A call is remembered from its first path event (the last _RECENT_CALLS): a late event of
        # a call already evicted (a Cdr, a hang-up long after) must not start an entry nothing evicts.
        call = self._recent.get(call_id)
        if call is None and event.kind not in _PATH_KINDS:
            if event.kind in _OPERATOR_KINDS:
                self._spawn(self._operator_event(event))
            return
        if call is None:
            call = self._recent[call_id] = BoardCall()
        if event.customer_id:
            call.customer_id = event.customer_id
        if event.kind == EventKind.CALL_STARTED:
            call.caller = data.get("caller")
        elif event.kind == EventKind.CALLER_IDENTIFIED:
            call.lookup = data.get("status")
            call.candidates = data.get("candidates") or []
        elif event.kind == EventKind.CALL_ESCALATED:
            call.ivr_reason = data.get("reason")
        elif event.kind in (EventKind.ORDER_CREATED, EventKind.ORDER_ALREADY_PLACED):
            call.order_id = data.get("order_id")
        if event.kind in _PATH_KINDS:
            call.path.append({"at": event.at.isoformat(), "kind": event.kind, **_shown(data)})
            self._recent.move_to_end(call_id)
            while len(self._recent) > _RECENT_CALLS:
                self._recent.popitem(last=False)
        if event.kind in _OPERATOR_KINDS:
            self._spawn(self._operator_event(event))
        elif event.kind == EventKind.ORDER_CREATED and self._showing(call_id):
            # The order became known after the caller was put through (order_outcome_unknown, a
            # write settled after the hand-over): the operator's open card must say so at once.
            self._spawn(self._refresh(call_id))

    def _showing(self, call_id: str) -> bool:
        return any(card.get("call", {}).get("call_id") == call_id for card in self._cards.values())

    async def _refresh(self, call_id: str) -> None:
        async with self._order:
            for key, card in list(self._cards.items()):
                if card.get("call", {}).get("call_id") != call_id or card.get("state") == "free":
                    continue
                try:
                    customer_id = (card.get("customer") or {}).get("customer_id")
                    fresh = await self.build_card(call_id, card["operator_interface"], customer_id)
                except Exception:
                    log.exception("screen_pop_failed", call_id=call_id, kind="refresh")
                    continue
                self._publish(key, {**fresh, "state": card.get("state")})

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _operator_event(self, event: TimelineEventIn) -> None:
        async with self._order:
            await self._apply_operator_event(event, event.data.get("operator_interface"))

    async def _apply_operator_event(self, event: TimelineEventIn, interface: str | None) -> None:
        try:
            if event.kind == EventKind.CALL_HUNGUP:
                # The call is over: free every operator who had it on screen.
                for key, card in list(self._cards.items()):
                    if card.get("call", {}).get("call_id") == event.call_id:
                        self._publish(key, {**card, "state": "free", "updated_at": _now()})
                return
            if not interface:
                return
            key = operator_key(interface)
            if event.kind == EventKind.OPERATOR_NO_ANSWER:
                card = self._cards.get(key)
                if card and card.get("call", {}).get("call_id") == event.call_id:
                    self._publish(key, {**card, "state": "free", "updated_at": _now()})
                return
            state = "ringing" if event.kind == EventKind.OPERATOR_RINGING else "talking"
            card = await self.build_card(event.call_id, interface, event.customer_id or event.data.get("customer_id"))
            self._publish(key, {**card, "state": state})
        except Exception:
            log.exception("screen_pop_failed", call_id=event.call_id, kind=event.kind)

    # --- the card ---------------------------------------------------------------------------------

    async def build_card(self, call_id: str, interface: str, customer_id: str | None) -> dict[str, Any]:
        seen = self._recent.get(call_id) or BoardCall()
        call = await self._store.get_call(call_id)
        customer_id = customer_id or seen.customer_id or (call.customer_id if call else None)
        card = await self._store.get_customer_card(customer_id) if customer_id else None
        path = list(seen.path)
        return {
            "operator": operator_key(interface),
            "operator_interface": interface,
            "operator_name": self._names.get(interface),
            "updated_at": _now(),
            "call": {
                "call_id": call_id,
                "caller_number": (call.caller_number if call else None) or seen.caller,
                "started_at": call.started_at.isoformat() if call else None,
                "ivr_reason": seen.ivr_reason or (call.reason if call else None),
                # An order placed in this call (e.g. readback_failed: the operator confirms it).
                "order_id": seen.order_id or (call.order_id if call else None),
                "lookup": seen.lookup,
                "candidates": seen.candidates,
            },
            "customer": asdict(card.customer) if card else None,
            "last_orders": [_order(o) for o in card.orders[:_LAST_ORDERS]] if card else [],
            "ivr_path": path,
        }

    # --- the AMI link ----------------------------------------------------------------------------

    def watch_ami(self, source: Callable[[], str]) -> None:
        """``source()`` says the AMI status the cards depend on; call ``ami_changed()`` when it may
        have changed (the AMI client's on_status)."""
        self._ami_source = source
        self._read_ami()

    def ami_changed(self) -> None:
        """Tell every open feed at once when the status moved; fast, never raises."""
        try:
            if self._read_ami():
                for queues in list(self._feeds.values()):
                    for queue in list(queues):
                        self._put(queue, self.link())
        except Exception:
            log.exception("screen_pop_link_failed")

    def link(self) -> dict[str, Any]:
        self._read_ami()
        status, since = self._ami
        return {"type": LINK, "ami": status, "since": since}

    def _read_ami(self) -> bool:
        status = self._ami_source()
        if status == self._ami[0]:
            return False
        self._ami = (status, _now())
        return True

    # --- feeds out --------------------------------------------------------------------------------

    def current(self, operator: str) -> dict[str, Any] | None:
        return self._cards.get(operator)

    def subscribe(self, operator: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self._feeds.setdefault(operator, set()).add(queue)
        return queue

    def unsubscribe(self, operator: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._feeds.get(operator, set()).discard(queue)

    def _publish(self, operator: str, card: dict[str, Any]) -> None:
        self._cards[operator] = card
        for queue in list(self._feeds.get(operator, ())):
            self._put(queue, card)

    @staticmethod
    def _put(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
        if queue.full():  # a stalled browser must not grow memory: drop its oldest message
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(message)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _shown(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in _SHOWN_KEYS if k in data}


def _order(order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "ordered_at": order.ordered_at.isoformat(),
        "total": str(order.total),
        "source": order.source,
        "delivery_date": order.delivery_date.isoformat() if order.delivery_date else None,
        "status": order.status,  # "placed" | "cancelled" (crm_bridge.corrections)
        "lines": [{"sku": line.sku, "quantity": line.quantity, "unit": line.unit, "name": line.name}
                  for line in order.lines],
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()
