"""One FastAGI session: quoting, sending commands, reading replies, hang-up detection.

A background reader task turns every line from Asterisk into a reply (queued for the command in
flight) or a hang-up notice (``HANGUP`` line, EOF, reset) so a hang-up is noticed at once, even
while the handler is busy elsewhere. Replies are matched to commands strictly in order; a command
that timed out or was cancelled leaves a "stale" count so its late reply is dropped instead of being
handed to the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ivr.agi.env import AgiEnv
from ivr.agi.errors import (
    AgiCommandError,
    AgiConnectionLost,
    AgiError,
    AgiHangup,
    AgiPlaybackFailed,
    AgiProtocolError,
    AgiTimeout,
)

MAX_USAGE_LINES = 500
_CLOSE_WAIT = 1.0

_REPLY_RE = re.compile(r"(?P<code>\d{3}) result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?: endpos=(?P<endpos>-?\d+))?")
_LOOSE_200_RE = re.compile(r"200 result=(?P<result>\S*)(?: (?P<data>.*))?")
_STATUS_RE = re.compile(r"(?P<code>\d{3})(?:[ -](?P<text>.*))?")
_COMMAND_RE = re.compile(r"[A-Za-z][A-Za-z0-9 _-]*")
_FORBIDDEN_IN_ARG = ("\n", "\r", "\x00")
# What MSet can carry untouched (see AgiChannel.set_variables).
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_VALUE_RE = re.compile(r"[\w.:@+\-]*")


def quote_arg(arg: str) -> str:
    """Quote one argument the way Asterisk's AGI parser unquotes it.

    Always double-quoted (so ``""`` is an empty argument and a space never shifts arguments);
    ``"`` and ``\\`` are backslash-escaped. A newline would start a second command: rejected.
    """
    if not isinstance(arg, str):
        raise TypeError(f"AGI argument must be str, got {type(arg).__name__}")
    if any(ch in arg for ch in _FORBIDDEN_IN_ARG):
        raise ValueError(f"newline/NUL in AGI argument would inject a command: {arg!r}")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_command(command: str, *args: str) -> str:
    """``COMMAND "arg1" "arg2"\\n`` — command words unquoted, arguments via quote_arg."""
    words = re.sub(" +", " ", command.strip(" "))
    if not _COMMAND_RE.fullmatch(words):
        raise ValueError(f"invalid AGI command word(s): {command!r}")
    return " ".join([words, *(quote_arg(a) for a in args)]) + "\n"


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: str
    data: str | None
    endpos: int | None
    raw: str

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


def parse_reply(line: str) -> AgiReply:
    """Parse one single-line reply (``200 result=1 (value) endpos=0``, ``510 ...``, ``511 ...``)."""
    m = _REPLY_RE.fullmatch(line)
    if m:
        endpos = m.group("endpos")
        return AgiReply(
            code=int(m.group("code")),
            result=m.group("result"),
            data=m.group("data"),
            endpos=int(endpos) if endpos is not None else None,
            raw=line,
        )
    m = _LOOSE_200_RE.fullmatch(line)
    if m:  # an unusual 200 shape: keep the tail as data rather than failing the command
        return AgiReply(code=200, result=m.group("result"), data=m.group("data"), endpos=None, raw=line)
    m = _STATUS_RE.fullmatch(line)
    if m and m.group("code") != "200":
        return AgiReply(code=int(m.group("code")), result="", data=m.group("text") or "", endpos=None, raw=line)
    raise AgiProtocolError(f"unparseable AGI line: {line[:200]!r}")


@dataclass(frozen=True)
class GetDataResult:
    digits: str
    timed_out: bool


class _Eof:
    pass


_EOF = _Eof()


class AgiChannel:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: AgiEnv,
        *,
        command_timeout: float,
        logger: Any = None,
        on_command: Callable[[str, float], None] | None = None,
    ) -> None:
        """``on_command(verb, seconds)``: called after every answered command with its verb
        (``"STREAM FILE"``) and round-trip time (write to reply); None costs nothing."""
        self.env = env
        self.on_command = on_command
        self.command_timeout = command_timeout
        self.log = logger if logger is not None else structlog.get_logger("ivr.agi")
        self.hangup_event = asyncio.Event()
        self.hung_up = False
        self.connection_lost = False
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._replies: asyncio.Queue[AgiReply | AgiError | _Eof] = asyncio.Queue()
        self._stale = 0
        self._closed = False
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"agi-reader-{env.uniqueid}")

    # ------------------------------------------------------------------ reading

    def _mark_hangup(self, why: str) -> None:
        if not self.hung_up:
            self.hung_up = True
            self.log.info("agi_hangup_detected", why=why)
        self.hangup_event.set()

    def _mark_lost(self, why: str) -> None:
        if not self.connection_lost:
            self.connection_lost = True
            self._mark_hangup(why)
            self._replies.put_nowait(_EOF)

    async def _readline(self) -> str | None:
        """One line without terminator; None at EOF (a partial last line is dropped)."""
        try:
            data = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            # no sane reply is this long: the stream cannot be trusted any more
            self.log.warning("agi_overlong_line")
            return None
        text = data[:-1].decode("utf-8", errors="replace")
        return text[:-1] if text.endswith("\r") else text

    async def _read_loop(self) -> None:
        why = "eof"
        try:
            while True:
                line = await self._readline()
                if line is None:
                    break
                if not line:
                    continue
                if line == "HANGUP":
                    self._mark_hangup("HANGUP line")
                    continue
                if line.startswith("520-"):
                    item = await self._read_usage(line)
                    if item is None:
                        break
                    self._replies.put_nowait(item)
                    continue
                try:
                    self._replies.put_nowait(parse_reply(line))
                except AgiProtocolError as exc:
                    self.log.warning("agi_unparseable_line", line=line[:200])
                    self._replies.put_nowait(exc)
        except asyncio.CancelledError:
            why = "closed"
            raise
        except (ConnectionError, OSError) as exc:
            why = f"socket error: {exc!r}"
        except Exception as exc:  # never let the reader die silently
            why = f"reader crashed: {exc!r}"
            self.log.exception("agi_reader_crashed")
        finally:
            if self._closed:
                # We closed the socket ourselves: that is the end of the session, not the caller
                # hanging up (the server's hang-up watchdog must not cancel the handler's bookkeeping).
                self.connection_lost = True
                self._replies.put_nowait(_EOF)
            else:
                self._mark_lost(why)

    async def _read_usage(self, first: str) -> AgiReply | AgiError | None:
        lines = [first]
        while True:
            line = await self._readline()
            if line is None:
                return None
            if line == "HANGUP":  # a usage text line is never exactly this
                self._mark_hangup("HANGUP line")
                continue
            lines.append(line)
            if line.startswith("520 "):
                return AgiReply(
                    code=520, result="", data="\n".join(lines[1:-1]), endpos=None, raw="\n".join(lines)
                )
            if len(lines) > MAX_USAGE_LINES:
                return AgiProtocolError("520 usage block never ended")

    # ------------------------------------------------------------------ commands

    async def _next_reply(self) -> AgiReply:
        while True:
            item = await self._replies.get()
            if isinstance(item, _Eof):
                self._replies.put_nowait(item)  # every later command sees it too
                raise AgiConnectionLost("FastAGI connection lost")
            if self._stale:
                self._stale -= 1
                self.log.debug("agi_stale_reply_dropped", reply=getattr(item, "raw", repr(item)))
                continue
            if isinstance(item, AgiError):
                raise item
            return item

    async def execute(self, command: str, *args: str, timeout: float | None = None) -> AgiReply:  # noqa: ASYNC109
        """Send one command and return its ``200`` reply; see module docs for error mapping."""
        line = build_command(command, *args)
        deadline = self.command_timeout if timeout is None else timeout
        shown = line.rstrip("\n")
        async with self._lock:
            if self.connection_lost or self._closed:
                raise AgiConnectionLost(f"FastAGI connection lost; not sending {shown!r}")
            answered = False
            observer = self.on_command
            started = time.perf_counter() if observer is not None else 0.0
            try:
                self._writer.write(line.encode("utf-8"))
            except (ConnectionError, OSError, RuntimeError) as exc:
                self._mark_lost(f"write failed: {exc!r}")
                raise AgiConnectionLost(f"write failed: {exc!r}") from None
            self.log.debug("agi_command", command=shown)
            try:
                async with asyncio.timeout(deadline):
                    await self._writer.drain()
                    reply = await self._next_reply()
                answered = True
            except TimeoutError:
                self.log.warning("agi_command_timeout", command=shown, timeout=deadline)
                raise AgiTimeout(shown, deadline) from None
            except (ConnectionError, OSError) as exc:
                self._mark_lost(f"write failed: {exc!r}")
                raise AgiConnectionLost(f"connection lost during {shown!r}: {exc!r}") from None
            finally:
                if not answered:
                    self._stale += 1
        if observer is not None:
            self._observe(observer, command, time.perf_counter() - started)
        self.log.debug("agi_reply", command=shown, reply=reply.raw)
        if reply.code == 200:
            return reply
        if reply.code == 511:
            self._mark_hangup("511 dead channel")
            raise AgiHangup(f"{shown}: {reply.raw}")
        if reply.code == 520:
            raise AgiCommandError(520, "Invalid command syntax", command=shown, usage=reply.data or "")
        raise AgiCommandError(reply.code, reply.data or reply.raw, command=shown)

    def _observe(self, observer: Callable[[str, float], None], command: str, seconds: float) -> None:
        try:
            observer(" ".join(command.split()).upper(), seconds)
        except Exception:  # metrics must never break a call
            self.log.exception("agi_observer_failed")

    # ------------------------------------------------------------------ helpers

    async def answer(self) -> None:
        reply = await self.execute("ANSWER")
        if reply.result_int == -1:
            self._mark_hangup("ANSWER failed")
            raise AgiHangup("ANSWER returned -1")

    async def get_variable(self, name: str) -> str | None:
        reply = await self.execute("GET VARIABLE", name)
        return None if reply.result_int != 1 else (reply.data or "")

    async def get_full_variable(self, expr: str) -> str | None:
        reply = await self.execute("GET FULL VARIABLE", expr)
        return None if reply.result_int != 1 else (reply.data or "")

    async def set_variable(self, name: str, value: str) -> None:
        await self.execute("SET VARIABLE", name, value)

    async def set_variables(self, values: Mapping[str, str]) -> None:
        """Several channel variables, in order, in one round trip where that is safe.

        Asterisk's ``MSet`` application (pbx_variables.c; documented from 13.8 to 23) sets
        ``a=1,b=2`` in one ``EXEC``: one command instead of one per variable (each FastAGI round trip
        costs both sides a loopback write, measured ~0.3 ms of server CPU here). ``MSet`` splits on
        commas and ``=``, strips quotes and takes backslash escapes (its documentation says to avoid
        it for that), so it is used only for plain values (letters, digits, ``.:@+-_``), where none of
        that can happen, and only on a live channel: after a hang-up the trace proves ``SET VARIABLE``
        still works, so the dialplan's ``h`` handling and the AMI ``VarSet`` events keep every
        value. Anything else, or an Asterisk without ``MSet`` (``result=-2``), goes one by one.
        """
        items = list(values.items())
        if len(items) > 1 and not self.hung_up and all(
            _VAR_NAME_RE.fullmatch(name) and _PLAIN_VALUE_RE.fullmatch(value) for name, value in items
        ):
            reply = await self.execute("EXEC", "MSet", ",".join(f"{name}={value}" for name, value in items))
            if reply.result_int == 0:
                return
            self.log.warning("agi_mset_failed", reply=reply.raw)
        for name, value in items:
            await self.set_variable(name, value)

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.execute("VERBOSE", message, str(level))

    async def hangup(self) -> None:
        """Hang up the channel; a channel that is already gone is not an error."""
        with contextlib.suppress(AgiHangup):
            await self.execute("HANGUP")

    async def channel_status(self) -> int:
        reply = await self.execute("CHANNEL STATUS")
        value = reply.result_int
        if value is None:
            raise AgiProtocolError(f"bad CHANNEL STATUS reply: {reply.raw!r}")
        return value

    async def _resolve_failure(self, path: str) -> None:
        """``result=-1``: hung up or missing file. A dead channel answers CHANNEL STATUS with 511."""
        await self.channel_status()  # raises AgiHangup on 511
        if self.hung_up:
            raise AgiHangup(f"channel hung up during playback of {path}")
        raise AgiPlaybackFailed(path)

    async def stream_file(self, path: str, escape_digits: str = "", *, timeout: float) -> str | None:  # noqa: ASYNC109
        """Play ``path`` (no extension); the pressed escape digit, or None when playback finished."""
        reply = await self.execute("STREAM FILE", path, escape_digits, timeout=timeout)
        value = reply.result_int
        if value is None:
            raise AgiProtocolError(f"bad STREAM FILE reply: {reply.raw!r}")
        if value < 0:
            await self._resolve_failure(path)
        return chr(value) if value > 0 else None

    async def get_data(
        self, path: str, timeout_ms: int, max_digits: int, *, timeout: float  # noqa: ASYNC109
    ) -> GetDataResult:
        """Play ``path`` and collect up to ``max_digits`` digits (``#`` ends input, not included)."""
        reply = await self.execute(
            "GET DATA", path, str(int(timeout_ms)), str(int(max_digits)), timeout=timeout
        )
        if reply.result == "-1":
            await self._resolve_failure(path)
        if not re.fullmatch(r"[0-9*#A-Da-d]*", reply.result):
            raise AgiProtocolError(f"bad GET DATA reply: {reply.raw!r}")
        return GetDataResult(digits=reply.result, timed_out=reply.data == "timeout")

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Close the socket now (Asterisk never does) and stop the reader. Idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._writer.close()
        self._reader_task.cancel()
        try:
            await asyncio.wait({self._reader_task}, timeout=_CLOSE_WAIT)
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_WAIT)
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception:  # reset, or peer not reading: drop buffered bytes
            self._abort()

    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.transport.abort()
