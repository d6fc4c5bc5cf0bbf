"""Conversion to Asterisk's 8 kHz mono 16-bit WAV, with anti-aliasing proven by a spectrum."""

import io
import struct
import wave

import numpy as np
import pytest

from ivr.speech.audio import AudioError, to_asterisk_wav, wav_info


def make_wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def read_mono(wav_bytes: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(wav_bytes), "rb") as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        data = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2").astype(np.float64)
        return data / 32768.0, reader.getframerate()


def peak_db(samples: np.ndarray) -> float:
    """Level of the strongest spectral line, in dB relative to a full-scale sine."""
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) / (window.sum() / 2)
    return 20 * np.log10(spectrum.max() + 1e-12)


def test_output_is_8khz_mono_16bit_of_same_duration():
    out = to_asterisk_wav(make_wav(tone(1000, 22050, 2.0), 22050))
    channels, width, rate, seconds = wav_info(out)
    assert (channels, width, rate) == (1, 2, 8000)
    assert seconds == pytest.approx(2.0, abs=0.01)


def test_tone_below_nyquist_survives():
    samples, rate = read_mono(to_asterisk_wav(make_wav(tone(3000, 22050), 22050)))
    assert rate == 8000
    body = samples[400:-400]  # away from the filter's edges
    assert peak_db(body) == pytest.approx(20 * np.log10(0.5), abs=1.0)
    freqs = np.fft.rfftfreq(len(body), 1 / 8000)
    assert freqs[np.argmax(np.abs(np.fft.rfft(body * np.hanning(len(body)))))] == pytest.approx(3000, abs=5)


def test_tone_above_nyquist_is_filtered_not_aliased():
    reference = peak_db(tone(3000, 8000)[400:-400])
    samples, _ = read_mono(to_asterisk_wav(make_wav(tone(6000, 22050), 22050)))
    # Naive decimation would fold 6 kHz to 2 kHz at full level; soxr's low-pass removes it.
    assert reference - peak_db(samples[400:-400]) > 40


def test_stereo_is_mixed_down():
    left = tone(500, 16000, 0.5)
    stereo = np.column_stack([left, np.zeros_like(left)]).reshape(-1)
    samples, rate = read_mono(to_asterisk_wav(make_wav(stereo, 16000, channels=2)))
    assert rate == 8000
    assert peak_db(samples[200:-200]) == pytest.approx(20 * np.log10(0.25), abs=1.0)


def test_clipping_instead_of_wrapping():
    loud = np.sign(tone(100, 8000)) * 1.0  # full-scale square wave: resampling overshoots
    samples, _ = read_mono(to_asterisk_wav(make_wav(loud, 44100)))
    assert samples.max() <= 1.0 and samples.min() >= -1.0


def test_streamed_header_with_placeholder_sizes_is_read():
    wav = bytearray(make_wav(tone(1000, 22050, 0.5), 22050))
    struct.pack_into("<I", wav, 4, 0x7FFFF024)  # what espeak-ng --stdout writes on a pipe
    struct.pack_into("<I", wav, 40, 0x7FFFF000)
    _, _, rate, seconds = wav_info(to_asterisk_wav(bytes(wav)))
    assert rate == 8000 and seconds == pytest.approx(0.5, abs=0.01)


def test_non_wav_and_non_16_bit_are_rejected():
    with pytest.raises(AudioError):
        to_asterisk_wav(b"not a wav file at all")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(8000)
        writer.writeframes(b"\x80" * 800)
    with pytest.raises(AudioError):
        to_asterisk_wav(buffer.getvalue())
