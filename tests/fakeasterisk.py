"""A fake Asterisk that speaks FastAGI to our server over real TCP, byte for byte like the traces.

The wire shapes come from ``tests/data/asterisk-traces/agi/*.txt`` (a real Asterisk 22.10.1): the env
block, ``200 result=N [(data)] [endpos=N]`` replies, multi-line ``520`` usage, ``510``, ``511`` on a
dead channel, ``result=-1`` followed by a separate ``HANGUP`` line, the unsolicited ``HANGUP`` while
idle, and Asterisk never closing the socket itself.

Usage::

    fake = FakeAsterisk(
        inputs=["1", "4711#"],                      # keys pressed during digit-taking commands, in order
        replies={"EXEC Queue": "200 result=0"},     # rules: command prefix -> reply / callable / marker
        check_files=True,                           # STREAM FILE of a missing <path>.wav -> result=-1
    )
    await fake.connect("127.0.0.1", server.port, script="repeat-order", caller_id="+79161234567")
    assert await fake.wait_closed(5)                # the server closed the socket
    assert fake.variables["IVR_RESULT"] == "done"
    assert fake.commands[0] == "ANSWER"

Inputs (consumed one per STREAM FILE with escape digits / GET DATA / GET OPTION / WAIT FOR DIGIT):
a string of keys (``"1"``, ``"4711"``, ``"12#"``, ``"9"`` = partial then timeout), ``TIMEOUT`` (nothing
pressed) or ``HANGUP`` (the caller hangs up during that command). When inputs run out, nothing is
pressed. ``hangup_at("GET DATA", nth=2)`` hangs up at any command; ``await fake.hangup()`` sends an
unsolicited ``HANGUP`` now.

Rules: ``replies={pattern: value}``; the pattern is matched case-insensitively against the parsed
command (``"STREAM FILE"``, ``"GET VARIABLE CALLERID(num)"``), the longest matching pattern wins. A
value is a reply string (may hold several lines), a list of lines, a marker (``NO_REPLY``, ``CLOSE``,
``HANGUP``, ``TIMEOUT``) or a callable ``(FakeCommand) -> any of those | None`` (sync or async);
``None`` falls through to the built-in emulation. On a dead channel, commands that Asterisk refuses
get ``511`` whatever the rules say.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.agi.wire import split_agi_args
from ivr.audiosocket.caller import CallerTurn, LegResult, audiosocket_leg


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NO_REPLY = _Marker("NO_REPLY")  # never answer this command (the server's deadline should fire)
CLOSE = _Marker("CLOSE")  # close the socket instead of answering (connection lost mid-command)
HANGUP = _Marker("HANGUP")  # the caller hangs up during this command
TIMEOUT = _Marker("TIMEOUT")  # nothing pressed


@dataclass(frozen=True)
class Say:
    """An input for a question asked over AudioSocket: the caller's audio (slin16 8 kHz), keys as
    DTMF frames after it, and optionally hanging up after ``hang_up_after`` seconds of their audio."""

    speech: bytes = b""
    keys: str = ""
    after_prompt: bool = False
    hang_up_after: float | None = None


REFUSE = _Marker("REFUSE")  # EXEC AudioSocket: Asterisk cannot connect (nothing listens): result=-1

R510 = "510 Invalid or unknown command"
R511 = "511 Command Not Permitted on a dead channel or intercept routine"
USAGE_HEADER = "520-Invalid command syntax.  Proper usage follows:"
USAGE_FOOTER = "520 End of proper usage."

# Usage texts exactly as Asterisk 22.10.1 sent them (full.txt).
USAGE: dict[str, list[str]] = {
    "SET VARIABLE": ["Sets a variable to the current channel."],
    "STREAM FILE": [
        "Send the given file, allowing playback to be interrupted by the given digits, if any. Returns "
        "<literal>0</literal> if playback completes without a digit being pressed, or the ASCII numerical "
        "value of the digit if one was pressed, or <literal>-1</literal> on error or if the channel was "
        "disconnected. If musiconhold is playing before calling stream file it will be automatically "
        "stopped and will not be restarted after completion.",
        "It sets the following channel variables upon completion:",
        "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
        "    <value>SUCCESS</value>",
        "    <value>FAILED</value>",
    ],
    "GET DATA": [
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ],
    "WAIT FOR DIGIT": [
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a DTMF digit. "
        "Returns <literal>-1</literal> on channel failure, <literal>0</literal> if no digit is received in "
        "the timeout, or the numerical value of the ascii of the digit if one is received. Use "
        "<literal>-1</literal> for the <replaceable>timeout</replaceable> value if you desire the call to "
        "block indefinitely.",
    ],
}


def usage_520(command: str) -> str:
    """The multi-line 520 reply Asterisk sends for a syntax error in ``command``."""
    body = USAGE.get(command.upper(), [f"Usage: {command.upper()}"])
    return "\n".join([USAGE_HEADER, *body, USAGE_FOOTER])


KNOWN_COMMANDS = (
    "ANSWER", "ASYNCAGI BREAK", "CHANNEL STATUS", "CONTROL STREAM FILE", "DATABASE DEL",
    "DATABASE DELTREE", "DATABASE GET", "DATABASE PUT", "EXEC", "GET DATA", "GET FULL VARIABLE",
    "GET OPTION", "GET VARIABLE", "GOSUB", "HANGUP", "NOOP", "RECEIVE CHAR", "RECEIVE TEXT",
    "RECORD FILE", "SAY ALPHA", "SAY DATE", "SAY DATETIME", "SAY DIGITS", "SAY NUMBER", "SAY PHONETIC",
    "SAY TIME", "SEND IMAGE", "SEND TEXT", "SET AUTOHANGUP", "SET CALLERID", "SET CONTEXT",
    "SET EXTENSION", "SET MUSIC", "SET PRIORITY", "SET VARIABLE", "STREAM FILE", "TDD MODE", "VERBOSE",
    "WAIT FOR DIGIT",
)  # fmt: skip
_KNOWN_SPLIT = sorted((tuple(c.split()) for c in KNOWN_COMMANDS), key=len, reverse=True)
# Commands Asterisk still runs on a dead channel (everything else answers 511).
DEAD_OK = frozenset(
    {"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "EXEC", "NOOP", "ASYNCAGI BREAK",
     "GOSUB", "DATABASE DEL", "DATABASE DELTREE", "DATABASE GET", "DATABASE PUT"}
)  # fmt: skip
# Commands during which a caller can hang up: they end with result=-1, then a HANGUP line.
BLOCKING = frozenset(
    {"STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT", "EXEC",
     "RECORD FILE", "SAY ALPHA", "SAY DATE", "SAY DATETIME", "SAY DIGITS", "SAY NUMBER", "SAY PHONETIC",
     "SAY TIME", "RECEIVE CHAR", "RECEIVE TEXT"}
)  # fmt: skip
DIGIT_INPUT = frozenset({"STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT"})


# Asterisk's own argument splitting (res_agi parse_args); shared with `ivr call`.
parse_agi_args = split_agi_args


@dataclass(frozen=True)
class FakeCommand:
    line: str  # the raw line as received, without the terminator
    name: str  # the recognised command words, upper case ("GET VARIABLE"), or the first word
    args: tuple[str, ...]  # the arguments after the command words, unquoted like Asterisk does
    nth: int  # 1-based occurrence number of this command name in the session
    index: int  # 0-based position among all commands of the session
    known: bool

    @property
    def normalized(self) -> str:
        return " ".join([self.name, *self.args])


def split_command(line: str) -> tuple[str, tuple[str, ...], bool]:
    words = parse_agi_args(line)
    upper = [w.upper() for w in words]
    for cmd in _KNOWN_SPLIT:
        if tuple(upper[: len(cmd)]) == cmd:
            return " ".join(cmd), tuple(words[len(cmd) :]), True
    return (upper[0] if upper else ""), tuple(words[1:]), False


def build_env(
    port: int,
    script: str,
    caller_id: str = "+79161234567",
    *,
    caller_name: str | bytes = "Ivan Petrov",
    uniqueid: str = "1795750923.1",
    channel: str = "Local/start@ivr-inbound-00000000;2",
    language: str = "en",
    args: tuple[str, ...] | list[str] = (),
    extra: Mapping[str, str | None] | None = None,
) -> list[tuple[str, str | bytes]]:
    """The env block as (key, value) pairs in Asterisk's order (see full.txt). A value given as bytes
    is sent as those bytes (a SIP peer's caller name in Latin-1 or cp1251 reaches AGI untouched)."""
    pairs: list[tuple[str, str | bytes]] = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", f"agi://127.0.0.1:{port}/{script}"),
        ("agi_channel", channel),
        ("agi_language", language),
        ("agi_type", channel.split("/", 1)[0]),
        ("agi_uniqueid", uniqueid),
        ("agi_version", "22.10.1"),
        ("agi_callerid", caller_id),
        ("agi_calleridname", caller_name),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "ivr-inbound"),
        ("agi_extension", "start"),
        ("agi_priority", "8"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "139909302281920"),
    ]
    pairs += [(f"agi_arg_{i}", value) for i, value in enumerate(args, start=1)]
    for key, value in (extra or {}).items():
        key = key if key.startswith("agi_") else f"agi_{key}"
        pairs = [(k, v) for k, v in pairs if k != key]
        if value is not None:
            pairs.append((key, value))
    return pairs


