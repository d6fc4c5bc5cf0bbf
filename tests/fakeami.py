"""A fake Asterisk Manager Interface over real TCP, byte for byte like ``tests/data/asterisk-traces/ami``.

What it does, as Asterisk 22.10.1 did in ``login_variants.txt`` and ``actions.txt``:

- banner ``Asterisk Call Manager/11.0.0\\r\\n``; every line ends ``\\r\\n``, a message ends with an
  empty line; an ``ActionID`` is echoed only when the action had one;
- any action but Login/Challenge/Logoff before login → ``Response: Error`` / ``Permission denied``;
- Login with the right username/secret (plain or MD5 challenge) → ``Authentication accepted``, then
  ``FullyBooted`` and ``SuccessfulAuth`` (and ``login_events``) in the same write; a wrong secret or
  user → ``Authentication failed`` after ``auth_failure_delay`` (real: 1 s), then the socket closes;
- Ping → ``Ping: Pong`` + ``Timestamp``; Logoff → ``Goodbye`` and close; an unknown action →
  ``Invalid/unknown command: X. Use Action: ListCommands to show available commands.``;
- CoreShowChannels and QueueStatus → list answers shaped exactly like ``actions.txt`` with the items
  configured on the server (``core_show_channel()``, ``queue_params()``, ``queue_member()``,
  ``queue_entry()`` build them with the trace's header order).

Test controls: ``stop()`` then ``start()`` again (Asterisk down and back, same port),
``await server.push(events, speed=None)`` (to logged-in clients; with ``speed`` the
trace's own spacing, divided by ``speed``), ``await server.drop_clients()``, ``server.send_raw(b)``,
``server.stop_answering_pings = True``, ``server.ignore_actions`` (names never answered),
``server.action_handlers[name] = fn(headers) -> list of messages | None``. It records every action
(``server.actions``), the ones refused before login (``server.actions_before_login``) and counts
connections and logins. ``load_trace_events(path)`` reads the events of a trace file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.traces import TRACES as CAPTURED_TRACES

TRACES = CAPTURED_TRACES / "ami"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"

Headers = Sequence[tuple[str, str]]
Message = Mapping[str, str] | Headers


# ------------------------------------------------------------------------------------- trace files


class TraceEvent(dict):
    """An event read from a trace: a plain ``dict`` (wire order kept) plus ``at``, its capture time."""

    at: float = 0.0


_TRACE_LINE = re.compile(r"^\[\+\s*(?P<at>[\d.]+)\] (?P<who>S>|C>) (?P<body>.*)$")


def load_trace_messages(path: str | Path) -> list[TraceEvent]:
    """Every message Asterisk sent (``S>`` lines) in a trace, banner excluded, in order."""
    messages: list[TraceEvent] = []
    current: list[tuple[str, str]] = []
    started_at = 0.0
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        match = _TRACE_LINE.match(line)
        if match is None or match["who"] != "S>":
            continue
        body = match["body"]
        if not body.endswith("\\r\\n"):
            raise ValueError(f"{path}:{number}: an S> line must end with an escaped \\r\\n")
        body = body[:-4]  # only the terminator is escaped in the traces; backslashes inside are literal
        if body.startswith("Asterisk Call Manager/") and not current:
            continue
        if body == "":
            if current:
                message = TraceEvent()
                for key, value in current:
                    message[key] = f"{message[key]}\n{value}" if key in message else value
                message.at = started_at
                messages.append(message)
                current = []
            continue
        if not current:
            started_at = float(match["at"])
        key, sep, value = body.partition(": ")
        if not sep:
            raise ValueError(f"{path}:{number}: not a header line: {body!r}")
        current.append((key, value))
    return messages


def load_trace_events(path: str | Path) -> list[TraceEvent]:
    """The event messages (with ``Event:``) of a trace; the answers to the capture's own actions
    (``Response:`` without ``Event:``) are left out."""
    return [m for m in load_trace_messages(path) if "Event" in m]


# ------------------------------------------------------------------------------------ list items


def _fields(defaults: list[tuple[str, str]], overrides: Mapping[str, str]) -> list[tuple[str, str]]:
    known = {k for k, _ in defaults}
    unknown = set(overrides) - known
    if unknown:
        raise KeyError(f"unknown fields {sorted(unknown)}; known: {[k for k, _ in defaults]}")
    return [(k, str(overrides.get(k, v))) for k, v in defaults]


def core_show_channel(**overrides: str) -> list[tuple[str, str]]:
    """One CoreShowChannel item (without Event/ActionID), fields as in actions.txt act-7."""
    return _fields(
        [
            ("Channel", "Local/start@ivr-inbound-00000012;2"),
            ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "+79161234567"),
            ("CallerIDName", "Ivan Petrov"),
            ("ConnectedLineNum", "+79161234567"),
            ("ConnectedLineName", "Ivan Petrov"),
            ("Language", "en"),
            ("AccountCode", ""),
            ("Context", "ivr-inbound"),
            ("Exten", "start"),
            ("Priority", "8"),
            ("Uniqueid", "1795751132.40"),
            ("Linkedid", "1795751132.39"),
            ("Application", "Wait"),
            ("ApplicationData", "30"),
            ("Duration", "00:00:06"),
            ("BridgeId", ""),
        ],
        overrides,
    )


def queue_params(**overrides: str) -> list[tuple[str, str]]:
    """One QueueParams item (without Event/ActionID), as in actions.txt act-5."""
    return _fields(
        [
            ("Queue", "operators"),
            ("Max", "0"),
            ("Strategy", "ringall"),
            ("Calls", "0"),
            ("Holdtime", "0"),
            ("TalkTime", "5"),
            ("Completed", "5"),
            ("Abandoned", "0"),
            ("ServiceLevel", "0"),
            ("ServicelevelPerf", "100.0"),
            ("ServicelevelPerf2", "100.0"),
            ("Weight", "0"),
        ],
        overrides,
    )


def queue_member(**overrides: str) -> list[tuple[str, str]]:
    """One QueueMember item (without Event/ActionID), as in actions.txt act-5."""
    return _fields(
        [
            ("Queue", "operators"),
            ("Name", "Operator 101"),
            ("Location", "Local/101@operator-agent/n"),
            ("StateInterface", "Local/101@operator-agent/n"),
            ("Membership", "static"),
            ("Penalty", "0"),
            ("CallsTaken", "5"),
            ("LastCall", "1795751098"),
            ("LastPause", "0"),
            ("LoginTime", "1795750923"),
            ("InCall", "0"),
            ("Status", "1"),
            ("Paused", "0"),
            ("PausedReason", ""),
            ("Wrapuptime", "0"),
        ],
        overrides,
    )


def queue_entry(**overrides: str) -> list[tuple[str, str]]:
    """One QueueEntry item (a waiting caller, without Event/ActionID), as in actions.txt act-13."""
    return _fields(
        [
            ("Queue", "operators"),
            ("Position", "1"),
            ("Channel", "Local/start@ivr-inbound-00000012;2"),
            ("Uniqueid", "1795751132.40"),
            ("CallerIDNum", "+79161234567"),
            ("CallerIDName", "Ivan Petrov"),
            ("ConnectedLineNum", "+79161234567"),
            ("ConnectedLineName", "Ivan Petrov"),
            ("Wait", "1"),
            ("Priority", "0"),
        ],
        overrides,
    )


# ------------------------------------------------------------------------------------------ wire


def format_message(message: Message) -> bytes:
    items = message.items() if isinstance(message, Mapping) else message
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in items) + b"\r\n"


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name.lower():
            return value
    return None


@dataclass(eq=False)
class FakeAmiConnection:
    number: int
    writer: asyncio.StreamWriter
    logged_in: bool = False
    challenge: str | None = None
    actions: list[list[tuple[str, str]]] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


ActionHandler = Callable[[Headers], Sequence[Message] | None]


class FakeAmi:
    def __init__(
        self,
        *,
        username: str = "ivr",
        secret: str = "ivrsecret",
        auth_failure_delay: float = 0.05,
        channels: Iterable[Headers] = (),
        queue_params: Iterable[Headers] = (),
        queue_members: Iterable[Headers] = (),
        queue_entries: Iterable[Headers] = (),
        send_successful_auth: bool = True,
        login_events: Iterable[Message] = (),
    ) -> None:
        self.username = username
        self.secret = secret
        self.auth_failure_delay = auth_failure_delay
        self.channels = list(channels)
        self.queue_params = list(queue_params)
        self.queue_members = list(queue_members)
        self.queue_entries = list(queue_entries)
        self.send_successful_auth = send_successful_auth
        self.login_events = list(login_events)
        self.stop_answering_pings = False
        self.ignore_actions: set[str] = set()
        self.action_handlers: dict[str, ActionHandler] = {}
        self.actions: list[tuple[int, list[tuple[str, str]]]] = []  # (connection number, headers)
        self.actions_before_login: list[tuple[int, list[tuple[str, str]]]] = []
        self.connection_count = 0
        self.logins = 0
        self.failed_logins = 0
        self.connect_times: list[float] = []
        self.login_times: list[float] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[FakeAmiConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeAmi:
        """Listen; after a ``stop()``, on the same port again (Asterisk coming back)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_clients()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeAmi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------------------------- test controls

    @property
    def clients(self) -> list[FakeAmiConnection]:
        """Logged-in connections."""
        return [c for c in self._connections if c.logged_in]

    async def push(self, events: Iterable[Message], *, speed: float | None = None) -> None:
        """Send events to every logged-in client; with ``speed``, keep the trace's relative timing
        (``TraceEvent.at``) divided by ``speed``."""
        previous: float | None = None
        for event in events:
            at = getattr(event, "at", None)
            if speed and at is not None and previous is not None and at > previous:
                await asyncio.sleep((at - previous) / speed)
            previous = at if at is not None else previous
            data = format_message(event)
            for conn in self.clients:
                conn.write(data)
        for conn in self.clients:
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are to every connection (logged in or not)."""
        for conn in list(self._connections):
            conn.write(data)

    async def drop_clients(self) -> None:
        """Close every client connection at once (like an Asterisk restart)."""
        for conn in list(self._connections):
            conn.writer.transport.abort()
        tasks = list(self._tasks)
        if tasks:
            # not cancelled: asyncio logs a cancelled client_connected_cb task as an error
            _, stuck = await asyncio.wait(tasks, timeout=2.0)
            for task in stuck:
                task.cancel()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def wait_for_logins(self, count: int, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: self.logins >= count, timeout)

    def action_names(self) -> list[str]:
        return [_header(h, "Action") or "" for _, h in self.actions]

    # ---------------------------------------------------------------------------------- the server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connection_count += 1
        self.connect_times.append(time.monotonic())
        conn = FakeAmiConnection(self.connection_count, writer)
        self._connections.add(conn)
        await self._notify()
        try:
            conn.write(BANNER)
            while True:
                headers = await _read_message(reader)
                if headers is None:
                    break
                if not headers:
                    continue
                conn.actions.append(headers)
                self.actions.append((conn.number, headers))
                await self._notify()
                if await self._handle(conn, headers):
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    break
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            conn.logged_in = False
            self._connections.discard(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, conn: FakeAmiConnection, headers: list[tuple[str, str]]) -> bool:
        """Answer one action; True when the connection is to be closed afterwards."""
        name = (_header(headers, "Action") or "").strip()
        lower = name.lower()
        action_id = _header(headers, "ActionID")
        idh = [("ActionID", action_id)] if action_id is not None else []

        if not name:
            conn.write(format_message([("Response", "Error"), *idh, ("Message", "Missing action in request")]))
            return False
        if lower == "logoff":
            conn.write(format_message([("Response", "Goodbye"), *idh, ("Message", "Thanks for all the fish.")]))
            return True
        if lower == "challenge" and not conn.logged_in:
            if (_header(headers, "AuthType") or "").lower() != "md5":
                conn.write(format_message([("Response", "Error"), *idh, ("Message", "Must specify AuthType")]))
                return False
            conn.challenge = conn.challenge or str(random.randrange(10**7, 10**8))
            conn.write(format_message([("Response", "Success"), *idh, ("Challenge", conn.challenge)]))
            return False
        if lower == "login":
            if conn.logged_in:
                conn.write(format_message([("Response", "Success"), *idh, ("Message", "Already authenticated")]))
                return False
            if not self._credentials_ok(conn, headers):
                self.failed_logins += 1
                await asyncio.sleep(self.auth_failure_delay)
                conn.write(format_message([("Response", "Error"), *idh, ("Message", "Authentication failed")]))
                return True
            conn.logged_in = True
            self.logins += 1
            self.login_times.append(time.monotonic())
            out = [
                format_message([("Response", "Success"), *idh, ("Message", "Authentication accepted")]),
                format_message(
                    [
                        ("Event", "FullyBooted"),
                        ("Privilege", "system,all"),
                        ("Uptime", "209"),
                        ("LastReload", "209"),
                        ("Status", "Fully Booted"),
                    ]
                ),
            ]
            if self.send_successful_auth:
                out.append(format_message(self._successful_auth(conn)))
            out.extend(format_message(e) for e in self.login_events)
            conn.write(b"".join(out))  # one write, as Asterisk does: the client must not lose any of it
            await self._notify()
            return False
        if not conn.logged_in:
            self.actions_before_login.append((conn.number, headers))
            conn.write(format_message([("Response", "Error"), *idh, ("Message", "Permission denied")]))
            return False
        if lower in {a.lower() for a in self.ignore_actions} or (lower == "ping" and self.stop_answering_pings):
            return False
        handler = next((h for n, h in self.action_handlers.items() if n.lower() == lower), None)
        if handler is not None:
            messages = handler(headers)
            if messages is not None:
                conn.write(b"".join(format_message(m) for m in messages))
                return False
        if lower == "ping":
            conn.write(
                format_message([("Response", "Success"), *idh, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")])
            )
        elif lower == "coreshowchannels":
            conn.write(self._list(idh, "Channels will follow", "CoreShowChannelsComplete", self._channel_items(idh)))
        elif lower == "queuestatus":
            queue = _header(headers, "Queue")
            conn.write(
                self._list(idh, "Queue status will follow", "QueueStatusComplete", self._queue_items(idh, queue))
            )
        else:
            conn.write(
                format_message(
                    [
                        ("Response", "Error"),
                        *idh,
                        (
                            "Message",
                            f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands.",
                        ),
                    ]
                )
            )
        return False

    def _credentials_ok(self, conn: FakeAmiConnection, headers: Headers) -> bool:
        if _header(headers, "Username") != self.username:
            return False
        if (_header(headers, "AuthType") or "").lower() == "md5":
            if conn.challenge is None:
                return False
            expected = hashlib.md5((conn.challenge + self.secret).encode()).hexdigest()
            return _header(headers, "Key") == expected
        return _header(headers, "Secret") == self.secret

    def _successful_auth(self, conn: FakeAmiConnection) -> list[tuple[str, str]]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())
        peer = conn.writer.get_extra_info("peername") or ("127.0.0.1", 0)
        return [
            ("Event", "SuccessfulAuth"),
            ("Privilege", "security,all"),
            ("EventTV", now),
            ("Severity", "Informational"),
            ("Service", "AMI"),
            ("EventVersion", "1"),
            ("AccountID", self.username),
            ("SessionID", f"0x{id(conn):x}"),
            ("LocalAddress", f"IPV4/TCP/127.0.0.1/{self.port}"),
            ("RemoteAddress", f"IPV4/TCP/{peer[0]}/{peer[1]}"),
            ("UsingPassword", "0"),
            ("SessionTV", now),
        ]

    def _channel_items(self, idh: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        # CoreShowChannel: ActionID right after Event (manager.c idText first).
        return [[("Event", "CoreShowChannel"), *idh, *item] for item in self.channels]

    def _queue_items(self, idh: list[tuple[str, str]], queue: str | None) -> list[list[tuple[str, str]]]:
        # app_queue: ActionID is the last header of QueueParams/QueueMember/QueueEntry; per queue the
        # params, then its members, then its waiting callers.
        names: list[str] = []
        for item in [*self.queue_params, *self.queue_members, *self.queue_entries]:
            q = _header(item, "Queue") or ""
            if q not in names:
                names.append(q)
        out: list[list[tuple[str, str]]] = []
        for name in names:
            if queue and name != queue:
                continue
            for event, items in (
                ("QueueParams", self.queue_params),
                ("QueueMember", self.queue_members),
                ("QueueEntry", self.queue_entries),
            ):
                out.extend([("Event", event), *item, *idh] for item in items if _header(item, "Queue") == name)
        return out

    @staticmethod
    def _list(idh: list[tuple[str, str]], message: str, complete: str, items: list[list[tuple[str, str]]]) -> bytes:
        head = format_message([("Response", "Success"), *idh, ("EventList", "start"), ("Message", message)])
        tail = format_message([("Event", complete), *idh, ("EventList", "Complete"), ("ListItems", str(len(items)))])
        return head + b"".join(format_message(i) for i in items) + tail


async def _read_message(reader: asyncio.StreamReader) -> list[tuple[str, str]] | None:
    """One action (header lines up to the empty line); None at EOF."""
    headers: list[tuple[str, str]] = []
    while True:
        line = await reader.readline()
        if not line:
            return None
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if text == "":
            return headers
        key, _, value = text.partition(": ")
        headers.append((key, value))
