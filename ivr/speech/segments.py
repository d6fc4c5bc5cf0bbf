"""Prompts assembled from pre-rendered units: no TTS process per call once the units exist.

A parameterised prompt (the greeting with a name and the last order, the read-back of a new order)
is different for every call, so a whole-sentence recording is synthesized once and never reused:
espeak-ng costs ~29 ms of CPU, resampling and files another ~7 ms, per call (issue 7). The
phrasebook cuts every prompt into :class:`prompts.phrasebook.Segment` s whose units repeat across
calls: template literals, number words (0..99 in each gender and case, nine hundreds, scale words),
agreed units, product names, dates, hours, and each customer's name. Each unit is synthesized once,
cleaned once (see :func:`prepare_unit`) and kept on disk under ``segments/`` and as PCM in memory;
a prompt is then a concatenation with pauses, well under a millisecond of CPU.

Seams: units are trimmed of leading/trailing silence, levelled to one RMS (with a peak limit) and
faded in/out over 5 ms when they are built, so composing is a plain concatenation without clicks
or jumps in loudness. Pauses follow the punctuation between units: a short gap between words, a
longer one at a comma or colon, the longest at a sentence end.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ivr.speech.audio import ASTERISK_RATE, pcm16_wav, read_pcm16
from prompts.phrasebook import Segment

if TYPE_CHECKING:
    from ivr.speech.prompt_cache import PromptCache

# Version of the processing below: a change of trimming or levelling is a new set of files.
_PROCESSING = "segment-v1"
_FRAME = ASTERISK_RATE // 100  # 10 ms analysis frames
_SILENCE_DB = -40.0  # frames this far below the loudest frame are silence
_TARGET_RMS = 10 ** (-20 / 20)  # speech level every unit is brought to (dBFS of the voiced frames)
_PEAK_LIMIT = 10 ** (-1 / 20)  # never closer than 1 dB to full scale
_FADE = ASTERISK_RATE * 5 // 1000  # 5 ms fade at each edge: no click at a seam

# Pauses in seconds, by the punctuation between two units.
WORD_GAP = 0.06
CLAUSE_PAUSE = 0.22  # , : ; — and dashes
SENTENCE_PAUSE = 0.42  # . ! ?
EDGE = 0.08  # before the first and after the last unit


class SegmentError(RuntimeError):
    """The library cannot say these segments (a unit without audio); the caller falls back."""


def prepare_unit(wav_bytes: bytes) -> np.ndarray:
    """8 kHz WAV of one unit -> int16 PCM trimmed, levelled and faded, ready to concatenate."""
    samples, rate = read_pcm16(wav_bytes)
    if rate != ASTERISK_RATE:
        raise SegmentError(f"unit audio must be {ASTERISK_RATE} Hz, got {rate}")
    mono = samples.mean(axis=1, dtype=np.float64)
    frames = len(mono) // _FRAME
    if frames == 0:
        raise SegmentError("unit audio is shorter than 10 ms")
    rms = np.sqrt(np.mean(mono[: frames * _FRAME].reshape(frames, _FRAME) ** 2, axis=1))
    loudest = float(rms.max())
    if loudest <= 1e-5:
        raise SegmentError("unit audio is silent")
    voiced = np.flatnonzero(rms >= loudest * 10 ** (_SILENCE_DB / 20))
    # One frame of margin each side keeps soft onsets and releases (fricatives, final vowels).
    start = max(0, (int(voiced[0]) - 1) * _FRAME)
    end = min(len(mono), (int(voiced[-1]) + 2) * _FRAME)
    clip = mono[start:end].copy()
    level = float(np.sqrt(np.mean(rms[voiced] ** 2)))
    gain = min(_TARGET_RMS / level, _PEAK_LIMIT / float(np.abs(clip).max()))
    clip *= gain
    fade = min(_FADE, len(clip) // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        clip[:fade] *= ramp
        clip[-fade:] *= ramp[::-1]
    return np.clip(np.rint(clip * 32768.0), -32768, 32767).astype("<i2")


def pause_for(gap: str) -> float:
    """The silence that stands for the punctuation (and spaces) between two units."""
    if any(c in gap for c in ".!?"):
        return SENTENCE_PAUSE
    if any(c in gap for c in ",:;—–"):
        return CLAUSE_PAUSE
    return WORD_GAP


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * ASTERISK_RATE), dtype="<i2")


def compose(segments: Sequence[Segment], audio: Sequence[np.ndarray]) -> np.ndarray:
    """One int16 track: ``audio`` holds the PCM of every unit of ``segments`` in order."""
    parts: list[np.ndarray] = [_silence(EDGE)]
    units = iter(audio)
    previous_was_unit = False
    for segment in segments:
        if segment.is_gap:
            parts.append(_silence(pause_for(segment.text)))
            previous_was_unit = False
            continue
        for _unit in segment.say:
            if previous_was_unit:  # two units of one segment, or adjacent segments: a word gap
                parts.append(_silence(WORD_GAP))
            parts.append(next(units))
            previous_was_unit = True
    parts.append(_silence(EDGE))
    return np.concatenate(parts)


def units_of(segments: Iterable[Segment]) -> list[str]:
    """Every unit the segments say, in order; SegmentError if a worded segment has none."""
    units: list[str] = []
    for segment in segments:
        if not segment.is_gap and not segment.say:
            raise SegmentError(f"no units for {segment.text!r}")
        units.extend(segment.say)
    return units


class SegmentLibrary:
    """Units as PCM: in memory after first use, on disk under ``<prompts.dir>/segments``.

    A unit missing from both is synthesized once (concurrent requests share the synthesis) through
    the prompt cache, which counts every TTS process. Memory is bounded: least recently used units
    are dropped from memory (not from disk) beyond ``memory_bytes``; 64 MB hold ~4,000 seconds of
    8 kHz speech, i.e. the whole static library plus thousands of names.
    """

    def __init__(self, cache: PromptCache, *, memory_bytes: int = 64 * 1024 * 1024) -> None:
        self.cache = cache
        self.directory = cache.directory / "segments"
        self.memory_bytes = memory_bytes
        self._pcm: OrderedDict[str, np.ndarray] = OrderedDict()
        self._held = 0
        self._inflight: dict[str, asyncio.Task[np.ndarray]] = {}

    def key(self, unit: str, language: str) -> str:
        return self.cache.key(f"{_PROCESSING}\0{unit}", language)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.wav"

    def in_memory(self) -> set[str]:
        """Keys held in memory: in use, so the disk sweep must not count them as old."""
        return set(self._pcm)

    async def audio(self, units: Sequence[str], language: str) -> list[np.ndarray]:
        """PCM of each unit, in order; without any await when all are in memory (the steady state)."""
        keys = [self.key(unit, language) for unit in units]
        missing = {key: unit for key, unit in zip(keys, units, strict=True) if key not in self._pcm}
        if missing:
            await asyncio.gather(*(self._get(key, unit, language) for key, unit in missing.items()))
        out = []
        for key in keys:
            pcm = self._pcm.get(key)
            if pcm is None:  # dropped from memory by a concurrent load: reload it
                pcm = await self._get(key, "", language)
            else:
                self._pcm.move_to_end(key)
            out.append(pcm)
        return out

    async def ensure(self, units: Iterable[str], language: str, *, concurrency: int = 2) -> int:
        """Make every unit exist on disk (``ivr prompts build``, warm-up); returns how many were synthesized."""
        before = self.cache.syntheses
        gate = asyncio.Semaphore(concurrency)

        async def one(unit: str) -> None:
            key = self.key(unit, language)
            if key in self._pcm or self.path(key).is_file():
                return
            async with gate:
                await self._get(key, unit, language)

        await asyncio.gather(*(one(unit) for unit in dict.fromkeys(units)))
        return self.cache.syntheses - before

    async def _get(self, key: str, unit: str, language: str) -> np.ndarray:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key, unit, language))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        # shield: a caller that hangs up must not cancel the synthesis the others wait for.
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Task[np.ndarray]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, raised to every waiter

    async def _fetch(self, key: str, unit: str, language: str) -> np.ndarray:
        path = self.path(key)
        try:
            pcm = await asyncio.to_thread(_read_unit, path)
        except (FileNotFoundError, ValueError):
            if not unit:
                raise SegmentError(f"unit {key} vanished from memory and disk") from None
            wav = await self.cache.synthesize(unit, language)
            pcm = await asyncio.to_thread(self._prepare_and_write, wav, path)
            self.cache.note_written(pcm.nbytes)
        self._remember(key, pcm)
        return pcm

    def _prepare_and_write(self, wav: bytes, path: Path) -> np.ndarray:
        pcm = prepare_unit(wav)
        self.cache.write_atomic(path, pcm_to_wav(pcm))
        return pcm

    def _remember(self, key: str, pcm: np.ndarray) -> None:
        if key in self._pcm:
            return
        self._pcm[key] = pcm
        self._held += pcm.nbytes
        while self._held > self.memory_bytes and len(self._pcm) > 1:
            _, dropped = self._pcm.popitem(last=False)
            self._held -= dropped.nbytes


def _read_unit(path: Path) -> np.ndarray:
    samples, rate = read_pcm16(path.read_bytes())
    if rate != ASTERISK_RATE or samples.shape[1] != 1:
        raise ValueError(f"{path} is not 8 kHz mono")
    return np.rint(samples[:, 0] * 32768.0).astype("<i2")


def pcm_to_wav(pcm: np.ndarray) -> bytes:
    """int16 mono PCM -> 8 kHz WAV bytes (a 44-byte header and the samples; pydub, measured the same
    8 µs for 6 s of audio as the ``wave`` module it replaced)."""
    return pcm16_wav(pcm.astype("<i2", copy=False).tobytes(), ASTERISK_RATE)
