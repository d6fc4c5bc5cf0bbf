"""Prompts assembled from segments: same words, one 8 kHz file, no TTS per call, nothing left behind."""

import asyncio
import shutil
from datetime import date
from decimal import Decimal

import numpy as np
import pytest

from ivr.flows.model import PromptRef
from ivr.speech.audio import wav_info
from ivr.speech.prompt_cache import PromptCache, build_segments
from ivr.speech.segments import EDGE, SENTENCE_PAUSE, WORD_GAP, SegmentLibrary, compose, prepare_unit
from ivr.speech.speaker import Speaker
from ivr.speech.tts import EspeakEngine, TtsError
from prompts.phrasebook import Phrasebook, Segment
from tests.prompts.test_phrasebook import Customer, Line
from tests.speech.test_audio import make_wav, tone

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
VOICES = {"ru": "ru", "en": "en-us"}




WATER = Line(4, "бутылка", "воды «Жемчужная роса» 19 л", "bottle", 'of "Zhemchuzhnaya Rosa" water, 19 litres')


def greeting(name="Алексей"):
    return PromptRef("greeting_menu", {"customer": Customer(name, "Сергеевич", "Иванов"), "order": [WATER]})


def readback(number):
    return PromptRef("order_placed", {"number": number, "total": Decimal("1400"), "delivery_date": date(2026, 11, 28),
                                      "today": date(2026, 11, 27), "window_start": 9, "window_end": 14})


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory):
    """A prompts directory after `ivr prompts build` (real espeak-ng), shared by the module."""
    directory = tmp_path_factory.mktemp("prompts")
    cache = PromptCache(directory, EspeakEngine(), VOICES)
    total, new = asyncio.run(build_segments(cache, ("ru", "en")))
    assert total == new > 500
    return directory


def copy_of(built_dir, tmp_path):
    target = tmp_path / "prompts"
    shutil.copytree(built_dir, target)
    return target


async def test_after_build_a_second_call_of_a_known_name_runs_no_tts(built_dir, tmp_path):
    cache = PromptCache(copy_of(built_dir, tmp_path), EspeakEngine(), VOICES)
    speaker = Speaker(cache, text_sidecars=True)
    first = await speaker.prepare((greeting(),), "ru")
    assert speaker.tts_processes == 1  # the name, once
    before = speaker.tts_processes
    second = await speaker.prepare((greeting(),), "ru")
    placed = await speaker.prepare((readback("A-1002"),), "ru")
    other = await speaker.prepare((readback("A-7319"),), "ru")
    english = await speaker.prepare((readback("A-555"),), "en")
    assert speaker.tts_processes == before and speaker.fallbacks == 0
    assert placed.text == Phrasebook.load("ru").render("order_placed", **readback("A-1002").params)
    assert second.text == first.text and "Алексей Сергеевич" in first.text
    for utterance in (first, second, placed, other, english):
        channels, width, rate, seconds = wav_info(utterance.local_path.with_suffix(".wav").read_bytes())
        assert (channels, width, rate) == (1, 2, 8000) and 2 < seconds < 30
        assert utterance.local_path.with_suffix(".txt").read_text(encoding="utf-8") == utterance.text
    # the read-backs carry the order number: per-call files; the greeting recurs: one cached file
    assert all(u.transient and u.local_path.parent == cache.calls_dir for u in (placed, other, english))
    assert not first.transient and first.local_path == second.local_path
    assert first.local_path.parent == cache.composed_dir


async def test_no_customer_name_survives_in_a_file_name_or_text(built_dir, tmp_path):
    directory = copy_of(built_dir, tmp_path)
    speaker = Speaker(PromptCache(directory, EspeakEngine(), VOICES))  # production: no text sidecars
    utterance = await speaker.prepare((greeting("Евлампий"),), "ru")
    placed = await speaker.prepare((readback("A-1002"),), "ru")
    assert "Евлампий" in utterance.text
    assert not utterance.local_path.with_suffix(".txt").exists()
    for played in (utterance, placed):
        speaker.release(played)
        speaker.release(played)  # twice is harmless
    for path in directory.rglob("*"):
        assert "Евлампий" not in path.name and "Evlampiy" not in path.name
        if path.is_file() and path.suffix == ".txt":
            assert "Евлампий" not in path.read_text(encoding="utf-8")
    assert list(directory.joinpath("calls").iterdir()) == []


