"""The calls' side of the speech process (ivr/audiosocket/worker.py): the same questions, asked across.

:class:`SpeechProcess` offers what :class:`ivr.audiosocket.server.AudioSocketServer` offers the calls
(``expect``, ``was_connected``, ``forget``, the models' state), while the listener and the
recognizers run in a child process (why: worker.py). A :class:`Pending` here is settled by the
child's messages.

If the child dies (killed, out of memory, a crash in native code), every question waiting on it is
settled ``failed`` (the call asks it again by GET DATA), the models count as unavailable (new calls
stay on keys), one error line is logged, and a new child is started on the same port, after a
pause that doubles up to :data:`RESTART_MAX` while it keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from ivr.audiosocket import ipc
from ivr.audiosocket.server import Outcome, Pending, Question
from ivr.speech.recognizer import initial_states

if TYPE_CHECKING:
    from ivr.settings import SpeechSettings

log = structlog.get_logger("ivr.speech")

READY_DEADLINE = 30.0  # the child imports vosk and binds its port; it does not load models first
# A was_connected answer comes from the child's event loop; if it is this late the child is stuck.
ANSWER_DEADLINE = 2.0
RESTART_MIN, RESTART_MAX = 1.0, 30.0
# A child that lived this long before dying is restarted after RESTART_MIN again, not the doubled pause.
HEALTHY_SECONDS = 60.0
STOP_DEADLINE = 5.0


class SpeechProcessUnavailable(RuntimeError):
    """The speech process could not be started (the port is taken, the child did not get ready)."""


class SpeechProcess:
    def __init__(self, settings: SpeechSettings, *, log_level: str = "INFO", log_json: bool = False,
                 restart_min: float = RESTART_MIN) -> None:
        self._settings = settings
        self._restart_min = restart_min
        self._pause = restart_min
        self._started_at = 0.0
        self._log = (log_level, log_json)
        self._port = settings.audiosocket_port
        self._pending: dict[uuid.UUID, Pending] = {}
        self._answers: dict[uuid.UUID, asyncio.Future[None]] = {}
        self._models = initial_states(settings)
        self._models_reported = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._closing = False
        self.restarts = 0

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        """Start the child and wait until it listens (raises :class:`SpeechProcessUnavailable`)."""
        parent_end, child_end = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ivr.audiosocket.worker", "--fd", str(child_end.fileno()),
                pass_fds=(child_end.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        writer.write(ipc.encode("start", self._settings, *self._log, self._port))
        try:
            kind, port = await asyncio.wait_for(ipc.read(reader), READY_DEADLINE)
        except (ipc.ChannelClosed, TimeoutError) as exc:
            writer.close()
            await self._kill()
            raise SpeechProcessUnavailable(f"the speech process did not start: {exc or 'no answer'}") from None
        assert kind == "ready", kind
        self._port, self._writer = port, writer
        self._started_at = asyncio.get_running_loop().time()
        self._reader_task = asyncio.create_task(self._read(reader), name="speech-process")
        log.info("speech.process_started", pid=self._proc.pid, port=port)

    async def close(self) -> None:
        self._closing = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        self._send("stop")
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), STOP_DEADLINE)
            except TimeoutError:
                await self._kill()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
        self._fail_all()

    # ---------------------------------------------------------------- what the calls use (as AudioSocketServer)

    def expect(self, call_uuid: uuid.UUID, question: Question, language: str) -> Pending:
        if call_uuid in self._pending:
            raise ValueError(f"AudioSocket UUID {call_uuid} is already waiting")
        pending = Pending(call_uuid, question, language)
        if self._writer is None:  # between a death and its restart: Asterisk would find nobody
            pending.settle(Outcome("failed"))
            return pending
        self._pending[call_uuid] = pending
        pending.outcome.add_done_callback(lambda _: self._pending.pop(call_uuid, None))
        self._send("expect", call_uuid, question, language)
        return pending

    async def was_connected(self, pending: Pending) -> bool:
        """Asked across: the child forgets the question if Asterisk never connected for it, then
        answers; messages are in order, so a ``connected`` it sent before has been read here by then."""
        if pending.connected:
            return True
        if self._writer is None:
            pending.settle(Outcome("failed"))
            return False
        answer = self._answers[pending.call_uuid] = asyncio.get_running_loop().create_future()
        self._send("check", pending.call_uuid)
        try:
            await asyncio.wait_for(answer, ANSWER_DEADLINE)
        except TimeoutError:
            log.error("speech.process_not_answering", seconds=ANSWER_DEADLINE)
        finally:
            self._answers.pop(pending.call_uuid, None)
        if not pending.connected:
            pending.settle(Outcome("failed"))
        return pending.connected

    def forget(self, call_uuid: uuid.UUID) -> None:
        pending = self._pending.pop(call_uuid, None)
        if pending is not None:
            pending.settle(Outcome("failed"))
            self._send("forget", call_uuid)

    def available(self, language: str) -> bool | None:
        state = self._models.get(language, "not configured")
        if state in ("not loaded", "loading"):
            return None
        return state == "loaded" and self._writer is not None

    def models_health(self) -> dict[str, str]:
        return dict(self._models) if self._writer is not None else {k: "speech process down" for k in self._models}

    def process_health(self) -> dict[str, object]:
        """For /healthz: the child's pid, whether it is up, how often it was restarted."""
        up = self._writer is not None
        return {"mode": "own", "up": up, "pid": self._proc.pid if up and self._proc else None,
                "restarts": self.restarts}

    async def load_models(self) -> None:
        """Until the child reported its models' state (it loads them on its own at start)."""
        await self._models_reported.wait()

    # ---------------------------------------------------------------- the channel

    def _send(self, *message: Any) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(ipc.encode(*message))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                self._handle(await ipc.read(reader))
        except ipc.ChannelClosed:
            pass
        self._writer = None
        self._fail_all()
        if self._closing:
            return
        code = await self._proc.wait() if self._proc is not None else None
        if asyncio.get_running_loop().time() - self._started_at >= HEALTHY_SECONDS:
            self._pause = self._restart_min
        log.error("speech.process_died: callers answer with keys until it is back", exit_code=code,
                  restart_in=self._pause)
        self._restart_task = asyncio.create_task(self._restart(), name="speech-process-restart")

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "connected":
            pending = self._pending.get(message[1])
            if pending is not None:
                pending.connected = True
        elif kind == "outcome":
            pending = self._pending.get(message[1])
            if pending is not None:
                pending.settle(message[2])
        elif kind == "checked":
            answer = self._answers.get(message[1])
            if answer is not None and not answer.done():
                answer.set_result(None)
        elif kind == "models":
            self._models.update(message[1])
            self._models_reported.set()
        else:
            log.error("speech.process_message_unknown", kind=kind)

    def _fail_all(self) -> None:
        for pending in list(self._pending.values()):
            pending.settle(Outcome("failed"))
        self._pending.clear()
        for answer in self._answers.values():
            if not answer.done():
                answer.set_result(None)

    async def _restart(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._pause)
            self._pause = min(self._pause * 2, RESTART_MAX)  # a child that dies again soon waits longer
            self._models = initial_states(self._settings)
            self._models_reported.clear()
            try:
                await self.start()
            except (SpeechProcessUnavailable, OSError) as exc:
                log.error("speech.process_restart_failed", error=str(exc), retry_in=self._pause)
                continue
            self.restarts += 1
            return

    async def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
