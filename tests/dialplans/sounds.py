"""Every sound file the configs of ``dialplans/`` make Asterisk play, and where Asterisk finds it.

Used by the tests that build the prompts (``ivr prompts build``, ``ivr serve``'s start-up warm-up,
the named-prompt builder): after a build, each sound of ours must be found, for a caller of every
language the product serves, as that language's own file, and be a WAV Asterisk plays as is
(8 kHz, mono, 16-bit PCM, not empty).

Asterisk's search (main/file.c, fileexists_core) for a file name F and channel language L:
L and L without its ``_suffix``es, then no language, then ``en``. For an absolute F the language
goes in as a directory before the file name (``/dir/L/name``); for a relative F it goes first
(``sounds/L/F``, languageprefix=yes, the default). Only ``.wav`` is looked for: it is what we build.
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.dialplans.asterisk_conf import Entry, config_files, entries, priorities

# Where Asterisk sees prompts.dir: the docker-compose volume and agi.asterisk_prompts_dir there.
# test_sounds.py checks docker-compose.yml says the same.
ASTERISK_SOUNDS = PurePosixPath("/var/lib/asterisk/sounds")
ASTERISK_PROMPTS_DIR = ASTERISK_SOUNDS / "ivr"

# queues.conf options that name sound files (apps/app_queue.c, queue_set_param()).
QUEUE_SOUND_OPTIONS = frozenset({
    "announce", "periodic-announce", "queue-youarenext", "queue-thereare", "queue-callswaiting",
    "queue-quantity1", "queue-quantity2", "queue-holdtime", "queue-minutes", "queue-minute",
    "queue-seconds", "queue-thankyou", "queue-callerannounce", "queue-reporthold",
})
# Dialplan applications that play files, and which argument holds them ("&"-separated lists).
PLAYING_APPS = {"playback": 0, "background": 0, "controlplayback": 0, "read": 1, "queue": 3}


@dataclass(frozen=True)
class Sound:
    name: str  # as written: absolute, or relative to Asterisk's sounds directory
    where: str

    @property
    def ours(self) -> bool:
        path = PurePosixPath(self.name)
        if path.is_absolute():
            return path.is_relative_to(ASTERISK_PROMPTS_DIR)
        return path.is_relative_to(ASTERISK_PROMPTS_DIR.relative_to(ASTERISK_SOUNDS))


def _queue_sounds(entry: Entry) -> list[Sound]:
    if entry.key.lower() not in QUEUE_SOUND_OPTIONS or not entry.value:
        return []
    return [Sound(name.strip(), entry.where()) for name in re.split(r"[,|]", entry.value) if name.strip()]


def referenced_sounds() -> list[Sound]:
    """Every sound file named by a queue option or a playing application in dialplans/*.conf."""
    sounds: list[Sound] = []
    for path in config_files():
        for entry in entries(path):
            if entry.key not in ("exten", "same"):
                sounds.extend(_queue_sounds(entry))
        if path.name.startswith("extensions"):
            for step in priorities(path):
                index = PLAYING_APPS.get(step.app.lower())
                if index is not None and len(step.args) > index and step.args[index]:
                    sounds.extend(Sound(name, step.where()) for name in step.args[index].split("&") if name)
    return sounds


def candidates(name: str, language: str) -> list[PurePosixPath]:
    """Where Asterisk looks for ``name`` on a channel of ``language``, first match wins (no extension)."""
    languages = [language]
    while "_" in languages[-1]:
        languages.append(languages[-1].rsplit("_", 1)[0])
    path = PurePosixPath(name)
    found: list[PurePosixPath] = []
    for lang in [*languages, None, *([] if "en" in languages else ["en"])]:
        if path.is_absolute():
            found.append(path.parent / lang / path.name if lang else path)
        else:
            found.append(ASTERISK_SOUNDS / lang / path if lang else ASTERISK_SOUNDS / path)
    return found


def local_file(asterisk_path: PurePosixPath, prompts_dir: Path) -> Path | None:
    """Our file behind a path as Asterisk sees it; None outside prompts.dir."""
    if not asterisk_path.is_relative_to(ASTERISK_PROMPTS_DIR):
        return None
    return prompts_dir / asterisk_path.relative_to(ASTERISK_PROMPTS_DIR)


def resolve(name: str, language: str, prompts_dir: Path) -> tuple[int, Path] | None:
    """(rank of the match among the candidates, our file) that Asterisk would play, or None."""
    for rank, candidate in enumerate(candidates(name, language)):
        local = local_file(candidate.with_name(candidate.name + ".wav"), prompts_dir)
        if local is not None and local.is_file():
            return rank, local
    return None


def playable_problem(path: Path) -> str | None:
    """Why Asterisk's .wav format (8 kHz mono 16-bit PCM) would not play this file as is, if so."""
    try:
        with wave.open(str(path)) as audio:
            shape = (audio.getframerate(), audio.getnchannels(), audio.getsampwidth(), audio.getcomptype())
            frames = audio.getnframes()
    except (wave.Error, EOFError) as exc:
        return f"not a WAV file: {exc}"
    if shape != (8000, 1, 2, "NONE"):
        return f"rate/channels/width/compression {shape}, not (8000, 1, 2, 'NONE')"
    if frames < 800:
        return f"{frames} frames: less than 0.1 s of audio"
    return None


def missing_sounds(prompts_dir: Path, languages: tuple[str, ...]) -> list[str]:
    """What a caller of each language would not hear as their own language's file, as messages."""
    problems: list[str] = []
    sounds = [s for s in referenced_sounds() if s.ours]
    for sound in sounds:
        for language in languages:
            found = resolve(sound.name, language, prompts_dir)
            if found is None:
                problems.append(f"{sound.where}: {sound.name} ({language}): no file Asterisk would find")
                continue
            rank, local = found
            if rank != 0:
                problems.append(f"{sound.where}: {sound.name} ({language}): only {local} of another language")
            elif (why := playable_problem(local)) is not None:
                problems.append(f"{sound.where}: {local}: {why}")
    return problems
