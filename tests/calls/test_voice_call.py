"""Whole repeat-order calls answered by voice (issue 12), through the real service: the fake Asterisk
runs ``EXEC AudioSocket`` exactly as app_audiosocket.c does (UUID, paced 20 ms frames, DTMF frames,
our hang-up message), the real vosk path decodes (the Korean model from PyPI, the only one
installable here), and the store is SQLite and PostgreSQL.

The Korean model cannot hear Russian, so the line's language stays "ru" (Russian prompts, the ru
model slot holds the Korean model) and the question's phrases come from ``Seams.speech_words``: the
same ``QuestionWords`` machinery with two Korean words standing for each question's keys (``_KO``).
The Russian and English phrase tables are tested with text in tests/speech/test_answers.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from crm_bridge.demo import load_demo_data
from ivr.app import Seams, start_service
from ivr.speech.answers import QuestionWords
from ivr.speech.cpus import format_cpus
from ivr.speech.recognizer import GrammarRecognizer
from tests.calls.harness import CallHarness, database_url, harness_settings, wait_for
from tests.fakeasterisk import REFUSE, TIMEOUT, FakeAsterisk, Say
from tests.speech.vosk_support import KO_MODEL, silence, spoken

# 네 ("yes") and 아니요 ("no") are the two words espeak-ng says that this model never confuses, after
# a long silence or over a prompt (하나 / 둘 / 셋 it mixes up): each question maps them to its keys.
_KO = {
    "menu": {"네": "1", "아니요": "2"},
    "quantity": {"네": "1", "아니요": "2"},
    "confirm": {"네": "1", "아니요": "0"},
}


def ko_words(question, language):
    return QuestionWords(question, language, _KO[question], frozenset())


def say(text: str, **kw) -> Say:
    # A pause after the word, as a caller leaves one: vosk's endpoint (0.5 s of trailing silence).
    return Say(spoken(text) + silence(0.8), **kw)


async def _harness(store, prompts_dir: Path, web: dict | None = None, **speech) -> CallHarness:
    await load_demo_data(store.sessions)
    settings = harness_settings(
        database_url(store), prompts_dir,
        speech={"enabled": True, "model_ru": KO_MODEL, "audiosocket_host": "127.0.0.1", "audiosocket_port": 0,
                "min_confidence": 0.5, **speech},
        flow={"menu_timeout": 2.0, "quantity_timeout": 2.0},
        **({"web": web} if web else {}),
    )
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True, speech_words=ko_words))
    if service.speech_loading is not None:
        await asyncio.wait_for(asyncio.shield(service.speech_loading), 60)
    harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
    service.notifier.subscribe(harness.live_events.append)
    return harness


@pytest.fixture
async def voice(store, prompts_dir):
    harness = await _harness(store, prompts_dir)
    yield harness
    await harness.stop()


async def _ended(store, call_id: str):
    async def ended():
        call = await store.get_call(call_id)
        return call if call is not None and call.outcome else None

    return await wait_for(ended, 10)


def _audiosockets(fake: FakeAsterisk) -> list:
    return [c for c in fake.parsed if c.name == "EXEC" and c.args[:1] == ("AudioSocket",)]


def _answers(events) -> list[dict]:
    return [e.data for e in events if e.kind == "dtmf.received"]


async def _lines(store, order_id: str) -> list[tuple[str, int]]:
    card = await store.get_customer_card("C001")
    order = next(o for o in card.orders if o.order_id == order_id)
    return [(line.sku, line.quantity) for line in order.lines]


async def test_a_caller_changes_the_quantity_and_confirms_by_voice_alone(voice):
    fake = await voice.call("+79161234567", [say("아니요"), say("아니요"), say("네")], timeout=60)
    assert fake.variables["IVR_RESULT"] == "done", fake.commands
    sockets = _audiosockets(fake)
    assert len(sockets) == 3 and all(c.args[1].endswith(f",127.0.0.1:{voice.service.speech.server.port}")
                                     for c in sockets)  # AudioSocket(<uuid>,<host>:<port>)
    assert not any(c.name == "GET DATA" for c in fake.parsed)  # never a key question
    assert all(leg.server_hung_up and leg.prompt_frames > 0 for leg in fake.legs)  # prompt played, then 0x00
    order_id = fake.variables["IVR_ORDER_ID"]
    assert await _lines(voice.store, order_id) == [("WATER-19", 2)]  # 4 before: changed by voice
    call = await _ended(voice.store, fake.channel_vars["CHANNEL(linkedid)"])
    answers = _answers(await voice.store.call_timeline(call.call_id))
    assert [(a["step"].split(":")[0], a["digits"], a["source"], a["text"]) for a in answers] == [
        ("menu", "2", "voice", "아니요"), ("quantity", "2", "voice", "아니요"), ("confirm", "1", "voice", "네")]


async def test_a_caller_repeats_the_order_by_voice_over_the_prompt(voice):
    fake = await voice.call("+79161234567", [say("네")], timeout=60)
    assert fake.variables["IVR_RESULT"] == "done"
    assert await _lines(voice.store, fake.variables["IVR_ORDER_ID"]) == [("WATER-19", 4)]
    (leg,) = fake.legs
    # Barge-in: the greeting is many seconds long; the word over it stopped it.
    greeting = [e for e in voice.live_events if e.kind == "prompt.played"][0]
    assert leg.prompt_frames * 0.02 < 4.0, greeting.data["text"]
    (answer,) = _answers(voice.live_events)
    assert answer["source"] == "voice" and answer["digits"] == "1"


async def test_keys_still_work_over_audiosocket_and_silence_is_a_failed_input(voice):
    fake = await voice.call("+79161234567", [TIMEOUT, Say(keys="2"), Say(keys="5#"), Say(keys="1")], timeout=60)
    assert fake.variables["IVR_RESULT"] == "done"
    assert await _lines(voice.store, fake.variables["IVR_ORDER_ID"]) == [("WATER-19", 5)]
    answers = _answers(voice.live_events)
    assert answers[0] == {"step": "menu", "digits": "", "timed_out": True, "source": "key", "status": "no_input"}
    assert [a["source"] for a in answers[1:]] == ["key"] * 3


async def test_a_caller_hanging_up_mid_word_ends_the_call_and_leaks_no_recognizer(store, prompts_dir):
    # In the calls' process (own_process off), where this test can count the open recognizers; the
    # speech process runs the same AudioSocketServer.
    voice = await _harness(store, prompts_dir, own_process=False)
    try:
        before = GrammarRecognizer.open_count
        fake = await voice.call("+79161234567", [Say(spoken("아니요"), hang_up_after=0.2)], timeout=60)
        call = await _ended(voice.store, fake.channel_vars["CHANNEL(linkedid)"])
        assert (call.outcome, call.reason) == ("abandoned_in_ivr", "hangup_at_menu")
        assert "IVR_RESULT" not in fake.variables  # nothing handed to a dialplan whose caller is gone
        assert fake.legs[0].reply == "200 result=-1" and not fake.legs[0].server_hung_up
        await wait_for(lambda: GrammarRecognizer.open_count == before)
    finally:
        await voice.stop()


async def test_asterisk_failing_to_connect_falls_back_to_keys_at_once(voice):
    fake = await voice.call("+79161234567", [REFUSE, "1"], timeout=60)
    assert fake.variables["IVR_RESULT"] == "done"
    exec_at = fake.parsed.index(_audiosockets(fake)[0])
    assert fake.parsed[exec_at + 1].name == "GET DATA"
    # AudioSocket() answered -1 at once: the question by keys follows well within the silence budget
    assert fake.arrived[exec_at + 1] - fake.arrived[exec_at] < 1.5  # the same question, by keys, next
    answer = _answers(voice.live_events)[0]
    assert answer["fallback"] == "audiosocket_failed" and answer["source"] == "key"


async def test_words_never_confident_enough_are_failed_inputs_then_an_operator(store, prompts_dir):
    harness = await _harness(store, prompts_dir, min_confidence=1.01)  # no word is ever that sure
    try:
        fake = await harness.call("+79161234567", [say("네"), say("네")], timeout=60)
        assert (fake.variables["IVR_RESULT"], fake.variables["IVR_REASON"]) == ("operator", "no_input")
        answers = _answers(harness.live_events)
        assert [(a["source"], a["status"], a["timed_out"], a["text"]) for a in answers] == [
            ("voice", "not_understood", True, "네")] * 2  # heard, but never taken as an answer
    finally:
        await harness.stop()


async def test_asterisk_is_told_the_configured_address(store, prompts_dir):
    # Asterisk on another host reaches us at another address than the one we listen on; here that
    # address has nobody listening, so AudioSocket() fails to connect and the caller gets keys.
    harness = await _harness(store, prompts_dir, audiosocket_address="127.0.0.1:9")
    try:
        fake = await harness.call("+79161234567", [say("네"), "1"], timeout=60)
        (socket,) = _audiosockets(fake)
        assert socket.args[1].endswith(",127.0.0.1:9")
        assert fake.variables["IVR_RESULT"] == "done"  # by key, after the failed connect
    finally:
        await harness.stop()


async def test_a_line_with_speech_off_asks_by_keys(voice):
    fake = await voice.call("+79161234567", ["1"], args=["speech=0"], timeout=30)
    assert fake.variables["IVR_RESULT"] == "done"
    assert not _audiosockets(fake)


async def test_speech_disabled_and_no_model_ask_by_keys(store, prompts_dir):
    await load_demo_data(store.sessions)
    settings = harness_settings(database_url(store), prompts_dir)  # speech.enabled false, no model
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True))
    try:
        assert service.speech is None and service.health()["speech"] == {"status": "disabled"}
        harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
        fake = await harness.call("+79161234567", ["1"], args=["speech=1"])  # the line asks; nothing to give
        assert fake.variables["IVR_RESULT"] == "done"
        assert not _audiosockets(fake)
    finally:
        await service.stop()


async def test_a_missing_model_starts_on_keys_and_says_why(store, prompts_dir, tmp_path, capfd):
    harness = await _harness(store, prompts_dir, model_ru=str(tmp_path / "no-such-model"))
    try:
        state = harness.service.health()["speech"]["models"]["ru"]
        assert state.startswith("missing:")
        # the speech process's own log line, on the stderr it shares with the service
        assert "speech model missing: callers answer with keys" in capfd.readouterr().err
        fake = await harness.call("+79161234567", ["1"])
        assert fake.variables["IVR_RESULT"] == "done"
        assert not _audiosockets(fake)
    finally:
        await harness.stop()


async def test_a_corrupt_model_starts_on_keys(store, prompts_dir, tmp_path):
    broken = tmp_path / "broken-model"
    (broken / "am").mkdir(parents=True)
    (broken / "am" / "final.mdl").write_bytes(b"not a kaldi model")
    harness = await _harness(store, prompts_dir, model_ru=str(broken))
    try:
        assert harness.service.health()["speech"]["models"]["ru"].startswith("unreadable:")
        fake = await harness.call("+79161234567", ["1"])
        assert fake.variables["IVR_RESULT"] == "done"
    finally:
        await harness.stop()


async def test_a_cpu_list_the_process_may_not_use_is_one_warning_and_decoding_runs_everywhere(store, prompts_dir):
    with capture_logs() as logs:
        harness = await _harness(store, prompts_dir, model_ru="", recognizer_cpus="4096")
    try:
        unusable = [e for e in logs if e["event"].startswith("speech.recognizer_cpus_unusable")]
        assert len(unusable) == 1 and unusable[0]["recognizer_cpus"] == "4096"
        assert unusable[0]["usable"] == format_cpus(os.sched_getaffinity(0))
        assert harness.service.health()["speech"]["decoding_cpus"] == "all"
    finally:
        await harness.stop()


async def test_healthz_says_which_models_are_loaded_and_why_one_is_missing(store, prompts_dir, tmp_path):
    harness = await _harness(store, prompts_dir, web={"enabled": True, "host": "127.0.0.1", "port": 0},
                             model_en=str(tmp_path / "absent"))
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.get(f"http://127.0.0.1:{harness.service.web_port}/healthz")
            body = await resp.json()
        speech = body["speech"]
        assert speech["models"]["ru"] == "loaded"
        assert speech["models"]["en"].startswith("missing:") and "absent" in speech["models"]["en"]
        assert speech["default"] == "on" and speech["audiosocket"].startswith("127.0.0.1:")
        process = speech["process"]  # the listener and the recognizers run in the speech process
        assert (process["mode"], process["up"], process["restarts"]) == ("own", True, 0)
        assert isinstance(process["pid"], int) and process["pid"] != os.getpid()
        usable = sorted(os.sched_getaffinity(0))  # decoding on every CPU but the first (speech.recognizer_cpus auto)
        assert speech["decoding_cpus"] == (format_cpus(usable[1:]) if len(usable) > 1 else "all")
    finally:
        await harness.stop()
