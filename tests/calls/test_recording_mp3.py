"""MP3 copies of recordings: made once however many ask at once, a new copy when the file changes,
the least recently served removed above the size limit, a file ffmpeg cannot read is None."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from ivr.calls.recording_mp3 import RecordingMp3
from tests.traces import TRACES

WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"


async def test_one_encoding_for_simultaneous_requests_and_a_new_one_when_the_file_changes(tmp_path: Path) -> None:
    source = tmp_path / "a.wav"
    shutil.copyfile(WAV, source)
    mp3 = RecordingMp3(tmp_path / "cache", max_mb=10)
    copies = await asyncio.gather(*(mp3.copy_of(source) for _ in range(5)))
    assert len(set(copies)) == 1 and mp3.encoded == 1
    head = copies[0].read_bytes()[:3]
    assert head == b"ID3" or head[:2] == b"\xff\xfb"  # an ID3 tag or an MPEG-1 Layer III frame
    with source.open("ab") as fh:  # MixMonitor still writing: a longer file
        fh.write(b"\0" * 16000)
    assert await mp3.copy_of(source) != copies[0] and mp3.encoded == 2


async def test_the_least_recently_served_copy_goes_above_the_limit(tmp_path: Path) -> None:
    sources = []
    for name in ("a", "b", "c"):
        sources.append(tmp_path / f"{name}.wav")
        shutil.copyfile(WAV, sources[-1])
    mp3 = RecordingMp3(tmp_path / "cache", max_mb=0.06)  # room for two 27 KB copies
    a = await mp3.copy_of(sources[0])
    b = await mp3.copy_of(sources[1])
    os.utime(b, (1, 1))  # b served long ago, a just now
    os.utime(a, None)
    c = await mp3.copy_of(sources[2])
    assert a.exists() and c.exists() and not b.exists()


async def test_a_file_ffmpeg_cannot_read_is_none_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(2000))
    mp3 = RecordingMp3(tmp_path / "cache")
    assert await mp3.copy_of(bad) is None
    assert await mp3.copy_of(tmp_path / "missing.wav") is None
    assert list((tmp_path / "cache").iterdir()) == []
