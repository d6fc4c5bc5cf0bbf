"""Turns a flow's prompt references into one audio file Asterisk can play, and the text it says."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.flows.model import PromptRef
from ivr.speech.prompt_cache import PromptCache
from prompts.phrasebook import Phrasebook

# Asterisk's own .wav format: 8 kHz, mono, 16-bit.
_BYTES_PER_SECOND = 8000 * 2
_WAV_HEADER = 44


@dataclass(frozen=True)
class Utterance:
    text: str
    local_path: Path  # without extension, on our side
    asterisk_path: str  # without extension, as Asterisk sees the same file
    seconds: float  # how long it plays


class SpeechError(RuntimeError):
    """The prompt could not be rendered or synthesized; the reason is in the message."""


class Speaker:
    def __init__(
        self, cache: PromptCache, *, asterisk_dir: str | None = None, deadline: float = 10.0, languages=("ru", "en")
    ) -> None:
        self._cache = cache
        self._asterisk_dir = asterisk_dir or None
        self._deadline = deadline
        self._phrasebooks = {lang: Phrasebook.load(lang) for lang in languages}

    def text(self, prompts: Sequence[PromptRef], language: str) -> str:
        book = self._phrasebooks.get(language) or self._phrasebooks["ru"]
        return " ".join(book.render(p.prompt_id, **dict(p.params)) for p in prompts)

    async def prepare(self, prompts: Sequence[PromptRef], language: str) -> Utterance:
        """Render and synthesize (or find in the cache) the prompts as one file.

        One file per question keeps barge-in simple: a key pressed at any moment of the whole
        sentence interrupts it.
        """
        try:
            text = self.text(prompts, language)
            local = await asyncio.wait_for(self._cache.path_for(text, language), self._deadline)
        except TimeoutError as exc:
            raise SpeechError("tts_timeout") from exc
        except Exception as exc:
            raise SpeechError(f"tts_error: {exc!r}") from exc
        wav = local.with_name(local.name + ".wav")
        try:
            seconds = max(0.0, (wav.stat().st_size - _WAV_HEADER) / _BYTES_PER_SECOND)
        except OSError as exc:  # never ask Asterisk to play a file that is not there
            raise SpeechError(f"prompt_missing: {wav}") from exc
        asterisk_path = str(Path(self._asterisk_dir) / local.name) if self._asterisk_dir else str(local)
        return Utterance(text=text, local_path=local, asterisk_path=asterisk_path, seconds=seconds)
