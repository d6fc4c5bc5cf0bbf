"""Transcripts of recordings: queued with recording.ready, transcribed by the worker with the real vosk
full recognizer (the Korean PyPI model), on the timelines, searchable; restarts, bad files, bounds.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from pydub import AudioSegment

from crm_bridge.call_log import CallLog, CallStart, TimelineRecord
from crm_bridge.call_search import CallFilters, search_calls
from crm_bridge.contract.events import EventKind
from crm_bridge.outbox.routing import OutboxRouting
from crm_bridge.outbox.store import OutboxStore
from crm_bridge.services import CrmStore
from crm_bridge.transcripts import MAX_ATTEMPTS, TranscriptState, TranscriptStore, event_uid
from ivr.calls.recordings import RecordingLocator
from ivr.speech.transcriber import Transcriber, model_source
from tests.db.seed import seed
from tests.speech.transcripts_rig import (
    T0,
    Clock,
    korean_mono,
    korean_stereo,
    recorded_call,
    trace_copy,
    transcriber,
)
from tests.speech.vosk_support import KO_MODEL


@pytest.fixture
async def rig(store: CrmStore, tmp_path: Path) -> tuple[CrmStore, CallLog, Path]:
    await seed(store)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    return store, CallLog(store.sessions, transcripts=True), recordings


async def test_recording_ready_queues_one_pending_transcript_in_the_same_batch(rig) -> None:
    store, call_log, recordings = rig
    path = trace_copy(recordings)
    await recorded_call(call_log, "c1", path)
    # The same file announced again (a replayed batch, a second AMI hang-up): still one row.
    again = TimelineRecord(at=T0, call_id="c1", customer_id="C1", kind=EventKind.RECORDING_READY.value,
                           data={"path": str(path)})
    await call_log.write([again])
    await call_log.write([again])
    rows = await TranscriptStore(store.sessions).items()
    assert [(r.call_id, r.recording_path, r.state) for r in rows] == [("c1", str(path), "pending")]
    # Off by default: a CallLog without transcripts queues nothing.
    await recorded_call(CallLog(store.sessions), "c2", trace_copy(recordings, "call-2.wav"))
    assert len(await TranscriptStore(store.sessions).items()) == 1


async def test_a_recording_becomes_words_with_times_on_both_timelines_and_in_search(rig) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", trace_copy(recordings))
    await recorded_call(call_log, "c2", korean_mono(recordings / "call-2.wav"), customer_id=None)
    worker = transcriber(store.sessions, recordings, workers=2)
    try:
        assert await worker.run_once() == 2
        assert await worker.run_once() == 0  # nothing twice
    finally:
        await worker.stop()
    transcripts = TranscriptStore(store.sessions)
    first = await transcripts.of_call("c1")
    assert first is not None and first.state == TranscriptState.DONE
    assert first.language == "ko" and first.model == "model" and first.channels == 1
    assert first.audio_seconds == pytest.approx(6.8, abs=0.01)
    assert first.words and first.text == " ".join(w.word for w in first.words)
    starts = [w.start for w in first.words]
    assert starts == sorted(starts) and all(0 <= w.start < w.end <= 6.81 for w in first.words)
    assert {w.speaker for w in first.words} == {""}  # mono: one track, no speaker
    assert first.attempts == 1 and first.error is None and first.finished_at is not None

    events = [e for e in await store.call_timeline("c1") if e.kind == EventKind.TRANSCRIPT_READY]
    assert len(events) == 1
    assert events[0].data == {"transcript_id": first.id, "state": "done", "language": "ko", "model": "model",
                              "seconds": 6.8, "words": len(first.words), "speakers": [], "text": first.text}
    customer_events = [e for e in await store.customer_timeline("C1") if e.kind == EventKind.TRANSCRIPT_READY]
    assert [e.call_id for e in customer_events] == ["c1"]

    # The calls search: any word of the transcript, case-insensitive, the start of a word.
    word = max((w.word for w in first.words), key=len)
    found = await search_calls(store.sessions, CallFilters(words=word.upper()))
    assert [r.call.call_id for r in found.rows] == ["c1"]
    found = await search_calls(store.sessions, CallFilters(words=f"{word} {first.words[0].word}"))
    assert [r.call.call_id for r in found.rows] == ["c1"]
    second = await transcripts.of_call("c2")
    assert second is not None and second.words
    found = await search_calls(store.sessions, CallFilters(words=second.words[0].word))
    assert "c2" in [r.call.call_id for r in found.rows]
    assert (await search_calls(store.sessions, CallFilters(words="zzzнетслова"))).total == 0


async def test_a_stereo_recording_tells_the_caller_left_from_the_robot_right(rig) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", korean_stereo(recordings / "call-1.wav", robot_after=3.0))
    worker = transcriber(store.sessions, recordings)
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    done = await TranscriptStore(store.sessions).of_call("c1")
    assert done is not None and done.channels == 2 and done.state == "done"
    caller = [w for w in done.words if w.speaker == "caller"]
    robot = [w for w in done.words if w.speaker == "robot"]
    assert caller and robot
    assert all(w.channel == 0 and w.start < 3.0 for w in caller)
    assert all(w.channel == 1 and w.start >= 2.9 for w in robot)  # said 3 s in on the right
    # The same audio on either side: the same first word, 3 s later on the right (the decoder's context
    # after it differs with the silence before it, so later words may not match exactly).
    assert caller[0].word == robot[0].word
    assert robot[0].start - caller[0].start == pytest.approx(3.0, abs=0.1)
    event = [e for e in await store.call_timeline("c1") if e.kind == EventKind.TRANSCRIPT_READY][0]
    assert event.data["speakers"] == ["caller", "robot"]


async def test_a_restart_finishes_what_was_pending_and_nothing_twice(rig) -> None:
    store, call_log, recordings = rig
    for i in range(3):
        await recorded_call(call_log, f"c{i}", trace_copy(recordings, f"call-{i}.wav"))
    transcripts = TranscriptStore(store.sessions)
    clock = Clock()
    # A worker took c0 and died with it (no finish, no release): its lease holds the row...
    dead = await transcripts.claim(clock(), limit=1, lease=60)
    assert [j.call_id for j in dead] == ["c0"]
    worker = transcriber(store.sessions, recordings, workers=1, clock=clock)
    try:
        while await worker.run_once():
            pass
        assert {r.call_id: r.state for r in await transcripts.items()} == {"c0": "pending", "c1": "done", "c2": "done"}
        # ...until it runs out: the restarted worker takes it again.
        clock.now += timedelta(seconds=61)
        assert await worker.run_once() == 1
        assert await worker.run_once() == 0
    finally:
        await worker.stop()
    rows = await transcripts.items()
    assert all(r.state == "done" for r in rows)
    assert [r.attempts for r in rows] == [2, 1, 1]
    # The dead worker coming back cannot overwrite the row someone else finished.
    assert await transcripts.finish(dead[0], clock(), state=TranscriptState.FAILED, error="late") is False
    for i in range(3):
        assert [e.kind for e in await store.call_timeline(f"c{i}")].count(EventKind.TRANSCRIPT_READY) == 1


async def test_an_event_written_before_a_crash_lands_once_when_the_file_is_done_again(rig) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", trace_copy(recordings))
    transcripts = TranscriptStore(store.sessions)
    (job,) = await transcripts.claim(T0, limit=1, lease=60)
    # The crash came between the event and the row's update: the event is there, the row pending.
    await CallLog(store.sessions).write([TimelineRecord(
        at=T0, call_id="c1", customer_id="C1", kind=EventKind.TRANSCRIPT_READY.value,
        data={"transcript_id": job.id, "state": "done"}, uid=event_uid(job.id))])
    worker = transcriber(store.sessions, recordings, clock=Clock(T0 + timedelta(seconds=61)))
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    assert [e.kind for e in await store.call_timeline("c1")].count(EventKind.TRANSCRIPT_READY) == 1
    assert (await transcripts.of_call("c1")).state == "done"


async def test_bad_recordings_fail_with_one_clear_line_and_the_worker_goes_on(rig) -> None:
    store, call_log, recordings = rig
    corrupt = recordings / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(3000))
    long = recordings / "long.wav"
    AudioSegment.silent(600_000, frame_rate=8000).export(long, format="wav")  # ten minutes
    await recorded_call(call_log, "corrupt", corrupt)
    await recorded_call(call_log, "missing", recordings / "gone.wav")
    await recorded_call(call_log, "long", long)
    await recorded_call(call_log, "outside", Path("/etc/passwd"))
    await recorded_call(call_log, "silent", _silent(recordings / "silent.wav"))
    await recorded_call(call_log, "good", trace_copy(recordings))
    worker = transcriber(store.sessions, recordings, workers=1, max_seconds=300)
    try:
        while await worker.run_once():
            pass
    finally:
        await worker.stop()
    rows = {r.call_id: r for r in await TranscriptStore(store.sessions).items()}
    assert {k: r.state for k, r in rows.items()} == {
        "corrupt": "failed", "missing": "failed", "long": "failed", "outside": "failed", "silent": "empty",
        "good": "done"}
    assert rows["corrupt"].error.startswith("recording unreadable (corrupt.wav)")
    assert rows["missing"].error == "recording file missing: gone.wav"
    assert rows["long"].error == "recording too long: 600 s > speech.transcribe_max_seconds 300 s"
    assert rows["outside"].error == "recording path outside recordings.dir"
    assert all("\n" not in r.error for r in rows.values() if r.error)
    failed = [e for e in await store.call_timeline("long") if e.kind == EventKind.TRANSCRIPT_READY]
    assert failed[0].data["state"] == "failed" and "too long" in failed[0].data["error"]


def _silent(path: Path) -> Path:
    AudioSegment.silent(3000, frame_rate=8000).export(path, format="wav")
    return path


async def test_at_most_the_configured_number_of_files_at_once(rig) -> None:
    store, call_log, recordings = rig
    for i in range(5):
        await recorded_call(call_log, f"c{i}", trace_copy(recordings, f"call-{i}.wav"))
    worker = transcriber(store.sessions, recordings, workers=2)
    worker.start()
    try:
        async with asyncio.timeout(90):
            while worker.finished < 5:
                await worker.progress.wait()
                worker.progress.clear()
    finally:
        await worker.stop()
    assert worker.most_running == 2  # two side by side, never more
    assert {r.state for r in await TranscriptStore(store.sessions).items()} == {"done"}


async def test_without_a_model_the_rows_wait_and_the_worker_stops_claiming(rig, tmp_path: Path) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", trace_copy(recordings))
    worker = transcriber(store.sessions, recordings, model=str(tmp_path / "no-model"))
    try:
        assert await worker.run_once() == 0
        assert worker.disabled
        assert await worker.run_once() == 0
    finally:
        await worker.stop()
    (row,) = await TranscriptStore(store.sessions).items()
    assert row.state == "pending" and row.attempts == 0  # given back: nothing spent, nothing lost


async def test_a_file_that_kills_the_worker_each_time_is_failed_after_the_last_attempt(rig) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", trace_copy(recordings))
    transcripts = TranscriptStore(store.sessions)
    now = T0
    for _ in range(MAX_ATTEMPTS):  # claimed, then the process dies: the lease runs out
        assert len(await transcripts.claim(now, limit=1, lease=10)) == 1
        now += timedelta(seconds=11)
    assert await transcripts.claim(now, limit=1, lease=10) == []
    (row,) = await transcripts.items()
    assert row.state == "failed" and row.error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")


async def test_two_workers_never_take_the_same_row(rig) -> None:
    store, call_log, recordings = rig
    for i in range(6):
        await call_log.write([CallStart(call_id=f"c{i}", started_at=T0), TimelineRecord(
            at=T0, call_id=f"c{i}", customer_id=None, kind=EventKind.RECORDING_READY.value,
            data={"path": str(recordings / f"{i}.wav")})])
    transcripts = TranscriptStore(store.sessions)
    claims = await asyncio.gather(*(transcripts.claim(T0, limit=2, lease=60) for _ in range(4)))
    taken = [j.id for batch in claims for j in batch]
    assert len(taken) == len(set(taken)) == 6


class _WatchedStore(TranscriptStore):
    """Records the claims' and renewals' times, and says when a renewal happened."""

    def __init__(self, sessions) -> None:
        super().__init__(sessions)
        self.claimed_until: list = []
        self.renewed = asyncio.Event()

    async def claim(self, now, *, limit, lease):
        jobs = await super().claim(now, limit=limit, lease=lease)
        if jobs:
            self.claimed_until.append(now + timedelta(seconds=lease))
        return jobs

    async def extend(self, job, until):
        ours = await super().extend(job, until)
        self.renewed.set()
        return ours


async def test_a_file_being_decoded_keeps_its_row_past_the_first_lease(rig) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", trace_copy(recordings))
    started = time.monotonic()

    def clock():
        return T0 + timedelta(seconds=time.monotonic() - started)

    watched = _WatchedStore(store.sessions)
    worker = Transcriber(watched, CallLog(store.sessions).write, model_source("", "", KO_MODEL, "ko"),
                         RecordingLocator(recordings), lease=0.3, clock=clock)
    try:
        running = asyncio.create_task(worker.run_once())
        for _ in range(3):  # three renewals: well past the first lease
            await watched.renewed.wait()
            watched.renewed.clear()
        other = await TranscriptStore(store.sessions).claim(watched.claimed_until[0] + timedelta(seconds=0.05),
                                                           limit=1, lease=60)
        assert other == []  # renewed: nobody else takes it
        assert await running == 1
    finally:
        await worker.stop()
    (row,) = await TranscriptStore(store.sessions).items()
    assert row.state == "done" and row.attempts == 1


async def test_a_crm_target_that_takes_transcripts_gets_one_event_per_recording(rig) -> None:
    store, call_log, recordings = rig
    await recorded_call(call_log, "c1", trace_copy(recordings))
    routing = OutboxRouting({"hook": frozenset({EventKind.TRANSCRIPT_READY.value})})
    worker = Transcriber(TranscriptStore(store.sessions), CallLog(store.sessions, outbox=routing).write,
                         model_source("", "", KO_MODEL, "ko"), RecordingLocator(recordings), clock=Clock())
    try:
        assert await worker.run_once() == 1
    finally:
        await worker.stop()
    done = await TranscriptStore(store.sessions).of_call("c1")
    (item,) = await OutboxStore(store.sessions).items(target="hook")
    assert item.kind == "transcript.ready" and item.call_id == "c1" and item.event_id == event_uid(done.id)
    assert item.payload["customer_id"] == "C1"
    assert item.payload["data"]["text"] == done.text and item.payload["data"]["state"] == "done"
