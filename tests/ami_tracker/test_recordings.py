"""RecordingLocator: Asterisk's path -> ours, never outside the directory; WAV length from the header."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from ivr.calls.recordings import RecordingLocator, wav_seconds
from tests.ami_tracker.conftest import ASTERISK_DIR, REAL_WAV


@pytest.fixture
def locator(recordings: Path) -> RecordingLocator:
    return RecordingLocator(recordings, ASTERISK_DIR)


def test_asterisk_prefix_is_rewritten_to_our_directory(locator: RecordingLocator, recordings: Path) -> None:
    got = locator.local_path(f"{ASTERISK_DIR}/ivr/2026/11/27/call-1795751112.36.wav")
    assert got == recordings.resolve() / "ivr/2026/11/27/call-1795751112.36.wav"
    assert locator.local_path("call-1.wav") == recordings.resolve() / "call-1.wav"  # relative: inside ours
    assert locator.local_path(str(recordings / "a.wav")) == recordings.resolve() / "a.wav"  # already ours


def test_same_directory_without_rewrite(recordings: Path) -> None:
    plain = RecordingLocator(recordings)
    assert plain.local_path(str(recordings / "x" / "a.wav")) == recordings.resolve() / "x" / "a.wav"
    assert plain.local_path(f"{ASTERISK_DIR}/a.wav") is None


@pytest.mark.parametrize(
    "reported",
    [
        "../../etc/passwd",
        "/etc/passwd",
        f"{ASTERISK_DIR}/../../../etc/passwd",
        f"{ASTERISK_DIR}/ivr/../../x.wav",
        "/var/spool/asterisk/monitorX/a.wav",  # a prefix of the name is not the directory
        "",
        "   ",
        "a\x00b.wav",
        None,
        ASTERISK_DIR,  # the directory itself is not a recording
    ],
)
def test_paths_outside_the_directory_are_refused(locator: RecordingLocator, reported: str | None) -> None:
    assert locator.local_path(reported) is None


async def test_symlink_pointing_out_is_refused(locator: RecordingLocator, recordings: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    shutil.copy(REAL_WAV, secret)
    (recordings / "link.wav").symlink_to(secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(REAL_WAV, outside / "b.wav")
    (recordings / "dir").symlink_to(outside, target_is_directory=True)
    assert locator.local_path(f"{ASTERISK_DIR}/link.wav") is None
    assert locator.local_path(f"{ASTERISK_DIR}/dir/b.wav") is None
    assert await locator.describe(recordings / "link.wav") is None
    assert await locator.describe(recordings / "dir" / "b.wav") is None


async def test_symlink_inside_the_directory_is_fine(locator: RecordingLocator, recordings: Path) -> None:
    shutil.copy(REAL_WAV, recordings / "real.wav")
    (recordings / "alias.wav").symlink_to(recordings / "real.wav")
    info = await locator.describe(f"{ASTERISK_DIR}/alias.wav")
    assert info is not None and info.path == recordings.resolve() / "real.wav"


async def test_describe_the_real_mixmonitor_recording(locator: RecordingLocator, recordings: Path) -> None:
    shutil.copy(REAL_WAV, recordings / "call.wav")
    info = await locator.describe(f"{ASTERISK_DIR}/call.wav")
    assert info is not None
    assert (info.seconds, info.bytes) == (6.8, 108844)  # 108800 bytes of 8 kHz 16-bit mono


def _crashed(recordings: Path, data_size: int, riff_size: int = 0) -> Path:
    """The real recording with the header sizes a crashed MixMonitor leaves behind."""
    raw = bytearray(REAL_WAV.read_bytes())
    struct.pack_into("<I", raw, 4, riff_size)
    struct.pack_into("<I", raw, 40, data_size)
    path = recordings / f"crashed-{data_size}.wav"
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("data_size", [0, 0xFFFFFFFF, 10_000_000])
async def test_wrong_header_sizes_are_computed_from_the_file_size(
    locator: RecordingLocator, recordings: Path, data_size: int
) -> None:
    info = await locator.describe(_crashed(recordings, data_size))
    assert info is not None and (info.seconds, info.bytes) == (6.8, 108844)


async def test_truncated_recording_counts_what_is_there(locator: RecordingLocator, recordings: Path) -> None:
    path = recordings / "short.wav"
    path.write_bytes(REAL_WAV.read_bytes()[: 44 + 16000])
    info = await locator.describe(path)
    assert info is not None and info.seconds == 1.0


async def test_missing_empty_and_headerless_files(locator: RecordingLocator, recordings: Path) -> None:
    assert await locator.describe(recordings / "nope.wav") is None
    (recordings / "empty.wav").write_bytes(b"")
    assert await locator.describe(recordings / "empty.wav") is None
    (recordings / "raw.wav").write_bytes(b"\0" * (44 + 8000))
    info = await locator.describe(recordings / "raw.wav")
    assert info is not None and info.seconds == 0.5  # assumed Asterisk's 8 kHz 16-bit layout


def test_wav_seconds_reads_other_formats_from_fmt() -> None:
    header = b"RIFF" + struct.pack("<I", 36 + 32000) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    header += b"data" + struct.pack("<I", 32000)
    assert wav_seconds(header, len(header) + 32000) == 1.0
    extra = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"LIST" + struct.pack("<I", 3) + b"abc\0"
    extra += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, 8000, 32000, 4, 16) + b"data" + struct.pack("<I", 0)
    assert wav_seconds(extra, len(extra) + 64000) == 2.0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
async def test_unreadable_file_is_none(locator: RecordingLocator, recordings: Path) -> None:
    path = recordings / "locked.wav"
    shutil.copy(REAL_WAV, path)
    path.chmod(0)
    assert await locator.describe(path) is None


async def test_a_header_without_audio_is_empty(locator: RecordingLocator, recordings: Path) -> None:
    """MixMonitor's file when no frame reached it: 44 bytes, 0.0 s: described, and marked empty."""
    header = bytearray(REAL_WAV.read_bytes()[:44])
    struct.pack_into("<I", header, 4, 36)
    struct.pack_into("<I", header, 40, 0)
    (recordings / "empty-call.wav").write_bytes(bytes(header))
    info = await locator.describe(recordings / "empty-call.wav")
    assert info is not None and (info.seconds, info.bytes, info.empty) == (0.0, 44, True)
    shutil.copy(REAL_WAV, recordings / "call.wav")
    full = await locator.describe(recordings / "call.wav")
    assert full is not None and not full.empty
