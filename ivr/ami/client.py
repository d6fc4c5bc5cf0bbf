"""AMI client: one long-lived, self-healing Asterisk Manager session on asyncio streams.

Why not panoramisk's ``Manager`` (the DESIGN's first idea): in panoramisk 1.4 each TCP chunk is
decoded on its own with ``errors="ignore"`` (``AMIProtocol.data_received``), so a Cyrillic value
split across two reads silently loses letters (our VarSet/AGIExecStart events carry "Иван Петров");
``reconnect_timeout``/``ping_interval`` go through ``int()`` (0.05 s becomes a 0 s retry storm) and
reconnect at a fixed interval; a Ping that never answers is not noticed; an exception in an event
handler propagates out of ``data_received`` and kills the connection; coroutine handlers run as
separate tasks, so their order is not the arrival order; actions without an answer are re-sent
after every reconnect (a Hangup or Redirect replayed minutes later); an unterminated garbage
message grows the buffer without bound. Working around all of that means replacing the protocol,
the reconnect logic and the dispatch, i.e. everything but the class name, so this module speaks
the (small) protocol itself, byte for byte as in ``shared/asterisk-traces/ami``:

- a banner line ``Asterisk Call Manager/11.0.0``, then messages of ``Key: value`` lines ending in
  ``\\r\\n``, each message closed by an empty line;
- a message with ``Event`` is an event (even ``OriginateResponse``, which also has ``Response``);
  one with only ``Response`` answers the action with the same ``ActionID``;
- list actions answer ``Response: Success`` + ``EventList: start``, then item events with the same
  ActionID, then ``...Complete`` with ``EventList: Complete``.

Guarantees: every action has a deadline; events reach ``on_event`` one at a time in arrival order
(a single reader feeds a single dispatcher, so nothing received before or during login is lost or
reordered, and a slow or failing handler never blocks pings or action replies); after every login
``CoreShowChannels`` + ``QueueStatus`` items go to ``on_resync`` at their place in that order,
because Asterisk does not replay events missed while we were away; a bad secret is reported once
and retried only every ``reconnect_max`` seconds.

Events wait for ``on_event`` in a queue of at most ``ami.max_queued_events``. When the consumer
falls that far behind, the connection's event stream is dropped (the session closes; the
``ami_disconnected`` line says why, with the count), the consumer gets every event queued until
then, and only when it has caught up do we log in again and resync: a snapshot instead of events
lost silently, and memory bounded instead of a queue growing for as long as the consumer lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ivr.settings import AmiSettings

EventHandler = Callable[[dict[str, str]], Awaitable[None] | None]
ResyncHandler = Callable[[list[dict[str, str]]], Awaitable[None] | None]
# Told every change of ``status`` (the operator's page shows it); must be fast and never raise.
StatusHandler = Callable[[str], None]

STATUSES = ("disabled", "connecting", "connected", "auth_failed", "disconnected")

BANNER_PREFIX = "Asterisk Call Manager/"
# Asterisk's own input buffer is 1 KiB a line; its events are far below these limits. Anything larger
# is not AMI: drop it rather than buffer it.
MAX_LINE_BYTES = 64 * 1024
MAX_MESSAGE_LINES = 1000
MAX_MESSAGE_BYTES = 1024 * 1024
# A few malformed lines are logged as warnings; past that (per connection) only at debug level.
MALFORMED_WARNINGS = 20
# Responses that mean the action worked ("Follows" is the pre-13 Command answer).
SUCCESS_RESPONSES = frozenset({"success", "goodbye", "follows"})
RESYNC_ACTIONS = ("CoreShowChannels", "QueueStatus")


class AmiError(Exception):
    """Base of the errors ``send_action`` raises."""


class AmiNotConnected(AmiError):
    """No logged-in AMI session (not started, disabled, reconnecting) or it dropped mid-action."""


class AmiTimeout(AmiError):
    """Asterisk did not answer the action within its deadline."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error`` (or ``Failure``); ``message`` is its ``Message``."""

    def __init__(self, action: str, response: Mapping[str, str]) -> None:
        self.action = action
        self.response = dict(response)
        self.message = response.get("Message", "")
        super().__init__(f"{action}: {response.get('Response', 'Error')}: {self.message}")


