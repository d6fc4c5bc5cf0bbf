"""The prompt cache: one synthesis per text, atomic files Asterisk can read, failures leave nothing."""

import asyncio
import shutil
import stat

import pytest

from ivr.speech.audio import wav_info
from ivr.speech.prompt_cache import PromptCache, build_static
from ivr.speech.tts import EspeakEngine, TtsError
from prompts.phrasebook import Phrasebook, static_prompt_ids
from tests.speech.test_audio import make_wav, tone

VOICES = {"ru": "ru", "en": "en-us"}


class CountingEngine:
    """A stand-in engine that counts calls; the cache's own logic is what is under test."""

    name = "counting"

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.delay = delay
        self.fail = fail

    async def synthesize(self, text: str, voice: str) -> bytes:
        self.calls.append((text, voice))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise TtsError("engine exploded")
        return make_wav(tone(440, 16000, 0.3), 16000)


def leftovers(directory):
    """Files that are neither a prompt nor its text (e.g. a temporary file left behind)."""
    return [p.name for p in directory.iterdir() if not p.name.endswith((".wav", ".txt"))]


async def test_prompt_text_is_kept_beside_the_audio(tmp_path):
    cache = PromptCache(tmp_path, CountingEngine(), VOICES)
    base = await cache.path_for("Здравствуйте.", "ru")
    assert base.with_suffix(".txt").read_text(encoding="utf-8") == "Здравствуйте."


async def test_same_text_twice_synthesizes_once(tmp_path):
    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine, VOICES)
    first = await cache.path_for("Здравствуйте.", "ru")
    second = await cache.path_for("Здравствуйте.", "ru")
    assert first == second
    assert len(engine.calls) == 1 and (cache.misses, cache.hits) == (1, 1)
    assert first.suffix == ""  # STREAM FILE wants no extension
    assert first.parent == tmp_path and len(first.name) == 32
    assert first.with_suffix(".wav").is_file()


async def test_file_is_8khz_mono_and_readable_by_others(tmp_path):
    cache = PromptCache(tmp_path, CountingEngine(), VOICES)
    path = await cache.path_for("Здравствуйте.", "ru")
    wav = path.with_suffix(".wav")
    assert stat.S_IMODE(wav.stat().st_mode) == 0o644
    channels, width, rate, _ = wav_info(wav.read_bytes())
    assert (channels, width, rate) == (1, 2, 8000)


async def test_key_depends_on_text_voice_and_engine(tmp_path):
    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine, VOICES)
    a = await cache.path_for("Один.", "ru")
    b = await cache.path_for("Два.", "ru")
    c = await cache.path_for("Один.", "en")
    assert len({a, b, c}) == 3
    assert engine.calls == [("Один.", "ru"), ("Два.", "ru"), ("Один.", "en-us")]
    other = PromptCache(tmp_path, EspeakEngine(rate_wpm=150), VOICES)
    slower = PromptCache(tmp_path, EspeakEngine(rate_wpm=120), VOICES)
    assert len({cache.key("Один.", "ru"), other.key("Один.", "ru"), slower.key("Один.", "ru")}) == 3


async def test_twenty_concurrent_requests_synthesize_once(tmp_path):
    engine = CountingEngine(delay=0.05)
    cache = PromptCache(tmp_path, engine, VOICES)
    paths = await asyncio.gather(*(cache.path_for("Соединяю с оператором.", "ru") for _ in range(20)))
    assert len(set(paths)) == 1
    assert len(engine.calls) == 1
    assert cache.misses == 1 and cache.hits == 19
    assert leftovers(tmp_path) == []


async def test_a_cancelled_waiter_does_not_cancel_the_synthesis(tmp_path):
    engine = CountingEngine(delay=0.05)
    cache = PromptCache(tmp_path, engine, VOICES)
    impatient = asyncio.create_task(cache.path_for("Текст.", "ru"))
    await asyncio.sleep(0.01)
    patient = asyncio.create_task(cache.path_for("Текст.", "ru"))
    impatient.cancel()
    path = await patient
    assert path.with_suffix(".wav").is_file() and len(engine.calls) == 1


