"""FastAGI server on asyncio streams: env with a deadline, routing on the script, one task per call.

Whatever happens inside a call (handler exception, hang-up, timeout, cancel), the socket is closed
in ``finally``: Asterisk never closes a FastAGI socket itself, so the channel and its CDR would hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from crm_bridge.contract.dialplan import IvrResult, Var
from crm_bridge.contract.outcomes import Reason
from ivr.agi.admission import Admission, AdmissionLimits
from ivr.agi.channel import AgiChannel
from ivr.agi.env import AgiEnv, read_env
from ivr.agi.errors import AgiEnvError, AgiError, AgiHangup, AgiProtocolError
from ivr.agi.shutdown import CUT_GRACE

Handler = Callable[[AgiChannel], Awaitable[None]]

STREAM_LIMIT = 64 * 1024
_WRITER_CLOSE_WAIT = 1.0


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), _WRITER_CLOSE_WAIT)
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except Exception:
        writer.transport.abort()


class FastAgiServer:
    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        host: str,
        port: int,
        env_timeout: float,
        command_timeout: float,
        max_connections: int = 2000,
        logger: Any = None,
        hangup_grace: float = 5.0,
        on_command: Callable[[str, float], None] | None = None,
        admission: Admission | None = None,
        on_rejected: Callable[[AgiEnv, str], None] | None = None,
    ) -> None:
        """``hangup_grace``: after the caller hung up, a handler still running this long is cancelled.

        ``on_command(verb, seconds)``: handed to every call's AgiChannel (command latency metrics);
        a public attribute, so it may also be set after construction.
        ``admission``: decides at connect time whether the robot takes the call (ivr.agi.admission);
        without one only ``max_connections`` limits. ``on_rejected(env, cause)``: told about every
        call refused as overloaded, after the dialplan was told (its call record).
        """
        self._routes = dict(routes)
        self.on_command = on_command
        self._host = host
        self._port = port
        self._env_timeout = env_timeout
        self._command_timeout = command_timeout
        self._max_connections = max_connections
        self._hangup_grace = hangup_grace
        self.admission = admission or Admission(AdmissionLimits(max_calls=max_connections, max_loop_lag=0.0))
        self.on_rejected = on_rejected
        self._refused_since_log: dict[str, int] = {}
        self._refusal_logged_at = float("-inf")
        if logger is None:
            logger = structlog.get_logger("ivr.agi")
        elif not hasattr(logger, "bind"):  # a stdlib logging.Logger
            logger = structlog.wrap_logger(logger, wrapper_class=structlog.stdlib.BoundLogger)
        self._log = logger
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections = 0
        self._active_calls = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_calls(self) -> int:
        """Connections currently being served (env reading included)."""
        return self._connections

    async def start(self) -> None:
        if self._server is not None:
            return
        # A call burst arrives all at once; asyncio's default backlog of 100 makes the kernel drop
        # the rest of the SYNs and Asterisk's connects stall for a second (measured in bench/).
        backlog = max(128, min(self._max_connections, 4096))
        # reuse_port: every worker of `ivr serve --workers N` binds the same port and the kernel
        # spreads the connections (a socket without SO_REUSEPORT on the port still makes bind fail).
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._port, limit=STREAM_LIMIT, reuse_address=True, backlog=backlog,
            reuse_port=True,
        )
        self.admission.start()
        self._log.info("agi_server_started", host=self._host, port=self.port)

    async def stop(self, grace: float, *, on_cut: Callable[[], None] | None = None) -> None:
        """Stop accepting; let calls finish for up to ``grace`` seconds; then ``on_cut()`` tells the
        handlers to hand their callers over (ivr.agi.shutdown), and what still runs after
        ``CUT_GRACE`` is cancelled."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.admission.stop()
        tasks = {t for t in self._tasks if not t.done()}
        if tasks:
            self._log.info("agi_draining", calls=len(tasks), grace=grace)
            _, pending = await asyncio.wait(tasks, timeout=grace)
            if pending and on_cut is not None:
                self._log.info("agi_cutting_calls", calls=len(pending))
                on_cut()
                _, pending = await asyncio.wait(pending, timeout=CUT_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                self._log.warning("agi_calls_cancelled_at_stop", count=len(pending))
                await asyncio.wait(pending, timeout=_WRITER_CLOSE_WAIT * 3)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), _WRITER_CLOSE_WAIT)
        self._log.info("agi_server_stopped")

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        refused = self.admission.check(self._connections)
        self._connections += 1
        log = self._log.bind(peer=_peer_name(writer))
        channel: AgiChannel | None = None
        try:
            try:
                env = await read_env(reader, self._env_timeout)
            except AgiEnvError as exc:
                log.warning("agi_env_rejected", reason=str(exc))
                return
            log = log.bind(script=env.script, uniqueid=env.uniqueid)
            if env.undecoded:  # served all the same: the bytes, for whoever fixes the peer's charset
                log.info("agi_env_not_utf8", values={key: raw.hex(" ") for key, raw in env.undecoded.items()},
                         decoded={key: env.get(key) for key in env.undecoded})
            channel = AgiChannel(reader, writer, env, command_timeout=self._command_timeout, logger=log,
                                 on_command=self.on_command)
            if refused is not None:
                self._log_refusal(refused)
                await self._fail(channel, Reason.OVERLOADED, log)
                if self.on_rejected is not None:
                    self.on_rejected(env, refused)
                return
            handler = self._routes.get(env.script)
            if handler is None:
                log.warning("agi_unknown_script", routes=sorted(self._routes))
                await self._fail(channel, Reason.UNKNOWN_SCRIPT, log)
                return
            # debug: the handler's own call.started / call.ended lines say it at INFO (one line each per
            # call instead of two: at 150 calls/s the log is a measurable share of the CPU).
            log.debug("agi_call_started", caller_id=env.caller_id, channel=env.channel)
            await self._run_handler(handler, channel, log)
        except asyncio.CancelledError:
            log.info("agi_call_cancelled")
            raise
        except Exception:  # a bug here must never touch other calls
            log.exception("agi_connection_failed")
        finally:
            self._connections -= 1
            try:
                if channel is not None:
                    await channel.close()
                else:
                    await _close_writer(writer)
            finally:
                if task is not None:
                    self._tasks.discard(task)
            log.debug("agi_socket_closed")

    def _log_refusal(self, cause: str) -> None:
        """One warning line a second at most while calls are refused, with the counts by cause:
        under overload a line per refused call would spend the CPU the admitted calls need."""
        self._refused_since_log[cause] = self._refused_since_log.get(cause, 0) + 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= 1.0:
            self._log.warning("agi_overloaded", refused=dict(self._refused_since_log),
                              active_calls=self._connections - 1)
            self._refused_since_log.clear()
            self._refusal_logged_at = now

    async def _run_handler(self, handler: Handler, channel: AgiChannel, log: Any) -> None:
        handler_task = asyncio.ensure_future(self._invoke(handler, channel))
        watchdog = asyncio.create_task(self._hangup_watchdog(channel, handler_task, log))
        try:
            await handler_task
            log.debug("agi_call_finished", hung_up=channel.hung_up)
        except AgiHangup as exc:
            log.info("agi_call_hung_up", detail=str(exc))
        except asyncio.CancelledError:
            if watchdog.done() and not watchdog.cancelled() and channel.hung_up:
                current = asyncio.current_task()
                if current is None or not current.cancelling():
                    log.info("agi_handler_cancelled_after_hangup", grace=self._hangup_grace)
                    return
            raise
        except AgiProtocolError:  # the channel logged it (one line); the wire is back in step for this
            await self._fail(channel, Reason.PROTOCOL_ERROR, log)
        except AgiError as exc:
            log.warning("agi_handler_failed", error=repr(exc))
            await self._fail(channel, Reason.AGI_ERROR, log)
        except Exception:
            log.exception("agi_handler_crashed")
            await self._fail(channel, Reason.HANDLER_ERROR, log)
        finally:
            watchdog.cancel()
            if not handler_task.done():
                handler_task.cancel()
                await asyncio.wait({handler_task}, timeout=_WRITER_CLOSE_WAIT)

    @staticmethod
    async def _invoke(handler: Handler, channel: AgiChannel) -> None:
        result = handler(channel)  # a plain function is tolerated, not only a coroutine function
        if inspect.isawaitable(result):
            await result

    async def _hangup_watchdog(self, channel: AgiChannel, handler_task: asyncio.Future[Any], log: Any) -> None:
        await channel.hangup_event.wait()
        await asyncio.sleep(self._hangup_grace)
        if not handler_task.done():
            log.warning("agi_handler_outlived_hangup", grace=self._hangup_grace)
            handler_task.cancel()

    async def _fail(self, channel: AgiChannel, reason: str, log: Any) -> None:
        """Best effort: tell the dialplan to send the caller to an operator."""
        if channel.connection_lost:
            return
        try:
            await channel.set_variables({Var.RESULT: IvrResult.OPERATOR, Var.REASON: reason})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("agi_fail_vars_not_set", reason=reason, error=repr(exc))
