"""Transcripts of call recordings: a bounded background worker around vosk's full recognizer (issue 12).

When a call's recording is announced (``recording.ready``), the record writer queues a pending
``transcripts`` row in the same transaction (crm_bridge.call_log). This worker claims pending rows
(crm_bridge.transcripts: leases, SKIP LOCKED on PostgreSQL), and for each one, in a thread:

1. reads the file with pydub (WAV natively; MP3 and the rest through ffmpeg), refuses it above
   ``speech.transcribe_max_seconds``;
2. splits the channels: a stereo MixMonitor recording (``MixMonitor(…,r()t())`` or ``D``) has the
   caller on the left and the robot / operator on the right, each transcribed apart and labelled;
   a mono recording (our dialplan's default) is one track without a speaker;
3. resamples every track with soxr to the model's own rate (``conf/mfcc.conf``), never by hand;
4. decodes it with the FULL recognizer (``KaldiRecognizer`` without a grammar), words with times.

The words go to the row (state ``done``, or ``empty`` when nothing was said), a ``transcript.ready``
event to the call's and the customer's timeline (and the CRM targets that want it), with a uid
derived from the row: written again after a crash, it still lands once.

Bounds: at most ``speech.transcribe_workers`` files at once (default 1), each in its own thread of a
pool of that size whose threads run at a lower CPU priority (nice 10) than the event loop and the
calls' grammar recognizers; rows wait in the database, not in memory, so a backlog costs no RAM.
The event loop only awaits: reading, resampling and decoding all happen in the pool.

Bad input is a ``failed`` row with one clear line (missing file, undecodable, too long) and a log
line; the worker goes on with the next row. A file that kills the process (vosk crashing) is
claimed again after its lease, at most ``crm_bridge.transcripts.MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr
import structlog

from crm_bridge.call_log import TimelineRecord
from crm_bridge.contract.events import TRANSCRIPT_EVENT_TEXT, EventKind
from crm_bridge.transcripts import TranscriptJob, TranscriptState, TranscriptStore, TranscriptWord, event_uid
from ivr.calls.recordings import RecordingLocator
from ivr.speech.cpus import lower_this_thread

if TYPE_CHECKING:
    import vosk

log = structlog.get_logger("ivr.speech.transcripts")

DEFAULT_MODEL_RATE = 16000
# Audio handed to vosk per call of AcceptWaveform: long enough that the per-call overhead is
# nothing, short enough that a stop request is noticed within a fraction of a second.
CHUNK_SECONDS = 2.0
STEREO_SPEAKERS = ("caller", "robot")  # MixMonitor's left (read: what the caller says) and right
NICE = 10


class TranscriptionFailed(Exception):
    """The recording cannot be transcribed; the message is the one line stored and logged."""


class TranscriptionStopped(Exception):
    """The worker is stopping: the file is left for the next start."""


@dataclass(frozen=True)
class Transcription:
    text: str
    words: tuple[TranscriptWord, ...]
    channels: int
    audio_seconds: float
    cpu_seconds: float  # thread CPU time spent (decoding and resampling)


def model_rate(model_dir: str | os.PathLike[str]) -> int:
    """The sample rate a vosk model was trained on (``--sample-frequency`` in conf/mfcc.conf)."""
    try:
        conf = Path(model_dir, "conf", "mfcc.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_MODEL_RATE
    found = re.search(r"--sample-frequency\s*=\s*(\d+)", conf)
    return int(found.group(1)) if found else DEFAULT_MODEL_RATE


def read_tracks(path: Path, max_seconds: float) -> tuple[list[np.ndarray], int, float]:
    """The recording's channels as float32 arrays in [-1, 1), its rate and its length (pydub)."""
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError

    if not path.is_file():
        raise TranscriptionFailed(f"recording file missing: {path.name}")
    try:
        segment = AudioSegment.from_file(path)
    except (CouldntDecodeError, IndexError, ValueError, OSError) as exc:  # pydub's ways of saying "garbage"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TranscriptionFailed(f"recording unreadable ({path.name}): {first}") from exc
    seconds = segment.duration_seconds
    if seconds > max_seconds:
        raise TranscriptionFailed(
            f"recording too long: {seconds:.0f} s > speech.transcribe_max_seconds {max_seconds:.0f} s")
    channels = segment.split_to_mono() if segment.channels > 1 else [segment]
    scale = float(1 << (8 * segment.sample_width - 1))
    tracks = [np.asarray(c.get_array_of_samples(), dtype=np.float32) / scale for c in channels[:2]]
    return tracks, segment.frame_rate, seconds


def to_model_rate(track: np.ndarray, rate: int, target: int) -> bytes:
    """A track as signed 16-bit little-endian PCM at ``target`` Hz (soxr's anti-aliased resampling)."""
    if rate != target and len(track):
        track = soxr.resample(track, rate, target, quality="HQ")
    return np.clip(np.rint(track * 32768.0), -32768, 32767).astype("<i2").tobytes()


