"""The speech process (ivr/audiosocket/worker.py) seen from the calls' process: questions asked across,
answered by a fake Asterisk on the child's AudioSocket port; the child killed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest
from structlog.testing import capture_logs

from ivr.audiosocket.process import SpeechProcess
from ivr.audiosocket.server import Outcome, Question
from ivr.settings import default_settings
from tests.audiosocket.fake_asterisk import FakeAudioSocket
from tests.calls.harness import wait_for
from tests.speech.vosk_support import KO_MODEL, silence, spoken

KEYS_ONLY = Question(b"\x10\x00" * 8000, max_digits=1, timeout=5.0, words=None)


def _settings(**speech):
    return default_settings().replace(speech={"audiosocket_host": "127.0.0.1", "audiosocket_port": 0, **speech}).speech


@pytest.fixture
async def process():
    proc = SpeechProcess(_settings(), log_level="WARNING", restart_min=0.05)
    await proc.start()
    yield proc
    await proc.close()


async def _outcome(pending) -> Outcome:
    return await asyncio.wait_for(pending.outcome, 15)


async def test_a_key_answers_a_question_asked_across(process):
    pending = process.expect(call := uuid.uuid4(), KEYS_ONLY, "ru")
    client = await FakeAudioSocket.connect(process.port, call)
    await client.wait_frames(3)  # the child plays the prompt
    await client.send_dtmf("7")
    outcome = await _outcome(pending)
    assert (outcome.status, outcome.digits, outcome.prompt_stopped) == ("answered", "7", True)
    assert await process.was_connected(pending) is True
    await asyncio.wait_for(client.closed.wait(), 5)  # our hang-up message ended the leg
    assert client.hung_up.is_set()


async def test_a_question_asterisk_never_connected_for_is_forgotten_on_both_sides(process):
    pending = process.expect(call := uuid.uuid4(), KEYS_ONLY, "ru")
    assert await process.was_connected(pending) is False
    assert (await _outcome(pending)).status == "failed"
    late = await FakeAudioSocket.connect(process.port, call)  # Asterisk after all: nobody waits
    await asyncio.wait_for(late.closed.wait(), 5)
    assert late.hung_up.is_set() and not late.audio_frames


async def test_a_killed_child_fails_its_questions_and_comes_back_on_the_same_port(process):
    port = process.port
    waiting = process.expect(call := uuid.uuid4(), KEYS_ONLY, "ru")
    client = await FakeAudioSocket.connect(port, call)
    await client.wait_frames(1)
    assert process._proc is not None
    with capture_logs() as logs:
        os.kill(process._proc.pid, signal.SIGKILL)
        assert (await _outcome(waiting)).status == "failed"  # the call asks it again by keys
        await asyncio.wait_for(client.closed.wait(), 5)
        await wait_for(lambda: process.restarts == 1, timeout=30)
    assert process.port == port  # Asterisk's dialplan keeps pointing at the same address
    died = [e for e in logs if e["event"].startswith("speech.process_died")]
    assert len(died) == 1 and died[0]["exit_code"] == -signal.SIGKILL and died[0]["log_level"] == "error"
    pending = process.expect(again := uuid.uuid4(), KEYS_ONLY, "ru")
    client = await FakeAudioSocket.connect(port, again)
    await client.send_dtmf("3")
    assert (await _outcome(pending)).digits == "3"


async def test_while_the_child_is_down_questions_fail_at_once_and_health_says_so():
    proc = SpeechProcess(_settings(model_ru=KO_MODEL), log_level="WARNING", restart_min=3600)  # no restart here
    await proc.start()
    try:
        assert proc._proc is not None
        os.kill(proc._proc.pid, signal.SIGKILL)
        await wait_for(lambda: proc._writer is None, timeout=10)
        pending = proc.expect(uuid.uuid4(), KEYS_ONLY, "ru")
        assert pending.outcome.done() and pending.outcome.result().status == "failed"
        assert await proc.was_connected(pending) is False
        assert proc.available("ru") is not True  # new calls ask by keys
        assert proc.models_health() == {"ru": "speech process down", "en": "speech process down"}
    finally:
        await proc.close()


async def test_the_child_ends_when_the_calls_process_closes_the_channel():
    proc = SpeechProcess(_settings(), log_level="WARNING")
    await proc.start()
    child = proc._proc
    assert child is not None
    await proc.close()
    assert child.returncode == 0  # it stopped on its own: no kill was needed, no orphan keeps the port


async def test_the_child_ends_when_its_channel_closes_without_a_word():
    """The calls' process killed: no stop message, only the channel's end closing. The child must
    not outlive it holding the AudioSocket port."""
    proc = SpeechProcess(_settings(), log_level="WARNING")
    await proc.start()
    child = proc._proc
    assert child is not None and proc._writer is not None
    proc._closing = True  # this test plays the dead parent: no restart
    proc._writer.close()  # what the kernel does to a dead process's end of the socketpair
    assert await asyncio.wait_for(child.wait(), 15) == 0
    free = await asyncio.start_server(lambda r, w: None, "127.0.0.1", proc.port)  # its port is free again
    free.close()
    await proc.close()


async def test_the_models_load_in_the_child_and_a_spoken_answer_comes_across():
    from tests.calls.test_voice_call import ko_words

    proc = SpeechProcess(_settings(model_ru=KO_MODEL), log_level="WARNING")
    await proc.start()
    try:
        assert proc.available("ru") is None  # loading: calls stay on keys until it is reported
        await asyncio.wait_for(proc.load_models(), 60)
        assert proc.available("ru") is True and proc.models_health()["ru"] == "loaded"
        assert proc.available("en") is False and proc.models_health()["en"] == "not configured"
        question = Question(b"", max_digits=1, timeout=10.0, words=ko_words("confirm", "ru"), min_confidence=0.5,
                            endpoint_silence=0.2)
        pending = proc.expect(call := uuid.uuid4(), question, "ru")
        client = await FakeAudioSocket.connect(proc.port, call)
        await client.send_audio(silence(0.3) + spoken("네") + silence(0.3))
        outcome = await _outcome(pending)
        assert (outcome.status, outcome.digits, outcome.spoken, outcome.text) == ("answered", "1", True, "네")
        await client.aclose()
    finally:
        await proc.close()


async def test_a_taken_port_is_one_clear_error():
    from ivr.audiosocket.process import SpeechProcessUnavailable

    first = SpeechProcess(_settings(), log_level="WARNING")
    await first.start()
    try:
        second = SpeechProcess(_settings(audiosocket_port=first.port), log_level="WARNING")
        with pytest.raises(SpeechProcessUnavailable):
            await second.start()
    finally:
        await first.close()


async def test_asterisk_connecting_before_the_question_arrived_waits_for_it():
    """In the speech process the question comes over the channel and may be read after Asterisk
    connected (the AGI's EXEC raced it): the connection waits for it, within the grace."""
    from ivr.audiosocket.server import AudioSocketServer

    server = AudioSocketServer("127.0.0.1", 0, models=None, expect_grace=5.0)
    await server.start()
    try:
        client = await FakeAudioSocket.connect(server.port, call := uuid.uuid4())
        await wait_for(lambda: call in server._arrived_early)  # its UUID read, no question for it yet
        pending = server.expect(call, KEYS_ONLY, "ru")
        await client.wait_frames(1)
        await client.send_dtmf("5")
        assert (await _outcome(pending)).digits == "5"
        stray = await FakeAudioSocket.connect(server.port, uuid.uuid4())  # never expected: hung up
        await asyncio.wait_for(stray.closed.wait(), 10)
        assert stray.hung_up.is_set()
    finally:
        await server.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_to_the_group_leaves_the_child_to_the_calls_process(process, stop_signal):
    """systemd's stop and Ctrl-C reach every process of the service; the calls still draining keep
    their voice answers until the calls' process closes the channel."""
    assert process._proc is not None
    os.kill(process._proc.pid, stop_signal)
    pending = process.expect(call := uuid.uuid4(), KEYS_ONLY, "ru")
    client = await FakeAudioSocket.connect(process.port, call)
    await client.send_dtmf("4")
    assert (await _outcome(pending)).digits == "4"
    assert process._proc.returncode is None and process.restarts == 0
