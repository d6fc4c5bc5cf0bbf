"""A question asked over AudioSocket, so the caller may answer by voice or by key (issue 12).

The AGI side of :mod:`ivr.audiosocket.server`: for one question of a call, pick a UUID, register
the question (the prompt's audio, the keys it takes, the words it understands) with
:meth:`AudioSocketServer.expect` (in the speech process, ivr/audiosocket/worker.py, or in this
one), and run ``EXEC AudioSocket <uuid>,<host>:<port>`` (Asterisk 22: apps/app_audiosocket.c takes
exactly these two arguments, comma-separated, as one AGI argument; res_agi.c answers ``200
result=<the application's return>``: 0 when our hang-up message ended it, -1 when it could not
connect or the caller hung up, and the AGI session goes on either way).

What comes back, for the flow (which stays pure: it only ever sees :class:`ivr.flows.model.Digits`):

- an answer, by key or by voice: the keys it stands for (``"1"``, ``"22"``, ``""`` = keep);
- ``no_input`` and ``not_understood``: a failed input (the flow re-asks, then hands over);
- ``hangup``: the caller is gone (:class:`ivr.agi.errors.AgiHangup`);
- None: Asterisk never connected (AudioSocket() returned -1 at once) or the exchange broke: the
  caller asks this question by GET DATA, and the rest of the call stays on keys.

When a call uses voice: the line's ``IVR_SPEECH`` (passed by the dialplan as the AGI argument
``speech=…``: 1 on, 0 off, empty = ``speech.enabled``), and a model of the caller's language
loaded (:meth:`QuestionServer.available`; a model still loading or missing: keys).
"""

from __future__ import annotations

import asyncio
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from ivr.agi.channel import AgiChannel
from ivr.agi.env import AgiEnv
from ivr.agi.errors import AgiHangup
from ivr.audiosocket.server import CLOSE_DEADLINE, Outcome, Pending, Question
from ivr.speech.answers import Question as QuestionKind
from ivr.speech.answers import QuestionWords, question_of, question_words

log = structlog.get_logger("ivr.calls")

# A caller talking past the prompt and the question's own timeout is cut here (a monologue).
_MONOLOGUE = 15.0
# The line's switch: AGI(${IVR_AGI_BASE}/repeat-order,speech=${IVR_SPEECH}) or ?speech= in the URL.
SPEECH_OPTION = "speech"

WordsFor = Callable[[QuestionKind, str], QuestionWords]


@dataclass(frozen=True)
class VoiceAnswer:
    digits: str
    timed_out: bool  # True: a failed input for the flow (no input, or words it cannot take)
    outcome: Outcome


def line_wants_speech(env: AgiEnv, default: bool) -> bool:
    """The line's choice (``speech=1`` / ``speech=0`` as an AGI argument or URL option), else ``default``."""
    value = env.options.get(SPEECH_OPTION)
    for arg in env.args:
        key, sep, rest = arg.partition("=")
        if sep and key.strip().lower() == SPEECH_OPTION:
            value = rest
    value = (value or "").strip().lower()
    if value in ("1", "yes", "on", "true"):
        return True
    if value in ("0", "no", "off", "false"):
        return False
    return default


class QuestionServer(Protocol):
    """Where questions are asked: the listener in this process (:class:`AudioSocketServer`) or in
    the speech process (:class:`ivr.audiosocket.process.SpeechProcess`)."""

    @property
    def port(self) -> int: ...

    def expect(self, call_uuid: uuid.UUID, question: Question, language: str) -> Pending: ...

    async def was_connected(self, pending: Pending) -> bool: ...

    def forget(self, call_uuid: uuid.UUID) -> None: ...

    def available(self, language: str) -> bool | None: ...

    def models_health(self) -> dict[str, str]: ...

    def process_health(self) -> dict[str, object]: ...

    async def load_models(self) -> None: ...


