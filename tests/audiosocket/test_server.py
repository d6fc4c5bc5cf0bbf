"""The AudioSocket listener with a fake Asterisk client: keys, voice (the Korean vosk model), barge-in,
time limits and bad peers."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from structlog.testing import capture_logs

from ivr.audiosocket.protocol import FRAME_BYTES, HANGUP_MESSAGE, audio_message
from ivr.audiosocket.server import PREROLL_SECONDS, AudioSocketServer, Outcome, Question
from ivr.settings import default_settings
from ivr.speech.answers import QuestionWords
from ivr.speech.recognizer import GrammarRecognizer, SpeechModels
from tests.audiosocket.fake_asterisk import FakeAudioSocket, captured_uuid

PROMPT_3S = b"\x10\x00" * 8000 * 3  # 3 s of a quiet tone-ish signal; what it says does not matter


def _question(prompt: bytes = PROMPT_3S, **kw) -> Question:
    defaults = {"max_digits": 1, "timeout": 5.0, "words": None}
    return Question(prompt, **{**defaults, **kw})


@pytest.fixture
async def server():
    srv = AudioSocketServer("127.0.0.1", 0, models=None)
    await srv.start()
    yield srv
    await srv.close()


async def _outcome(pending) -> Outcome:
    return await asyncio.wait_for(pending.outcome, 15)


async def test_a_key_over_the_prompt_stops_it_and_answers(server):
    call = captured_uuid("app.txt")  # the capture's own UUID, as AudioSocket() sent it
    pending = server.expect(call, _question(), "ru")
    client = await FakeAudioSocket.connect(server.port, call)
    await client.wait_frames(5)  # the prompt is playing
    await client.send_dtmf("2")
    outcome = await _outcome(pending)
    assert outcome == Outcome("answered", "2", prompt_stopped=True)
    await asyncio.wait_for(client.hung_up.wait(), 5)
    assert len(client.audio_frames) < 150, "the prompt stopped at the key, not after 3 s"
    assert all(len(frame) == FRAME_BYTES for _, frame in client.audio_frames)
    await client.aclose()


async def test_the_prompt_is_paced_in_real_time(server):
    pending = server.expect(call := uuid.uuid4(), _question(b"\x10\x00" * 160 * 10, timeout=0.05), "ru")
    client = await FakeAudioSocket.connect(server.port, call)
    outcome = await _outcome(pending)
    assert outcome.status == "no_input"
    await asyncio.wait_for(client.closed.wait(), 5)
    times = [t for t, _ in client.audio_frames]
    assert len(times) == 10
    assert times[-1] - times[0] >= 9 * 0.02 * 0.9, "10 frames take 180 ms, not a burst"
    await client.aclose()


async def test_several_keys_end_at_hash_or_at_max_digits(server):
    first = server.expect(a := uuid.uuid4(), _question(max_digits=3), "ru")
    second = server.expect(b := uuid.uuid4(), _question(max_digits=3), "ru")
    keep = server.expect(c := uuid.uuid4(), _question(max_digits=3), "ru")
    one, two, three = [await FakeAudioSocket.connect(server.port, u) for u in (a, b, c)]
    for digit in "22#":
        await one.send_dtmf(digit)
    for digit in "123":
        await two.send_dtmf(digit)
    await three.send_dtmf("#")
    assert (await _outcome(first)).digits == "22"
    assert (await _outcome(second)).digits == "123"
    assert await _outcome(keep) == Outcome("answered", "", prompt_stopped=True)  # a bare "#": keep
    for client in (one, two, three):
        await asyncio.wait_for(client.hung_up.wait(), 5)
        await client.aclose()


async def test_keys_without_hash_count_at_the_timeout(server):
    pending = server.expect(call := uuid.uuid4(), _question(b"", max_digits=3, timeout=0.2), "ru")
    client = await FakeAudioSocket.connect(server.port, call)
    await client.send_dtmf("7")
    assert await _outcome(pending) == Outcome("answered", "7")
    await client.aclose()


async def test_silence_times_out_as_no_input_and_hangs_up(server):
    pending = server.expect(call := uuid.uuid4(), _question(b"", timeout=0.2), "ru")
    client = await FakeAudioSocket.connect(server.port, call)
    await client.send_audio(b"\0" * FRAME_BYTES * 5)
    assert await _outcome(pending) == Outcome("no_input")
    await asyncio.wait_for(client.hung_up.wait(), 5)
    await client.aclose()


async def test_a_monologue_ends_at_max_seconds(server):
    pending = server.expect(call := uuid.uuid4(), _question(b"", timeout=60, max_seconds=0.3), "ru")
    client = await FakeAudioSocket.connect(server.port, call)
    for _ in range(10):
        await client.send_audio(b"\x00\x10" * 160 * 5)
    assert (await _outcome(pending)).status == "no_input"
    await asyncio.wait_for(client.hung_up.wait(), 5)
    await client.aclose()


async def test_the_caller_hanging_up_ends_the_exchange(server):
    pending = server.expect(call := uuid.uuid4(), _question(), "ru")
    client = await FakeAudioSocket.connect(server.port, call)
    await client.wait_frames(2)
    await client.hang_up()
    outcome = await _outcome(pending)
    assert outcome.status == "hangup"
    assert not client.hung_up.is_set()
    await client.aclose()


async def test_a_uuid_nobody_waits_for_is_hung_up_with_one_log_line(server):
    waiting = server.expect(uuid.uuid4(), _question(), "ru")
    with capture_logs() as logs:
        client = await FakeAudioSocket.connect(server.port, uuid.uuid4())
        await asyncio.wait_for(client.hung_up.wait(), 5)
        await asyncio.wait_for(client.closed.wait(), 5)
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["audiosocket UUID nobody waits for: hung up"]
    assert not waiting.outcome.done(), "another call's question is untouched"
    await client.aclose()


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "unknown message kind 0x47"),
        (audio_message(b"\0" * 320), "first message is AUDIO, not UUID"),
        (b"\x01\x00\x10" + b"\0" * 5, "inside a UUID message"),
        (b"", "closed before sending its UUID"),
    ],
)
async def test_a_peer_that_is_not_asterisk_costs_one_log_line(server, first, error):
    with capture_logs() as logs:
        client = await FakeAudioSocket.connect(server.port, None)
        await client.send_raw(first)
        client.writer.write_eof()
        await asyncio.wait_for(client.closed.wait(), 5)
    (line,) = [e for e in logs if e["log_level"] != "debug"]
    assert line["event"] == "audiosocket protocol error: connection closed" and error in line["error"]
    await client.aclose()


async def test_garbage_mid_exchange_fails_the_question_and_closes(server):
    pending = server.expect(call := uuid.uuid4(), _question(), "ru")
    with capture_logs() as logs:
        client = await FakeAudioSocket.connect(server.port, call)
        await client.wait_frames(1)
        await client.send_raw(b"\x10\xff\xff")
        assert await _outcome(pending) == Outcome("failed")
        await asyncio.wait_for(client.closed.wait(), 5)
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["audiosocket protocol error: connection closed"]
    await client.aclose()


async def test_a_question_asterisk_never_connects_for_is_settled_by_forget(server):
    call = uuid.uuid4()
    pending = server.expect(call, _question(), "ru")
    with pytest.raises(ValueError, match="already waiting"):
        server.expect(call, _question(), "ru")
    server.forget(call)
    assert await _outcome(pending) == Outcome("failed")
    server.expect(call, _question(), "ru")  # the UUID is free again


async def test_close_settles_what_is_still_waiting():
    srv = AudioSocketServer("127.0.0.1", 0, models=None)
    await srv.start()
    pending = srv.expect(call := uuid.uuid4(), _question(), "ru")
    client = await FakeAudioSocket.connect(srv.port, call)
    await client.wait_frames(1)
    idle = srv.expect(uuid.uuid4(), _question(), "ru")
    await srv.close()
    assert (await _outcome(pending)).status == "failed"
    assert (await _outcome(idle)).status == "failed"
    await client.aclose()


def test_hangup_is_the_three_zero_bytes():
    assert HANGUP_MESSAGE == b"\0\0\0"


# --- voice, through the real vosk path (tests/speech/vosk_support.py: the Korean PyPI model) ---

@pytest.fixture
async def speech_models():
    from tests.speech.vosk_support import KO_MODEL

    models = SpeechModels(default_settings().replace(speech={"model_ru": KO_MODEL}).speech)
    await models.load_configured()  # as `ivr serve` does at start: the prompt plays while a model loads
    yield models
    models.close()


@pytest.fixture
async def speech_server(speech_models):
    srv = AudioSocketServer("127.0.0.1", 0, models=speech_models)
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
def recognizers_made(speech_models) -> list[GrammarRecognizer]:
    """The recognizers speech_server's exchanges get, in order: how much audio each decoded
    (``audio_seconds``) is the test's to see. The seam: the real SpeechModels.recognizer, wrapped."""
    made: list[GrammarRecognizer] = []
    real_recognizer = speech_models.recognizer

    async def recording(language, grammar):
        recognizer = await real_recognizer(language, grammar)
        assert recognizer is not None
        made.append(recognizer)
        return recognizer

    speech_models.recognizer = recording
    return made


