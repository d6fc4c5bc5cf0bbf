"""Audio conversion to what Asterisk plays natively: 8 kHz, mono, 16-bit PCM WAV."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import soxr

ASTERISK_RATE = 8000
_PCM = 1
_EXTENSIBLE = 0xFFFE


class AudioError(ValueError):
    """The bytes are not a WAV file we can convert."""


def _repair_header(data: bytes) -> bytes:
    """Make a streamed WAV readable by :mod:`wave`.

    ``espeak-ng --stdout`` writes placeholder sizes (0x7ffff000) because it cannot seek back on a
    pipe, some writers leave a zero data size, and 16-bit PCM may be tagged WAVE_FORMAT_EXTENSIBLE,
    which Python 3.11's ``wave`` rejects. Sizes are clamped to the bytes actually present and an
    extensible PCM tag is rewritten as plain PCM. Anything else is left for ``wave`` to judge.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    out = bytearray(data)
    struct.pack_into("<I", out, 4, len(out) - 8)
    pos = 12
    while pos + 8 <= len(out):
        chunk_id = bytes(out[pos : pos + 4])
        (size,) = struct.unpack_from("<I", out, pos + 4)
        available = len(out) - (pos + 8)
        if chunk_id == b"data":
            if size == 0 or size > available:
                size = available - (available % 2)
                struct.pack_into("<I", out, pos + 4, size)
            return bytes(out[: pos + 8 + size])
        if chunk_id == b"fmt " and size >= 16:
            (tag,) = struct.unpack_from("<H", out, pos + 8)
            if tag == _EXTENSIBLE and size >= 26:
                (sub_format,) = struct.unpack_from("<H", out, pos + 8 + 24)
                if sub_format == _PCM:
                    struct.pack_into("<H", out, pos + 8, _PCM)
        pos += 8 + size + (size % 2)
    raise AudioError("WAV has no data chunk")


def read_pcm16(wav_bytes: bytes) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1), shape (frames, channels), and the sample rate."""
    try:
        with wave.open(io.BytesIO(_repair_header(wav_bytes)), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            frames = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError, struct.error) as exc:
        raise AudioError(f"unreadable WAV: {exc}") from exc
    if width != 2:
        raise AudioError(f"only 16-bit PCM is supported, got {8 * width}-bit")
    if rate <= 0 or channels <= 0:
        raise AudioError("WAV has no sample rate or no channels")
    usable = len(frames) - len(frames) % (2 * channels)
    samples = np.frombuffer(frames[:usable], dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels), rate


def write_pcm16(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples -> 16-bit PCM WAV bytes (clipped, rounded)."""
    clipped = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(clipped.tobytes())
    return buffer.getvalue()


def to_asterisk_wav(wav_bytes: bytes) -> bytes:
    """Any 16-bit PCM WAV (mono or stereo, any rate) -> 8 kHz mono 16-bit WAV.

    Channels are averaged, then soxr resamples with its anti-aliasing low-pass (plain decimation
    would fold everything above 4 kHz back into the band as noise).
    """
    samples, rate = read_pcm16(wav_bytes)
    mono = samples.mean(axis=1, dtype=np.float64)
    if rate != ASTERISK_RATE and len(mono):
        mono = soxr.resample(mono, rate, ASTERISK_RATE, quality="HQ")
    return write_pcm16(np.asarray(mono), ASTERISK_RATE)


def wav_info(wav_bytes: bytes) -> tuple[int, int, int, float]:
    """(channels, sample width in bytes, rate, seconds) of a WAV."""
    with wave.open(io.BytesIO(_repair_header(wav_bytes)), "rb") as reader:
        frames = reader.getnframes()
        rate = reader.getframerate()
        return reader.getnchannels(), reader.getsampwidth(), rate, frames / rate if rate else 0.0
