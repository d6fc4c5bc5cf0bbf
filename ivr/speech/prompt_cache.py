"""Synthesized prompts on disk, keyed by what was said and how; built once, read by Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from ivr.speech.audio import AudioError, to_asterisk_wav
from ivr.speech.tts import TtsEngine, TtsError
from prompts.phrasebook import Phrasebook, static_prompt_ids

FILE_MODE = 0o644  # Asterisk runs as another user: it needs to read what we write


class PromptCache:
    """``path_for(text, language)`` -> path (no extension) of an 8 kHz WAV saying ``text``.

    The file name is the first 32 hex digits of sha256 over the engine name (plus its
    ``cache_tag``, e.g. the speaking rate, when it has one), the voice and the text, so a change of
    any of them is a new file and stale audio is never played. Concurrent requests for the same
    key share one synthesis; files appear atomically (temp file in the same directory, then
    ``os.replace``), so Asterisk never plays half a file.
    """

    def __init__(
        self, directory: Path, engine: TtsEngine, voices: Mapping[str, str], *, fsync: bool = False
    ) -> None:
        self.directory = Path(directory)
        self.engine = engine
        self.voices = dict(voices)
        self.fsync = fsync
        self.hits = 0
        self.misses = 0
        self._inflight: dict[str, asyncio.Task[Path]] = {}

    def _voice(self, language: str) -> str:
        try:
            return self.voices[language]
        except KeyError:
            raise TtsError(f"no voice configured for language {language!r}") from None

    def key(self, text: str, language: str) -> str:
        tag = getattr(self.engine, "cache_tag", "")
        parts = [self.engine.name + (f"[{tag}]" if tag else ""), self._voice(language), text]
        return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]

    def _base(self, text: str, language: str) -> Path:
        return self.directory / self.key(text, language)

    def exists(self, text: str, language: str) -> bool:
        return self._base(text, language).with_suffix(".wav").is_file()

    async def path_for(self, text: str, language: str) -> Path:
        """The cached prompt's path without ".wav" (as STREAM FILE / GET DATA want it)."""
        base = self._base(text, language)
        wav = base.with_suffix(".wav")
        key = base.name
        task = self._inflight.get(key)
        if task is None:
            if wav.is_file():
                self.hits += 1
                return base
            self.misses += 1
            task = asyncio.create_task(self._build(text, self._voice(language), wav))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        else:
            self.hits += 1  # someone is synthesizing it right now: wait for that one
        # shield: a caller that hangs up must not cancel the synthesis the others wait for.
        await asyncio.shield(task)
        return base

    def _finished(self, key: str, task: asyncio.Task[Path]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here, raised to every waiter: no "never retrieved" noise

    async def _build(self, text: str, voice: str, wav: Path) -> Path:
        audio = await self.engine.synthesize(text, voice)
        await asyncio.to_thread(self._convert_and_write, audio, text, wav)
        return wav

    def _convert_and_write(self, audio: bytes, text: str, wav: Path) -> None:
        try:
            data = to_asterisk_wav(audio)
        except AudioError as exc:
            raise TtsError(f"{self.engine.name} returned audio we cannot convert: {exc}") from exc
        self.directory.mkdir(parents=True, exist_ok=True)
        # The words beside the audio (<key>.txt): `ivr call` and people reading the directory see
        # what each file says. Written before the .wav, so a playable prompt always has its text.
        self.write_atomic(wav.with_suffix(".txt"), text.encode("utf-8"))
        self.write_atomic(wav, data)

    def write_atomic(self, target: Path, data: bytes) -> None:
        """Write a file Asterisk may read at any moment: temp file beside it, then rename."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                if self.fsync:
                    tmp.flush()
                    os.fsync(tmp.fileno())
            os.chmod(tmp_name, FILE_MODE)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise


async def build_static(cache: PromptCache, languages: Iterable[str]) -> int:
    """Synthesize every parameterless prompt of every language ahead of calls (``ivr prompts build``).

    Returns how many files were newly synthesized (0 when everything was already cached).
    """
    before = cache.misses
    for language in languages:
        phrasebook = Phrasebook.load(language)
        texts = {phrasebook.render(prompt_id) for prompt_id in static_prompt_ids()}
        await asyncio.gather(*(cache.path_for(text, language) for text in sorted(texts)))
    return cache.misses - before


# Prompts the dialplan plays by a fixed name (queues_ivr.conf's periodic announcement).
DIALPLAN_PROMPTS = ("queue_callback_offer",)


async def build_named(cache: PromptCache, languages: Iterable[str], prompt_ids: Iterable[str] = DIALPLAN_PROMPTS
                      ) -> list[Path]:
    """Write ``<dir>/named/<prompt_id>-<language>.wav`` for prompts Asterisk plays by name.

    The content-addressed cache names change with the text; the dialplan needs a stable name.
    """
    named_dir = cache.directory / "named"
    written: list[Path] = []
    ids = tuple(prompt_ids)
    for language in languages:
        phrasebook = Phrasebook.load(language)
        for prompt_id in ids:
            source = (await cache.path_for(phrasebook.render(prompt_id), language)).with_suffix(".wav")
            target = named_dir / f"{prompt_id}-{language}.wav"
            await asyncio.to_thread(cache.write_atomic, target, source.read_bytes())
            written.append(target)
    return written
