"""The waveform of a recording for the console's player: peaks computed here, once per file.

The player (``static/player.js``) draws bars from ``GET /calls/{id}/recording/peaks``:
``{"duration": seconds, "peaks": [0..1, …]}``, ``BUCKETS`` values, each the loudest sample of its
slice of the recording (channels mixed by taking the louder). Computing them on the server costs one
read of the file with numpy (a one-hour 8 kHz 16-bit call, 57.6 MB: 0.17–0.23 s measured, 2 shared cores) and
sends ~5 KB, where decoding in the browser would download the whole file before anything is drawn.

Only PCM WAV (8/16/24/32-bit integer, or 32-bit float) is read: what MixMonitor writes by default.
Anything else answers None (the page then decodes in the browser, ``decodeAudioData``). The header's
sizes are not trusted: a MixMonitor that did not close its file leaves zeros there, so the audio is
whatever follows the ``data`` chunk header, up to the end of the file (as ``recordings.describe``).

Cached by (path, size, mtime): a file that grows (a call still recording) is read again.

Not pydub: numpy on the file's bytes is the whole job (one copy of the samples); pydub would copy
them into an AudioSegment, then into an array, trust the header's sizes, and hand 32-bit float
WAV to ffmpeg.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np

BUCKETS = 800
CACHE_SIZE = 64  # files; one entry is ~7 KB

_cache: OrderedDict[tuple[str, int, int], dict[str, Any]] = OrderedDict()
_lock = Lock()


def _format(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(audio format, channels, rate, bits per sample, offset of the samples) of a RIFF/WAVE header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk == b"fmt " and body + 16 <= len(data):
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == 0xFFFE and body + 26 <= len(data):  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the GUID
                tag = struct.unpack_from("<H", data, body + 24)[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            return (*fmt, body) if fmt else None
        offset = body + size + (size & 1)
    return None


def _samples(raw: bytes, tag: int, bits: int) -> np.ndarray | None:
    """Samples as float magnitudes 0..1 (all channels interleaved)."""
    if tag == 1 and bits == 16:
        return np.abs(np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32)) / 32768.0
    if tag == 1 and bits == 8:
        return np.abs(np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if tag == 1 and bits == 32:
        return np.abs(np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4").astype(np.float64)) / 2**31
    if tag == 1 and bits == 24:
        triples = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        return np.abs(np.where(values >= 1 << 23, values - (1 << 24), values).astype(np.float32)) / 2**23
    if tag == 3 and bits == 32:
        return np.clip(np.abs(np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")), 0.0, 1.0)
    return None


def compute_peaks(path: Path, buckets: int = BUCKETS) -> dict[str, Any] | None:
    """The peaks of the WAV file at ``path`` (see the module docstring); None when not PCM WAV."""
    data = path.read_bytes()
    header = _format(data[:65536])
    if header is None:
        return None
    tag, channels, rate, bits, offset = header
    if channels < 1 or rate < 1:
        return None
    samples = _samples(data[offset:], tag, bits)
    if samples is None:
        return None
    frames = samples[: len(samples) // channels * channels].reshape(-1, channels).max(axis=1)
    duration = len(frames) / rate
    if len(frames) == 0:
        return {"duration": 0.0, "peaks": []}
    count = min(buckets, len(frames))
    edges = np.linspace(0, len(frames), count + 1).astype(np.int64)
    peaks = np.maximum.reduceat(frames, edges[:-1])
    loudest = float(peaks.max()) or 1.0
    # Scaled to the loudest bucket: a quiet phone line still shows its shape.
    return {"duration": round(duration, 3), "peaks": [round(float(p) / loudest, 3) for p in peaks]}


def cached_peaks(path: Path) -> dict[str, Any] | None:
    """``compute_peaks`` once per (path, size, mtime); blocking: call it in a worker thread."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    peaks = compute_peaks(path)
    if peaks is not None:
        with _lock:
            _cache[key] = peaks
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return peaks
