"""Turns a flow's prompt references into one audio file Asterisk can play, and the text it says.

Static prompts (no parameters) are whole-sentence recordings in the prompt cache, built by
``ivr prompts build``. A prompt with parameters is assembled from the segment library
(ivr/speech/segments.py) into one file: GET DATA / STREAM FILE take a single file
(shared/asterisk-traces), hence one composed file rather than a list.

- A prompt whose words are unique to the call (the read-back carries the order number) goes to
  ``calls/<random>.wav``, deleted by :meth:`Speaker.release` once the call has played it.
- Any other assembled prompt (a greeting: the same name and order next time) is cached by content
  in ``composed/<hash>.wav`` and evicted least recently used with the rest of the cache.

File names are hashes or random; the words go beside the audio (``.txt``) only with
``text_sidecars`` (``ivr serve --demo``), so in production no file carries a customer's name in
writing. Anything the library cannot say falls back to one whole-sentence synthesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from ivr.flows.model import PromptRef
from ivr.speech.prompt_cache import FILE_MODE, PromptCache
from ivr.speech.segments import SegmentLibrary, compose, pcm_to_wav, units_of
from prompts.phrasebook import PROMPT_PARAMS, Phrasebook, Segment

# Asterisk's own .wav format: 8 kHz, mono, 16-bit.
_BYTES_PER_SECOND = 8000 * 2
_WAV_HEADER = 44
_BETWEEN_PROMPTS = Segment(" ", (), "gap")

log = structlog.get_logger("ivr.speech")


@dataclass(frozen=True)
class Utterance:
    text: str
    local_path: Path  # without extension, on our side
    asterisk_path: str  # without extension, as Asterisk sees the same file
    seconds: float  # how long it plays
    transient: bool = False  # a per-call file: Speaker.release deletes it after playing


class SpeechError(RuntimeError):
    """The prompt could not be rendered or synthesized; the reason is in the message."""


class Speaker:
    def __init__(
        self, cache: PromptCache, *, asterisk_dir: str | None = None, deadline: float = 10.0, languages=("ru", "en"),
        library: SegmentLibrary | None = None, text_sidecars: bool = False,
    ) -> None:
        """``text_sidecars``: write the words of assembled prompts beside their audio (``<name>.txt``)
        for ``ivr call`` and people reading the directory; off in production, where those words carry
        a customer's name and nothing needs them (the timeline has the text)."""
        self._cache = cache
        self._library = library or SegmentLibrary(cache)
        cache.in_use = self._library.in_memory
        self._asterisk_dir = asterisk_dir or None
        self._text_sidecars = text_sidecars
        self._deadline = deadline
        self._phrasebooks = {lang: Phrasebook.load(lang) for lang in languages}
        self.fallbacks = 0  # prompts said by whole-sentence TTS because the library could not

    @property
    def tts_processes(self) -> int:
        """TTS processes run so far (static prompts, units, fallbacks): 0 per call in steady state."""
        return self._cache.syntheses

    def _book(self, language: str) -> Phrasebook:
        return self._phrasebooks.get(language) or self._phrasebooks["ru"]

    def segments(self, prompts: Sequence[PromptRef], language: str) -> list[Segment]:
        book = self._book(language)
        out: list[Segment] = []
        for prompt in prompts:
            if out:
                out.append(_BETWEEN_PROMPTS)
            out.extend(book.segments(prompt.prompt_id, **dict(prompt.params)))
        return out

    def text(self, prompts: Sequence[PromptRef], language: str) -> str:
        return "".join(segment.text for segment in self.segments(prompts, language))

    async def prepare(self, prompts: Sequence[PromptRef], language: str, *, deadline: float | None = None) -> Utterance:
        """Render the prompts and give the file that says them (one file: a key pressed at any
        moment of the whole sentence interrupts it, which keeps barge-in simple). ``deadline``: the
        caller's silence budget when shorter than the TTS deadline; a synthesis cut by it goes on
        for the other calls that wait for the same words (the caches shield it)."""
        try:
            segments = self.segments(prompts, language)
            text = "".join(segment.text for segment in segments)
            async with asyncio.timeout(self._deadline if deadline is None else min(deadline, self._deadline)):
                if all(not PROMPT_PARAMS.get(p.prompt_id) for p in prompts):
                    local, transient = await self._cache.path_for(text, language), False
                elif _per_call(prompts):
                    local, transient = await self._assemble(segments, text, language), True
                else:
                    local, transient = await self._composed(segments, text, language), False
        except TimeoutError as exc:
            raise SpeechError("tts_timeout") from exc
        except Exception as exc:
            raise SpeechError(f"tts_error: {exc!r}") from exc
        wav = local.with_name(local.name + ".wav")
        try:
            seconds = max(0.0, (wav.stat().st_size - _WAV_HEADER) / _BYTES_PER_SECOND)
        except OSError as exc:  # never ask Asterisk to play a file that is not there
            raise SpeechError(f"prompt_missing: {wav}") from exc
        return Utterance(text=text, local_path=local, asterisk_path=self._asterisk_path(local), seconds=seconds,
                         transient=transient)

    def _asterisk_path(self, local: Path) -> str:
        """The same file as Asterisk sees it: ``agi.asterisk_prompts_dir`` maps ``prompts.dir``; a
        ``prompts.calls_dir`` outside it (a tmpfs) is at the same path on both sides."""
        if self._asterisk_dir is None or not local.is_relative_to(self._cache.directory):
            return str(local)
        return str(Path(self._asterisk_dir) / local.relative_to(self._cache.directory))

    def release(self, utterance: Utterance) -> None:
        """The call is done with this prompt (its GET DATA / STREAM FILE returned): delete a per-call file."""
        if not utterance.transient:
            return
        for suffix in (".wav", ".txt"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{utterance.local_path}{suffix}")

    async def _audio(self, segments: Sequence[Segment], text: str, language: str) -> bytes:
        try:
            return pcm_to_wav(compose(segments, await self._library.audio(units_of(segments), language)))
        except Exception as exc:  # the library failed: the caller still hears the sentence
            self.fallbacks += 1
            log.warning("prompt.segments_failed", error=repr(exc), language=language)
            return await self._cache.synthesize(text, language)

    async def _assemble(self, segments: Sequence[Segment], text: str, language: str) -> Path:
        """A prompt said once (it carries this call's order number): a per-call file."""
        data = await self._audio(segments, text, language)
        base = self._cache.calls_dir / uuid.uuid4().hex
        # No temp file and rename as for shared cache files: the random name reaches Asterisk only
        # after the writes returned, so nobody can read a half-written file (two syscalls saved).
        # The text first: a playable prompt always has its words.
        if self._text_sidecars:
            _write_new(base.with_name(base.name + ".txt"), text.encode("utf-8"))
        _write_new(base.with_name(base.name + ".wav"), data)
        return base

    async def _composed(self, segments: Sequence[Segment], text: str, language: str) -> Path:
        """A prompt that recurs (a greeting, a question about an item): kept by content.

        A repeat caller whose order did not change hears the same greeting as last time: measured,
        writing an assembled prompt is the largest single cost of a call here (~0.25 ms of CPU per
        80 KB on ext4), so a recurring one is written once and found by its hash afterwards.
        """
        base = self._cache.composed_dir / self._cache.key(text, language)
        wav = base.with_name(base.name + ".wav")
        try:
            os.utime(wav)  # a hit: most recently used (the sweep evicts the least)
            return base
        except FileNotFoundError:
            pass
        data = await self._audio(segments, text, language)
        if self._text_sidecars:
            self._cache.write_atomic(base.with_name(base.name + ".txt"), text.encode("utf-8"))
        self._cache.write_atomic(wav, data)  # shared by concurrent calls: appears whole, by rename
        self._cache.note_written(len(data))
        return base


# Parameters that make a prompt's words unique to one call: such a prompt goes to a per-call file
# (deleted after playing); every other assembled prompt is cached by content.
PER_CALL_PARAMS = frozenset({"number"})


def _per_call(prompts: Sequence[PromptRef]) -> bool:
    return any(name in PER_CALL_PARAMS for p in prompts for name in PROMPT_PARAMS.get(p.prompt_id, ()))


def _write_new(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileNotFoundError:  # calls/ swept away or never made
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
