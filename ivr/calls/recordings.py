"""Where a call's recording is on our disk, and how long it is.

Asterisk reports the file MixMonitor writes (``IVR_RECORDING`` set by our dialplan, or
``MIXMONITOR_FILENAME``) as Asterisk sees it. ``RecordingLocator`` rewrites that path to ours
(``asterisk_dir`` -> ``directory``, for containers that mount the spool elsewhere) and refuses
anything that would land outside ``directory``: ``..`` segments, other absolute paths, symlinks
pointing out. The values come from channel variables, so treat them as untrusted.

``describe`` reads the WAV header. MixMonitor writes the sizes in the header only when it closes
the file; a crashed or still-running MixMonitor leaves zeros (or garbage) there, so the duration
is then computed from the file size. A file with a header and no audio is ``empty``: the tracker
never announces it as a recording.

Not pydub (which the rest of the audio code uses): this needs the length of a file that may be an
hour long and still being written, from its first 4 KB and its size; pydub would read and decode
all of it, and takes the header's sizes at their word.
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import structlog

log = structlog.get_logger("ivr.recordings")

# Asterisk's .wav: 8 kHz, mono, signed 16-bit little-endian.
DEFAULT_BYTE_RATE = 8000 * 2
_HEADER_READ = 4096


@dataclass(frozen=True)
class RecordingInfo:
    path: Path
    seconds: float
    bytes: int  # size of the file on disk

    @property
    def empty(self) -> bool:
        """No audio at all: a WAV header alone (44 bytes, 0.0 s), what MixMonitor leaves when no frame
        reached it (or before it flushed). Not a recording anyone can listen to."""
        return self.seconds <= 0


class RecordingLocator:
    def __init__(self, directory: Path | str, asterisk_dir: str | None = None) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.asterisk_dir = PurePosixPath(asterisk_dir) if asterisk_dir else None

    def local_path(self, reported: str | os.PathLike[str] | None) -> Path | None:
        """Our path of the file Asterisk reported, or None when it is not inside our directory.

        Relative paths are taken relative to ``directory``. Symlinks are resolved before the
        check, so a link inside the directory pointing elsewhere is refused too.
        """
        if reported is None:
            return None
        text = os.fspath(reported).strip()
        if not text or "\x00" in text:
            return None
        pure = PurePosixPath(text)
        if ".." in pure.parts:
            return None
        if self.asterisk_dir is not None and pure.is_relative_to(self.asterisk_dir):
            candidate = self.directory / pure.relative_to(self.asterisk_dir)
        elif pure.is_absolute():
            candidate = Path(text)
        else:
            candidate = self.directory / pure
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):  # symlink loop, unreadable component
            return None
        if resolved == self.directory or not resolved.is_relative_to(self.directory):
            return None
        return resolved

    async def describe(self, path: str | os.PathLike[str]) -> RecordingInfo | None:
        """Seconds and bytes of the recording at ``path`` (checked again), None if absent/unreadable."""
        local = self.local_path(path)
        if local is None:
            log.warning("recording_path_refused", path=os.fspath(path)[:300])
            return None
        return await asyncio.to_thread(_describe_file, local)


def _describe_file(path: Path) -> RecordingInfo | None:
    try:
        # O_NOFOLLOW: the final component must not have been swapped for a symlink since the check.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(_HEADER_READ)
    if size == 0:
        return None  # MixMonitor opened it but wrote nothing yet
    return RecordingInfo(path=path, seconds=round(wav_seconds(head, size), 3), bytes=size)


def wav_seconds(head: bytes, size: int) -> float:
    """Duration of a WAV file from its first bytes and its size on disk.

    The declared data size is trusted only when it fits in the file; otherwise (0 or 0xFFFFFFFF
    left by a crashed writer, or a truncated file) the audio runs to the end of the file. Without
    a readable RIFF header the file is taken as Asterisk's 8 kHz 16-bit mono after a 44-byte header.
    """
    byte_rate = DEFAULT_BYTE_RATE
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return max(0, size - 44) / byte_rate
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", head, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt " and body + 16 <= len(head):
            _, channels, rate, declared_rate, block_align, bits = struct.unpack_from("<HHIIHH", head, body)
            computed = rate * channels * max(1, bits // 8)
            byte_rate = declared_rate or computed or DEFAULT_BYTE_RATE
        elif chunk_id == b"data":
            available = max(0, size - body)
            data = chunk_size if 0 < chunk_size <= available else available
            return data / byte_rate
        offset = body + chunk_size + (chunk_size & 1)
    return max(0, size - 44) / byte_rate  # no data chunk in the first bytes: assume the usual layout
