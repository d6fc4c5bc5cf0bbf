"""vosk off the event loop: one model per language per process, one grammar recognizer per question.

A vosk model is hundreds of megabytes and seconds to load (the Korean test model: ~250 MB on disk,
~2 s, ~0.5 GB resident), so :class:`SpeechModels` loads each language once, lazily, in a worker
thread, and every call shares it. A model that is not configured, missing or unreadable is one log
line and ``available = False`` for that language: its callers stay on keys, the service runs on.

A :class:`GrammarRecognizer` is cheap (one per question of a call): a ``KaldiRecognizer`` restricted
to the question's phrases (:mod:`ivr.speech.answers`) plus ``[unk]``. Audio arrives as 20 ms slin16
frames (320 bytes at 8 kHz) from the AudioSocket; :meth:`GrammarRecognizer.push` only appends them
to a buffer, and one decoding job at a time per recognizer (vosk's recognizer is not thread-safe)
takes everything buffered to the thread pool, so a recognizer that falls behind catches up in one
larger chunk and the event loop never waits on vosk (it releases the GIL while decoding). The
results come back as :class:`Partial` (speech under way: barge-in) and :class:`Final` (vosk's
endpoint: the caller stopped speaking), words with confidences and times.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ivr.speech.answers import UNK, Word
from ivr.speech.cpus import confine_this_thread, decoding_cpus, lower_this_thread

if TYPE_CHECKING:
    import vosk

    from ivr.settings import SpeechSettings

RATE = 8000  # AudioSocket carries signed linear 16-bit mono at 8 kHz
FRAME_BYTES = RATE * 2 // 50  # one 20 ms frame
# Audio goes to vosk 60 ms at a time, not frame by frame: a job in the thread pool per frame of 50
# callers is 2,500 loop round trips a second; three frames cut that to a third, for at most 40 ms
# later partial results (barge-in). An end of speech (:meth:`GrammarRecognizer.end_utterance`) is
# decoded at once, whatever is buffered.
BATCH_BYTES = FRAME_BYTES * 3
_BYTES_PER_SECOND = RATE * 2

log = structlog.get_logger("ivr.speech")


class RecognizerClosed(RuntimeError):
    """Audio pushed to a recognizer after it was closed."""


@dataclass(frozen=True)
class Partial:
    """Words heard so far in an utterance that is not over (non-empty: the caller is speaking)."""

    text: str


@dataclass(frozen=True)
class Final:
    """An utterance vosk considers over (its endpoint, or the end of the audio)."""

    words: tuple[Word, ...]
    text: str
    audio_seconds: float  # audio fed to the recognizer when it was decided
    # True: the caller stopped (vosk's endpoint, or ours: :meth:`GrammarRecognizer.end_utterance`);
    # False: :meth:`GrammarRecognizer.finish` (the audio ended, time ran out).
    endpoint: bool


def _final(payload: str, audio_seconds: float, endpoint: bool) -> Final:
    result: dict[str, Any] = json.loads(payload)
    words = tuple(
        Word(str(w["word"]), float(w.get("conf", 1.0)), float(w["start"]), float(w["end"]))
        for w in result.get("result", ())
    )
    return Final(words, str(result.get("text", "")), audio_seconds, endpoint)


def initial_states(settings: SpeechSettings) -> dict[str, str]:
    """Per language, the models' state before any load: "not configured" or "not loaded"."""
    return {language: ("not configured" if not path else "not loaded")
            for language, path in (("ru", settings.model_ru), ("en", settings.model_en))}


