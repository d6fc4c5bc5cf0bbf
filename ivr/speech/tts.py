"""Text-to-speech engines behind one protocol; each call runs a subprocess with a deadline.

Text always goes through stdin, never argv: a text that starts with "-" would be read as an
option, and nothing has to be quoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import unicodedata
from typing import Protocol, runtime_checkable

from ivr.speech.audio import AudioError, read_pcm16


class TtsError(Exception):
    """Synthesis failed: missing binary, non-zero exit, deadline passed or no audio produced."""


@runtime_checkable
class TtsEngine(Protocol):
    name: str

    async def synthesize(self, text: str, voice: str) -> bytes:
        """WAV bytes at the engine's native rate."""
        ...


_VOICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-]*")


def _check_request(text: str, voice: str) -> None:
    if not text.strip():
        raise TtsError("nothing to say: empty text")
    if not _VOICE_RE.fullmatch(voice):
        raise TtsError(f"bad voice name {voice!r}")


async def _run(argv: list[str], stdin: bytes, deadline: float) -> bytes:
    """Run ``argv`` feeding ``stdin``; its stdout, or TtsError (with stderr) on any failure."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:  # FileNotFoundError, PermissionError
        raise TtsError(f"cannot start {argv[0]}: {exc}") from exc
    try:
        async with asyncio.timeout(deadline):
            stdout, stderr = await process.communicate(stdin)
    except TimeoutError:
        raise TtsError(f"{argv[0]} did not finish within {deadline} s") from None
    finally:
        if process.returncode is None:  # timed out or cancelled: never leave the child behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
    message = stderr.decode("utf-8", "replace").strip()
    if process.returncode != 0:
        raise TtsError(f"{argv[0]} exited with {process.returncode}: {message}")
    if "SIOD ERROR" in message:  # festival reports Scheme errors on stderr and still exits 0
        raise TtsError(f"{argv[0]}: {message}")
    _check_audio(argv[0], stdout, message)
    return stdout


def _check_audio(program: str, wav: bytes, stderr: str) -> None:
    try:
        samples, _rate = read_pcm16(wav)
    except AudioError as exc:
        raise TtsError(f"{program} produced no usable WAV ({exc}): {stderr}") from exc
    if not len(samples):
        raise TtsError(f"{program} produced no audio: {stderr or 'no message'}")


class EspeakEngine:
    """espeak-ng: ``espeak-ng -v <voice> -s <rate> -b 1 --stdout`` with UTF-8 text on stdin."""

    name = "espeak-ng"

    def __init__(self, rate_wpm: int = 150, deadline: float = 10.0, binary: str = "espeak-ng") -> None:
        if not 80 <= rate_wpm <= 450:
            raise ValueError(f"espeak-ng rate must be within 80..450 wpm, got {rate_wpm}")
        self.rate_wpm = rate_wpm
        self.deadline = deadline
        self.binary = binary
        # Part of the prompt cache key: a different speed is a different recording.
        self.cache_tag = f"rate={rate_wpm}"

    async def synthesize(self, text: str, voice: str) -> bytes:
        _check_request(text, voice)
        argv = [self.binary, "-v", voice, "-s", str(self.rate_wpm), "-b", "1", "--stdin", "--stdout"]
        return await _run(argv, text.encode("utf-8"), self.deadline)


class FestivalEngine:
    """Festival's ``text2wave``, text on stdin.

    Voice "ru" (or "msu_ru_nsh_clunits") selects festvox-ru, which reads UTF-8 (its lexicon
    explodes words with ``utf8explode``; README.Debian: "text input should have UTF-8 encoding").
    "en", "en-us", "default" keep festival's default voice, whose English front end works on
    single bytes: the text is folded to Latin-1 (accents stripped, unknown characters dropped).
    Any other name selects ``voice_<name>``.
    """

    name = "festival"
    RUSSIAN_VOICE = "msu_ru_nsh_clunits"

    def __init__(self, deadline: float = 10.0, binary: str = "text2wave") -> None:
        self.deadline = deadline
        self.binary = binary
        self.cache_tag = ""

    def _voice(self, voice: str) -> tuple[str | None, str]:
        """(festival voice to select or None for the default, text encoding)."""
        lowered = voice.lower()
        if lowered in ("ru", "ru-ru", "russian") or lowered == self.RUSSIAN_VOICE:
            return self.RUSSIAN_VOICE, "utf-8"
        if lowered in ("en", "en-us", "en-gb", "english", "default"):
            return None, "latin-1"
        if not re.fullmatch(r"[a-z0-9_]+", lowered):
            raise TtsError(f"bad festival voice name {voice!r}")
        return lowered, "utf-8" if "_ru_" in lowered else "latin-1"

    @staticmethod
    def _encode(text: str, encoding: str) -> bytes:
        if encoding == "utf-8":
            return text.encode("utf-8")
        folded = unicodedata.normalize("NFKD", text.replace("«", '"').replace("»", '"'))
        return "".join(c for c in folded if not unicodedata.combining(c)).encode("latin-1", "ignore")

    async def synthesize(self, text: str, voice: str) -> bytes:
        _check_request(text, voice)
        festival_voice, encoding = self._voice(voice)
        argv = [self.binary]
        if festival_voice:
            argv += ["-eval", f"(voice_{festival_voice})"]
        return await _run(argv, self._encode(text, encoding), self.deadline)


def engine_by_name(name: str, *, rate_wpm: int = 150, deadline: float = 10.0) -> TtsEngine:
    """The engine configured as ``prompts.engine``: "espeak-ng" (alias "espeak") or "festival"."""
    match name.lower():
        case "espeak-ng" | "espeak":
            return EspeakEngine(rate_wpm=rate_wpm, deadline=deadline)
        case "festival" | "text2wave":
            return FestivalEngine(deadline=deadline)
    raise ValueError(f"unknown TTS engine {name!r} (known: espeak-ng, festival)")


def engine_available(name: str) -> bool:
    """Whether the engine's binary is on PATH."""
    binary = {"espeak-ng": "espeak-ng", "espeak": "espeak-ng", "festival": "text2wave"}.get(name.lower())
    return binary is not None and shutil.which(binary) is not None
