"""Transcripts in the console and the API: found by their words, shown beside the player word by word,
in the call's JSON; the recording as MP3 for browsers and CRMs (both databases)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm_bridge.call_log import CallLog
from crm_bridge.connectors.recording_links import RecordingLinks
from crm_bridge.services import CrmStore
from crm_bridge.transcripts import TranscriptStore
from ivr.calls.recording_mp3 import RecordingMp3
from tests.console.conftest import API_TOKEN, PASSWORD, add_role_users, login, make_console_app, start_client
from tests.db.seed import seed
from tests.speech.transcripts_rig import recorded_call, trace_copy, transcriber

LINKS = RecordingLinks(secret="s" * 32, base_url="https://ivr.example.com", ttl_seconds=3600)


@pytest.fixture
async def transcribed(store: CrmStore, tmp_path: Path):
    """Call c1 transcribed (the trace recording), c2 recorded and still pending; the console on them."""
    await seed(store)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    call_log = CallLog(store.sessions, transcripts=True)
    await recorded_call(call_log, "c1", trace_copy(recordings))
    worker = transcriber(store.sessions, recordings)
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    await recorded_call(call_log, "c2", trace_copy(recordings, "call-2.wav"))
    mp3 = RecordingMp3(tmp_path / "mp3", max_mb=10)
    app = make_console_app(store, recordings_dir=recordings, recording_links=LINKS, recording_mp3=mp3)
    await add_role_users(app)
    client = await start_client(app)
    try:
        yield client, await TranscriptStore(store.sessions).of_call("c1"), mp3
    finally:
        await client.close()


def _listed(html: str) -> set[str]:
    return set(re.findall(r'href="/calls/(c\d)"', html))


async def test_supervisors_find_calls_by_the_words_said_operators_cannot(transcribed) -> None:
    client, transcript, _ = transcribed
    word = max((w.word for w in transcript.words), key=len)
    await login(client, "sup1", PASSWORD)
    page = await (await client.get("/calls", params={"words": word})).text()
    assert _listed(page) == {"c1"} and 'name="words"' in page
    assert _listed(await (await client.get("/calls", params={"words": "нетнигде"})).text()) == set()
    await login(client, "op1", PASSWORD)
    page = await (await client.get("/calls", params={"words": word})).text()
    assert 'name="words"' not in page and _listed(page) == {"c1", "c2"}  # the filter is not theirs


async def test_the_call_page_shows_the_words_with_their_times_beside_the_player(transcribed) -> None:
    client, transcript, _ = transcribed
    await login(client, "sup1", PASSWORD)
    page = await (await client.get("/calls/c1")).text()
    assert 'id="player"' in page and 'data-transcript="lines"' in page
    spans = re.findall(r'<span class="word" data-start="([\d.]+)" data-end="([\d.]+)">([^<]+)</span>', page)
    assert [(float(s), float(e), w) for s, e, w in spans] == [
        (round(w.start, 2), round(w.end, 2), w.word) for w in transcript.words]
    assert "Расшифровка" in page
    pending = await (await client.get("/calls/c2")).text()
    assert "Запись ещё расшифровывается" in pending and 'class="word"' not in pending
    await login(client, "op1", PASSWORD)
    page = await (await client.get("/calls/c1")).text()
    assert 'class="word"' not in page and 'id="player"' not in page  # operators hear and read nothing


async def test_the_calls_json_carries_its_transcript(transcribed) -> None:
    client, transcript, _ = transcribed
    reply = await client.get("/api/v1/calls/c1/timeline", headers={"Authorization": f"Bearer {API_TOKEN}"})
    body = await reply.json()
    assert body["transcript"]["state"] == "done" and body["transcript"]["text"] == transcript.text
    assert body["transcript"]["words"][0] == {
        "word": transcript.words[0].word, "start": transcript.words[0].start, "end": transcript.words[0].end,
        "conf": transcript.words[0].conf, "channel": 0, "speaker": ""}
    assert "transcript.ready" in [e["kind"] for e in body["events"]]
    pending = await (await client.get("/api/v1/calls/c2/timeline",
                                      headers={"Authorization": f"Bearer {API_TOKEN}"})).json()
    assert pending["transcript"]["state"] == "pending" and pending["transcript"]["words"] == []


async def test_the_recording_as_mp3_made_once_for_the_console_and_the_signed_link(transcribed) -> None:
    client, _, mp3 = transcribed
    await login(client, "sup1", PASSWORD)
    first = await client.get("/calls/c1/recording", params={"format": "mp3"})
    body = await first.read()
    assert first.status == 200 and first.headers["Content-Type"] == "audio/mpeg"
    assert body[:3] == b"ID3" or body[:2] == b"\xff\xfb"
    assert 20_000 < len(body) < 40_000  # 6.8 s at 32 kbit/s (~27 KB), the WAV is 109 KB
    again = await client.get("/calls/c1/recording", params={"format": "mp3"})
    assert await again.read() == body and mp3.encoded == 1  # cached
    ranged = await client.get("/calls/c1/recording", params={"format": "mp3"}, headers={"Range": "bytes=0-99"})
    assert ranged.status == 206 and len(await ranged.read()) == 100
    assert (await client.get("/calls/c1/recording", params={"format": "ogg"})).status == 400
    wav = await client.get("/calls/c1/recording")
    assert wav.headers["Content-Type"] == "audio/wav"
    client.session.cookie_jar.clear()  # a CRM: no session, only the signed link
    link = LINKS.url("c1", fmt="mp3").removeprefix("https://ivr.example.com")
    crm = await client.get(link)
    assert crm.status == 200 and crm.headers["Content-Type"] == "audio/mpeg" and await crm.read() == body
    assert mp3.encoded == 1