class CallSpeech:
    """The process's speech parts as the calls use them: one instance shared by every call."""

    def __init__(self, server: QuestionServer, *, default_on: bool,
                 asterisk_target: str, min_confidence: float, max_quantity: int,
                 decoding_cpus: str, endpoint_silence: float = 0.0, silence_level: int = 300,
                 words: WordsFor | None = None) -> None:
        """``asterisk_target``: the ``host:port`` Asterisk connects to. ``words``: the phrases of a
        question in a language (tests give the Korean test model's words here). ``decoding_cpus``:
        where the recognizers decode, as /healthz shows it ("1-3", "all")."""
        self.server = server
        self.decoding_cpus = decoding_cpus
        self.default_on = default_on
        self.asterisk_target = asterisk_target
        self.min_confidence = min_confidence
        self.endpoint_silence = endpoint_silence
        self.silence_level = silence_level
        self._words: WordsFor = words or (lambda q, lang: question_words(q, lang, max_quantity))

    def usable(self, language: str) -> bool:
        return self.server.available(language) is True

    def health(self) -> dict[str, object]:
        return {"default": "on" if self.default_on else "off", "audiosocket": self.asterisk_target,
                "models": self.server.models_health(), "process": self.server.process_health(),
                "decoding_cpus": self.decoding_cpus}

    async def ask(self, channel: AgiChannel, step: str, language: str, prompt_wav: Path, *, max_digits: int,
                  answer_timeout: float, command_timeout: float) -> VoiceAnswer | None:
        """Ask over AudioSocket; None when it could not be (the caller must be asked by GET DATA)."""
        try:
            words: QuestionWords | None = self._words(question_of(step), language)
        except ValueError:
            words = None  # a question without spoken answers: keys over the same path
        try:
            prompt = await asyncio.to_thread(_slin_of, prompt_wav)
        except (OSError, wave.Error, EOFError) as exc:
            log.warning("speech.prompt_unreadable", path=str(prompt_wav), error=str(exc))
            return None
        seconds = len(prompt) / 16000
        question = Question(prompt, max_digits=max_digits, timeout=answer_timeout, words=words,
                            max_seconds=seconds + answer_timeout + _MONOLOGUE, min_confidence=self.min_confidence,
                            endpoint_silence=self.endpoint_silence, silence_level=self.silence_level)
        call_uuid = uuid.uuid4()
        pending = self.server.expect(call_uuid, question, language)
        try:
            reply = await channel.execute("EXEC", "AudioSocket", f"{call_uuid},{self.asterisk_target}",
                                          timeout=question.max_seconds + command_timeout)
        except BaseException:
            self.server.forget(call_uuid)
            raise
        if not await self.server.was_connected(pending):
            log.warning("speech.audiosocket_not_connected", step=step, result=reply.result,
                        target=self.asterisk_target)
            return None
        try:
            # Our hang-up message ended it (result=0): settled already. The caller hung up
            # (result=-1): Asterisk closed the socket, the exchange sees it in a moment.
            outcome = await asyncio.wait_for(asyncio.shield(pending.outcome), CLOSE_DEADLINE)
        except TimeoutError:  # connected, yet still running after AudioSocket() returned: give up on it
            pending.settle(Outcome("failed"))
            outcome = pending.outcome.result()
        if outcome.status == "hangup" or channel.hangup_event.is_set():
            raise AgiHangup("caller hung up during AudioSocket")
        if outcome.status == "failed":
            log.warning("speech.exchange_failed", step=step)
            return None
        if outcome.status == "answered":
            return VoiceAnswer(outcome.digits, False, outcome)
        # no_input / not_understood: a failed input, re-asked (then an operator), never a guess.
        return VoiceAnswer("", True, outcome)


def _slin_of(path: Path) -> bytes:
    """The prompt file's samples (Asterisk's .wav: 8 kHz mono 16-bit, as the speaker writes it)."""
    with wave.open(str(path), "rb") as reader:
        if (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) != (8000, 1, 2):
            raise wave.Error(f"{path}: not 8 kHz mono 16-bit")
        return reader.readframes(reader.getnframes())
