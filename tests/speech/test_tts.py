"""Real espeak-ng and festival synthesis, converted to what Asterisk plays."""

import asyncio
import shutil

import pytest

from ivr.speech.audio import to_asterisk_wav, wav_info
from ivr.speech.tts import EspeakEngine, FestivalEngine, TtsEngine, TtsError, engine_by_name

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
needs_festival = pytest.mark.skipif(
    shutil.which("text2wave") is None, reason="festival's text2wave binary not installed"
)

PHRASE_RU = "Здравствуйте, Алексей Сергеевич. Ваш прошлый заказ: четыре бутылки воды."


def assert_asterisk_wav(wav: bytes, min_seconds: float, max_seconds: float) -> None:
    channels, width, rate, seconds = wav_info(to_asterisk_wav(wav))
    assert (channels, width, rate) == (1, 2, 8000)
    assert min_seconds < seconds < max_seconds


@needs_espeak
async def test_espeak_synthesizes_russian():
    wav = await EspeakEngine(rate_wpm=150).synthesize(PHRASE_RU, "ru")
    assert wav[:4] == b"RIFF"
    assert_asterisk_wav(wav, 2.0, 15.0)


@needs_espeak
async def test_espeak_rate_changes_duration():
    slow = wav_info(await EspeakEngine(rate_wpm=100).synthesize(PHRASE_RU, "ru"))[3]
    fast = wav_info(await EspeakEngine(rate_wpm=250).synthesize(PHRASE_RU, "ru"))[3]
    assert slow > fast * 1.5


@needs_espeak
async def test_espeak_text_starting_with_dash_is_spoken_not_parsed_as_option():
    wav = await EspeakEngine().synthesize("-h --version минус пять", "ru")
    assert_asterisk_wav(wav, 0.5, 10.0)


@needs_espeak
async def test_espeak_unknown_voice_raises_with_stderr():
    with pytest.raises(TtsError, match="voice"):
        await EspeakEngine().synthesize("привет", "zzz-unknown")


@needs_espeak
async def test_espeak_deadline_raises_and_kills_the_process():
    engine = EspeakEngine(deadline=0.001)
    with pytest.raises(TtsError, match="did not finish"):
        await engine.synthesize("очень длинный текст. " * 200, "ru")


@needs_festival
async def test_festival_synthesizes_russian():
    wav = await FestivalEngine().synthesize(PHRASE_RU, "ru")
    assert_asterisk_wav(wav, 2.0, 20.0)


@needs_festival
async def test_festival_default_voice_gets_latin1_text():
    wav = await FestivalEngine().synthesize("Hello, café «Pearl Dew».", "en-us")
    assert_asterisk_wav(wav, 0.3, 15.0)


@needs_festival
async def test_festival_unknown_voice_raises_even_though_it_exits_zero():
    with pytest.raises(TtsError, match="SIOD ERROR"):
        await FestivalEngine().synthesize("привет", "no_such_voice")


async def test_missing_binary_raises_tts_error():
    with pytest.raises(TtsError, match="cannot start"):
        await EspeakEngine(binary="/nonexistent/espeak-ng").synthesize("привет", "ru")


async def test_failing_program_raises_with_its_stderr(tmp_path):
    script = tmp_path / "fake-tts"
    script.write_text("#!/bin/sh\necho 'synthesis exploded' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(TtsError, match="synthesis exploded"):
        await EspeakEngine(binary=str(script)).synthesize("привет", "ru")


async def test_program_printing_garbage_raises(tmp_path):
    script = tmp_path / "fake-tts"
    script.write_text("#!/bin/sh\ncat >/dev/null\necho not-a-wav\n")
    script.chmod(0o755)
    with pytest.raises(TtsError, match="no usable WAV"):
        await FestivalEngine(binary=str(script)).synthesize("привет", "ru")


async def test_empty_text_and_option_like_voice_are_rejected():
    with pytest.raises(TtsError):
        await EspeakEngine().synthesize("   ", "ru")
    with pytest.raises(TtsError):
        await EspeakEngine().synthesize("привет", "--stdout")


def test_engine_by_name():
    espeak = engine_by_name("espeak-ng", rate_wpm=130, deadline=3.0)
    assert isinstance(espeak, EspeakEngine) and espeak.rate_wpm == 130 and espeak.deadline == 3.0
    assert isinstance(engine_by_name("festival"), FestivalEngine)
    assert isinstance(espeak, TtsEngine)
    with pytest.raises(ValueError):
        engine_by_name("sapi")


@needs_espeak
async def test_parallel_synthesis_does_not_block_the_loop():
    engine = EspeakEngine()
    results = await asyncio.gather(*(engine.synthesize(f"номер {i}", "ru") for i in range(5)))
    assert all(r[:4] == b"RIFF" for r in results)