async def test_per_call_files_can_live_on_a_tmpfs_outside_the_prompts_dir(built_dir, tmp_path):
    """prompts.calls_dir elsewhere (a tmpfs): the read-back is written there and Asterisk is given
    that same path, while cached prompts still go through agi.asterisk_prompts_dir."""
    calls = tmp_path / "shm" / "ivr-calls"
    cache = PromptCache(copy_of(built_dir, tmp_path), EspeakEngine(), VOICES, calls_dir=calls)
    speaker = Speaker(cache, asterisk_dir="/var/lib/asterisk/sounds/ivr")
    placed = await speaker.prepare((readback("A-1002"),), "ru")
    menu = await speaker.prepare((PromptRef("menu"),), "ru")
    assert placed.transient and placed.local_path.parent == calls
    assert placed.asterisk_path == str(placed.local_path)
    assert menu.asterisk_path == f"/var/lib/asterisk/sounds/ivr/{menu.local_path.name}"
    assert wav_info(placed.local_path.with_suffix(".wav").read_bytes())[3] > 2
    speaker.release(placed)
    assert list(calls.iterdir()) == []


async def test_static_prompts_stay_whole_cached_files(built_dir, tmp_path):
    cache = PromptCache(copy_of(built_dir, tmp_path), EspeakEngine(), VOICES)
    speaker = Speaker(cache)
    menu = await speaker.prepare((PromptRef("no_input"), PromptRef("menu")), "ru")
    again = await speaker.prepare((PromptRef("no_input"), PromptRef("menu")), "ru")
    assert not menu.transient and menu.local_path == again.local_path and menu.local_path.parent == cache.directory
    speaker.release(menu)
    assert menu.local_path.with_suffix(".wav").is_file()


def test_composition_is_the_units_plus_the_pauses():
    a = prepare_unit(make_wav(tone(300, 8000, 0.5), 8000))
    b = prepare_unit(make_wav(tone(500, 8000, 0.3), 8000))
    segments = [Segment("раз два", ("раз", "два")), Segment(". ", (), "gap"), Segment("три", ("три",))]
    track = compose(segments, [a, b, a])
    expected = 2 * len(a) + len(b) + round((2 * EDGE + WORD_GAP + SENTENCE_PAUSE) * 8000)
    assert abs(len(track) - expected) <= 3
    assert track.dtype == np.dtype("<i2")


def test_units_are_levelled_trimmed_and_faded():
    quiet = np.concatenate([np.zeros(4000), tone(300, 8000, 0.5, amplitude=0.05), np.zeros(4000)])
    loud = tone(300, 8000, 0.5, amplitude=0.9)
    a, b = (prepare_unit(make_wav(x, 8000)) for x in (quiet, loud))
    assert len(a) < 0.5 * 8000 + 2 * 80 + 1  # the silence around it is gone
    rms = [float(np.sqrt(np.mean((x / 32768.0) ** 2))) for x in (a, b)]
    assert abs(rms[0] - rms[1]) / rms[1] < 0.05  # same level
    assert abs(int(a[0])) < 200 and abs(int(a[-1])) < 200  # faded: no click at a seam


async def test_an_unsayable_segment_falls_back_to_the_whole_sentence(tmp_path):
    class BrokenForOneUnit(EspeakEngine):
        runs: list[str] = []

        async def synthesize(self, text, voice):
            self.runs.append(text)
            if text == "Здравствуйте":
                raise TtsError("cannot say this unit")
            return await super().synthesize(text, voice)

    engine = BrokenForOneUnit()
    speaker = Speaker(PromptCache(tmp_path, engine, VOICES))
    utterance = await speaker.prepare((greeting(),), "ru")
    assert speaker.fallbacks == 1 and engine.runs[-1] == utterance.text  # the whole sentence, once
    assert utterance.text.startswith("Здравствуйте, Алексей Сергеевич.")
    assert wav_info(utterance.local_path.with_suffix(".wav").read_bytes())[3] > 3
    speaker.release(utterance)
    assert not list(tmp_path.glob("calls/*"))


async def test_units_without_audio_make_composition_fall_back(tmp_path):
    class NoUnits(SegmentLibrary):
        async def audio(self, units, language):
            raise TtsError("library unavailable")

    cache = PromptCache(tmp_path, EspeakEngine(), VOICES)
    speaker = Speaker(cache, library=NoUnits(cache))
    utterance = await speaker.prepare((readback("A-1"),), "en")
    assert speaker.fallbacks == 1 and cache.syntheses == 1
    assert utterance.text.startswith("Order number A-1 has been placed.")


