"""A recorded call in the store and its recording on disk, for the transcript tests (worker, web)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydub import AudioSegment

from crm_bridge.call_log import CallLog, CallStart, CallUpdate, TimelineRecord
from crm_bridge.contract.events import EventKind
from crm_bridge.transcripts import TranscriptStore
from ivr.calls.recordings import RecordingLocator
from ivr.speech.transcriber import Transcriber, model_source
from tests.speech.vosk_support import KO_MODEL, silence, spoken

TRACE_RECORDING = Path(__file__).resolve().parents[1] / "data" / "asterisk-traces" / "recordings" / \
    "mixmonitor-sip-call.wav"
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def mono(pcm: bytes) -> AudioSegment:
    return AudioSegment(data=pcm, sample_width=2, frame_rate=8000, channels=1)


def korean_stereo(path: Path, phrase: str = "하나 둘 셋", robot_after: float = 3.0) -> Path:
    """A stereo MixMonitor-like file: the caller says ``phrase`` on the left at once, the robot says
    it on the right after ``robot_after`` seconds; each side is silent while the other speaks."""
    said = spoken(phrase)
    left, right = mono(said), mono(silence(robot_after) + said)
    length = max(len(left), len(right)) + 500  # milliseconds
    left += AudioSegment.silent(length - len(left), frame_rate=8000)
    right += AudioSegment.silent(length - len(right), frame_rate=8000)
    AudioSegment.from_mono_audiosegments(left, right).export(path, format="wav")
    return path


def korean_mono(path: Path, phrase: str = "하나 둘 셋") -> Path:
    mono(silence(0.5) + spoken(phrase) + silence(0.5)).export(path, format="wav")
    return path


def trace_copy(directory: Path, name: str = "call-1.wav") -> Path:
    target = directory / name
    shutil.copyfile(TRACE_RECORDING, target)
    return target


async def recorded_call(call_log: CallLog, call_id: str, path: Path, *, customer_id: str | None = "C1",
                        at: datetime = T0, language: str = "ru") -> None:
    """What the runner and the AMI tracker write for a call whose recording is ready."""
    await call_log.write([
        CallStart(call_id=call_id, started_at=at, caller_number="+79161234567", customer_id=customer_id),
        CallUpdate(call_id=call_id, fields={"recording_path": str(path), "recording_seconds": 6.8}, started_at=at),
        TimelineRecord(at=at, call_id=call_id, customer_id=customer_id, kind=EventKind.CALL_STARTED.value,
                       data={"language": language}),
        TimelineRecord(at=at + timedelta(seconds=30), call_id=call_id, customer_id=customer_id,
                       kind=EventKind.RECORDING_READY.value, data={"path": str(path), "seconds": 6.8, "bytes": 1}),
    ])


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def transcriber(sessions, recordings: Path, *, workers: int = 1, max_seconds: float = 300.0,
                clock: Clock | None = None, model: str = KO_MODEL) -> Transcriber:
    return Transcriber(
        TranscriptStore(sessions), CallLog(sessions).write, model_source("", "", model, "ko"),
        RecordingLocator(recordings), workers=workers, max_seconds=max_seconds, clock=clock or Clock(),
    )