def _words(payload: str, channel: int, speaker: str) -> list[TranscriptWord]:
    result = json.loads(payload)
    return [TranscriptWord(str(w["word"]), round(float(w["start"]), 3), round(float(w["end"]), 3),
                           round(float(w.get("conf", 1.0)), 3), channel, speaker)
            for w in result.get("result", ()) if w.get("word") and w["word"] != "[unk]"]


def transcribe_file(model: vosk.Model, model_dir: str, path: Path, *, max_seconds: float,
                    stop: threading.Event | None = None) -> Transcription:
    """Read, resample and decode one recording with the full recognizer (blocking: run it in a thread)."""
    import vosk

    started = time.thread_time()
    tracks, rate, seconds = read_tracks(path, max_seconds)
    target = model_rate(model_dir)
    words: list[TranscriptWord] = []
    stereo = len(tracks) > 1
    step = int(target * CHUNK_SECONDS) * 2
    for channel, track in enumerate(tracks):
        pcm = to_model_rate(track, rate, target)
        speaker = STEREO_SPEAKERS[channel] if stereo else ""
        recognizer = vosk.KaldiRecognizer(model, target)
        recognizer.SetWords(True)
        for offset in range(0, len(pcm), step):
            if stop is not None and stop.is_set():
                raise TranscriptionStopped()
            if recognizer.AcceptWaveform(pcm[offset : offset + step]):
                words += _words(recognizer.Result(), channel, speaker)
        words += _words(recognizer.FinalResult(), channel, speaker)
        del recognizer
    words.sort(key=lambda w: (w.start, w.channel))
    return Transcription(" ".join(w.word for w in words), tuple(words), len(tracks), round(seconds, 3),
                         time.thread_time() - started)


def transcribing_thread() -> None:
    """A transcription thread's setup: NICE steps below the event loop (Linux: a thread's nice value
    is its own, so only the transcription threads yield to the calls).

    Not idle priority, and not confined to the decoding CPUs (``speech.recognizer_cpus``) like the
    answers' recognizers: these threads share the calls' GIL. Measured with a busy nice-0 process
    on the decoding CPU, a transcription thread at SCHED_IDLE confined there was preempted while it
    held the GIL and stalled the calls' event loop (turnaround mean ×3.1, loop lag p95 22 ms, calls
    lost); at nice 10 ×1.17. Transcripts in a process of their own would be free of that."""
    lower_this_thread(NICE)


ModelSource = Callable[[str], Awaitable["tuple[vosk.Model, str, str] | None"]]
TimelineWrite = Callable[[Sequence[TimelineRecord]], Awaitable[None]]