def encode_env(pairs: list[tuple[str, str | bytes]]) -> bytes:
    return b"".join(
        f"{k}: ".encode() + (v if isinstance(v, bytes) else v.encode("utf-8")) + b"\n" for k, v in pairs
    ) + b"\n"


Reply = Any  # str | list[str] | _Marker | None | Callable[[FakeCommand], ...]

_unique_counter = 0


class FakeAsterisk:
    """One fake Asterisk channel connected to a FastAGI server. See the module docstring."""

    def __init__(
        self,
        replies: Mapping[str, Reply] | Callable[[FakeCommand], Any] | None = None,
        *,
        inputs: list[Any] | None = None,
        variables: Mapping[str, str] | None = None,
        check_files: bool = False,
        sounds_dir: str | Path = "/var/lib/asterisk/sounds/en",
        hangup_line_delay: float = 0.04,
        channel_status: int = 6,
    ) -> None:
        if callable(replies):
            self.rules: dict[str, Reply] = {"": replies}
        else:
            self.rules = {" ".join(k.split()).upper(): v for k, v in (replies or {}).items()}
        self.inputs: list[Any] = list(inputs or [])
        self.variables: dict[str, str] = dict(variables or {})
        self.set_history: list[tuple[str, str]] = []
        self.database: dict[tuple[str, str], str] = {}
        self.check_files = check_files
        self.sounds_dir = Path(sounds_dir)
        self.hangup_line_delay = hangup_line_delay
        self.status = channel_status
        self.legs: list[LegResult] = []  # every AudioSocket() run, in order
        self.commands: list[str] = []
        self.parsed: list[FakeCommand] = []
        self.arrived: list[float] = []  # the loop's clock when each command arrived (same order as parsed)
        self.played: list[str] = []  # paths of STREAM FILE / GET DATA / GET OPTION, in order
        self.sent: list[str] = []  # every line we sent after the env block
        self.dead = False
        self.closed_by_server = False
        self.closed_at: float | None = None
        self.connected_at: float | None = None
        self.env: list[tuple[str, str | bytes]] = []
        self.channel_vars: dict[str, str] = {}
        self._hangup_triggers: list[tuple[str, int]] = []
        self._counts: dict[str, int] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._command_seen = asyncio.Event()
        self._hangup_line_pending = False
        self._hangup_line_task: asyncio.Task[None] | None = None
        self._we_closed = False

    # ------------------------------------------------------------------ setup

    def hangup_at(self, pattern: str, nth: int = 1) -> FakeAsterisk:
        """The caller hangs up at the nth command matching ``pattern`` (e.g. ``"GET DATA"``)."""
        self._hangup_triggers.append((" ".join(pattern.split()).upper(), nth))
        return self

    async def connect(
        self,
        host: str,
        port: int,
        env: dict[str, str | None] | None = None,
        script: str = "repeat-order",
        caller_id: str = "+79161234567",
        *,
        caller_name: str | bytes = "Ivan Petrov",
        args: tuple[str, ...] | list[str] = (),
        uniqueid: str | None = None,
        language: str = "en",
    ) -> FakeAsterisk:
        """Connect, send the env block (``env`` adds/overrides keys, None removes), start answering."""
        global _unique_counter
        _unique_counter += 1
        self.env = build_env(
            port,
            script,
            caller_id,
            caller_name=caller_name,
            uniqueid=uniqueid or f"1795750923.{_unique_counter}",
            channel=f"Local/start@ivr-inbound-{_unique_counter:08x};2",
            language=language,
            args=args,
            extra=env,
        )
        self.channel_vars = {
            "CALLERID(num)": caller_id,
            "CALLERID(name)": caller_name.decode("utf-8", "replace") if isinstance(caller_name, bytes) else caller_name,
            "CHANNEL(name)": dict(self.env).get("agi_channel", ""),
            "CHANNEL(linkedid)": dict(self.env).get("agi_uniqueid", ""),
            "CHANNEL(language)": language,
            "UNIQUEID": dict(self.env).get("agi_uniqueid", ""),
        }
        self._reader, self._writer = await asyncio.open_connection(host, port)
        self.connected_at = asyncio.get_running_loop().time()
        self._writer.write(encode_env(self.env))
        await self._writer.drain()
        self._task = asyncio.create_task(self._serve())
        return self

    # ------------------------------------------------------------------ test controls

    async def hangup(self) -> None:
        """The caller hangs up now; with no command in flight Asterisk sends ``HANGUP`` unsolicited."""
        self.dead = True
        self._hangup_line_pending = False
        await self._send("HANGUP")

    async def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    def _close_socket(self) -> None:
        self._we_closed = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()

    async def close(self) -> None:
        """Asterisk side closes the socket (crash/restart: real Asterisk never does this itself)."""
        self._close_socket()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._hangup_line_task is not None:
            self._hangup_line_task.cancel()

    async def abort(self) -> None:
        """Reset the connection (RST)."""
        if self._writer is not None:
            self._writer.transport.abort()
        await self.close()

    async def wait_closed(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """True once the server closed the socket (EOF/reset seen), False if not within ``timeout``."""
        try:
            await asyncio.wait_for(self._closed.wait(), timeout)
        except TimeoutError:
            return False
        return self.closed_by_server

    async def wait_for_command(
        self, pattern: str, timeout: float = 5.0, nth: int = 1  # noqa: ASYNC109
    ) -> FakeCommand:
        """Wait until the nth command matching ``pattern`` has arrived (and been answered)."""
        key = " ".join(pattern.split()).upper()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hits = [c for c in self.parsed if _matches(key, c)]
            if len(hits) >= nth:
                return hits[nth - 1]
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed.is_set():
                raise AssertionError(f"command {pattern!r} #{nth} not received; got {self.commands}")
            self._command_seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._command_seen.wait(), remaining)

    @property
    def open_duration(self) -> float | None:
        if self.closed_at is None or self.connected_at is None:
            return None
        return self.closed_at - self.connected_at

    # ------------------------------------------------------------------ engine

    async def _send(self, *lines: str) -> None:
        if self._writer is None or self._writer.is_closing():
            return
        self.sent.extend(lines)
        try:
            self._writer.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
            await self._writer.drain()
        except (ConnectionError, OSError):
            pass

    async def _flush_hangup_line(self) -> None:
        if self._hangup_line_pending:
            self._hangup_line_pending = False
            await self._send("HANGUP")

    def _schedule_hangup_line(self) -> None:
        """After ``result=-1`` the separate ``HANGUP`` line follows shortly, or before the next reply."""
        self.dead = True
        self._hangup_line_pending = True

        async def later() -> None:
            await asyncio.sleep(self.hangup_line_delay)
            await self._flush_hangup_line()

        self._hangup_line_task = asyncio.create_task(later())

    async def _serve(self) -> None:
        assert self._reader is not None
        try:
            while True:
                try:
                    data = await self._reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                line = data.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")
                await self._handle(line)
        except (ConnectionError, OSError, asyncio.LimitOverrunError):
            pass
        finally:
            if not self._we_closed:
                self.closed_by_server = True
            self.closed_at = asyncio.get_running_loop().time()
            self._closed.set()
            self._command_seen.set()
            if self._hangup_line_task is not None:
                self._hangup_line_task.cancel()
            if self._writer is not None and not self._we_closed:
                with contextlib.suppress(Exception):
                    self._writer.close()

    async def _handle(self, line: str) -> None:
        name, args, known = split_command(line)
        count = self._counts[name] = self._counts.get(name, 0) + 1
        cmd = FakeCommand(line=line, name=name, args=args, nth=count, index=len(self.commands), known=known)
        self.commands.append(line)
        self.parsed.append(cmd)
        self.arrived.append(asyncio.get_running_loop().time())
        try:
            await self._flush_hangup_line()  # "sometimes just before the next reply"
            reply = await self._decide(cmd)
            if reply is CLOSE:
                self._close_socket()
                return
            if reply is NO_REPLY or reply is None:
                return
            lines = reply if isinstance(reply, list) else str(reply).split("\n")
            await self._send(*lines)
        finally:
            self._command_seen.set()

    def _caller_hangs_up_here(self, cmd: FakeCommand) -> bool:
        for i, (key, nth) in enumerate(self._hangup_triggers):
            if _matches(key, cmd):
                hits = sum(1 for c in self.parsed if _matches(key, c))
                if hits == nth:
                    del self._hangup_triggers[i]
                    return True
        return False

    async def _hangup_during(self, cmd: FakeCommand) -> Any:
        """The caller hangs up while ``cmd`` runs: what Asterisk answers to it."""
        if self.dead:
            return self._dead_reply(cmd)
        if cmd.name in BLOCKING:
            self._schedule_hangup_line()
            return "200 result=-1 endpos=8160" if cmd.name == "STREAM FILE" else "200 result=-1"
        await self.hangup()  # a quick command: the HANGUP line comes first
        return None  # fall through to the dead-channel behaviour

    def _dead_reply(self, cmd: FakeCommand) -> Any:
        if not cmd.known:
            return R510
        return None if cmd.name in DEAD_OK else R511

    async def _decide(self, cmd: FakeCommand) -> Any:
        if not self.dead and self._caller_hangs_up_here(cmd):
            reply = await self._hangup_during(cmd)
            if reply is not None:
                return reply
        if self.dead:
            reply = self._dead_reply(cmd)
            if reply is not None:
                return reply
        rule = self._rule_for(cmd)
        if rule is not None:
            value = rule(cmd) if callable(rule) else rule
            if inspect.isawaitable(value):
                value = await value
            if value is HANGUP:
                reply = await self._hangup_during(cmd)
                return reply if reply is not None else self._emulate(cmd, dead=True)
            if value is TIMEOUT:
                return self._emulate(cmd, force_input=TIMEOUT)
            if value is not None:
                return value
        if not self.dead and cmd.name == "EXEC" and cmd.args[:1] and cmd.args[0].lower() == "audiosocket":
            return await self._audiosocket(cmd)
        if not self.dead and cmd.name in DIGIT_INPUT and self._takes_input(cmd):
            item = self.inputs.pop(0) if self.inputs else TIMEOUT
            if item is HANGUP:
                return await self._hangup_during(cmd)
            return self._emulate(cmd, force_input=item)
        return self._emulate(cmd)

    async def _audiosocket(self, cmd: FakeCommand) -> Any:
        """AudioSocket(uuid,host:port) as app_audiosocket.c runs it: the next input is what the
        caller does meanwhile (``Say``, keys, ``TIMEOUT``, ``HANGUP`` at once, ``REFUSE``)."""
        item = self.inputs.pop(0) if self.inputs else TIMEOUT
        if item is REFUSE:
            return "200 result=-1"
        if isinstance(item, Say):
            turn = CallerTurn(item.speech, item.keys, item.after_prompt, item.hang_up_after, max_seconds=30)
        elif item is HANGUP:
            turn = CallerTurn(hang_up_after=0.1)
        elif item is TIMEOUT:
            turn = CallerTurn(max_seconds=30)
        else:
            turn = CallerTurn(keys=str(item), max_seconds=30)
        leg = await audiosocket_leg(cmd.args[1] if len(cmd.args) > 1 else "", turn)
        self.legs.append(leg)
        if leg.reply.endswith("-1") and leg.connected:  # the caller hung up during the question
            self._schedule_hangup_line()
        return leg.reply

    def _rule_for(self, cmd: FakeCommand) -> Reply:
        best: tuple[int, Reply] | None = None
        for key, value in self.rules.items():
            if _matches(key, cmd) and (best is None or len(key) > best[0]):
                best = (len(key), value)
        return None if best is None else best[1]

    @staticmethod
    def _takes_input(cmd: FakeCommand) -> bool:
        if cmd.name in ("STREAM FILE", "CONTROL STREAM FILE", "GET OPTION"):
            return len(cmd.args) >= 2 and cmd.args[1] != ""
        return bool(cmd.args) or cmd.name == "GET DATA"

    def _file_missing(self, path: str) -> bool:
        if not self.check_files:
            return False
        p = Path(path)
        if not p.is_absolute():
            p = self.sounds_dir / p
        return not Path(f"{p}.wav").is_file()

    def _set(self, name: str, value: str) -> None:
        self.variables[name] = value
        self.set_history.append((name, value))

    def _lookup(self, name: str) -> str | None:
        if name in self.variables:
            return self.variables[name]
        return self.channel_vars.get(name)

    def _emulate(self, cmd: FakeCommand, *, force_input: Any = TIMEOUT, dead: bool = False) -> Any:
        """What a healthy Asterisk answers (or a dead channel, for the DEAD_OK commands)."""
        name, args = cmd.name, cmd.args
        if dead or self.dead:
            bad = self._dead_reply(cmd)
            if bad is not None:
                return bad
        if not cmd.known:
            return R510
        keys = "" if force_input is TIMEOUT else str(force_input)
        if name == "ANSWER":
            return "200 result=0"
        if name == "HANGUP":
            self._schedule_hangup_line()
            return "200 result=1"
        if name == "CHANNEL STATUS":
            return f"200 result={self.status}"
        if name == "GET VARIABLE":
            if len(args) != 1:
                return usage_520(name)
            value = self._lookup(args[0])
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if name == "GET FULL VARIABLE":
            if not args:
                return usage_520(name)
            expanded = re.sub(r"\$\{([^}]*)\}", lambda m: self._lookup(m.group(1)) or "", args[0])
            return f"200 result=1 ({expanded})"
        if name == "SET VARIABLE":
            if len(args) != 2:
                return usage_520(name)
            self._set(args[0], args[1])
            return "200 result=1"
        if name == "VERBOSE":
            return "200 result=1" if args else usage_520(name)
        if name == "EXEC":
            if not args:
                return usage_520(name)
            if args[0].lower() == "set" and len(args) > 1 and "=" in args[1]:
                var, _, value = args[1].partition("=")
                self._set(var, value)
            if args[0].lower() == "mset" and len(args) > 1:  # pbx_variables.c: name=value,name=value
                for pair in args[1].split(","):
                    var, _, value = pair.partition("=")
                    self._set(var, value)
            return "200 result=0"
        if name in ("STREAM FILE", "CONTROL STREAM FILE", "GET OPTION"):
            if len(args) < 2:
                return usage_520(name)
            self.played.append(args[0])
            if self._file_missing(args[0]):
                return "200 result=-1 endpos=0"
            escape = args[1]
            key = keys[:1]
            if key and key in escape:
                return f"200 result={ord(key)} endpos=10880"
            return "200 result=0 endpos=11234"
        if name == "GET DATA":
            if not args:
                return usage_520(name)
            self.played.append(args[0])
            if self._file_missing(args[0]):
                return "200 result=-1"
            max_digits = int(args[2]) if len(args) > 2 and args[2].isdigit() else 1024
            typed = ""
            for ch in keys:
                if ch == "#":
                    return f"200 result={typed}"
                typed += ch
                if len(typed) >= max_digits:
                    return f"200 result={typed}"
            return f"200 result={typed} (timeout)"
        if name == "WAIT FOR DIGIT":
            if not args:
                return usage_520(name)
            return f"200 result={ord(keys[0])}" if keys else "200 result=0"
        if name == "DATABASE GET":
            if len(args) != 2:
                return usage_520(name)
            value = self.database.get((args[0], args[1]))
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if name == "DATABASE PUT":
            if len(args) != 3:
                return usage_520(name)
            self.database[(args[0], args[1])] = args[2]
            return "200 result=1"
        if name == "RECORD FILE":
            return "200 result=0 (timeout) endpos=0"
        return "200 result=0"


def _matches(key: str, cmd: FakeCommand) -> bool:
    if key == "":
        return True
    norm = cmd.normalized.upper()
    return norm == key or norm.startswith(key + " ")
