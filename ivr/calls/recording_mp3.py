"""MP3 copies of call recordings, for browsers and CRMs that want MP3 (``?format=mp3``).

Asterisk's MixMonitor writes WAV (8 kHz 16-bit: 960 KB a minute); an MP3 at 32 kbit/s is 240 KB and
plays everywhere, Bitrix24's call card included. pydub drives ffmpeg (libmp3lame) for the encoding;
nothing is resampled (MP3 takes 8 kHz as it is).

A copy is made on the first request, in a worker thread, and kept under ``recordings.mp3_cache_dir``
by a key of the source's path, size and modification time (a recording that grows or is replaced
gets a new copy). Concurrent requests for the same recording wait for the one encoding. The
oldest copies (least recently served) are removed once the directory is above ``mp3_cache_mb``.
A file ffmpeg cannot read is None (the route answers 404) with one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import structlog

log = structlog.get_logger("ivr.recordings.mp3")

BITRATE = "32k"


class RecordingMp3:
    def __init__(self, cache_dir: Path | str, max_mb: float = 500) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._locks: dict[str, asyncio.Lock] = {}
        self.encoded = 0  # copies made by this process (tests, metrics)

    def _key(self, source: Path) -> str:
        st = source.stat()
        return hashlib.sha256(f"{source}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:40]

    async def copy_of(self, source: Path) -> Path | None:
        """The MP3 copy of ``source`` (made now if missing), or None when it cannot be encoded."""
        try:
            key = await asyncio.to_thread(self._key, source)
        except OSError:
            return None
        target = self.cache_dir / f"{key}.mp3"
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if target.is_file():
                    with contextlib.suppress(OSError):
                        os.utime(target)  # served: the newest for the eviction
                    return target
                ok = await asyncio.to_thread(self._encode, source, target)
        finally:
            if not lock.locked():
                self._locks.pop(key, None)
        if not ok:
            return None
        self.encoded += 1
        await asyncio.to_thread(self._evict, target)
        return target

    def _encode(self, source: Path, target: Path) -> bool:
        from pydub import AudioSegment
        from pydub.exceptions import CouldntDecodeError

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".part")
        os.close(fd)
        try:
            AudioSegment.from_file(source).export(tmp, format="mp3", bitrate=BITRATE)
            os.replace(tmp, target)  # whole or not at all: a reader never sees half a file
            return True
        except (CouldntDecodeError, IndexError, ValueError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            log.warning("recording_mp3_failed", path=source.name, error=first)
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _evict(self, keep: Path) -> None:
        files = []
        for entry in os.scandir(self.cache_dir):
            if entry.name.endswith(".mp3"):
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    files.append((st.st_mtime, st.st_size, Path(entry.path)))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
