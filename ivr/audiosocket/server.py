"""The AudioSocket listener: one question of a call, asked and answered over Asterisk's AudioSocket().

How a question goes (the AGI side is ivr/calls/voice.py): the call picks a
UUID, registers what it asks with :meth:`AudioSocketServer.expect`, then runs
``EXEC AudioSocket <uuid>,<host>:<port>``. Asterisk connects here and sends the UUID first; the
exchange plays the prompt as 20 ms frames paced in real time, streams what the caller says to a
grammar recognizer and collects DTMF frames. Speech in the grammar (a partial result) or a key stops
the prompt (barge-in). When the answer is final (a recognized answer, keys up to ``max_digits`` or
``#``, the time limit, or words that cannot be understood) we send the hang-up message: Asterisk
ends AudioSocket() and the dialplan / AGI continues; :attr:`Pending.outcome` holds the answer.

Bad peers cost one log line and their connection: bytes that are not AudioSocket
(:class:`ivr.audiosocket.protocol.ProtocolError`), a UUID nobody waits for, a peer that never sends
its UUID. A peer that sends no audio times out like a silent caller; a monologue ends at
``Question.max_seconds``; a caller who hangs up mid-word ends the exchange with ``hangup``. The
recognizer of an exchange is closed whatever way it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import structlog

from ivr.audiosocket.protocol import (
    FRAME_BYTES,
    HANGUP_MESSAGE,
    Kind,
    ProtocolError,
    audio_message,
    read_message,
)
from ivr.speech.answers import QuestionWords
from ivr.speech.recognizer import Final, GrammarRecognizer, Partial, SpeechModels, heard_speech

log = structlog.get_logger("ivr.audiosocket")

FRAME_SECONDS = 0.02
# Asterisk sends its UUID at once (1 ms after connecting in the capture); a peer that does not is no
# Asterisk and does not get to hold a connection.
UUID_DEADLINE = 5.0
# After our hang-up message Asterisk closes its side within a millisecond (capture); we do not
# wait longer than this for it.
CLOSE_DEADLINE = 2.0
# With our own end of speech, quiet frames before the caller makes a sound are not decoded (a caller
# listening to a prompt is silence, seconds of it per question): the last PREROLL_SECONDS of them go
# to the recognizer with the first loud frame, the lead-in its features and the word's onset need.
PREROLL_SECONDS = 0.3

Status = Literal["answered", "no_input", "not_understood", "hangup", "failed"]


@dataclass(frozen=True)
class Question:
    """What one AudioSocket exchange asks: the prompt, the keys it takes, the words it understands."""

    prompt: bytes  # slin16 8 kHz mono, played as it is
    max_digits: int  # keys end at this many, or at "#"
    timeout: float  # seconds for an answer after the prompt (and after the last key)
    words: QuestionWords | None  # None: keys only
    max_seconds: float = 60.0  # the whole exchange at most: a monologue or a stuck peer ends here
    min_confidence: float = 0.6
    # Our own end of speech (0 = vosk's alone): this many seconds of quiet frames (RMS under
    # ``silence_level``) after loud ones end the utterance (see :meth:`_Exchange._read`).
    endpoint_silence: float = 0.0
    silence_level: int = 300


@dataclass(frozen=True)
class Outcome:
    status: Status
    digits: str = ""  # keys pressed, or the keys a spoken answer stands for ("" + answered = keep)
    spoken: bool = False  # the answer came by voice
    text: str = ""  # the words heard, for the timeline
    prompt_stopped: bool = False  # the caller spoke or pressed a key over the prompt (barge-in)


@dataclass
class Pending:
    """A question registered for a UUID: Asterisk has not connected yet, or the exchange runs."""

    call_uuid: uuid.UUID
    question: Question
    language: str
    outcome: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # Asterisk connected with this UUID: from here on the outcome comes from the exchange, whatever
    # AudioSocket() returns over AGI (a hang-up's EOF may reach us after the AGI reply).
    connected: bool = False

    def settle(self, outcome: Outcome) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)


class AudioSocketServer:
    def __init__(self, host: str, port: int, models: SpeechModels | None,
                 on_connect: Callable[[Pending], None] | None = None, expect_grace: float = 0.0) -> None:
        """``on_connect``: told when Asterisk connects for a question (the speech process reports it to
        the calls' process, ivr/audiosocket/worker.py). ``expect_grace``: how long a UUID nobody
        waits for yet may wait for its question (in the speech process the question comes over the
        channel and may arrive after Asterisk connected: the AGI's EXEC raced it)."""
        self._host, self._port = host, port
        self._models = models
        self._on_connect = on_connect
        self._expect_grace = expect_grace
        self._arrived_early: dict[uuid.UUID, asyncio.Future[None]] = {}
        self._pending: dict[uuid.UUID, Pending] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the system chose for port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        log.info("audiosocket listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        for pending in self._pending.values():
            pending.settle(Outcome("failed"))
        self._pending.clear()

    def expect(self, call_uuid: uuid.UUID, question: Question, language: str) -> Pending:
        """Register a question before ``EXEC AudioSocket``; its outcome settles when the exchange ends."""
        if call_uuid in self._pending:
            raise ValueError(f"AudioSocket UUID {call_uuid} is already waiting")
        pending = Pending(call_uuid, question, language)
        self._pending[call_uuid] = pending
        pending.outcome.add_done_callback(lambda _: self._pending.pop(call_uuid, None))
        early = self._arrived_early.pop(call_uuid, None)
        if early is not None and not early.done():
            early.set_result(None)
        return pending

    def forget(self, call_uuid: uuid.UUID) -> None:
        """The AGI side gave up (AudioSocket() returned without connecting): settle as failed."""
        pending = self._pending.pop(call_uuid, None)
        if pending is not None:
            pending.settle(Outcome("failed"))

    async def was_connected(self, pending: Pending) -> bool:
        """After AudioSocket() returned: whether Asterisk connected for ``pending`` (its outcome then
        comes from the exchange); a question it never connected for is forgotten."""
        if not pending.connected:
            self.forget(pending.call_uuid)
        return pending.connected

    def available(self, language: str) -> bool | None:
        return None if self._models is None else self._models.available(language)

    def models_health(self) -> dict[str, str]:
        return {} if self._models is None else self._models.health()

    def process_health(self) -> dict[str, object]:
        return {"mode": "inline"}

    async def load_models(self) -> None:
        if self._models is not None:
            await self._models.load_configured()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, peer)
        except ProtocolError as exc:
            log.warning("audiosocket protocol error: connection closed", peer=peer, error=str(exc))
        except (ConnectionError, TimeoutError) as exc:
            log.warning("audiosocket connection lost", peer=peer, error=repr(exc))
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object) -> None:
        try:
            first = await asyncio.wait_for(read_message(reader), UUID_DEADLINE)
        except TimeoutError:
            raise ProtocolError(f"no UUID within {UUID_DEADLINE:g} s of connecting") from None
        if first is None:
            raise ProtocolError("closed before sending its UUID")
        if first.kind is not Kind.UUID:
            raise ProtocolError(f"first message is {first.kind.name}, not UUID")
        if first.uuid not in self._pending and self._expect_grace > 0:
            early = self._arrived_early[first.uuid] = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(early, self._expect_grace)
            except TimeoutError:
                pass
            finally:
                self._arrived_early.pop(first.uuid, None)
        pending = self._pending.pop(first.uuid, None)
        if pending is None:
            log.warning("audiosocket UUID nobody waits for: hung up", peer=peer, uuid=str(first.uuid))
            writer.write(HANGUP_MESSAGE)
            await writer.drain()
            return
        pending.connected = True
        if self._on_connect is not None:
            self._on_connect(pending)
        exchange = _Exchange(pending, reader, writer, self._models)
        try:
            pending.settle(await exchange.run())
        finally:
            pending.settle(Outcome("failed"))  # a protocol error, a lost peer, cancelled: never left waiting


class _Exchange:
    """One question over one connection (see the module docstring)."""

    def __init__(self, pending: Pending, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 models: SpeechModels | None) -> None:
        self._pending = pending
        self._q = pending.question
        self._reader, self._writer = reader, writer
        self._models = models
        self._events: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._prompt_done = asyncio.Event()
        self._stop_prompt = asyncio.Event()
        self._loud = False  # the caller made sound since the last end of speech: an utterance is open
        self._quiet_frames = 0
        self._preroll: deque[bytes] = deque(maxlen=round(PREROLL_SECONDS / FRAME_SECONDS))

    async def run(self) -> Outcome:
        recognizer: GrammarRecognizer | None = None
        # The prompt first: making the recognizer waits for a decoding thread (busy with other
        # callers' audio), and the caller must not hear that wait as silence. Their audio and keys
        # wait in the socket meanwhile.
        tasks = [asyncio.create_task(self._play())]
        try:
            if self._models is not None and self._q.words is not None:
                recognizer = await self._models.recognizer(self._pending.language, self._q.words.grammar())
        except BaseException:
            tasks[0].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        tasks.insert(0, asyncio.create_task(self._read(recognizer)))
        if recognizer is not None:
            tasks.append(asyncio.create_task(self._results(recognizer)))
        try:
            outcome = await self._decide(recognizer)
            if outcome.status != "hangup":
                self._stop_prompt.set()
                self._writer.write(HANGUP_MESSAGE)
                await self._writer.drain()
                # Asterisk closes its side on our hang-up message; the reader sees EOF and ends.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(tasks[0]), CLOSE_DEADLINE)
            return outcome
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            if recognizer is not None:
                await recognizer.aclose()
            for result in results:
                if isinstance(result, ProtocolError):
                    raise result

    async def _read(self, recognizer: GrammarRecognizer | None) -> None:
        while True:
            try:
                message = await read_message(self._reader)
            except ProtocolError as exc:
                self._events.put_nowait(("error", exc))
                return
            if message is None or message.kind is Kind.HANGUP:
                self._events.put_nowait(("eof", None))
                return
            if message.kind is Kind.AUDIO:
                if recognizer is not None:
                    if self._q.endpoint_silence > 0:
                        self._hear(recognizer, message.payload)
                    else:  # vosk's own endpoint decides: it needs every frame, silence too
                        recognizer.push(message.payload)
            elif message.kind is Kind.DTMF:
                self._events.put_nowait(("dtmf", message.digit))
            elif message.kind is Kind.ERROR:
                self._events.put_nowait(("error", ProtocolError(f"Asterisk reports error {message.payload.hex()}")))
                return
            else:
                self._events.put_nowait(("error", ProtocolError(f"{message.kind.name} after the UUID")))
                return

    def _hear(self, recognizer: GrammarRecognizer, frame: bytes) -> None:
        """Our own end of speech: an utterance opens at a loud frame and ends ``endpoint_silence``
        after the caller went quiet, without vosk's lag; quiet frames outside an utterance are not
        decoded (a pre-roll of them is kept for the next one).

        vosk decides the end of an utterance from its decoder's best path, which runs ~0.45 s behind
        the audio (the acoustic model's right context: measured with the Korean model, a word's end
        to vosk's endpoint is 0.58 s at the shortest trailing-silence setting). Loudness needs no
        context: after loud frames, ``endpoint_silence`` of quiet ones (counted in audio, 20 ms a
        frame, not on the clock) means the caller stopped, and the recognizer is told so
        (:meth:`GrammarRecognizer.end_utterance`): it hands over its final result with confidences,
        decoded as always. Noise that never goes quiet leaves vosk's endpoint (model.conf) to decide,
        as without this. Skipping the silence between utterances is most of the decoding saved: a
        caller is quiet while the prompt plays, and 50 grammar recognizers decoding every frame took
        ~1.4 of this machine's 2 cores (bench/speech_load.py).
        """
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
        loud = float(np.sqrt(np.mean(samples * samples))) >= self._q.silence_level
        if not self._loud:
            if not loud:
                self._preroll.append(frame)
                return
            self._loud, self._quiet_frames = True, 0
            for quiet in self._preroll:
                recognizer.push(quiet)
            self._preroll.clear()
            recognizer.push(frame)
            return
        recognizer.push(frame)
        if loud:
            self._quiet_frames = 0
            return
        self._quiet_frames += 1
        if self._quiet_frames * FRAME_SECONDS >= self._q.endpoint_silence:
            self._loud, self._quiet_frames = False, 0
            recognizer.end_utterance()

    async def _results(self, recognizer: GrammarRecognizer) -> None:
        while True:
            result = await recognizer.next_result()
            self._events.put_nowait(("speech", result))

    async def _play(self) -> None:
        # Paced by the loop's clock, not by sleep(0.02) per frame: late wake-ups do not add up.
        loop = asyncio.get_running_loop()
        prompt = self._q.prompt
        start = loop.time()
        try:
            for index, offset in enumerate(range(0, len(prompt), FRAME_BYTES)):
                if self._stop_prompt.is_set():
                    return
                frame = prompt[offset : offset + FRAME_BYTES]
                frame += b"\0" * (FRAME_BYTES - len(frame))
                self._writer.write(audio_message(frame))
                await self._writer.drain()
                delay = start + (index + 1) * FRAME_SECONDS - loop.time()
                if delay > 0:
                    # A plain sleep, the stop looked at before each frame: a barge-in silences the
                    # prompt within one frame (20 ms). wait_for on the stop event made a task per
                    # frame per caller: 20 µs of CPU a frame against 9 µs (measured, 50 callers x 100
                    # frames), ~3 % of a core at 50 callers.
                    await asyncio.sleep(delay)
        finally:
            self._prompt_done.set()
            self._events.put_nowait(("prompt_done", None))

    async def _decide(self, recognizer: GrammarRecognizer | None) -> Outcome:
        loop = asyncio.get_running_loop()
        hard_stop = loop.time() + self._q.max_seconds
        answer_by: float | None = None  # set when the prompt ends, moved by each key
        digits = ""
        stopped = False
        heard_noise = False
        while True:
            limit = min(hard_stop, answer_by) if answer_by is not None else hard_stop
            try:
                kind, value = await asyncio.wait_for(self._events.get(), max(0.0, limit - loop.time()))
            except TimeoutError:
                return await self._time_up(recognizer, digits, stopped, heard_noise)
            if kind == "eof":
                return Outcome("hangup", digits, prompt_stopped=stopped)
            if kind == "error":
                assert isinstance(value, ProtocolError)
                raise value
            if kind == "prompt_done" and answer_by is None:
                answer_by = loop.time() + self._q.timeout
            elif kind == "dtmf":
                assert isinstance(value, str)
                stopped = stopped or not self._prompt_done.is_set()
                self._stop_prompt.set()
                if value == "#":
                    return Outcome("answered", digits, prompt_stopped=stopped)
                digits += value
                if len(digits) >= self._q.max_digits:
                    return Outcome("answered", digits, prompt_stopped=stopped)
                answer_by = loop.time() + self._q.timeout
            elif kind == "speech" and not digits:  # keys already pressed win over what is said
                assert isinstance(value, Partial | Final)
                if heard_speech(value) and not self._prompt_done.is_set():
                    stopped = True
                    self._stop_prompt.set()
                if isinstance(value, Final) and value.words:
                    outcome = self._interpret(value, stopped)
                    if outcome is not None:
                        return outcome
                    heard_noise = True  # only [unk]: noise or other speech; keep listening

    def _interpret(self, final: Final, stopped: bool) -> Outcome | None:
        assert self._q.words is not None
        answer = self._q.words.interpret(final.words, self._q.min_confidence)
        if answer is not None:
            return Outcome("answered", answer.digits, spoken=True, text=answer.text, prompt_stopped=stopped)
        if heard_speech(final):  # words of the grammar, but no clear answer: re-ask, never guess
            return Outcome("not_understood", spoken=True, text=final.text, prompt_stopped=stopped)
        return None

    async def _time_up(self, recognizer: GrammarRecognizer | None, digits: str, stopped: bool,
                       heard_noise: bool) -> Outcome:
        if digits:
            # Keys typed without "#" before the timeout still count (as GET DATA returns them).
            return Outcome("answered", digits, prompt_stopped=stopped)
        if recognizer is not None:
            final = await recognizer.finish()  # what the caller was saying when time ran out
            if final.words:
                outcome = self._interpret(final, stopped)
                if outcome is not None:
                    return outcome
                heard_noise = True
        return Outcome("not_understood" if heard_noise else "no_input", prompt_stopped=stopped)