class SpeechModels:
    """The vosk models of the configured languages, each loaded once on first use (see the module doc)."""

    def __init__(self, settings: SpeechSettings, executor: ThreadPoolExecutor | None = None) -> None:
        self._paths = {"ru": settings.model_ru, "en": settings.model_en}
        self._endpoint_silence = settings.endpoint_silence
        # Per language: "not configured", "loading", "loaded", or why it is missing (for /healthz).
        self.state = initial_states(settings)
        self._own_executor = executor is None
        self.cpus = decoding_cpus(settings.recognizer_cpus)
        self._executor = executor or ThreadPoolExecutor(
            max(1, settings.recognizer_threads), thread_name_prefix="vosk",
            initializer=_decoding_thread, initargs=(settings.recognizer_nice, self.cpus),
        )
        self._loads: dict[str, asyncio.Future[vosk.Model | None]] = {}
        self.load_seconds: dict[str, float] = {}
        self._grammars_checked: set[tuple[str, tuple[str, ...]]] = set()

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    def available(self, language: str) -> bool | None:
        """True/False once the language's model was tried; None before the first use."""
        future = self._loads.get(language)
        if future is None or not future.done():
            return None
        return future.result() is not None

    async def model(self, language: str) -> vosk.Model | None:
        """The model of ``language``, loading it on first use; None if it cannot be had (logged once)."""
        future = self._loads.get(language)
        if future is None:
            # Single flight: every caller of the first seconds awaits the same load.
            future = asyncio.get_running_loop().create_future()
            self._loads[language] = future
            try:
                future.set_result(await self._load(language))
            except BaseException as exc:  # cancelled mid-load: the next caller tries again
                del self._loads[language]
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning if nobody else waits
                raise
        return await asyncio.shield(future)

    async def load_configured(self) -> None:
        """At start, in the background: every configured model (the first caller must not wait ~2 s)."""
        await asyncio.gather(*(self.model(language) for language, path in self._paths.items() if path))

    def health(self) -> dict[str, str]:
        """Per language: loaded / loading / not configured / missing: … / unreadable: …"""
        return dict(self.state)

    async def _load(self, language: str) -> vosk.Model | None:
        path = self._paths.get(language, "")
        if not path:
            log.info("speech model not configured: callers answer with keys", language=language)
            return None
        started = time.perf_counter()
        self.state[language] = "loading"
        try:
            model = await asyncio.get_running_loop().run_in_executor(
                self._executor, _load_model, path, self._endpoint_silence)
        except ModelMissing:
            self.state[language] = f"missing: no vosk model (am/ or final.mdl) in {path}"
            log.error("speech model missing: callers answer with keys", language=language, path=path)
            return None
        except Exception as exc:  # vosk says only "Failed to create a model"; Kaldi's reason went to stderr
            self.state[language] = f"unreadable: {exc}"
            log.error("speech model unreadable: callers answer with keys", language=language, path=path,
                      error=str(exc))
            return None
        self.load_seconds[language] = time.perf_counter() - started
        self.state[language] = "loaded"
        log.info("speech model loaded", language=language, path=path,
                 seconds=round(self.load_seconds[language], 2), endpoint_silence=self._endpoint_silence or None)
        return model

    async def recognizer(self, language: str, grammar: Sequence[str]) -> GrammarRecognizer | None:
        """A recognizer of ``grammar`` (phrases + ``[unk]``) in ``language``, or None without a model."""
        model = await self.model(language)
        if model is None:
            return None
        key = (language, tuple(grammar))
        missing = [w for phrase in grammar for w in phrase.split() if model.vosk_model_find_word(w) < 0]
        if missing and key not in self._grammars_checked:
            # vosk drops them quietly (Kaldi's own warning is muted below); a phrase the model cannot
            # say is one the caller cannot answer with. Once per grammar, not once per call.
            self._grammars_checked.add(key)
            log.warning("speech grammar words missing from the model", language=language,
                        words=sorted(set(missing))[:20], count=len(set(missing)))
        kaldi = await asyncio.get_running_loop().run_in_executor(self._executor, _new_recognizer, model, grammar)
        return GrammarRecognizer(kaldi, self._executor)

    def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _decoding_thread(nice: int, cpus: frozenset[int] | None) -> None:
    """Run this decoding thread ``nice`` steps below the event loop's (Linux: a thread's own nice
    value, set through its thread id) and on ``cpus`` only. On a busy machine the loop (the AGI of
    every call, the prompts' frames) then gets the CPU first, and a core with its caches (see
    ivr/speech/cpus.py), and speech absorbs the wait: an answer decided a little later, never a
    call's AGI turnaround stretched by other callers' decoding."""
    lower_this_thread(nice)
    confine_this_thread(cpus)


# Loaded models by directory, for the whole process: a second SpeechModels (tests, a reload of the
# settings) shares them instead of holding another copy of hundreds of megabytes.
_MODELS: dict[str, vosk.Model] = {}
_MODELS_LOCK = threading.Lock()


