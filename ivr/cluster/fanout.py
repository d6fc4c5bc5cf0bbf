"""Operator-board events between processes through PostgreSQL ``LISTEN/NOTIFY`` on ``ivr_events``.

Why every process publishes, not only the AMI owner: a screen pop joins two halves that live in
different processes. The IVR path (prompts heard, keys pressed, why the robot gave up) is emitted by
the worker that served the FastAGI call, the ``operator.ringing`` by the AMI owner, and the operator's
WebSocket may sit on a third. So each process publishes the board events it emits itself
(``BOARD_KINDS``, data cut to ``BOARD_DATA_KEYS``) and feeds the others' events to its own board.
Its own notifications come back to it (it listens too) and are dropped by origin id: never twice.

Decisions:

- One dedicated asyncpg connection per process, both to LISTEN and to send; reconnects every
  ``reconnect_interval`` after a loss and LISTENs again. NOTIFY is fire-and-forget: events emitted
  while a process is disconnected wait in a bounded buffer (``max_pending``, oldest dropped and
  counted), events sent while a *listener* was disconnected are lost to it (a screen pop is live
  state; the card's customer, orders and call row are read from the database anyway).
- Batching: events are collected for ``flush_interval`` (20 ms) and sent as few notifications as
  fit in PostgreSQL's 8000-byte payload limit, all in one round trip (``pg_notify`` over an
  array), so a busy process costs the database a few statements a second, not one per key press.
  A single event that does not fit even alone (it never happened with our prompts: a Russian
  prompt is ~600 bytes) is dropped with a warning.
- Order: one process's notifications arrive in the order sent; across processes there is no order,
  and none is needed (a call's path is complete long before its operator rings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from crm_bridge.dto import TimelineEventIn
from ivr.calls.screen_pop import BOARD_DATA_KEYS, BOARD_KINDS

CHANNEL = "ivr_events"
PAYLOAD_LIMIT = 7999  # bytes; PostgreSQL refuses a payload of 8000 bytes or more
_SEND = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"  # unnest keeps the array order

Deliver = Callable[[TimelineEventIn], None]
Connect = Callable[..., Any]


def encode_event(event: TimelineEventIn) -> str:
    """One event as compact JSON, its data cut to what a board reads."""
    data = {k: v for k, v in event.data.items() if k in BOARD_DATA_KEYS}
    return json.dumps(
        {"t": event.at.isoformat(), "c": event.call_id, "u": event.customer_id, "k": event.kind, "d": data},
        ensure_ascii=False, separators=(",", ":"), default=str,
    )


def decode_event(item: dict[str, Any]) -> TimelineEventIn:
    return TimelineEventIn(
        at=datetime.fromisoformat(item["t"]), call_id=item["c"], customer_id=item["u"], kind=item["k"],
        data=dict(item["d"]),
    )


def pack(origin: str, encoded: Iterable[str], *, limit: int = PAYLOAD_LIMIT) -> tuple[list[str], int]:
    """Greedy batches ``{"o": origin, "e": [...]}`` each at most ``limit`` bytes; returns them and
    the number of events too large to send at all."""
    head, tail = f'{{"o":{json.dumps(origin)},"e":[', "]}"
    overhead = len(head.encode()) + len(tail.encode())
    payloads: list[str] = []
    batch: list[str] = []
    size = overhead
    dropped = 0
    for item in encoded:
        n = len(item.encode())
        if overhead + n > limit:
            dropped += 1
            continue
        if batch and size + 1 + n > limit:
            payloads.append(head + ",".join(batch) + tail)
            batch, size = [], overhead
        size += n + (1 if batch else 0)
        batch.append(item)
    if batch:
        payloads.append(head + ",".join(batch) + tail)
    return payloads, dropped


class EventFanout:
    """``publish`` is a CallNotifier listener; ``deliver`` gets the other processes' events."""

    def __init__(
        self,
        dsn: str,
        deliver: Deliver,
        *,
        flush_interval: float = 0.02,
        reconnect_interval: float = 1.0,
        timeout: float = 5.0,
        max_pending: int = 10_000,
        connect: Connect = asyncpg.connect,
        logger: Any = None,
    ) -> None:
        self._dsn = dsn
        self._deliver = deliver
        self._flush_interval = flush_interval
        self._reconnect_interval = reconnect_interval
        self._timeout = timeout
        self._connect = connect
        self._log = logger if logger is not None else structlog.get_logger("ivr.cluster")
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pending: deque[str] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()  # set whenever the sender found nothing left to send
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.sent = self.received = self.dropped = 0

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def wait_listening(self) -> None:
        await self._listening.wait()

    def health(self) -> dict[str, Any]:
        return {"listening": self.listening, "sent": self.sent, "received": self.received, "dropped": self.dropped}

    def publish(self, event: TimelineEventIn) -> None:
        """Notifier listener: queue a board event of ours for the next batch; fast, never raises."""
        if event.kind not in BOARD_KINDS:
            return
        try:
            encoded = encode_event(event)
        except (TypeError, ValueError):
            self.dropped += 1
            self._log.warning("fanout.unencodable_event", kind=event.kind, call_id=event.call_id)
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(encoded)
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-fanout")

    async def stop(self) -> None:
        """Send what is queued (bounded by ``timeout``), then close."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._pending and self.listening:
            self._flushed.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await self._flushed.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        last_error: str | None = None
        while True:
            conn = None
            try:
                settings = {"application_name": f"ivr-events {self.origin}"}
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow stop()'s cancel
                # when it races a reply, and this loop would run on (see ivr/cluster/leader.py).
                async with asyncio.timeout(self._timeout):
                    conn = await self._connect(self._dsn, server_settings=settings)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                async with asyncio.timeout(self._timeout):
                    await conn.add_listener(CHANNEL, self._on_notify)
                self._listening.set()
                if last_error is not None:
                    self._log.info("fanout.reconnected")
                last_error = None
                await self._send_loop(conn, lost)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
                if error != last_error:
                    self._log.warning("fanout.connection_failed", error=error)
                last_error = error
            finally:
                self._listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(self._reconnect_interval)

    async def _send_loop(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        while not lost.is_set():
            if not self._pending:
                self._flushed.set()
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                lost_waiter = asyncio.ensure_future(lost.wait())
                await asyncio.wait({waiter, lost_waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                lost_waiter.cancel()
                continue
            await asyncio.sleep(self._flush_interval)  # let the batch fill
            taken = list(self._pending)
            self._pending.clear()
            payloads, too_big = pack(self.origin, taken)
            if too_big:
                self.dropped += too_big
                self._log.warning("fanout.event_too_large", count=too_big, limit=PAYLOAD_LIMIT)
            try:
                async with asyncio.timeout(self._timeout):
                    await conn.execute(_SEND, CHANNEL, payloads)
            except BaseException:
                self._pending.extendleft(reversed(taken))  # for the next connection, still in order
                raise
            self.sent += len(taken) - too_big
        raise ConnectionError("fan-out connection closed")

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("o") == self.origin:
                return
            events = [decode_event(item) for item in message["e"]]
        except (ValueError, KeyError, TypeError):
            self._log.warning("fanout.bad_payload", sample=payload[:200])
            return
        for event in events:
            self.received += 1
            try:
                self._deliver(event)
            except Exception:  # the board's listener must not break the connection
                self._log.exception("fanout.deliver_failed", kind=event.kind)
