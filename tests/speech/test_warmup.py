"""Everything a call may play is synthesized once per machine, before calls need it."""

from __future__ import annotations

import asyncio

from crm_bridge.dto import ProductView
from ivr.speech.prompt_cache import PromptCache
from ivr.speech.tts import engine_by_name
from ivr.speech.warmup import LANGUAGES, warm_prompts
from tests.dialplans.sounds import missing_sounds


def cache_at(directory) -> PromptCache:
    return PromptCache(directory, engine_by_name("espeak-ng", rate_wpm=150, deadline=20), {"ru": "ru", "en": "en-us"})


async def test_two_processes_warming_one_directory_synthesize_each_unit_once(tmp_path):
    """Two workers start together: one synthesizes under the machine lock, the other finds it all cached;
    a product of the catalogue (not a demo product) is in the library too."""
    product = ProductView(sku="KVAS-1", price=0, unit="банка", name="кваса", unit_en="can", name_en="of kvass")
    first, second = cache_at(tmp_path), cache_at(tmp_path)
    reports = await asyncio.gather(
        warm_prompts(first, products=[product], concurrency=2),
        warm_prompts(second, products=[product], concurrency=2),
    )
    assert reports[0].units == reports[1].units > 300
    assert first.syntheses + second.syntheses == reports[0].units_synthesized + reports[1].units_synthesized + (
        reports[0].static_synthesized + reports[1].static_synthesized
    )
    assert sorted(r.units_synthesized for r in reports)[0] == 0  # the second one synthesized nothing
    assert missing_sounds(tmp_path, LANGUAGES) == []  # every sound the dialplan configs name
    again = cache_at(tmp_path)
    report = await warm_prompts(again, products=[product])
    assert (report.units_synthesized, report.static_synthesized, again.syntheses) == (0, 0, 0)