class ModelMissing(Exception):
    """No model files where the settings point (vosk would say only "Failed to create a model")."""


def load_model(path: str, endpoint_silence: float = 0.0) -> vosk.Model:
    """The vosk model in directory ``path``, loaded once per process (blocking: call it in a thread)."""
    return _load_model(path, endpoint_silence)


def _load_model(path: str, endpoint_silence: float = 0.0) -> vosk.Model:
    import vosk  # a native library of ~30 MB: imported when speech is used, not by every `ivr` command

    if not Path(path, "am").is_dir() and not Path(path, "final.mdl").exists():
        raise ModelMissing(path)
    key = f"{Path(path).resolve()}|{endpoint_silence:g}"
    with _MODELS_LOCK:
        if key not in _MODELS:
            vosk.SetLogLevel(-2)  # Kaldi's chatter and per-recognizer warnings off; errors still reach stderr
            if endpoint_silence > 0:
                copy = _with_endpoint(Path(path).resolve(), endpoint_silence)
                try:
                    _MODELS[key] = vosk.Model(str(copy))
                finally:  # vosk read every file while loading: the copy is not needed any more
                    shutil.rmtree(copy, ignore_errors=True)
            else:
                _MODELS[key] = vosk.Model(str(Path(path).resolve()))
        return _MODELS[key]


def _rule(number: int) -> re.Pattern[str]:
    return re.compile(rf"^--endpoint\.rule{number}\.min-trailing-silence=.*$", re.MULTILINE)


def _with_endpoint(model: Path, seconds: float) -> Path:
    """A copy of the model directory whose ``conf/model.conf`` ends an utterance ``seconds`` after
    the last word.

    Kaldi's endpoint rules: rule 2 ends it after that much trailing silence when the decoder is at a
    good final state (relative cost ≤ 2), rule 3 after twice as much when it is less sure (cost ≤ 8:
    measured here, a one-word grammar answer often ends by rule 3, so rule 2 alone moves little),
    rule 4 (2 s whatever the cost) stays as the model has it. The small models ship 0.5 / 1.0 / 2.0.

    vosk 0.3.45's Python API has no setter for these (the model's own file decides), and the model
    directory may be read-only (a package, a shared volume): every entry is a symlink to the
    original except ``conf/``, whose files are copied and model.conf rewritten.
    """
    copy = Path(tempfile.mkdtemp(prefix="ivr-vosk-"))
    for entry in model.iterdir():
        if entry.name != "conf":
            (copy / entry.name).symlink_to(entry)
    conf = copy / "conf"
    shutil.copytree(model / "conf", conf)
    text = (conf / "model.conf").read_text() if (conf / "model.conf").exists() else ""
    for number, value in ((2, seconds), (3, 2 * seconds)):
        rule = f"--endpoint.rule{number}.min-trailing-silence={value:g}"
        pattern = _rule(number)
        text = pattern.sub(rule, text) if pattern.search(text) else text.rstrip("\n") + "\n" + rule + "\n"
    (conf / "model.conf").write_text(text)
    return copy


def _new_recognizer(model: vosk.Model, grammar: Sequence[str]) -> vosk.KaldiRecognizer:
    import vosk

    # ensure_ascii=False: vosk does not decode \\u escapes, a Cyrillic word would be "missing".
    kaldi = vosk.KaldiRecognizer(model, RATE, json.dumps(list(grammar), ensure_ascii=False))
    kaldi.SetWords(True)
    return kaldi


