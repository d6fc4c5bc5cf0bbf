"""A supervisor reads a call's transcript beside the player: the real service with speech.transcripts on
(the Korean vosk model from PyPI), a recording announced as the AMI tracker does, the worker's words on
the page, and in Chromium the word being said lit up as the recording plays, a click on a word
playing from it, and the call found by one of its words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import expect

from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import facts_implying
from crm_bridge.transcripts import TranscriptStore
from tests.e2e.conftest import copy_recording, e2e, needs_chromium, new_page, screenshot, sign_in, wait_for
from tests.speech.vosk_support import KO_MODEL

pytestmark = [e2e, needs_chromium]

CALL_ID = "1795751090.40"


@pytest.fixture
def console_overrides(tmp_path) -> dict[str, dict[str, Any]]:
    return {"speech": {"transcripts": True, "model_transcripts": KO_MODEL, "transcripts_language": "ko"},
            "recordings": {"mp3_cache_dir": str(tmp_path / "mp3")}}


async def test_the_word_being_said_is_lit_as_the_recording_plays(browser, console):
    path = copy_recording(console, f"call-{CALL_ID}.wav")
    started = datetime.now(UTC) - timedelta(minutes=3)
    await console.store.record_call_start(
        call_id=CALL_ID, caller_number="+79161234567", normalized_number="+79161234567", customer_id="C001",
        channel="PJSIP/trunk-00000001", script="repeat-order", started_at=started)
    await console.store.update_call(
        CALL_ID, facts=facts_implying("operator_answered"), ended_at=started + timedelta(minutes=1),
        recording_path=str(path), recording_seconds=6.8, recording_bytes=path.stat().st_size)
    # What the AMI tracker says when MixMonitor's file is complete: the service queues and transcribes it.
    notifier = console.service.notifier
    events = notifier.open(CALL_ID)
    events.customer_id = "C001"
    notifier.emit(events, EventKind.RECORDING_READY, path=str(path), seconds=6.8, bytes=path.stat().st_size)
    await notifier.flush(events)
    transcripts = TranscriptStore(console.store.sessions)

    async def done():
        row = await transcripts.of_call(CALL_ID)
        return row if row is not None and row.state == "done" else None

    transcript = await wait_for(done, 60.0, "the recording transcribed")
    words = transcript.words
    assert len(words) >= 3

    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    response = await page.goto(f"/calls/{CALL_ID}")
    assert response is not None and response.status == 200
    spans = page.locator("#transcript .word")
    await expect(spans).to_have_count(len(words))
    await page.wait_for_function("document.querySelector('#recording audio').readyState >= 1")
    audio = page.locator("#recording audio")
    lit = page.locator("#transcript .word.now")
    seek = "(a, t) => new Promise(r => { a.addEventListener('seeked', r, {once: true}); a.currentTime = t; })"

    # In a pause between two words, none is lit.
    gaps = [(a.end, b.start) for a, b in zip(words, words[1:], strict=False) if b.start - a.end > 0.1]
    if gaps:
        await audio.evaluate(seek, sum(gaps[0]) / 2)
        await expect(lit).to_have_count(0)

    # Seek into the middle of a word: that word alone is lit, and the line it belongs to.
    target = words[len(words) // 2]
    await audio.evaluate(seek, (target.start + target.end) / 2)
    await expect(lit).to_have_count(1)
    await expect(lit).to_have_text(target.word)
    assert await lit.get_attribute("data-start") == f"{target.start:.2f}"
    await expect(page.locator(".transcript-line.now")).to_have_count(1)

    # Play: the lit word follows the audio, from the first word onwards. A click on a word plays from it.
    first = page.locator("#transcript .word").first
    await page.locator("#recording audio").evaluate("a => { a.muted = true; }")
    await first.click()
    await page.wait_for_function("!document.querySelector('#recording audio').paused")
    seen: list[str] = []

    async def lit_words():
        word = await page.locator("#player").get_attribute("data-word")
        if word and (not seen or seen[-1] != word):
            seen.append(word)
        return len(seen) >= 3

    await wait_for(lit_words, 15.0, "three words lit one after the other while playing")
    assert set(seen) <= {w.word for w in words}, seen  # short words may fall between two frames: no order check
    await screenshot(page, console, "t-transcript-highlight")
    await page.locator("#recording audio").evaluate("a => a.pause()")

    # The calls search finds the call by a word of it.
    await page.goto("/calls")
    await page.fill("input[name=words]", max((w.word for w in words), key=len))
    async with page.expect_navigation():
        await page.click("form.calls-search button[type=submit]")
    await expect(page.locator(f'a[href="/calls/{CALL_ID}"]').first).to_be_visible()
    assert page.js_errors == [], page.js_errors
    await page.context.close()
