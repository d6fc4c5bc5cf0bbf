"""A supervisor listens to a call's recording in the browser: the <audio> element loads the real
MixMonitor file, seeking works over HTTP Range (206); an operator gets neither the player nor the file."""

from __future__ import annotations

import wave
from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from crm_bridge.contract.outcomes import facts_implying
from tests.e2e.conftest import (
    REAL_WAV,
    copy_recording,
    e2e,
    needs_chromium,
    new_page,
    screenshot,
    sign_in,
    wait_for,
)

pytestmark = [e2e, needs_chromium]

CALL_ID = "1795751090.30"


def wav_seconds() -> float:
    with wave.open(str(REAL_WAV)) as wav:
        return wav.getnframes() / wav.getframerate()


async def test_supervisor_plays_and_seeks_operator_gets_nothing(browser, console):
    seconds = wav_seconds()
    assert 6.5 < seconds < 7.1  # the trace's recording is ≈ 6.8 s
    path = copy_recording(console, f"call-{CALL_ID}.wav")
    started = datetime.now(UTC) - timedelta(minutes=3)
    await console.store.record_call_start(
        call_id=CALL_ID, caller_number="+79161234567", normalized_number="+79161234567", customer_id="C001",
        channel="PJSIP/trunk-00000001", script="repeat-order", started_at=started)
    await console.store.update_call(
        CALL_ID, facts=facts_implying("operator_answered"), reason="caller_request",
        ended_at=started + timedelta(minutes=1),
        operator_interface="Local/101@operator-agent/n", recording_path=str(path),
        recording_seconds=round(seconds, 3), recording_bytes=path.stat().st_size)
    recording_url = f"/calls/{CALL_ID}/recording"
    size = path.stat().st_size

    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    exchanges: list[tuple[str | None, int, str | None]] = []  # (Range asked, status, Content-Range)

    async def on_response(response) -> None:
        if response.url.endswith(recording_url):
            asked = await response.request.all_headers()
            exchanges.append((asked.get("range"), response.status, response.headers.get("content-range")))

    page.on("response", on_response)
    response = await page.goto(f"/calls/{CALL_ID}")
    assert response is not None and response.status == 200
    audio = page.locator("#recording audio")
    await expect(audio).to_have_count(1)
    assert await audio.get_attribute("src") == recording_url
    await page.wait_for_function("document.querySelector('#recording audio').readyState >= 1")
    duration = await audio.evaluate("a => a.duration")
    assert abs(duration - seconds) < 0.1, duration

    # Chromium fetches media with "Range: bytes=0-" and the server answers 206 with Content-Range
    # (that is what lets the player seek); this 109 KB file then comes whole in that first answer,
    # so the seek below is served from the buffer and a ranged request at the offset follows it.
    await wait_for(lambda: exchanges, 5.0, "the browser fetched the recording")
    for asked, status, content_range in exchanges:
        assert asked is not None and asked.startswith("bytes="), exchanges
        assert status == 206, exchanges
        assert content_range is not None and content_range.endswith(f"/{size}"), exchanges
    seekable = await audio.evaluate("a => [a.seekable.length, a.seekable.length && a.seekable.end(0)]")
    assert seekable[0] == 1 and abs(seekable[1] - seconds) < 0.1, seekable

    # seek to 4 s: the element gets there and can play from there
    position = await audio.evaluate("""a => new Promise((resolve, reject) => {
        a.addEventListener('seeked', () => resolve(a.currentTime), {once: true});
        a.addEventListener('error', () => reject(new Error('media error ' + (a.error && a.error.code))), {once: true});
        a.currentTime = 4;
    })""")
    assert abs(position - 4) < 0.05, position
    await page.wait_for_function("document.querySelector('#recording audio').readyState >= 2")
    await screenshot(page, console, "c-supervisor-recording")

    # what a seek past the buffered part asks for (a longer recording): the bytes from 4 s on, from
    # this page with its session cookie
    offset = 44 + 4 * 16000  # 8 kHz, 16-bit mono after the 44-byte header
    before = len(exchanges)
    reply = await page.evaluate("""async ([url, offset]) => {
        const r = await fetch(url, {headers: {Range: 'bytes=' + offset + '-'}, credentials: 'same-origin'});
        const body = new Uint8Array(await r.arrayBuffer());
        return {status: r.status, range: r.headers.get('Content-Range'), length: body.length,
                first: Array.from(body.slice(0, 8))};
    }""", [recording_url, offset])
    assert reply["status"] == 206 and reply["range"] == f"bytes {offset}-{size - 1}/{size}", reply
    assert reply["length"] == size - offset and reply["first"] == list(REAL_WAV.read_bytes()[offset : offset + 8])
    await wait_for(lambda: len(exchanges) > before, 5.0, "the page saw the ranged response")
    assert exchanges[-1] == (f"bytes={offset}-", 206, f"bytes {offset}-{size - 1}/{size}"), exchanges
    assert page.js_errors == [], page.js_errors
    await page.context.close()

    # the operator: the call page without a player, and the file itself refused
    page = await new_page(browser, console)
    await sign_in(page, "op1")
    response = await page.goto(f"/calls/{CALL_ID}")
    assert response is not None and response.status == 200
    await expect(page.locator("main h1")).to_contain_text("Звонок")
    assert await page.locator("audio").count() == 0
    assert await page.locator("#recording").count() == 0
    assert recording_url not in await page.content()
    response = await page.goto(recording_url)
    assert response is not None and response.status == 403
    assert b"RIFF" not in await response.body()
    await expect(page.locator("main h1")).to_have_text("Доступ запрещён")
    await page.context.close()