class GrammarRecognizer:
    """One question's recognizer: push frames, await :meth:`next_result`, or :meth:`finish`."""

    # Recognizers not yet closed, process-wide: a leak (an exchange that forgot aclose) shows here.
    open_count = 0

    def __init__(self, kaldi: vosk.KaldiRecognizer, executor: ThreadPoolExecutor) -> None:
        GrammarRecognizer.open_count += 1
        self._kaldi: vosk.KaldiRecognizer | None = kaldi
        self._executor = executor
        self._pending = bytearray()
        self._end_asked = False  # end_utterance(): decide the utterance after the buffered audio
        self._fed = 0  # bytes handed to vosk
        self._drain: asyncio.Task[None] | None = None
        self._results: asyncio.Queue[Partial | Final] = asyncio.Queue()
        self._last_partial = ""
        self._finished = False
        self.cpu_seconds = 0.0  # CPU time the decoding threads spent on this recognizer

    @property
    def audio_seconds(self) -> float:
        return (self._fed + len(self._pending)) / _BYTES_PER_SECOND

    def push(self, audio: bytes) -> None:
        """Queue audio (slin16, 8 kHz); never blocks. Decoding happens in the thread pool."""
        if self._kaldi is None:
            raise RecognizerClosed("audio pushed to a closed recognizer")
        if self._finished:
            return  # the utterance was ended (finish): vosk refuses audio after its final result
        self._pending += audio
        if len(self._pending) >= BATCH_BYTES:
            self._kick()

    def end_utterance(self) -> None:
        """The caller stopped (our own end of speech): decode what is buffered and give the final
        result now, as vosk's endpoint would ~0.45 s later. vosk's ``FinalResult`` flushes the
        acoustic model's right context itself (6–7 ms of CPU with the Korean model, against 13–14 ms
        for the second of silence that makes its endpoint fire, measured); the recognizer then takes
        the next utterance, its word times going on from the audio fed so far."""
        if self._kaldi is None or self._finished:
            return
        self._end_asked = True
        self._kick()

    def _kick(self) -> None:
        if (self._pending or self._end_asked) and (self._drain is None or self._drain.done()):
            self._drain = asyncio.get_running_loop().create_task(self._decode_pending())

    async def decoded(self) -> None:
        """Wait until everything pushed so far went through vosk (its results are queued)."""
        self._kick()
        while self._drain is not None and not self._drain.done():
            await asyncio.shield(self._drain)

    async def next_result(self) -> Partial | Final:
        """The next partial (only when its text changed) or final result, in order."""
        return await self._results.get()

    async def _decode_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while (self._pending or self._end_asked) and self._kaldi is not None:
            chunk = bytes(self._pending)
            end, self._end_asked = self._end_asked, False
            self._pending.clear()
            try:
                result = await loop.run_in_executor(self._executor, self._accept, self._kaldi, chunk, end)
            except RuntimeError as exc:  # the pool shut down under us (service stopping)
                log.warning("speech recognizer stopped: pool closed", error=str(exc))
                self._pending.clear()
                return
            if isinstance(result, Final) or result.text != self._last_partial:
                self._last_partial = "" if isinstance(result, Final) else result.text
                self._results.put_nowait(result)

    def _accept(self, kaldi: vosk.KaldiRecognizer, chunk: bytes, end: bool = False) -> Partial | Final:
        # In a worker thread; only one at a time per recognizer (the drain task awaits each job).
        started = time.thread_time()
        ended = bool(chunk) and kaldi.AcceptWaveform(chunk)
        self._fed += len(chunk)
        if ended:  # vosk's own endpoint came first: that is the utterance's end asked for, if it was
            result: Partial | Final = _final(kaldi.Result(), self._fed / _BYTES_PER_SECOND, endpoint=True)
        elif end:
            result = _final(kaldi.FinalResult(), self._fed / _BYTES_PER_SECOND, endpoint=True)
        else:
            result = Partial(str(json.loads(kaldi.PartialResult()).get("partial", "")))
        self.cpu_seconds += time.thread_time() - started
        return result

    async def finish(self) -> Final:
        """Decode what is queued and end the utterance (the audio ended or the question timed out)."""
        self._finished = True
        await self.decoded()
        if self._kaldi is None:
            raise RecognizerClosed("finish on a closed recognizer")
        payload = await asyncio.get_running_loop().run_in_executor(self._executor, self._kaldi.FinalResult)
        return _final(payload, self._fed / _BYTES_PER_SECOND, endpoint=False)

    async def aclose(self) -> None:
        """Stop decoding and free the recognizer (after its running job: vosk would crash under it)."""
        kaldi, self._kaldi = self._kaldi, None
        if kaldi is None:
            return
        GrammarRecognizer.open_count -= 1
        self._pending.clear()
        self._end_asked = False
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)
        del kaldi  # the last reference: vosk_recognizer_free


def heard_speech(result: Partial | Final) -> bool:
    """Whether a result means the caller is speaking words of the grammar (barge-in), not noise."""
    text = result.text.replace(UNK, "").strip()
    return bool(text)