class Transcriber:
    """The worker: ``start`` / ``stop``, or ``run_once`` (tests) to claim and finish one round.

    ``model_for(language)`` gives ``(model, model directory, language transcribed)`` or None when no
    model can be had (the rows then stay pending, nothing is lost, and it is said once in the log).
    """

    def __init__(self, store: TranscriptStore, write_timeline: TimelineWrite, model_for: ModelSource,
                 locator: RecordingLocator, *, workers: int = 1, max_seconds: float = 1800.0,
                 poll_interval: float = 5.0, lease: float = 120.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._write_timeline = write_timeline
        self._model_for = model_for
        self._locator = locator
        self.workers = max(1, workers)
        self._max_seconds = max_seconds
        # A claim holds its row this long and is renewed every third of it while the file is decoded,
        # so a worker that died leaves its row to the next start within one lease, however long the file.
        self._lease = lease
        self._poll = poll_interval
        self._clock = clock
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="transcribe", initializer=transcribing_thread)
        self._stop = threading.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.disabled = False  # no model: see _one
        self.running = 0  # files being transcribed right now (never above ``workers``)
        self.most_running = 0
        self.finished = 0
        self.progress = asyncio.Event()  # set whenever a file is finished (tests wait on it)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="transcriber")

    def wake(self) -> None:
        """Look for work now (a recording was just announced) instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; a file being decoded is abandoned at its next chunk and released for the
        next start (its attempt given back)."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)

    async def _run(self) -> None:
        while not self._stop.is_set() and not self.disabled:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away, …: say it and try again at the next poll
                log.warning("transcripts.round_failed", error=repr(exc)[:300])
                done = 0
            if done:
                continue  # there may be more waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def run_once(self) -> int:
        """Claim up to ``workers`` rows and transcribe them side by side; the number finished."""
        if self.disabled or self._stop.is_set():
            return 0
        jobs = await self._store.claim(self._clock(), limit=self.workers, lease=self._lease)
        if not jobs:
            return 0
        results = await asyncio.gather(*(self._one(job) for job in jobs), return_exceptions=True)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                log.error("transcripts.job_crashed", call_id=job.call_id, transcript_id=job.id, error=repr(result))
        return sum(1 for r in results if r is True)

    async def _one(self, job: TranscriptJob) -> bool:
        source = await self._model_for(job.language or "")
        if source is None:
            # Nothing is lost: the rows stay pending, and this worker stops claiming until the next start
            # (a configured, readable model) instead of taking and giving back the same rows every poll.
            if not self.disabled:
                self.disabled = True
                log.error("transcripts.no_model: recordings wait untranscribed until a model is configured",
                          language=job.language)
            await self._store.release(job)
            return False
        model, model_dir, language = source
        local = self._locator.local_path(job.recording_path)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        started = time.perf_counter()
        try:
            if local is None:
                raise TranscriptionFailed("recording path outside recordings.dir")
            work = asyncio.get_running_loop().run_in_executor(
                self._pool, lambda: transcribe_file(model, model_dir, local, max_seconds=self._max_seconds,
                                                    stop=self._stop))
            result = await self._holding(job, work)
        except TranscriptionFailed as exc:
            return await self._failed(job, str(exc), language, Path(model_dir).name)
        except TranscriptionStopped:
            await self._store.release(job)
            return False
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.release(job))
            raise
        except Exception as exc:  # vosk or numpy refusing the audio: the file's fault, one line
            return await self._failed(job, f"recognizer error: {type(exc).__name__}: {exc}"[:300], language,
                                      Path(model_dir).name)
        finally:
            self.running -= 1
        work = time.perf_counter() - started
        state = TranscriptState.DONE if result.words else TranscriptState.EMPTY
        speakers = sorted({w.speaker for w in result.words if w.speaker}, key=lambda s: STEREO_SPEAKERS.index(s))
        await self._event(job, state=state.value, language=language, model=Path(model_dir).name,
                          seconds=result.audio_seconds, words=len(result.words), speakers=speakers,
                          text=result.text[:TRANSCRIPT_EVENT_TEXT])
        ours = await self._store.finish(job, self._clock(), state=state, text=result.text, words=result.words,
                                        language=language, model=Path(model_dir).name, channels=result.channels,
                                        audio_seconds=result.audio_seconds, work_seconds=round(work, 3))
        log.info("transcripts.done", call_id=job.call_id, transcript_id=job.id, state=state.value,
                 words=len(result.words), audio_seconds=result.audio_seconds, work_seconds=round(work, 2),
                 cpu_seconds=round(result.cpu_seconds, 2), settled=ours)
        self.finished += 1
        self.progress.set()
        return True

    async def _holding(self, job: TranscriptJob, work: asyncio.Future[Transcription]) -> Transcription:
        """``work``'s result, renewing the row's lease while it runs."""
        while True:
            done, _ = await asyncio.wait({work}, timeout=self._lease / 3)
            if done:
                return work.result()
            try:
                await self._store.extend(job, self._clock() + timedelta(seconds=self._lease))
            except Exception as exc:  # the database away for a moment: the lease still has two thirds left
                log.warning("transcripts.lease_not_renewed", call_id=job.call_id, error=repr(exc)[:200])

    async def _failed(self, job: TranscriptJob, error: str, language: str, model: str) -> bool:
        log.warning("transcripts.failed", call_id=job.call_id, transcript_id=job.id, error=error)
        await self._event(job, state=TranscriptState.FAILED.value, language=language, model=model, words=0,
                          error=error)
        await self._store.finish(job, self._clock(), state=TranscriptState.FAILED, language=language, model=model,
                                 error=error)
        self.finished += 1
        self.progress.set()
        return True

    async def _event(self, job: TranscriptJob, **data: object) -> None:
        # Written before the row is settled: a crash in between re-transcribes the file and writes the
        # event again under the same uid, which lands once (timeline_events.event_uid is unique).
        await self._write_timeline([TimelineRecord(
            at=self._clock(), call_id=job.call_id, customer_id=job.customer_id, kind=EventKind.TRANSCRIPT_READY.value,
            data={"transcript_id": job.id, **data}, uid=event_uid(job.id),
        )])


def model_source(model_ru: str, model_en: str, model_transcripts: str, transcripts_language: str,
                 endpoint_silence: float = 0.0) -> ModelSource:
    """``model_for`` of the worker from the ``[speech]`` settings: ``model_transcripts`` (a big model,
    in ``transcripts_language``) for every call when set, else the call's language's own model
    (``model_en`` for English calls, ``model_ru`` otherwise). Each directory is loaded once per process
    (``ivr.speech.recognizer.load_model``: the calls' grammar recognizers share the same object, which
    is why the calls' ``speech.endpoint_silence`` is passed too: the model is cached per directory and
    endpoint; a file's transcript only splits its utterances by it)."""
    from ivr.speech.recognizer import ModelMissing, load_model

    loads: dict[str, asyncio.Future[vosk.Model | None]] = {}

    def choice(language: str) -> tuple[str, str] | None:
        if model_transcripts:
            return model_transcripts, transcripts_language
        if language == "en" and model_en:
            return model_en, "en"
        return (model_ru, "ru") if model_ru else None

    async def load(path: str) -> vosk.Model | None:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, load_model, path, endpoint_silence)
        except ModelMissing:
            log.error("transcripts.model_missing", path=path)
        except Exception as exc:
            log.error("transcripts.model_unreadable", path=path, error=str(exc)[:300])
        return None

    async def model_for(language: str) -> tuple[vosk.Model, str, str] | None:
        chosen = choice(language)
        if chosen is None:
            return None
        path, lang = chosen
        if path not in loads:
            loads[path] = asyncio.ensure_future(load(path))
        model = await asyncio.shield(loads[path])
        return (model, path, lang) if model is not None else None

    return model_for