async def test_engine_failure_raises_and_leaves_no_file(tmp_path):
    cache = PromptCache(tmp_path, CountingEngine(fail=True), VOICES)
    results = await asyncio.gather(*(cache.path_for("Текст.", "ru") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, TtsError) for r in results)
    assert list(tmp_path.iterdir()) == []
    assert not cache.exists("Текст.", "ru")


async def test_unconvertible_audio_raises_tts_error_and_leaves_no_file(tmp_path):
    class GarbageEngine(CountingEngine):
        async def synthesize(self, text, voice):
            return b"RIFF....WAVEjunk"

    cache = PromptCache(tmp_path, GarbageEngine(), VOICES)
    with pytest.raises(TtsError):
        await cache.path_for("Текст.", "ru")
    assert list(tmp_path.iterdir()) == []


async def test_write_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    cache = PromptCache(tmp_path, CountingEngine(), VOICES)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("ivr.speech.prompt_cache.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        await cache.path_for("Текст.", "ru")
    assert list(tmp_path.iterdir()) == []


async def test_unknown_language_raises(tmp_path):
    cache = PromptCache(tmp_path, CountingEngine(), VOICES)
    with pytest.raises(TtsError, match="no voice"):
        await cache.path_for("Text.", "de")


async def test_exists_reflects_the_cache(tmp_path):
    cache = PromptCache(tmp_path / "new-dir", CountingEngine(), VOICES)
    assert not cache.exists("Да.", "ru")
    await cache.path_for("Да.", "ru")
    assert cache.exists("Да.", "ru")


async def test_build_static_builds_every_static_prompt_once(tmp_path):
    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine, VOICES)
    built = await build_static(cache, ["ru", "en"])
    assert built == 2 * len(static_prompt_ids())
    for language in ("ru", "en"):
        for prompt_id in static_prompt_ids():
            assert cache.exists(Phrasebook.load(language).render(prompt_id), language)
    assert await build_static(cache, ["ru", "en"]) == 0
    assert len(engine.calls) == built


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
async def test_real_espeak_cache_hit_and_file(tmp_path):
    class CountingEspeak(EspeakEngine):
        calls = 0

        async def synthesize(self, text, voice):
            type(self).calls += 1
            return await super().synthesize(text, voice)

    engine = CountingEspeak()
    cache = PromptCache(tmp_path, engine, VOICES)
    text = Phrasebook.load("ru").render("to_operator")
    paths = await asyncio.gather(*(cache.path_for(text, "ru") for _ in range(5)))
    again = await cache.path_for(text, "ru")
    assert len(set(paths)) == 1 and again == paths[0]
    assert CountingEspeak.calls == 1
    channels, width, rate, seconds = wav_info(again.with_suffix(".wav").read_bytes())
    assert (channels, width, rate) == (1, 2, 8000)
    assert 1.5 < seconds < 10
    assert leftovers(tmp_path) == []


async def test_dialplan_prompts_get_stable_names_per_language(tmp_path):
    """named/<language>/<id>.wav for each language, named/<id>.wav in the default language: the
    layout Asterisk searches for an absolute file name on a channel of that language."""
    from ivr.speech.prompt_cache import build_named

    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine, VOICES)
    written = await build_named(cache, ("ru", "en"), default_language="en")
    assert sorted(voice for _, voice in engine.calls) == sorted(VOICES.values())  # each in its own voice
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "named/en/queue_callback_offer.wav", "named/queue_callback_offer.wav", "named/ru/queue_callback_offer.wav"]
    assert all(p.read_bytes()[:4] == b"RIFF" for p in written)
    by_name = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in written}
    assert by_name["named/queue_callback_offer.wav"] == by_name["named/en/queue_callback_offer.wav"]
    inode = (tmp_path / "named/ru/queue_callback_offer.wav").stat().st_ino
    again = await build_named(cache, ("ru",))  # the first language is the default without one
    assert [p.relative_to(tmp_path).as_posix() for p in again] == [
        "named/ru/queue_callback_offer.wav", "named/queue_callback_offer.wav"]
    assert (tmp_path / "named/ru/queue_callback_offer.wav").stat().st_ino == inode  # same audio: not rewritten
    assert (tmp_path / "named/queue_callback_offer.wav").read_bytes() == by_name["named/ru/queue_callback_offer.wav"]
