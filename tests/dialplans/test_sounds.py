"""Every sound the dialplan and queue configs name is built by us, in every language we serve, as a
WAV Asterisk plays, under the path Asterisk sees (issue 8: the queue's callback offer was silent)."""

from __future__ import annotations

import re
from pathlib import Path

from ivr.settings import default_settings
from ivr.speech.prompt_cache import PromptCache
from ivr.speech.tts import engine_by_name
from ivr.speech.warmup import LANGUAGES, warm_dialplan_prompts
from tests.dialplans.sounds import (
    ASTERISK_PROMPTS_DIR,
    candidates,
    missing_sounds,
    referenced_sounds,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]
VOICES = {"ru": "ru", "en": "en-us"}


def test_the_collector_sees_the_queue_announcement() -> None:
    names = {(s.name, s.ours) for s in referenced_sounds()}
    assert ("/var/lib/asterisk/sounds/ivr/named/queue_callback_offer", True) in names


def test_the_configs_name_no_sound_we_do_not_build() -> None:
    """Asterisk's own sound packages differ per installation: the configs name only files of ours
    (Asterisk's queue prompts are its defaults, chosen by the channel language)."""
    assert [f"{s.where}: {s.name}" for s in referenced_sounds() if not s.ours] == []


def test_asterisk_search_order_is_modelled_on_main_file_c() -> None:
    assert [str(c) for c in candidates("/a/named/x", "en_GB")] == [
        "/a/named/en_GB/x", "/a/named/en/x", "/a/named/x"]
    assert [str(c) for c in candidates("ivr/x", "ru")] == [
        "/var/lib/asterisk/sounds/ru/ivr/x", "/var/lib/asterisk/sounds/ivr/x", "/var/lib/asterisk/sounds/en/ivr/x"]


def test_an_empty_prompts_directory_misses_every_sound_in_every_language(tmp_path: Path) -> None:
    ours = [s for s in referenced_sounds() if s.ours]
    assert len(missing_sounds(tmp_path, LANGUAGES)) == len(ours) * len(LANGUAGES) > 0


async def test_the_dialplan_prompts_build_makes_every_sound_in_every_language(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, engine_by_name("espeak-ng", rate_wpm=150, deadline=20), VOICES)
    default = default_settings().flow.default_language
    await warm_dialplan_prompts(cache, default_language=default)
    assert missing_sounds(tmp_path, LANGUAGES) == []
    for sound in (s for s in referenced_sounds() if s.ours):
        heard = {lang: resolve(sound.name, lang, tmp_path) for lang in (*LANGUAGES, "de")}
        assert len({found[1].read_bytes() for lang, found in heard.items() if lang != "de"}) == len(LANGUAGES)
        # A channel in a language we do not serve hears the default language's words.
        assert heard["de"] is not None and heard["de"][1].read_bytes() == heard[default][1].read_bytes()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "named").rglob("*.wav"))
    assert files == ["named/en/queue_callback_offer.wav", "named/queue_callback_offer.wav",
                     "named/ru/queue_callback_offer.wav"]


def test_docker_compose_shows_prompts_dir_to_asterisk_where_the_configs_look() -> None:
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    told = re.search(r"IVR_AGI__ASTERISK_PROMPTS_DIR:\s*(\S+)", compose)
    assert told is not None and told.group(1) == str(ASTERISK_PROMPTS_DIR)
    assert re.search(rf"-\s*prompts:{re.escape(str(ASTERISK_PROMPTS_DIR))}(:ro)?\s*$", compose, re.M)
