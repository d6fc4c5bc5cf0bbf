"""`ivr call --say …`: the softphone answers a question asked over AudioSocket as Asterisk's
AudioSocket() does (UUID, paced 20 ms frames, then waits for our hang-up message), with a phrase
synthesized by espeak-ng at 8 kHz through soxr; against the real service and the real vosk path
(the Korean test model, with Korean words for the keys: see tests/calls/test_voice_call.py)."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from crm_bridge.demo import load_demo_data
from ivr.agi.softphone import place_call, spoken_answers
from ivr.app import Seams, start_service
from ivr.cli import _parser
from ivr.settings import load_settings
from tests.calls.test_voice_call import ko_words
from tests.speech.vosk_support import KO_MODEL


@pytest.fixture
async def service(tmp_path, tmp_path_factory):
    settings = load_settings(environ={}).replace(
        agi={"host": "127.0.0.1", "port": 0},
        web={"enabled": False},
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/ivr.sqlite3"},
        prompts={"dir": str(tmp_path_factory.mktemp("voice-prompts")), "warm_at_start": False,
                 "text_sidecars": True},
        hours={"open": "00:00", "close": "23:59:59.999999", "days": "1,2,3,4,5,6,7", "holidays": ""},
        flow={"max_silence": 10.0, "menu_timeout": 2.0, "quantity_timeout": 2.0},
        speech={"model_ru": KO_MODEL, "audiosocket_host": "127.0.0.1", "audiosocket_port": 0,
                "min_confidence": 0.5},  # enabled = false: only a line with IVR_SPEECH=1 speaks
    )
    svc = await start_service(settings, seams=Seams(speech_words=ko_words))
    try:
        assert (await load_demo_data(svc.store)).ok
        await asyncio.wait_for(asyncio.shield(svc.speech_loading), 60)
        yield svc
    finally:
        await svc.stop()


def test_say_and_say_wav_keep_their_order():
    args = _parser().parse_args(["call", "+7916", "--say", "да", "--say-wav", "a.wav", "--say", "нет"])
    assert args.voice == [("say", "да"), ("wav", "a.wav"), ("say", "нет")]


async def test_a_whole_call_by_voice_through_ivr_call(service, tmp_path):
    # The second answer as a WAV file at 22.05 kHz stereo, as someone would record it: resampled by soxr.
    wav = tmp_path / "no.wav"
    pcm = (await spoken_answers([("say", "아니요")], "ko"))[0].pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    up = np.repeat(np.interp(np.arange(0, len(samples), 8000 / 22050), np.arange(len(samples)), samples), 2)
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(up.astype("<i2").tobytes())
    # menu 아니요 = 2 (change), quantity 아니요 = 2 (from the WAV), confirm 네 = 1
    voice = await spoken_answers([("say", "아니요"), ("wav", str(wav)), ("say", "네")], "ko")
    text = io.StringIO()
    result = await place_call(host="127.0.0.1", port=service.agi.port, script="repeat-order",
                              caller_id="+79161234567", answers=[], voice=voice, args=("speech=1",), out=text,
                              idle_limit=60)
    out = text.getvalue()
    assert result.variables["IVR_RESULT"] == "done", out
    assert out.count("asks over AudioSocket") == 3 and '"아니요"' in out and f"<{wav}>" in out
    card = await service.store.get_customer_card("C001")
    order = next(o for o in card.orders if o.order_id == result.variables["IVR_ORDER_ID"])
    assert [(line.sku, line.quantity) for line in order.lines] == [("WATER-19", 2)]


async def test_a_line_without_speech_is_asked_by_keys(service):
    text = io.StringIO()
    result = await place_call(host="127.0.0.1", port=service.agi.port, script="repeat-order",
                              caller_id="+79161234567", answers=["1"], args=("speech=",), out=text, idle_limit=30)
    assert result.variables["IVR_RESULT"] == "done"
    assert "AudioSocket" not in text.getvalue() and "  caller: 1" in text.getvalue()


def test_espeak_ng_phrase_is_8khz_slin(tmp_path: Path):
    (spoken,) = asyncio.run(spoken_answers([("say", "да")], "ru"))
    assert len(spoken.pcm) % 2 == 0 and 0.2 < len(spoken.pcm) / 16000 < 3.0  # "да": well under 3 s at 8 kHz
