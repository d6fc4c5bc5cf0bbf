"""Everything a call may play, synthesized before calls need it: static prompts, the prompts the
dialplan plays by name, and the segment library (numbers, dates, amounts, the catalogue's products).

Run by ``ivr prompts build`` in the foreground and by ``ivr serve`` in the background at start, so a
call in steady state starts no TTS process (only a new customer's name is synthesized, once). The
files are shared by every process on the machine: a file lock lets one process synthesize while the
others wait and then find everything cached, instead of N workers synthesizing the same words.

The dialplan's named prompts come first and always (``ivr serve`` builds them even with
``prompts.warm_at_start`` off): Asterisk plays them by path with no fallback and without a log line
when the file is missing, while anything else a call needs is synthesized on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ivr.speech.prompt_cache import PromptCache, build_named, build_segments, build_static

log = structlog.get_logger("ivr.speech")

LANGUAGES = ("ru", "en")
LOCK_NAME = ".warm.lock"


@dataclass(frozen=True)
class WarmReport:
    static_ready: int  # distinct parameterless prompts, both languages
    static_synthesized: int
    named: tuple[Path, ...]
    units: int
    units_synthesized: int


async def warm_prompts(
    cache: PromptCache,
    *,
    products: Iterable[Any] = (),
    max_quantity: int = 50,
    concurrency: int | None = None,
    languages: tuple[str, ...] = LANGUAGES,
    default_language: str | None = None,
) -> WarmReport:
    """Synthesize what is missing; cheap (a few stat calls per unit) when everything is there.

    ``default_language``: the language of the dialplan's named prompts for a channel in any other
    language (``flow.default_language``; default: the first of ``languages``).
    """
    cache.directory.mkdir(parents=True, exist_ok=True)
    async with _machine_lock(cache.directory / LOCK_NAME):
        # The named prompts are static prompts copied under a stable name: count their synthesis
        # with the static prompts'.
        synthesized_before = cache.misses
        named = await build_named(cache, languages, default_language=default_language)
        asked = cache.hits + cache.misses
        await build_static(cache, languages)
        static_ready = cache.hits + cache.misses - asked
        static = cache.misses - synthesized_before
        units, synthesized = await build_segments(
            cache, languages, max_quantity=max_quantity, products=tuple(products), concurrency=concurrency
        )
    return WarmReport(static_ready, static, tuple(named), units, synthesized)


async def warm_dialplan_prompts(
    cache: PromptCache, *, languages: tuple[str, ...] = LANGUAGES, default_language: str | None = None
) -> tuple[Path, ...]:
    """Only the prompts the dialplan plays by name (a few files): what ``ivr serve`` does at start
    when ``prompts.warm_at_start`` is off."""
    cache.directory.mkdir(parents=True, exist_ok=True)
    async with _machine_lock(cache.directory / LOCK_NAME):
        return tuple(await build_named(cache, languages, default_language=default_language))


@contextlib.asynccontextmanager
async def _machine_lock(path: Path, poll: float = 0.5) -> AsyncIterator[None]:
    """An exclusive flock, polled without blocking (a cancelled waiter leaves no thread stuck in
    flock), released when the block ends or the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