class _AuthFailed(Exception):
    pass


class _ProtocolError(Exception):
    pass


# --------------------------------------------------------------------------------------------- wire


def encode_action(action: Mapping[str, Any], action_id: str) -> bytes:
    """``Action`` first, then ``ActionID``, then the other headers in the caller's order.

    A value may be a list/tuple for repeated headers (``Variable``). CR or LF inside a key or value
    would let a caller-supplied value inject headers or whole actions: refused with ValueError.
    """
    name = _get(action, "Action")
    if not name:
        raise ValueError("an AMI action needs an 'Action' header")
    lines = [("Action", str(name)), ("ActionID", action_id)]
    for key, value in action.items():
        if key.lower() in ("action", "actionid"):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        lines.extend((str(key), "" if v is None else str(v)) for v in values)
    out = []
    for key, value in lines:
        if not key or any(c in key for c in "\r\n:") or "\r" in value or "\n" in value:
            raise ValueError(f"AMI header {key!r} has a forbidden character (CR, LF or ':' in the key)")
        out.append(f"{key}: {value}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8")


def _get(message: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Case-insensitive header lookup (Asterisk itself matches header names case-insensitively)."""
    if key in message:
        return message[key]
    lowered = key.lower()
    for k, v in message.items():
        if k.lower() == lowered:
            return v
    return default


class MessageParser:
    """Bytes in, complete AMI messages (``dict[str, str]``, wire order and spelling kept) out.

    Lines are split on bytes before decoding, so a multi-byte UTF-8 character split across reads is
    never damaged. Tolerates ``\\n`` alone as a terminator (Asterisk accepts it too). Malformed input
    is reported through ``on_malformed(reason, sample)`` and skipped: a line without ``": "`` is
    dropped (the rest of its message survives), an overlong line or message drops that message, a
    message without ``Event`` or ``Response`` is dropped. A repeated header keeps every value,
    joined with ``\\n`` (``Output`` lines of ``Command``).
    """

    def __init__(self, on_malformed: Callable[[str, bytes], None] | None = None) -> None:
        self._on_malformed = on_malformed or (lambda reason, sample: None)
        self._buf = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._size = 0
        self._skip_line = False  # inside the tail of an overlong line
        self._skip_message = False  # inside a message already found broken
        self._expect_banner = True
        self.banner: str | None = None

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self._buf += data
        out: list[dict[str, str]] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE_BYTES:
                    self._malformed("line_too_long", bytes(self._buf[:80]))
                    self._buf.clear()
                    self._skip_line = True
                    self._drop_message()
                return out
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if self._skip_line:
                self._skip_line = False
                continue
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            message = self._line(raw)
            if message is not None:
                out.append(message)

    def _line(self, raw: bytes) -> dict[str, str] | None:
        if len(raw) > MAX_LINE_BYTES:
            self._malformed("line_too_long", raw[:80])
            self._drop_message()
            return None
        line = raw.decode("utf-8", errors="replace")
        if self._expect_banner:
            self._expect_banner = False
            if line.startswith(BANNER_PREFIX):
                self.banner = line
                return None
            self._malformed("no_banner", raw[:80])  # keep parsing: it may still be AMI
        if not line:
            if self._skip_message:
                self._skip_message = False
                return None
            return self._finish() if self._headers else None
        if self._skip_message:
            return None
        key, sep, value = line.partition(": ")
        if not sep and line.endswith(":"):
            key, sep, value = line[:-1], ":", ""
        if not sep or not key or not key.isprintable() or "\ufffd" in key:
            self._malformed("not_a_header", raw[:80])
            return None
        self._headers.append((key, value))
        self._size += len(raw) + 2
        if len(self._headers) > MAX_MESSAGE_LINES or self._size > MAX_MESSAGE_BYTES:
            self._malformed("message_too_long", raw[:80])
            self._drop_message()
            self._skip_message = True
        return None

    def _finish(self) -> dict[str, str] | None:
        message: dict[str, str] = {}
        for key, value in self._headers:
            message[key] = f"{message[key]}\n{value}" if key in message else value
        first = self._headers[0]
        self._headers = []
        self._size = 0
        if "Event" not in message and "Response" not in message:
            self._malformed("neither_event_nor_response", f"{first[0]}: {first[1]}"[:80].encode())
            return None
        return message

    def _drop_message(self) -> None:
        self._headers = []
        self._size = 0

    def _malformed(self, reason: str, sample: bytes) -> None:
        self._on_malformed(reason, sample)


# ------------------------------------------------------------------------------------------- client


@dataclass
class _Pending:
    action: str
    future: asyncio.Future[list[dict[str, str]]]
    is_list: bool = False
    items: list[dict[str, str]] = field(default_factory=list)


class AmiClient:
    """See the module docstring. ``start()`` returns at once; ``status``/``health()`` tell the state,
    and ``on_status(status)`` is told each change as it happens (the operator pages show it)."""

    def __init__(
        self,
        settings: AmiSettings,
        on_event: EventHandler,
        *,
        on_resync: ResyncHandler | None = None,
        on_status: StatusHandler | None = None,
        logger: Any = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._on_resync = on_resync
        self._on_status = on_status
        self.log = logger if logger is not None else structlog.get_logger("ivr.ami")
        self._status = "disabled" if not settings.enabled else "disconnected"
        self._last_error: str | None = None
        self._connected_since: float | None = None
        self._connected_mono: float | None = None
        self._last_event_at: float | None = None
        self._reconnects = 0
        self._logins = 0
        self._pending: dict[str, _Pending] = {}
        # ActionIDs we stopped waiting for (timeout, cancel): their late answers/items are dropped
        # instead of being mistaken for events.
        self._abandoned: deque[str] = deque(maxlen=256)
        self._writer: asyncio.StreamWriter | None = None
        self._logged_in = False
        self._banner = asyncio.Event()
        self._ids = itertools.count(1)
        self._id_prefix = f"ivr-{uuid.uuid4().hex[:8]}"
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._queue_empty = asyncio.Event()  # the dispatcher has handed over everything queued
        self._queue_empty.set()
        self._overflow: str | None = None  # why this session's event stream was dropped
        self._overflows = 0
        self._runner: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._disabled_logged = False
        self._malformed_count = 0

    # ---------------------------------------------------------------------------------- public API

    @property
    def status(self) -> str:
        return self._status

    @property
    def connected(self) -> bool:
        return self._logged_in

    def health(self) -> dict[str, Any]:
        """Times are Unix seconds (float) or None."""
        return {
            "status": self._status,
            "last_error": self._last_error,
            "connected_since": self._connected_since,
            "reconnects": self._reconnects,
            "logins": self._logins,
            "last_event_at": self._last_event_at,
            "queued_events": self._queue.qsize(),
            "queue_overflows": self._overflows,
        }

    async def start(self) -> None:
        if not self.settings.enabled:
            self._status = "disabled"
            if not self._disabled_logged:
                self._disabled_logged = True
                self.log.info("ami_disabled", reason="no ami.username configured")
            return
        if self._runner is not None:
            return
        self._stopping = False
        self._status = "connecting"
        self._tell_status()
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="ami-dispatch")
        self._runner = asyncio.create_task(self._run(), name="ami-connection")

    async def stop(self) -> None:
        """Log off politely if logged in, then close everything; idempotent."""
        self._stopping = True
        if self._logged_in:
            with contextlib.suppress(AmiError, OSError):
                await self._request({"Action": "Logoff"}, deadline=min(1.0, self.settings.action_timeout))
        for task in (self._runner, self._dispatcher):
            if task is not None and not task.done():
                task.cancel()
        tasks = [t for t in (self._runner, self._dispatcher) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = self._dispatcher = None
        if self._status not in ("disabled", "disconnected"):
            self._status = "disconnected"  # a stop we asked for: no warning in the log
            self._tell_status()
        self._connected_since = None

    async def send_action(
        self,
        action: Mapping[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a per-action deadline is part of the API)
    ) -> list[dict[str, str]]:
        """Send one action and wait for its answer (deadline: ``timeout`` or ``action_timeout``).

        Returns ``[response]`` for a plain action and the item events (without the ``...Complete``
        event) for a list action. Raises AmiNotConnected (never queued for later: a Hangup sent
        minutes late is worse than an error), AmiTimeout, AmiActionError, ValueError (bad header).
        """
        if not self._logged_in:
            raise AmiNotConnected(f"AMI is {self._status}")
        return await self._request(action, deadline=timeout)

    # ------------------------------------------------------------------------------ request/answer

    async def _request(self, action: Mapping[str, Any], *, deadline: float | None) -> list[dict[str, str]]:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise AmiNotConnected("no AMI connection")
        name = str(_get(action, "Action", ""))
        action_id = str(_get(action, "ActionID") or f"{self._id_prefix}-{next(self._ids)}")
        if action_id in self._pending:
            raise ValueError(f"ActionID {action_id!r} is already waiting for an answer")
        payload = encode_action(action, action_id)
        deadline = self.settings.action_timeout if deadline is None else deadline
        future: asyncio.Future[list[dict[str, str]]] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = _Pending(name, future)
        try:
            async with asyncio.timeout(deadline):
                writer.write(payload)
                await writer.drain()
                return await future
        except TimeoutError:
            raise AmiTimeout(f"{name}: no answer from Asterisk within {deadline:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise AmiNotConnected(f"{name}: connection lost ({exc})") from exc
        finally:
            if self._pending.pop(action_id, None) is not None and not future.done():
                self._abandoned.append(action_id)
                future.cancel()

    def _route(self, message: dict[str, str]) -> None:
        action_id = message.get("ActionID")
        if "Event" in message:
            pending = self._pending.get(action_id) if action_id else None
            if pending is not None and pending.is_list:
                if message.get("EventList", "").lower() == "complete":
                    self._pending.pop(action_id, None)
                    if not pending.future.done():
                        pending.future.set_result(pending.items)
                else:
                    pending.items.append(message)
                return
            if action_id and action_id in self._abandoned and "Privilege" not in message:
                # A late item or ...Complete of a list we gave up on (items carry no Privilege header;
                # real events, even OriginateResponse with an ActionID, always do).
                self.log.debug("ami_late_list_item_dropped", action_id=action_id, ami_event=message["Event"])
                return
            self._last_event_at = time.time()
            if self._overflow is not None:
                return  # this stream is being dropped: the resync after the reconnect replaces it
            if self._queue.qsize() >= self.settings.max_queued_events:
                self._overflows += 1
                self._overflow = (f"event queue full ({self._queue.qsize()} events waiting for the "
                                  f"handler): dropping the stream, resync once they are handled")
                return
            self._enqueue("event", message)
            return
        pending = self._pending.get(action_id) if action_id else None
        if pending is None:
            self.log.debug("ami_unmatched_response", action_id=action_id, response=message.get("Response"))
            return
        outcome = message.get("Response", "").lower()
        if outcome in SUCCESS_RESPONSES:
            if message.get("EventList", "").lower() == "start":
                pending.is_list = True
                return
            self._pending.pop(action_id, None)
            if not pending.future.done():
                pending.future.set_result([message])
        else:
            self._pending.pop(action_id, None)
            if not pending.future.done():
                pending.future.set_exception(AmiActionError(pending.action, message))

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(AmiNotConnected(f"{item.action}: {reason}"))

    # ---------------------------------------------------------------------------- connection loop

    def _enqueue(self, kind: str, payload: Any) -> None:
        self._queue.put_nowait((kind, payload))
        self._queue_empty.clear()

    async def _run(self) -> None:
        failures = 0
        first = True
        while not self._stopping:
            if not first:
                self._reconnects += 1
            first = False
            self._connected_mono = None
            self._overflow = None
            try:
                reason = await self._session()
            except _AuthFailed as exc:
                failures += 1
                self._set_status("auth_failed", str(exc))
                await asyncio.sleep(self._jitter(self.settings.reconnect_max))
                continue
            except (OSError, TimeoutError, AmiError, _ProtocolError) as exc:
                reason = _describe(exc)
            except Exception as exc:  # a bug here must not end reconnecting for the process lifetime
                self.log.exception("ami_session_crashed")
                reason = _describe(exc)
            if self._stopping:
                break
            if self._overflow is not None:
                # Not Asterisk's fault: no backoff, but no login either before the handler has
                # caught up, or the new stream would overflow at once.
                self._set_status("disconnected", self._overflow)
                await self._queue_empty.wait()
                failures = 0
                await asyncio.sleep(self._jitter(self.settings.reconnect_min))
                continue
            lasted = time.monotonic() - self._connected_mono if self._connected_mono is not None else 0.0
            if self._connected_mono is not None and lasted >= self.settings.reconnect_max:
                failures = 0  # a session that held for a while resets the backoff
            delay = self._jitter(min(self.settings.reconnect_max, self.settings.reconnect_min * 2**failures))
            failures += 1
            self._set_status("disconnected", reason)
            self.log.debug("ami_reconnect_scheduled", delay=round(delay, 3), attempt=self._reconnects + 1)
            await asyncio.sleep(delay)

    def _jitter(self, base: float) -> float:
        return max(self.settings.reconnect_min, base * random.uniform(0.75, 1.0))

    async def _session(self) -> str:
        """One connection: connect, banner, login, resync, then serve until it drops. Returns why."""
        s = self.settings
        self._banner = asyncio.Event()
        self._malformed_count = 0
        parser = MessageParser(self._malformed)
        reader, writer = await self._connect()
        self._writer = writer
        read_task = asyncio.create_task(self._read_loop(reader, parser), name="ami-read")
        ping_task: asyncio.Task[str] | None = None
        try:
            banner = asyncio.create_task(self._banner.wait())
            try:
                await asyncio.wait({banner, read_task}, timeout=s.action_timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                banner.cancel()
            if not self._banner.is_set():
                if read_task.done():
                    return f"{read_task.result()} before the banner"
                raise _ProtocolError(f"no AMI banner within {s.action_timeout:g} s")
            try:
                await self._request(
                    {"Action": "Login", "Username": s.username, "Secret": s.secret, "Events": "on"},
                    deadline=s.action_timeout,
                )
            except AmiActionError as exc:
                raise _AuthFailed(f"login as {s.username!r} refused: {exc.message or 'Error'}") from None
            self._logged_in = True
            self._logins += 1
            self._connected_since = time.time()
            self._connected_mono = time.monotonic()
            self._set_status("connected", None)
            ping_task = asyncio.create_task(self._ping_loop(), name="ami-ping")
            if self._on_resync is not None:
                await self._resync()
            done, _ = await asyncio.wait({read_task, ping_task}, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            # Everything synchronous first: stop() may cancel us again while we await below.
            self._logged_in = False
            self._connected_since = None
            self._writer = None
            writer.close()
            self._fail_pending("connection closed")
            tasks = [t for t in (ping_task, read_task) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # In its own task so that a timeout or stop() landing just as the TCP connect completes
        # cannot drop a connected socket on the floor (it is closed instead).
        s = self.settings
        connect = asyncio.ensure_future(asyncio.open_connection(s.host, s.port))
        try:
            return await asyncio.wait_for(asyncio.shield(connect), timeout=s.action_timeout)
        except BaseException:
            connect.cancel()
            connect.add_done_callback(_close_if_connected)
            raise

    async def _read_loop(self, reader: asyncio.StreamReader, parser: MessageParser) -> str:
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError) as exc:
                    return f"connection lost ({exc})"
                if not data:
                    return "connection closed by Asterisk"
                for message in parser.feed(data):
                    try:
                        self._route(message)
                    except Exception:  # never let one odd message end the session
                        self.log.exception("ami_route_failed", message=_sample(message))
                if self._overflow is not None:
                    return self._overflow
                if parser.banner is not None and not self._banner.is_set():
                    self.log.debug("ami_banner", banner=parser.banner)
                    self._banner.set()
        finally:
            self._fail_pending("connection closed")

    async def _ping_loop(self) -> str:
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            try:
                await self._request({"Action": "Ping"}, deadline=self.settings.action_timeout)
            except AmiTimeout:
                self.log.warning("ami_ping_timeout", timeout=self.settings.action_timeout)
                return f"no answer to Ping within {self.settings.action_timeout:g} s"
            except AmiNotConnected as exc:
                return str(exc)
            except AmiActionError as exc:  # answered, so the link is alive
                self.log.warning("ami_ping_error", message=exc.message)

    async def _resync(self) -> None:
        items: list[dict[str, str]] = []
        try:
            for action in RESYNC_ACTIONS:
                items.extend(await self._request({"Action": action}, deadline=self.settings.action_timeout))
        except AmiActionError as exc:
            # Typically "Permission denied": CoreShowChannels needs write=reporting. Retrying would
            # not help, and a partial snapshot would look like "all channels are gone".
            self.log.error("ami_resync_failed", action=exc.action, message=exc.message)
            return
        except AmiTimeout as exc:
            self.log.warning("ami_resync_timeout", error=str(exc))
            raise
        self.log.info("ami_resynced", items=len(items))
        self._enqueue("resync", items)

    # -------------------------------------------------------------------------------------- dispatch

    async def _dispatch_loop(self) -> None:
        while True:
            if self._queue.empty():
                self._queue_empty.set()
            kind, payload = await self._queue.get()
            handler = self._on_event if kind == "event" else self._on_resync
            if handler is None:
                continue
            try:
                result = handler(payload)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception(
                    "ami_handler_failed",
                    kind=kind,
                    ami_event=payload.get("Event") if kind == "event" else None,
                )

    # ----------------------------------------------------------------------------------------- misc

    def _set_status(self, status: str, error: str | None) -> None:
        previous = self._status
        if error is not None:
            self._last_error = error
        self._status = status
        s = self.settings
        if status != previous:
            self._tell_status()
        if status == previous:
            self.log.debug("ami_retry_failed", status=status, error=error)
        elif status == "connected":
            self.log.info("ami_connected", host=s.host, port=s.port, username=s.username, logins=self._logins)
        elif status == "auth_failed":
            self.log.error(
                "ami_auth_failed",
                host=s.host,
                port=s.port,
                username=s.username,
                error=error,
                retry_every=s.reconnect_max,
                hint="check ami.username/ami.secret against manager.conf",
            )
        elif status == "disconnected":
            self.log.warning("ami_disconnected", host=s.host, port=s.port, error=error)

    def _tell_status(self) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(self._status)
        except Exception:
            self.log.exception("ami_status_handler_failed", status=self._status)

    def _malformed(self, reason: str, sample: bytes) -> None:
        self._malformed_count += 1
        log = self.log.warning if self._malformed_count <= MALFORMED_WARNINGS else self.log.debug
        log("ami_malformed_input", reason=reason, sample=sample[:80].decode("utf-8", errors="backslashreplace"))


def _close_if_connected(task: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result()[1].close()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sample(message: Mapping[str, str], keys: Iterable[str] = ("Event", "Response", "ActionID")) -> dict[str, str]:
    return {k: message[k] for k in keys if k in message}
