"""Synthesized prompts on disk, keyed by what was said and how; built once, read by Asterisk.

Layout of ``prompts.dir``: ``<key>.wav`` (+ ``<key>.txt``, its words) for static prompts (no
personal data), ``segments/<key>.wav`` for the units prompts are assembled from (no text beside
them: a name's unit says a customer's name), ``calls/<random>.wav`` (+ ``.txt``) for a composed
prompt while its call plays it, ``composed/<key>.wav`` for assembled prompts that recur (a repeat
caller's greeting: it says the name), and ``named/`` for prompts the dialplan plays by name. All
names are hashes or random. The cache has a size limit and ``composed/`` an age limit, applied by
:meth:`PromptCache.sweep` at start, every ``SWEEP_INTERVAL`` and whenever 5 % of the size limit was
written since the last sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from crm_bridge.demo import DEMO_DIR
from ivr.speech.audio import AudioError, to_asterisk_wav
from ivr.speech.tts import TtsEngine, TtsError
from prompts.phrasebook import Phrasebook, static_prompt_ids
from prompts.vocabulary import vocabulary

FILE_MODE = 0o644  # Asterisk runs as another user: it needs to read what we write
# A composed per-call file is deleted when its call has played it; one left behind by a crash is
# swept once it is older than any prompt plus its media slack could take.
CALL_FILE_MAX_AGE = 600.0
# Between sweeps at most this long: a greeting past its age limit, or a per-call file left by a crash,
# stays on disk this much longer at most.
SWEEP_INTERVAL = 3600.0
# After eviction the cache is at most this share of its limit, so a sweep is not due again at once.
_SWEEP_LOW_WATER = 0.9

log = structlog.get_logger("ivr.speech")


@dataclass(frozen=True)
class SweepReport:
    files_removed: int
    bytes_removed: int
    bytes_kept: int


class PromptCache:
    """``path_for(text, language)`` -> path (no extension) of an 8 kHz WAV saying ``text``.

    The file name is the first 32 hex digits of sha256 over the engine name (plus its
    ``cache_tag``, e.g. the speaking rate, when it has one), the voice and the text, so a change of
    any of them is a new file and stale audio is never played. Concurrent requests for the same
    key share one synthesis; files appear atomically (temp file in the same directory, then
    ``os.replace``), so Asterisk never plays half a file.
    """

    def __init__(
        self, directory: Path, engine: TtsEngine, voices: Mapping[str, str], *, fsync: bool = False,
        max_bytes: int | None = None, calls_dir: Path | None = None, composed_max_age: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        # Per-call files: under the directory by default; elsewhere (a tmpfs) by configuration.
        self.calls_dir = Path(calls_dir) if calls_dir is not None else self.directory / "calls"
        # Assembled prompts that recur (a repeat caller's greeting: same name, same order): kept by
        # content like the static prompts, evicted least recently used like them.
        self.composed_dir = self.directory / "composed"
        self.engine = engine
        self.voices = dict(voices)
        self.fsync = fsync
        self.max_bytes = max_bytes
        # Seconds since its last use after which a composed prompt goes (it says a customer's name).
        self.composed_max_age = composed_max_age
        self.hits = 0
        self.misses = 0
        self.syntheses = 0  # TTS processes run, for any purpose: the "0 per call" of issue 7
        self._inflight: dict[str, asyncio.Task[Path]] = {}
        self._written_since_sweep = 0
        self._sweeping: asyncio.Task[SweepReport] | None = None
        # One sweep at a time (the start-up, hourly and size-triggered ones run in threads): two at
        # once would race to delete the same files and both count them.
        self._sweep_lock = threading.Lock()
        # Keys the segment library holds in memory: in use even if their files look old.
        self.in_use: Callable[[], set[str]] = set

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
                if self.max_bytes is not None:
                    with contextlib.suppress(OSError):
                        os.utime(wav)  # least recently used is what the sweep evicts first
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

    async def synthesize(self, text: str, language: str) -> bytes:
        """One TTS process: ``text`` as 8 kHz mono 16-bit WAV bytes (nothing is written)."""
        voice = self._voice(language)
        self.syntheses += 1
        audio = await self.engine.synthesize(text, voice)
        return await asyncio.to_thread(self._convert, audio)

    def _convert(self, audio: bytes) -> bytes:
        try:
            return to_asterisk_wav(audio)
        except AudioError as exc:
            raise TtsError(f"{self.engine.name} returned audio we cannot convert: {exc}") from exc

    async def _build(self, text: str, voice: str, wav: Path) -> Path:
        self.syntheses += 1
        audio = await self.engine.synthesize(text, voice)
        written = await asyncio.to_thread(self._convert_and_write, audio, text, wav)
        self.note_written(written)
        return wav

    def _convert_and_write(self, audio: bytes, text: str, wav: Path) -> int:
        data = self._convert(audio)
        self.directory.mkdir(parents=True, exist_ok=True)
        # The words beside the audio (<key>.txt): `ivr call` and people reading the directory see
        # what each file says. Written before the .wav, so a playable prompt always has its text.
        # Only static prompts come here: their words carry no personal data.
        words = text.encode("utf-8")
        self.write_atomic(wav.with_suffix(".txt"), words)
        self.write_atomic(wav, data)
        return len(words) + len(data)

    # --- bounded disk -------------------------------------------------------------------------------

    def note_written(self, size: int) -> None:
        """Count bytes added to the cache (call it on the event loop); past 5 % of the limit a sweep
        runs in a thread, so the directory never grows far beyond ``max_bytes``."""
        if self.max_bytes is None:
            return
        self._written_since_sweep += size
        if self._written_since_sweep < self.max_bytes // 20:
            return
        self._written_since_sweep = 0
        self._start_sweep()

    def _start_sweep(self) -> None:
        if self._sweeping is not None and not self._sweeping.done():
            return
        self._sweeping = asyncio.get_running_loop().create_task(asyncio.to_thread(self.sweep))
        self._sweeping.add_done_callback(_log_sweep)

    def sweep(self, now: float | None = None) -> SweepReport:
        """Keep the cache under ``max_bytes``: delete least recently used files first.

        Recency is the file's mtime (a cache hit touches it) or "now" for units the segment library
        holds in memory. Per-call files are never evicted by size (their call deletes them after
        playing); those older than ``CALL_FILE_MAX_AGE`` (left by a crash) and stale temporary files
        go regardless, and so do composed prompts unused for ``composed_max_age`` seconds (personal
        data does not pile up however large the limit). ``named/`` is the dialplan's: never touched.
        Blocking: run it in a thread.
        """
        with self._sweep_lock:
            return self._sweep(time.time() if now is None else now)

    def _sweep(self, now: float) -> SweepReport:
        in_use = self.in_use()
        removed = removed_bytes = 0
        entries: list[tuple[float, int, list[Path]]] = []
        total = 0
        for folder in (self.directory, self.directory / "segments", self.composed_dir, self.calls_dir):
            groups: dict[str, list[tuple[Path, os.stat_result]]] = {}
            try:
                listing = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in listing:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                path = Path(entry.path)
                stale = now - st.st_mtime > CALL_FILE_MAX_AGE
                if entry.name.startswith(".") or (folder == self.calls_dir):
                    if stale and _unlink(path):
                        removed, removed_bytes = removed + 1, removed_bytes + st.st_size
                    else:
                        total += st.st_size
                    continue
                groups.setdefault(path.stem, []).append((path, st))
            max_age = self.composed_max_age if folder == self.composed_dir else None
            for stem, files in groups.items():
                size = sum(st.st_size for _, st in files)
                used = now if stem in in_use else max(st.st_mtime for _, st in files)
                if max_age is not None and now - used > max_age:
                    removed += sum(_unlink(p) for p in sorted((p for p, _ in files), key=lambda p: p.suffix != ".txt"))
                    removed_bytes += size
                    continue
                entries.append((used, size, [p for p, _ in files]))
                total += size
        if self.max_bytes is not None and total > self.max_bytes:
            target = int(self.max_bytes * _SWEEP_LOW_WATER)
            for _, size, paths in sorted(entries, key=lambda e: e[0]):
                if total <= target:
                    break
                # The text first: a prompt that is playable always has its words.
                for path in sorted(paths, key=lambda p: p.suffix != ".txt"):
                    if _unlink(path):
                        removed += 1
                total -= size
                removed_bytes += size
        return SweepReport(files_removed=removed, bytes_removed=removed_bytes, bytes_kept=total)

    async def sweep_periodically(self, interval: float = SWEEP_INTERVAL) -> None:
        """Sweep now (what a crash or a stop left behind), then every ``interval`` seconds, so the
        age limits hold on a quiet system too (size-triggered sweeps need writes)."""
        while True:
            self._start_sweep()  # or the one a write started
            assert self._sweeping is not None
            await asyncio.wait({self._sweeping})
            await asyncio.sleep(interval)

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


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _log_sweep(task: asyncio.Task[SweepReport]) -> None:
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        log.error("prompts.sweep_failed", error=repr(exc))
    elif task.result().files_removed:
        report = task.result()
        log.info("prompts.swept", files=report.files_removed, bytes=report.bytes_removed, kept=report.bytes_kept)


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


async def build_segments(
    cache: PromptCache, languages: Iterable[str], *, max_quantity: int = 50, products: Iterable[Any] = (),
    concurrency: int | None = None,
) -> tuple[int, int]:
    """Synthesize the segment library (numbers, amounts, dates, hours, letters, template literals,
    the demo products) so a call synthesizes nothing but a new customer's name, once.

    ``products``: the catalogue's products (objects with unit/name/unit_en/name_en), said beside
    the demo products. Returns (units in the library, units newly synthesized). Runs
    ``concurrency`` TTS processes at once (default one per CPU).
    """
    from ivr.speech.segments import SegmentLibrary  # segments imports this module

    products = [*_demo_products(), *products]
    library = SegmentLibrary(cache, memory_bytes=0)  # building only: keep nothing in memory
    total = new = 0
    for language in languages:
        # In a thread: spelling ~600 numbers and dates with pymorphy3 takes the CPU for a second or two,
        # which on the event loop would be a late loop for the calls (admission control refuses then).
        units = await asyncio.to_thread(vocabulary, language, products, max_quantity)
        total += len(units)
        new += await library.ensure(sorted(units), language, concurrency=concurrency or os.cpu_count() or 2)
    return total, new


@dataclass(frozen=True)
class _ProductWords:
    unit: str
    name: str
    unit_en: str | None
    name_en: str | None


def _demo_products() -> list[_ProductWords]:
    with open(DEMO_DIR / "products.csv", encoding="utf-8", newline="") as f:
        return [_ProductWords(r["unit"], r["name"], r["unit_en"] or None, r["name_en"] or None)
                for r in csv.DictReader(f)]


# Prompts the dialplan plays by a fixed name (queues_ivr.conf's periodic announcement). The test in
# tests/dialplans/ reads the configs: a sound they name that is not built here fails the suite.
DIALPLAN_PROMPTS = ("queue_callback_offer",)
NAMED_DIR = "named"


def named_path(directory: Path, prompt_id: str, language: str | None = None) -> Path:
    """Where a prompt the dialplan plays by name lives: ``named/<language>/<id>.wav``, or
    ``named/<id>.wav`` (no language) for the default language's copy.

    The layout is Asterisk's own for an absolute file name (main/file.c): the dialplan names
    ``<dir as Asterisk sees it>/named/<id>`` and Asterisk tries ``named/<channel language>/<id>``,
    then ``named/<id>``, then ``named/en/<id>``. So the caller hears it in the channel language the
    dialplan set from the caller's language.
    """
    folder = directory / NAMED_DIR
    return (folder / language if language else folder) / f"{prompt_id}.wav"


async def build_named(
    cache: PromptCache, languages: Iterable[str], prompt_ids: Iterable[str] = DIALPLAN_PROMPTS, *,
    default_language: str | None = None,
) -> list[Path]:
    """Write every prompt Asterisk plays by name, in every language (see :func:`named_path`).

    ``default_language`` (else the first language) also gets the copy without a language, which
    a channel of any other language hears. The content-addressed cache names change with the
    text; the dialplan needs a stable name. A file already holding the same audio is left alone.
    """
    languages, ids = tuple(languages), tuple(prompt_ids)
    default_language = default_language or (languages[0] if languages else None)
    written: list[Path] = []
    for language in languages:
        phrasebook = Phrasebook.load(language)
        for prompt_id in ids:
            source = (await cache.path_for(phrasebook.render(prompt_id), language)).with_suffix(".wav")
            audio = await asyncio.to_thread(source.read_bytes)
            targets = [named_path(cache.directory, prompt_id, language)]
            if language == default_language:
                targets.append(named_path(cache.directory, prompt_id))
            for target in targets:
                await asyncio.to_thread(_write_if_changed, cache, target, audio)
                written.append(target)
    return written


def _write_if_changed(cache: PromptCache, target: Path, audio: bytes) -> None:
    try:
        if target.stat().st_size == len(audio) and target.read_bytes() == audio:
            return  # Asterisk may be playing it: no needless rename under its feet
    except FileNotFoundError:
        pass
    cache.write_atomic(target, audio)
