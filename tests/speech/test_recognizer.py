"""The real vosk path with the Korean PyPI model: loading, grammar, streamed 20 ms frames, endpoints.

What a Korean word is recognized as is asserted only where it is stable (espeak-ng's audio and
vosk's decoding are deterministic: "네" alone, with silence after it); the rest checks mechanics.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ivr.settings import default_settings
from ivr.speech.recognizer import FRAME_BYTES, Final, Partial, RecognizerClosed, SpeechModels, heard_speech
from tests.speech.vosk_support import KO_GRAMMAR, KO_MODEL, frames, noise, silence, spoken


def _models(**speech) -> SpeechModels:
    return SpeechModels(default_settings().replace(speech={"model_ru": KO_MODEL, **speech}).speech)


async def _until_final(recognizer) -> tuple[list[Partial], Final]:
    partials: list[Partial] = []
    while True:
        result = await asyncio.wait_for(recognizer.next_result(), 30)
        if isinstance(result, Final):
            return partials, result
        partials.append(result)


async def test_a_word_then_silence_ends_at_vosks_endpoint_with_timings():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None and models.available("ru") is True
        word = spoken("네")
        for frame in frames(word + silence(1.5)):
            assert len(frame) == FRAME_BYTES
            recognizer.push(frame)
        partials, final = await _until_final(recognizer)
        assert final.endpoint, "vosk's endpoint, not the end of the audio, ended the utterance"
        assert [w.word for w in final.words] == ["네"] and final.text == "네"
        (heard,) = final.words
        assert 0.0 <= heard.start < heard.end <= len(word) / 16000 + 0.1
        assert 0.0 < heard.conf <= 1.0
        assert final.audio_seconds <= 0.02 * len(frames(word + silence(1.5)))
        assert all(p.text for p in partials), "a partial is reported only when its words changed"
        assert recognizer.cpu_seconds > 0
        await recognizer.aclose()
    finally:
        models.close()


async def test_partials_while_speaking_then_final():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        # Frame by frame, each decoded before the next, as a real-time caller is: partials appear.
        seen: list[Partial | Final] = []
        for frame in frames(spoken("하나 둘 셋 네") + silence(1.5)):
            recognizer.push(frame)
            await recognizer.decoded()
            while not recognizer._results.empty():
                seen.append(recognizer._results.get_nowait())
        finals = [r for r in seen if isinstance(r, Final)]
        assert finals and isinstance(seen[-1], Final)
        first_final = seen.index(finals[0])
        assert any(isinstance(r, Partial) and heard_speech(r) for r in seen[:first_final])
        for w in finals[0].words:
            assert w.word in KO_GRAMMAR and w.start < w.end
        await recognizer.aclose()
    finally:
        models.close()


async def test_silence_is_no_words_and_finish_ends_the_utterance():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        for frame in frames(silence(2.0)):
            recognizer.push(frame)
        final = await recognizer.finish()
        assert final.words == () and final.text == "" and not final.endpoint
        assert final.audio_seconds == pytest.approx(2.0)
        await recognizer.aclose()
    finally:
        models.close()


async def test_grammar_words_the_model_lacks_are_logged():
    # The Korean model has no "[unk]" (Russian and English vosk models do): vosk would drop it silently.
    models = _models()
    try:
        with capture_logs() as logs:
            recognizer = await models.recognizer("ru", [*KO_GRAMMAR, "оператор"])
            again = await models.recognizer("ru", [*KO_GRAMMAR, "оператор"])  # the next call's question
        assert recognizer is not None and again is not None
        (warning,) = [e for e in logs if e["event"] == "speech grammar words missing from the model"]
        assert warning["words"] == ["[unk]", "оператор"]
        await recognizer.aclose()
        await again.aclose()
    finally:
        models.close()


async def test_one_model_per_process_loaded_once():
    first, second = _models(), _models()
    try:
        a, b = await asyncio.gather(first.model("ru"), first.model("ru"))
        assert a is b is not None
        assert await second.model("ru") is a
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: "", "speech model not configured: callers answer with keys"),
        (lambda tmp: str(tmp / "nowhere"), "speech model missing: callers answer with keys"),
        (lambda tmp: str(tmp), "speech model missing: callers answer with keys"),  # a directory, no model in it
        ("corrupt", "speech model unreadable: callers answer with keys"),
    ],
)
async def test_no_usable_model_is_one_log_line_and_keys(tmp_path: Path, make, message):
    if make == "corrupt":
        for part in ("am", "conf", "graph"):
            (tmp_path / part).mkdir()
        (tmp_path / "am" / "final.mdl").write_bytes(b"\x00not a kaldi model" * 100)
        (tmp_path / "conf" / "model.conf").write_text("--sample-frequency=8000\n")
        path = str(tmp_path)
    else:
        path = make(tmp_path)
    models = _models(model_ru=path)
    try:
        with capture_logs() as logs:
            assert await models.recognizer("ru", KO_GRAMMAR) is None
            assert await models.recognizer("ru", KO_GRAMMAR) is None  # tried once, not per call
        assert [e["event"] for e in logs] == [message]
        assert models.available("ru") is False
        assert models.available("en") is None  # never asked for
    finally:
        models.close()


async def test_decoding_never_blocks_the_event_loop():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        audio = noise(8.0)
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        started = time.thread_time()
        recognizer.push(audio)  # 8 s of audio in one chunk: one long decoding job
        await recognizer.finish()
        loop_cpu = time.thread_time() - started
        stop.set()
        await ticking
        # The decoding CPU went to the pool's thread, not this (the loop's) thread.
        assert recognizer.cpu_seconds > 0.1
        assert loop_cpu < recognizer.cpu_seconds / 2, (loop_cpu, recognizer.cpu_seconds)
        assert len(gaps) > 5
        await recognizer.aclose()
    finally:
        models.close()


async def test_a_closed_recognizer_takes_no_audio():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        for frame in frames(spoken("네")):
            recognizer.push(frame)
        await recognizer.aclose()  # while a job may be running: it finishes first, then vosk frees
        with pytest.raises(RecognizerClosed):
            recognizer.push(b"\0" * FRAME_BYTES)
        with pytest.raises(RecognizerClosed):
            await recognizer.finish()
    finally:
        models.close()


async def test_endpoint_silence_loads_a_copy_with_the_rules_rewritten_and_leaves_the_model_alone(tmp_path):
    from ivr.speech.recognizer import _with_endpoint

    original = (Path(KO_MODEL) / "conf" / "model.conf").read_text()
    copy = _with_endpoint(Path(KO_MODEL), 0.15)
    try:
        conf = (copy / "conf" / "model.conf").read_text()
        assert "--endpoint.rule2.min-trailing-silence=0.15" in conf
        assert "--endpoint.rule3.min-trailing-silence=0.3" in conf
        assert "--endpoint.rule4.min-trailing-silence=2.0" in conf  # the hard stop stays the model's
        assert (copy / "am").is_symlink() and (copy / "am").resolve() == (Path(KO_MODEL) / "am").resolve()
    finally:
        import shutil

        shutil.rmtree(copy)
    assert (Path(KO_MODEL) / "conf" / "model.conf").read_text() == original
    models = _models(endpoint_silence=0.15)
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)  # loaded from a copy, removed after loading
        assert recognizer is not None and models.health()["ru"] == "loaded"
        for frame in frames(spoken("네") + silence(1.0)):
            recognizer.push(frame)
        _, final = await _until_final(recognizer)
        assert final.endpoint and [w.word for w in final.words] == ["네"]
        await recognizer.aclose()
    finally:
        models.close()


async def test_decoding_threads_run_below_the_event_loop_and_off_its_cpu():
    import os
    import threading

    usable = sorted(os.sched_getaffinity(0))
    models = _models(recognizer_nice=7, recognizer_cpus="auto")
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        nice, cpus = await asyncio.get_running_loop().run_in_executor(
            models.executor, lambda: (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                                      os.sched_getaffinity(threading.get_native_id())))
        assert nice == min(19, own + 7)
        # every CPU but the first (ivr/speech/cpus.py); a one-CPU machine has nothing to leave
        assert cpus == (set(usable[1:]) if len(usable) > 1 else set(usable))
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the loop's thread untouched
        assert os.sched_getaffinity(threading.get_native_id()) == set(usable)
    finally:
        models.close()


# --- our own end of speech (GrammarRecognizer.end_utterance), as the AudioSocket exchange asks it ---

async def _say(recognizer, text: str) -> float:
    """Push ``text`` with a little silence either side (0.2 s: far from vosk's own endpoint) and wait
    until it is decoded; returns the audio seconds pushed so far."""
    for frame in frames(silence(0.2) + spoken(text) + silence(0.2)):
        recognizer.push(frame)
    await recognizer.decoded()
    return recognizer.audio_seconds


def _queued_finals(recognizer) -> list[Final]:
    """Take every result queued so far (partials too); the finals among them."""
    queued = []
    while not recognizer._results.empty():
        queued.append(recognizer._results.get_nowait())
    return [r for r in queued if isinstance(r, Final)]


async def test_end_utterance_gives_the_final_at_once_without_more_audio():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        pushed = await _say(recognizer, "네")
        assert _queued_finals(recognizer) == [], "0.2 s of silence is too little for vosk's own endpoint"
        recognizer.end_utterance()
        _, final = await _until_final(recognizer)
        assert final.endpoint and [w.word for w in final.words] == ["네"] and final.text == "네"
        assert final.audio_seconds == pytest.approx(pushed), "decided on the audio pushed, none added"
        assert recognizer.audio_seconds == pytest.approx(pushed)
        await recognizer.aclose()
    finally:
        models.close()


async def test_after_end_utterance_the_next_utterance_is_heard_later_in_time():
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        finals: list[Final] = []
        for text in ("네", "아니요"):
            await _say(recognizer, text)
            recognizer.end_utterance()
            finals.append((await _until_final(recognizer))[1])
        assert [[w.word for w in f.words] for f in finals] == [["네"], ["아니요"]]
        assert all(f.endpoint for f in finals)
        (first,), (second,) = finals[0].words, finals[1].words
        # Word times go on from the audio fed so far: the second word is after the first utterance.
        assert second.start >= finals[0].audio_seconds > first.end
        assert finals[1].audio_seconds > finals[0].audio_seconds
        await recognizer.aclose()
    finally:
        models.close()


async def _finish_hearing_the_word(recognizer) -> None:
    assert [w.word for w in (await recognizer.finish()).words] == ["네"]


async def _close(recognizer) -> None:
    await recognizer.aclose()


@pytest.mark.parametrize("end", [_finish_hearing_the_word, _close], ids=["finished", "closed"])
async def test_end_utterance_on_a_finished_or_closed_recognizer_does_nothing(end):
    models = _models()
    try:
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None
        pushed = await _say(recognizer, "네")
        await end(recognizer)
        _queued_finals(recognizer)  # the word's partials, out of the way
        recognizer.end_utterance()  # neither raises (as push on a closed one does) nor decodes
        await recognizer.decoded()
        assert recognizer._results.empty(), "no result after the end"
        assert recognizer.audio_seconds == pytest.approx(pushed)
        await recognizer.aclose()
    finally:
        models.close()


@pytest.mark.parametrize("wait_for_final", [True, False], ids=["after-its-final", "while-decoding"])
async def test_aclose_after_end_utterance_leaks_no_recognizer(wait_for_final):
    from ivr.speech.recognizer import GrammarRecognizer

    models = _models()
    try:
        before = GrammarRecognizer.open_count
        recognizer = await models.recognizer("ru", KO_GRAMMAR)
        assert recognizer is not None and GrammarRecognizer.open_count == before + 1
        for frame in frames(spoken("네") + silence(0.2)):
            recognizer.push(frame)
        recognizer.end_utterance()
        if wait_for_final:
            _, final = await _until_final(recognizer)
            assert final.endpoint
        await recognizer.aclose()  # while the decoding job may run: it ends first, then vosk frees
        assert GrammarRecognizer.open_count == before
        assert recognizer._drain is None or recognizer._drain.done()
        await recognizer.aclose()  # twice: still counted once
        assert GrammarRecognizer.open_count == before
    finally:
        models.close()
