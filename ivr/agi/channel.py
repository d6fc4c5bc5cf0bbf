"""One FastAGI session: quoting, sending commands, reading replies, hang-up detection.

A background reader task turns every line from Asterisk into a reply (for the command in flight)
or a hang-up notice (``HANGUP`` line, EOF, reset) so a hang-up is noticed at once, even while the
handler is busy elsewhere. Replies are matched to commands strictly in order; a command that timed
out or was cancelled stays in line so its late reply is dropped instead of being handed to the next.

Strict replies: each reply must have the shape Asterisk gives the command that asked for it
(``ivr.agi.wire.expect_reply``, from res_agi.c). A line that cannot be that reply (a second or
unsolicited reply, a garbage line, ``(linkedid)`` where GET DATA's keys belong) means the wire is
out of step and nothing on it may be taken as the caller's input: one ``agi_protocol_error`` log
line, the waiting command (or else the next one) raises ``AgiProtocolError``, and the command after
that first brings the wire back in step (an echoed marker, every line before it dropped) so the
hand-over to an operator still reaches the dialplan.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
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
from ivr.agi.wire import AgiReply, command_verb, expect_reply, parse_reply

MAX_USAGE_LINES = 500
RESYNC_TIMEOUT = 1.0  # Asterisk echoes a marker in a loopback round trip; longer means it is gone
_CLOSE_WAIT = 1.0

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
class GetDataResult:
    digits: str
    timed_out: bool


@dataclass
class _Outstanding:
    """A command written to Asterisk whose reply has not been read yet (replies come in order)."""

    verb: str  # "GET DATA": which reply shape is expected
    args: tuple[str, ...]
    shown: str  # the command line, for logs
    reply: asyncio.Future[AgiReply]  # cancelled when the command timed out: its late reply is dropped


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
        self._outstanding: deque[_Outstanding] = deque()
        # The wire went out of step (see "Strict replies" in the module docs): the error, whether a
        # command has raised it yet, and the marker reply that brings the wire back in step.
        self._fault: AgiProtocolError | None = None
        self._fault_raised = False
        self._resync: tuple[str, asyncio.Future[None]] | None = None
        self._resyncs = 0
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
        self._fail_outstanding(AgiConnectionLost(f"FastAGI connection lost ({why})"))

    def _fail_outstanding(self, exc: AgiError) -> bool:
        """Fail every command still waiting; True if one of them was told."""
        told = False
        while self._outstanding:
            reply = self._outstanding.popleft().reply
            if not reply.done():
                reply.set_exception(exc)
                told = True
        if self._resync is not None and not self._resync[1].done():
            self._resync[1].set_exception(exc)
        return told

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
                    usage = await self._read_usage(line)
                    if usage is not None:
                        self._take(usage)
                    continue
                self._take(line)
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
                self._fail_outstanding(AgiConnectionLost("FastAGI connection closed"))
            else:
                self._mark_lost(why)

    def _take(self, line: str | AgiReply) -> None:
        """Give one reply to the oldest outstanding command, if it can be that command's reply."""
        raw = line.raw if isinstance(line, AgiReply) else line
        if self._fault is not None:
            # Out of step: every line up to our marker's reply is fallout of the error already logged.
            if self._resync is not None and raw == self._resync[0] and not self._resync[1].done():
                self._resync[1].set_result(None)
            else:
                self.log.debug("agi_out_of_step_line_dropped", line=raw[:200])
            return
        if not self._outstanding:
            try:
                parse_reply(raw)
                what = "a reply"
            except AgiProtocolError:
                what = "an unparseable line"
            self._out_of_step(f"{what} while no command was waiting", raw, None)
            return
        waiting = self._outstanding.popleft()
        try:
            reply = line if isinstance(line, AgiReply) else expect_reply(waiting.verb, waiting.args, line)
        except AgiProtocolError as exc:
            self._out_of_step(str(exc), raw, waiting)
            return
        if waiting.reply.done():  # its command timed out or was cancelled
            self.log.debug("agi_late_reply_dropped", command=waiting.shown, reply=raw[:200])
        else:
            waiting.reply.set_result(reply)

    def _out_of_step(self, why: str, line: str, waiting: _Outstanding | None) -> None:
        """A line that is no reply to what we asked: one log line, and the wire is not trusted (no
        line is ever taken as the caller's input) until ``_get_in_step`` has drained it."""
        command = waiting.shown if waiting is not None else None
        self._fault = AgiProtocolError(f"out of step with Asterisk: {why} (line {line[:200]!r}, command {command!r})")
        self.log.warning("agi_protocol_error", why=why, line=line[:200], command=command)
        if waiting is not None:
            self._outstanding.appendleft(waiting)
        self._fault_raised = self._fail_outstanding(self._fault)

    async def _read_usage(self, first: str) -> AgiReply | None:
        """The multi-line ``520`` usage reply as one reply; None at EOF or when it never ends."""
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
                if self._fault is None:
                    waiting = self._outstanding.popleft() if self._outstanding else None
                    self._out_of_step("a 520 usage block that never ended", first, waiting)
                return None

    # ------------------------------------------------------------------ commands

    async def _get_in_step(self, deadline: float) -> None:
        """After a protocol error, before the next command: ask Asterisk to echo a marker
        (``GET FULL VARIABLE`` returns its argument, on a dead channel too) and drop every line
        until the marker's reply. Then each later reply is again the answer to its own command."""
        self._resyncs += 1
        marker = f"ivr-resync-{self._resyncs}"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._resync = (f"200 result=1 ({marker})", done)
        try:
            self._writer.write(build_command("GET FULL VARIABLE", marker).encode("utf-8"))
            async with asyncio.timeout(min(deadline, RESYNC_TIMEOUT)):
                await self._writer.drain()
                await done
        except TimeoutError:
            raise AgiProtocolError(f"still out of step with Asterisk after {RESYNC_TIMEOUT:g}s") from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._mark_lost(f"write failed: {exc!r}")
            raise AgiConnectionLost(f"write failed: {exc!r}") from None
        finally:
            self._resync = None
        self._fault = None
        self.log.info("agi_back_in_step")

    async def execute(self, command: str, *args: str, timeout: float | None = None) -> AgiReply:  # noqa: ASYNC109
        """Send one command and return its ``200`` reply; see module docs for error mapping."""
        line = build_command(command, *args)
        deadline = self.command_timeout if timeout is None else timeout
        shown = line.rstrip("\n")
        async with self._lock:
            if self.connection_lost or self._closed:
                raise AgiConnectionLost(f"FastAGI connection lost; not sending {shown!r}")
            if self._fault is not None:
                if not self._fault_raised:  # the stray line came while no command was waiting
                    self._fault_raised = True
                    raise self._fault
                await self._get_in_step(deadline)
            observer = self.on_command
            started = time.perf_counter() if observer is not None else 0.0
            waiting = _Outstanding(command_verb(line), args, shown, asyncio.get_running_loop().create_future())
            try:
                self._writer.write(line.encode("utf-8"))
            except (ConnectionError, OSError, RuntimeError) as exc:
                self._mark_lost(f"write failed: {exc!r}")
                raise AgiConnectionLost(f"write failed: {exc!r}") from None
            self._outstanding.append(waiting)
            self.log.debug("agi_command", command=shown)
            try:
                async with asyncio.timeout(deadline):
                    await self._writer.drain()
                    reply = await waiting.reply
            except TimeoutError:
                self.log.warning("agi_command_timeout", command=shown, timeout=deadline)
                raise AgiTimeout(shown, deadline) from None
            except (ConnectionError, OSError) as exc:
                self._mark_lost(f"write failed: {exc!r}")
                raise AgiConnectionLost(f"connection lost during {shown!r}: {exc!r}") from None
            finally:
                waiting.reply.cancel()  # no-op once answered; otherwise its late reply is dropped
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
