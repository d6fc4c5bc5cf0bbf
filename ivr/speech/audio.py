"""Audio conversion to what Asterisk plays natively: 8 kHz, mono, 16-bit PCM WAV.

WAV in and out through pydub (it repairs what streaming writers leave in a header: espeak-ng
``--stdout`` writes placeholder sizes because it cannot seek back on a pipe, and 16-bit PCM tagged
WAVE_FORMAT_EXTENSIBLE is read as PCM); every change of sample rate through soxr, whose low-pass
keeps what lies above the new Nyquist frequency from folding back as noise (pydub's
``set_frame_rate`` does no such filtering).
"""

from __future__ import annotations

import io

import numpy as np
import soxr
from pydub import AudioSegment
from pydub.audio_segment import fix_wav_headers
from pydub.exceptions import CouldntDecodeError

ASTERISK_RATE = 8000


class AudioError(ValueError):
    """The bytes are not a WAV file we can convert."""


def _segment(wav_bytes: bytes) -> AudioSegment:
    if len(wav_bytes) < 12 or wav_bytes[:4] != b"RIFF" or wav_bytes[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    try:
        # A streamed header's sizes (0, or a placeholder) set to the bytes present, as pydub's
        # from_file does for WAV: festival's text2wave on a pipe says a data size of 0.
        data = bytearray(wav_bytes)
        fix_wav_headers(data)
        segment = AudioSegment(data=bytes(data))
    except (CouldntDecodeError, ValueError, IndexError) as exc:  # pydub's ways of saying "not usable"
        raise AudioError(f"unreadable WAV: {exc}") from exc
    if segment.sample_width != 2:
        raise AudioError(f"only 16-bit PCM is supported, got {8 * segment.sample_width}-bit")
    if segment.frame_rate <= 0 or segment.channels <= 0:
        raise AudioError("WAV has no sample rate or no channels")
    return segment


def read_pcm16(wav_bytes: bytes) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1), shape (frames, channels), and the sample rate."""
    segment = _segment(wav_bytes)
    samples = np.frombuffer(segment.raw_data, dtype="<i2")
    usable = len(samples) - len(samples) % segment.channels
    return (samples[:usable].astype(np.float32) / 32768.0).reshape(-1, segment.channels), segment.frame_rate


def write_pcm16(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples -> 16-bit PCM WAV bytes (clipped, rounded)."""
    clipped = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2")
    return pcm16_wav(clipped.tobytes(), rate)


def pcm16_wav(pcm: bytes, rate: int, channels: int = 1) -> bytes:
    """Signed 16-bit little-endian samples -> WAV bytes."""
    buffer = io.BytesIO()
    AudioSegment(data=pcm, sample_width=2, frame_rate=rate, channels=channels).export(buffer, format="wav")
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
    segment = _segment(wav_bytes)
    return segment.channels, segment.sample_width, segment.frame_rate, segment.duration_seconds