# The Korean words of the test model stand in for "да" / "нет": the mapping is the same code.
KO_CONFIRM = QuestionWords("confirm", "ko", {"네": "1", "아니요": "0"}, frozenset())


async def test_a_spoken_answer_over_the_prompt_stops_it_and_answers(speech_server):
    from tests.speech.vosk_support import silence, spoken

    pending = speech_server.expect(call := uuid.uuid4(), _question(words=KO_CONFIRM, min_confidence=0.5), "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.wait_frames(3)
    await client.send_audio(spoken("네") + silence(1.2))
    outcome = await _outcome(pending)
    assert outcome == Outcome("answered", "1", spoken=True, text="네", prompt_stopped=True)
    await asyncio.wait_for(client.hung_up.wait(), 5)
    assert len(client.audio_frames) < 150
    await client.aclose()


async def test_a_key_wins_over_speech_and_silence_is_no_input(speech_server):
    from tests.speech.vosk_support import silence

    keyed = speech_server.expect(a := uuid.uuid4(), _question(b"", words=KO_CONFIRM, timeout=2), "ru")
    quiet = speech_server.expect(b := uuid.uuid4(), _question(b"", words=KO_CONFIRM, timeout=0.3), "ru")
    one = await FakeAudioSocket.connect(speech_server.port, a)
    two = await FakeAudioSocket.connect(speech_server.port, b)
    await one.send_dtmf("0")
    await two.send_audio(silence(0.5))
    assert await _outcome(keyed) == Outcome("answered", "0")
    assert await _outcome(quiet) == Outcome("no_input")
    for client in (one, two):
        await client.aclose()


async def test_a_word_below_the_confidence_floor_is_not_an_answer(speech_server):
    from tests.speech.vosk_support import silence, spoken

    # min_confidence above 1: whatever vosk hears is not confident enough; re-asked, never guessed.
    question = _question(b"", words=KO_CONFIRM, min_confidence=1.01, timeout=3)
    pending = speech_server.expect(call := uuid.uuid4(), question, "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.send_audio(spoken("네") + silence(1.2))
    outcome = await _outcome(pending)
    assert outcome.status == "not_understood" and outcome.spoken and outcome.digits == ""
    await client.aclose()


async def test_a_caller_hanging_up_mid_word_leaks_no_recognizer(speech_server):
    from ivr.speech.recognizer import GrammarRecognizer
    from tests.speech.vosk_support import spoken

    before = GrammarRecognizer.open_count
    pending = speech_server.expect(call := uuid.uuid4(), _question(words=KO_CONFIRM), "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.wait_frames(2)
    await client.send_audio(spoken("아니요")[: FRAME_BYTES * 10])  # half a word, then gone
    await client.hang_up()
    assert (await _outcome(pending)).status == "hangup"
    assert GrammarRecognizer.open_count == before
    await client.aclose()


async def test_the_captured_asterisk_stream_replayed_answers_with_its_key(server):
    # tests/data/asterisk-traces/audiosocket/app.txt: the UUID, audio frames every 20 ms, the caller's
    # "5" as message #128, more audio. Replayed in one write, as a burst the reader must frame.
    from ivr.audiosocket.protocol import dtmf_message, uuid_message
    from tests.audiosocket.fake_asterisk import captured_headers

    headers = [h for h in captured_headers("app.txt") if h.direction == "AST -> server"]
    call = captured_uuid("app.txt")
    stream = bytearray(uuid_message(call))
    for number in range(2, 344):  # 343 messages from Asterisk, numbered from 1
        stream += dtmf_message("5") if number == 128 else audio_message(b"\x01\x00" * 160)
    assert stream[:3] == headers[0].header and stream[19:22] == headers[1].header
    pending = server.expect(call, _question(max_digits=1), "ru")
    client = await FakeAudioSocket.connect(server.port, None)
    await client.send_raw(bytes(stream))
    assert await _outcome(pending) == Outcome("answered", "5", prompt_stopped=True)
    await asyncio.wait_for(client.hung_up.wait(), 5)
    await client.aclose()


async def test_the_prompt_starts_before_the_recognizer_is_ready():
    """Making a recognizer may wait (a model still loading, decoding threads busy with other callers):
    the caller hears the prompt meanwhile, and their answer is still heard once it is ready."""
    from tests.speech.vosk_support import KO_MODEL, silence, spoken

    models = SpeechModels(default_settings().replace(speech={"model_ru": KO_MODEL}).speech)
    loading = asyncio.Event()
    release = asyncio.Event()
    real_model = models.model

    async def slow_model(language):
        loading.set()
        await release.wait()
        return await real_model(language)

    models.model = slow_model  # the seam: when the model becomes available is the test's to say
    srv = AudioSocketServer("127.0.0.1", 0, models=models)
    await srv.start()
    try:
        pending = srv.expect(call := uuid.uuid4(), _question(words=KO_CONFIRM, min_confidence=0.5), "ru")
        client = await FakeAudioSocket.connect(srv.port, call)
        await asyncio.wait_for(loading.wait(), 5)
        await client.wait_frames(5)  # the prompt plays while the recognizer waits
        await client.send_audio(spoken("네") + silence(1.2))
        release.set()
        outcome = await _outcome(pending)
        assert (outcome.status, outcome.digits, outcome.spoken) == ("answered", "1", True)
        await client.aclose()
    finally:
        await srv.close()
        models.close()


async def test_our_end_of_speech_decides_without_waiting_for_vosks_own(speech_server):
    """With endpoint_silence, 0.2 s of quiet audio after the word decides the answer: the caller
    sends nothing more, and the question's 30 s would otherwise run out first (vosk alone needs
    ~0.8 s of trailing audio here)."""
    from tests.speech.vosk_support import silence, spoken

    question = _question(b"", words=KO_CONFIRM, min_confidence=0.5, timeout=30, endpoint_silence=0.2)
    pending = speech_server.expect(call := uuid.uuid4(), question, "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.send_audio(silence(0.2) + spoken("아니요") + silence(0.25))  # then the caller sends nothing
    outcome = await asyncio.wait_for(pending.outcome, 10)
    assert (outcome.status, outcome.digits, outcome.text) == ("answered", "0", "아니요")
    await client.aclose()


async def test_without_our_end_of_speech_a_short_pause_is_not_the_end(speech_server):
    from tests.speech.vosk_support import silence, spoken

    question = _question(b"", words=KO_CONFIRM, min_confidence=0.5, timeout=1.5)
    pending = speech_server.expect(call := uuid.uuid4(), question, "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.send_audio(silence(0.2) + spoken("아니요") + silence(0.25))
    # vosk never reached its endpoint: the answer comes from finishing the utterance at the timeout
    outcome = await asyncio.wait_for(pending.outcome, 10)
    assert (outcome.status, outcome.digits) == ("answered", "0")
    await client.aclose()


# --- what is decoded: with our end of speech, quiet frames outside an utterance are not ---

def _loud_span(audio: bytes, level: int) -> float:
    """Seconds from the first to the end of the last 20 ms frame at or over ``level`` (RMS)."""
    from tests.speech.vosk_support import frames

    loud = [i for i, f in enumerate(frames(audio)) if np.sqrt(np.mean(np.frombuffer(f, "<i2") ** 2.0)) >= level]
    return (loud[-1] - loud[0] + 1) * 0.02


async def test_with_our_end_of_speech_the_silence_before_a_word_is_not_decoded(speech_server, recognizers_made):
    """3 s of silence (a caller listening to the prompt), the word, silence: the recognizer decodes
    the pre-roll, the word and the end-of-speech silence, not the 3 s before."""
    from tests.speech.vosk_support import silence, spoken

    word = spoken("네")
    question = _question(b"", words=KO_CONFIRM, min_confidence=0.5, timeout=30, endpoint_silence=0.2)
    pending = speech_server.expect(call := uuid.uuid4(), question, "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.send_audio(silence(3.0) + word + silence(0.25))
    outcome = await asyncio.wait_for(pending.outcome, 10)  # our end of speech decided, not the 30 s
    assert (outcome.status, outcome.digits, outcome.text) == ("answered", "1", "네")
    (recognizer,) = recognizers_made
    expected = PREROLL_SECONDS + _loud_span(word, question.silence_level) + question.endpoint_silence
    assert recognizer.audio_seconds == pytest.approx(expected, abs=0.021)  # a frame either way
    assert recognizer.audio_seconds < 1.5, "the 3 s of silence before the word was not decoded"
    await client.aclose()


async def test_without_our_end_of_speech_every_frame_is_decoded(speech_server, recognizers_made):
    """endpoint_silence 0: vosk's endpoint decides, and it needs every frame, the silence too. The
    answer comes when the question times out (a 0.25 s pause is no endpoint for vosk): all the audio
    sent was decoded by then."""
    from tests.speech.vosk_support import frames, silence, spoken

    sent = frames(silence(3.0) + spoken("네") + silence(0.25))
    question = _question(b"", words=KO_CONFIRM, min_confidence=0.5, timeout=2.0)
    pending = speech_server.expect(call := uuid.uuid4(), question, "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.send_audio(b"".join(sent))
    outcome = await asyncio.wait_for(pending.outcome, 10)
    assert (outcome.status, outcome.digits, outcome.text) == ("answered", "1", "네")
    (recognizer,) = recognizers_made
    assert recognizer.audio_seconds == pytest.approx(len(sent) * 0.02)
    await client.aclose()


@pytest.mark.parametrize(
    ("endpoint_silence", "decoded_seconds"),
    [
        (0.2, 0.0),  # under silence_level from start to end: never an utterance, nothing decoded
        (0.0, 1.0),  # the same noise without our end of speech: every frame decoded (the frames did arrive)
    ],
)
async def test_noise_under_the_silence_level_is_no_input(speech_server, recognizers_made, endpoint_silence,
                                                          decoded_seconds):
    from tests.speech.vosk_support import noise

    quiet_noise = noise(1.0, level=400)  # uniform: RMS ~230, under the question's silence_level of 300
    question = _question(b"", words=KO_CONFIRM, timeout=1.0, endpoint_silence=endpoint_silence)
    assert question.silence_level == 300
    pending = speech_server.expect(call := uuid.uuid4(), question, "ru")
    client = await FakeAudioSocket.connect(speech_server.port, call)
    await client.send_audio(quiet_noise)
    assert await _outcome(pending) == Outcome("no_input")
    (recognizer,) = recognizers_made
    assert recognizer.audio_seconds == pytest.approx(decoded_seconds)
    await client.aclose()