def _tree_bytes(directory):
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


async def test_eviction_keeps_the_directory_under_its_limit(built_dir, tmp_path):
    directory = copy_of(built_dir, tmp_path)
    assert _tree_bytes(directory) > 2_000_000
    cache = PromptCache(directory, EspeakEngine(), VOICES, max_bytes=2_000_000)
    speaker = Speaker(cache)
    utterance = await speaker.prepare((greeting(),), "ru")  # its units are in memory: in use
    named = directory / "named" / "x.wav"
    named.parent.mkdir()
    named.write_bytes(b"RIFF")
    # (the speaker's writes may have started a sweep of their own already: either one evicts)
    report = await asyncio.to_thread(cache.sweep)
    assert report.bytes_kept <= 0.9 * 2_000_000
    assert _tree_bytes(directory) - named.stat().st_size <= 2_000_000
    assert named.exists() and utterance.local_path.with_suffix(".wav").exists()  # never evicted by size
    for key in cache.in_use():
        assert (directory / "segments" / f"{key}.wav").exists()
    again = await speaker.prepare((readback("A-1003"),), "ru")  # evicted units come back on demand
    assert again.text.startswith("Заказ номер А 1003 оформлен.")


async def test_orphaned_call_files_are_swept_after_their_age(tmp_path):
    import os
    import time

    cache = PromptCache(tmp_path, EspeakEngine(), VOICES, max_bytes=10_000_000)
    cache.calls_dir.mkdir()
    old, fresh = cache.calls_dir / "old.wav", cache.calls_dir / "fresh.wav"
    old.write_bytes(b"x" * 100)
    fresh.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    cache.sweep()
    assert not old.exists() and fresh.exists()


DAY = 86400.0


async def test_a_greeting_unused_past_its_age_is_swept_with_its_words_and_a_used_one_is_kept(built_dir, tmp_path):
    """composed/ greetings say customers' names: they go after composed_max_age without use, however
    much room the size limit leaves; a repeat caller's hit renews his."""
    import os
    import time

    cache = PromptCache(copy_of(built_dir, tmp_path), EspeakEngine(), VOICES, max_bytes=10**9,
                        composed_max_age=30 * DAY)
    speaker = Speaker(cache, text_sidecars=True)
    gone = await speaker.prepare((greeting("Алексей"),), "ru")
    kept = await speaker.prepare((greeting("Борис"),), "ru")
    gone_files = [gone.local_path.with_suffix(s) for s in (".wav", ".txt")]
    kept_wav = kept.local_path.with_suffix(".wav")
    assert gone.local_path.parent == cache.composed_dir and all(p.exists() for p in gone_files)
    month_ago = time.time() - 31 * DAY
    static = next(cache.directory.glob("*.wav"), None) or next((cache.directory / "segments").glob("*.wav"))
    for path in (*gone_files, kept_wav, static):
        os.utime(path, (month_ago, month_ago))
    again = await speaker.prepare((greeting("Борис"),), "ru")  # Борис calls again: a hit
    assert again.local_path == kept.local_path

    report = await asyncio.to_thread(cache.sweep)
    assert not any(p.exists() for p in gone_files)
    assert kept_wav.exists() and static.exists()  # only composed/ ages; the size limit is far
    assert report.files_removed == 2

    cache.composed_max_age = None  # prompts.composed_max_age_days = 0: no age limit
    os.utime(kept_wav, (month_ago, month_ago))
    await asyncio.to_thread(cache.sweep)
    assert kept_wav.exists()


async def test_the_first_periodic_sweep_runs_at_once_and_clears_what_a_crash_left(tmp_path):
    """`ivr serve` runs sweep_periodically from start: a read-back a crash left is not kept until
    the cache happens to fill up."""
    import os
    import time

    cache = PromptCache(tmp_path, EspeakEngine(), VOICES, max_bytes=10**9, composed_max_age=30 * DAY)
    cache.calls_dir.mkdir()
    cache.composed_dir.mkdir()
    left = [cache.calls_dir / "a1b2.wav", cache.composed_dir / "c3d4.wav", cache.composed_dir / "c3d4.txt"]
    for path in left:
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - 40 * DAY, time.time() - 40 * DAY))
    task = asyncio.create_task(cache.sweep_periodically(interval=3600))
    try:
        async with asyncio.timeout(5):
            while any(p.exists() for p in left):  # noqa: ASYNC110  (the sweep runs in a thread)
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
